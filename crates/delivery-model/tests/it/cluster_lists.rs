//! The admin delivery lists merged across the queue shards (`docs/cluster.md` §4.5): `list_deliveries` and
//! `query_deliveries` page through every shard in one order, oldest first by `(created ms, id)`, with totals
//! summed over the shards, and pages neither skip nor repeat while deliveries are created. The same
//! scenario runs on a cluster of six shards and on one node, against one expected list computed here, so
//! both layouts agree.

use std::collections::BTreeSet;
use std::time::Duration;

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::store::delivery_queries::DeliveryFilter;
use delivery_model::store::import::LegacyPlacement;
use delivery_model::store::{Store, StoreOptions};
use delivery_model::time::{Micros, now_micros};
use fred::prelude::*;
use test_support::cluster::{Cluster, ClusterOptions};
use test_support::redis::hookline_cluster_acl_rule;

use crate::harness::Ctx;

/// 2026-04-01T12:00:00Z in µs: the scenario's records are created over the following 40 ms.
const BASE_US: Micros = 1_775_044_800_000_000;

struct Scenario {
    subs: [SubscriptionId; 3],
    addon: AddonId,
    records: Vec<DeliveryRecord>,
}

async fn import(store: &Store, r: &DeliveryRecord) {
    let keep = LegacyPlacement::Keep {
        ttl: Duration::from_secs(600),
    };
    store.import_delivery(r, keep, now_micros()).await.unwrap();
}

/// 50 deliveries over 37 distinct milliseconds (so several share a score and are ordered by id), with
/// sub-millisecond parts the index drops, three subscriptions, three statuses, three event types and one
/// add-on, written in an order unrelated to their creation time, round robin over the shards.
async fn seed(store: &Store) -> Scenario {
    let subs = [
        SubscriptionId::new_v4(),
        SubscriptionId::new_v4(),
        SubscriptionId::new_v4(),
    ];
    let addon = AddonId::new_v4();
    let statuses = [
        DeliveryStatus::Pending,
        DeliveryStatus::Failed,
        DeliveryStatus::Delivered,
    ];
    let events = [
        "threat_model.created",
        "threat_model.updated",
        "addon.invoked",
    ];
    let mut records = Vec::new();
    for i in 0..50_i64 {
        let created = BASE_US + (i * 7919 % 37) * 1000 + (i % 3) * 300;
        let n = usize::try_from(i).unwrap();
        // Round robin over the shards (one on a single node), so every shard holds part of each list.
        let shard = n % store.keys().shards().len();
        let id = std::iter::repeat_with(DeliveryId::new_v7)
            .find(|id| usize::from(store.keys().shard_of(*id).index()) == shard)
            .unwrap();
        let mut r = DeliveryRecord::new_pending(id, subs[n % 3], events[n % 5 % 3], "{}", created);
        r.status = statuses[n % 7 % 3];
        if r.event_type == "addon.invoked" {
            r.addon_id = Some(addon);
        }
        import(store, &r).await;
        records.push(r);
    }
    Scenario {
        subs,
        addon,
        records,
    }
}

fn matches(f: &DeliveryFilter, r: &DeliveryRecord) -> bool {
    let ms = r.created_at.div_euclid(1000);
    f.subscription.is_none_or(|s| s == r.subscription_id)
        && f.status.is_none_or(|s| s == r.status)
        && f.event_type.as_ref().is_none_or(|e| *e == r.event_type)
        && f.addon.is_none_or(|a| Some(a) == r.addon_id)
        && f.created_from_ms.is_none_or(|from| ms >= from)
        && f.created_to_ms.is_none_or(|to| ms <= to)
}

/// The records `f` selects in list order: created ms, then id as Redis orders members (bytes).
fn expected(records: &[DeliveryRecord], f: &DeliveryFilter) -> Vec<DeliveryId> {
    let mut sel: Vec<(i64, String, DeliveryId)> = records
        .iter()
        .filter(|r| matches(f, r))
        .map(|r| (r.created_at.div_euclid(1000), r.id.to_string(), r.id))
        .collect();
    sel.sort();
    sel.into_iter().map(|(_, _, id)| id).collect()
}

/// Every page of `f` at `limit`, concatenated, checking each page's total and size on the way.
async fn page_through(
    store: &Store,
    f: &DeliveryFilter,
    limit: u64,
    want: usize,
) -> Vec<DeliveryId> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.query_deliveries(f, offset, limit).await.unwrap();
        assert_eq!(page.total, want as u64, "{f:?} at {offset}/{limit}");
        let expected_len = (want as u64).saturating_sub(offset).min(limit);
        assert_eq!(
            page.items.len() as u64,
            expected_len,
            "{f:?} at {offset}/{limit}"
        );
        if page.items.is_empty() {
            return out;
        }
        out.extend(page.items.iter().map(|r| r.id));
        offset += limit;
    }
}

async fn pages_are_the_sorted_list(store: &Store) -> Scenario {
    let s = seed(store).await;
    let [a, b, _] = s.subs;
    let from = BASE_US / 1000 + 5;
    let filters = [
        DeliveryFilter::default(),
        DeliveryFilter {
            subscription: Some(a),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            created_from_ms: Some(from),
            created_to_ms: Some(from + 20),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            subscription: Some(a),
            status: Some(DeliveryStatus::Failed),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            subscription: Some(b),
            event_type: Some("threat_model.created".into()),
            created_from_ms: Some(from),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            addon: Some(s.addon),
            status: Some(DeliveryStatus::Pending),
            ..DeliveryFilter::default()
        },
        DeliveryFilter {
            event_type: Some("no.such.event".into()),
            ..DeliveryFilter::default()
        },
    ];
    for f in &filters {
        let want = expected(&s.records, f);
        for limit in [1, 3, 7, 100] {
            assert_eq!(
                page_through(store, f, limit, want.len()).await,
                want,
                "{f:?}, limit {limit}"
            );
        }
        // Past the end: no records, the same total.
        let page = store.query_deliveries(f, 60, 5).await.unwrap();
        assert_eq!((page.items.len(), page.total), (0, want.len() as u64));
        // A page in the middle on its own, and the total alone.
        if want.len() > 4 {
            let page = store.query_deliveries(f, 2, 3).await.unwrap();
            let ids: Vec<DeliveryId> = page.items.iter().map(|r| r.id).collect();
            assert_eq!(ids, want[2..5], "{f:?}");
            assert_eq!(
                page.items[0],
                *s.records.iter().find(|r| r.id == want[2]).unwrap()
            );
        }
        let page = store.query_deliveries(f, 0, 0).await.unwrap();
        assert_eq!((page.items.len(), page.total), (0, want.len() as u64));
    }
    // The mix of the scenario is what the filters test: several statuses, shared scores.
    assert!(expected(&s.records, &filters[4]).len() >= 3);

    for sub in [None, Some(a)] {
        let f = DeliveryFilter {
            subscription: sub,
            ..DeliveryFilter::default()
        };
        let want = expected(&s.records, &f);
        for limit in [4, 50] {
            let mut got = Vec::new();
            let mut offset = 0;
            while offset < want.len() as u64 {
                let page = store.list_deliveries(sub, offset, limit).await.unwrap();
                assert_eq!(page.total, want.len() as u64);
                got.extend(page.items.iter().map(|r| r.id));
                offset += limit;
            }
            assert_eq!(got, want, "list_deliveries({sub:?}), limit {limit}");
        }
    }
    s
}

/// Deliveries created between page reads (scored by their creation time, so after every earlier one)
/// neither shift a later page nor appear twice: the pages read in turn are the final sorted list.
async fn pages_stay_stable_while_deliveries_are_created(store: &Store) {
    let s = seed(store).await;
    let mut records = s.records;
    let all = DeliveryFilter::default();
    let mut seen = Vec::new();
    let mut offset = 0;
    let mut created = 0_i64;
    loop {
        let page = store.query_deliveries(&all, offset, 6).await.unwrap();
        assert_eq!(page.total, records.len() as u64);
        if page.items.is_empty() {
            break;
        }
        seen.extend(page.items.iter().map(|r| r.id));
        offset += 6;
        // Two new ones after each of the first ten pages, later than everything so far.
        if created < 20 {
            for _ in 0..2 {
                let r = DeliveryRecord::new_pending(
                    DeliveryId::new_v7(),
                    s.subs[0],
                    "threat_model.created",
                    "{}",
                    BASE_US + 1_000_000 + created * 1000,
                );
                import(store, &r).await;
                records.push(r);
                created += 1;
            }
        }
    }
    assert_eq!(created, 20);
    let distinct: BTreeSet<DeliveryId> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "a delivery appeared twice");
    assert_eq!(seen, expected(&records, &all));
}

#[tokio::test]
async fn merged_pages_on_a_cluster_are_the_globally_sorted_list() {
    let cluster = Cluster::start_with(ClusterOptions {
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    });
    // The lists as the services' ACL user reads them; the raw client (and its store) as the admin.
    let (admin, raw) = crate::cluster_delivery::connect(&cluster).await;
    admin.quit().await;
    let opts = StoreOptions {
        cluster_shards: 6,
        ..cluster.service_options()
    };
    let store = Store::connect(&opts).await.unwrap();
    let k = store.keys().clone();
    let s = pages_are_the_sorted_list(&store).await;
    // The scenario's records are on every shard, so the merge is what made the pages.
    let shards: BTreeSet<u16> = store
        .list_deliveries(None, 0, 100)
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| store.keys().shard_of(r.id).index())
        .collect();
    assert_eq!(shards.len(), 6, "{shards:?}");

    // A record that expired under its index entries is left out of the page and the total, and its id
    // removed from its shard's index.
    let all = DeliveryFilter::default();
    let want = expected(&s.records, &all);
    let gone = want[2];
    let _: i64 = raw.del(k.delivery(gone)).await.unwrap();
    let page = store.query_deliveries(&all, 1, 4).await.unwrap();
    let ids: Vec<DeliveryId> = page.items.iter().map(|r| r.id).collect();
    assert_eq!(ids, [want[1], want[3], want[4]]);
    assert_eq!(page.total, 49);
    let score: Option<f64> = raw
        .zscore(k.deliveries_all(k.shard_of(gone)), gone.to_string())
        .await
        .unwrap();
    assert_eq!(score, None);
    assert_eq!(store.query_deliveries(&all, 0, 0).await.unwrap().total, 49);
    // The stability scenario in a keyspace of its own (another prefix) on the same cluster.
    pages_stay_stable_on(&cluster).await;
    store.quit().await;
    raw.quit().await.unwrap();
    assert!(cluster.acl_log().is_empty(), "{:?}", cluster.acl_log());
}

async fn pages_stay_stable_on(cluster: &Cluster) {
    let opts = StoreOptions {
        cluster_shards: 6,
        key_prefix: "stable:".into(),
        ..cluster.admin_options()
    };
    let store = Store::connect(&opts).await.unwrap();
    pages_stay_stable_while_deliveries_are_created(&store).await;
    store.quit().await;
}

#[tokio::test]
async fn pages_on_one_node_are_the_same_list() {
    let ctx = Ctx::start().await;
    pages_are_the_sorted_list(&ctx.store).await;
    let ctx = Ctx::start().await;
    pages_stay_stable_while_deliveries_are_created(&ctx.store).await;
}
