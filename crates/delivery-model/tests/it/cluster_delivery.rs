//! The delivery path's store calls on a real Redis Cluster (issue #15 step 2, `docs/cluster.md` §4.1):
//! fan-out per queue shard with the input entries acknowledged after every shard's script, and routing of a
//! pre-created delivery, each creating and enqueuing nothing twice when an entry is processed again.

use crate::harness::event;
use std::collections::BTreeMap;
use std::time::Duration;

use delivery_model::delivery::DeliveryRecord;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{EVENTS_GROUP, Keyspace};
use delivery_model::store::import::LegacyPlacement;
use delivery_model::store::{BeginAttempt, BeginItem, FanoutEntry, Store, StoreOptions};
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;
use fred::prelude::*;
use test_support::cluster::Cluster;

/// A store on `cluster` with 6 queue shards as the administrator, and a raw client for checking state.
pub(crate) async fn connect(cluster: &Cluster) -> (Store, Client) {
    connect_with(cluster, |_| {}).await
}

/// As [`connect`], with `adjust` applied to the store's options.
pub(crate) async fn connect_with(
    cluster: &Cluster,
    adjust: impl FnOnce(&mut StoreOptions),
) -> (Store, Client) {
    let mut opts = StoreOptions {
        cluster_shards: 6,
        ..cluster.admin_options()
    };
    adjust(&mut opts);
    let store = Store::connect(&opts).await.unwrap();
    let raw = Builder::from_config(delivery_model::store::connection::fred_config(&opts).unwrap())
        .build()
        .unwrap();
    raw.init().await.unwrap();
    (store, raw)
}

/// Publishes `n` events and reads them as consumer `c` (so they are pending until acknowledged).
async fn pending_entries(store: &Store, n: u32) -> Vec<String> {
    store.ensure_events_group("0").await.unwrap();
    for i in 0..n {
        store.publish_event(&event(i)).await.unwrap();
    }
    let reader = store.reader().await.unwrap();
    let read = reader
        .read_group(store.keys().events_stream(), EVENTS_GROUP, "c", 100, 100)
        .await
        .unwrap();
    reader.quit().await;
    read.into_iter().map(|e| e.id).collect()
}

async fn queue_lengths(k: &Keyspace, raw: &Client) -> BTreeMap<u16, u64> {
    let mut out = BTreeMap::new();
    for shard in k.shards() {
        let len: u64 = raw.xlen(k.queue_stream(shard)).await.unwrap();
        out.insert(shard.index(), len);
    }
    out
}

async fn events_pending(k: &Keyspace, raw: &Client) -> u64 {
    let v: Value = raw
        .xpending(k.events_stream(), EVENTS_GROUP, ())
        .await
        .unwrap();
    v.into_array().first().and_then(Value::as_u64).unwrap()
}

#[tokio::test]
async fn fanout_writes_each_shard_once_and_acknowledges_after_all() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = connect(&cluster).await;
    let k = store.keys().clone();
    let entries = pending_entries(&store, 2).await;
    assert_eq!(events_pending(&k, &raw).await, 2);
    let subs: Vec<SubscriptionId> = (0..12).map(|_| SubscriptionId::new_v4()).collect();
    // The first entry carries a trace context, which every shard's script stores in its records.
    let trace = delivery_model::trace::TraceContext::parse(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        None,
    );
    let batch: Vec<FanoutEntry<'_>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| FanoutEntry {
            entry_id: e,
            event_type: "threat_model.created",
            envelope: "{}",
            subscriptions: &subs,
            lanes: &[],
            trace: if i == 0 { trace.as_ref() } else { None },
        })
        .collect();

    assert_eq!(store.fanout_batch(&batch, now_micros()).await.unwrap(), 24);
    assert_eq!(events_pending(&k, &raw).await, 0);
    let lengths = queue_lengths(&k, &raw).await;
    assert_eq!(lengths.values().sum::<u64>(), 24);
    assert!(
        lengths.values().filter(|&&n| n > 0).count() > 1,
        "{lengths:?}"
    );
    // Every record is in the shard its id names, with its indexes registered there for cleanup.
    for (i, e) in entries.iter().enumerate() {
        for sub in &subs {
            let id = DeliveryId::for_fanout(e, *sub);
            let shard = k.shard_of(id);
            let record = store.get_delivery(id).await.unwrap().unwrap();
            assert_eq!(record.id, id);
            assert_eq!(record.trace, if i == 0 { trace.clone() } else { None });
            let registered: bool = raw
                .sismember(
                    k.delivery_index_registry(shard),
                    k.deliveries_by_subscription(shard, *sub),
                )
                .await
                .unwrap();
            assert!(registered);
        }
    }

    // Processed again (a crash before the acknowledgement, a takeover): nothing new, nothing enqueued.
    assert_eq!(store.fanout_batch(&batch, now_micros()).await.unwrap(), 0);
    assert_eq!(queue_lengths(&k, &raw).await, lengths);
    store.quit().await;
}

#[tokio::test]
async fn routing_a_precreated_delivery_enqueues_it_once() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = connect(&cluster).await;
    let k = store.keys().clone();
    let record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        SubscriptionId::new_v4(),
        "addon.invoked",
        "{}",
        now_micros(),
    );
    let ttl = Duration::from_secs(600);
    store
        .import_delivery(&record, LegacyPlacement::Keep { ttl }, now_micros())
        .await
        .unwrap();
    let entry = pending_entries(&store, 1).await.remove(0);
    let queue = k.queue_stream(k.shard_of(record.id));

    assert!(store.route_existing(&entry, record.id).await.unwrap());
    assert_eq!(events_pending(&k, &raw).await, 0);
    // The entry comes back (the acknowledgement was lost): acknowledged again, not enqueued again.
    assert!(!store.route_existing(&entry, record.id).await.unwrap());
    let len: u64 = raw.xlen(&queue).await.unwrap();
    assert_eq!(len, 1);
    store.quit().await;
}

#[tokio::test]
async fn due_retries_go_back_to_their_own_shard_and_challenges_to_theirs() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = connect(&cluster).await;
    let k = store.keys().clone();
    store.ensure_queue_group().await.unwrap();
    let ids: Vec<DeliveryId> = (0..12).map(|_| DeliveryId::new_v7()).collect();
    for id in &ids {
        let msg = delivery_model::queue::QueueMessage::DeliveryV1 { delivery_id: *id };
        store.schedule(&msg, 1_000).await.unwrap();
    }
    let challenge = delivery_model::queue::QueueMessage::ChallengeV1 {
        subscription_id: SubscriptionId::new_v4(),
        trace: None,
    };
    store.schedule(&challenge, 1_000).await.unwrap();
    assert_eq!(store.scheduled_len().await.unwrap(), 13);
    // Not due yet: nothing moves.
    assert_eq!(store.promote_due(999, 100).await.unwrap(), 0);

    assert_eq!(store.promote_due(1_000, 100).await.unwrap(), 13);
    assert_eq!(store.scheduled_len().await.unwrap(), 0);
    let mut want: BTreeMap<u16, u64> = k.shards().map(|s| (s.index(), 0)).collect();
    for id in &ids {
        *want.entry(k.shard_of(*id).index()).or_default() += 1;
    }
    assert_eq!(queue_lengths(&k, &raw).await, want);
    let challenges: u64 = raw.xlen(k.challenge_queue()).await.unwrap();
    assert_eq!(challenges, 1);
    assert_eq!(store.queue_depth().await.unwrap(), (13, 0));
    store.quit().await;
}

#[tokio::test]
async fn leases_are_taken_per_shard_and_the_subscriptions_read_from_the_control_slot() {
    let cluster = Cluster::start(3, 0);
    let (store, _raw) = connect(&cluster).await;
    let k = store.keys().clone();
    store.ensure_queue_group().await.unwrap();
    let sub = crate::harness::subscription(SubscriptionStatus::Active, &["a.b"]);
    assert!(store.create_subscription(&sub).await.unwrap());
    let gone = SubscriptionId::new_v4();
    // Two deliveries of each of two shards: one of the stored subscription, one of a deleted one.
    let mut by_shard: BTreeMap<u16, Vec<DeliveryRecord>> = BTreeMap::new();
    let wanted = [0u16, 1];
    while wanted
        .iter()
        .any(|s| by_shard.get(s).is_none_or(|v| v.len() < 2))
    {
        let id = DeliveryId::new_v7();
        let shard = k.shard_of(id).index();
        if !wanted.contains(&shard) {
            continue;
        }
        let records = by_shard.entry(shard).or_default();
        if records.len() < 2 {
            let owner = if records.is_empty() { sub.id } else { gone };
            records.push(DeliveryRecord::new_pending(
                id,
                owner,
                "a.b",
                "{}",
                now_micros(),
            ));
        }
    }
    for records in by_shard.values() {
        for r in records {
            assert!(store.create_and_enqueue_delivery(r).await.unwrap());
        }
        let items: Vec<BeginItem<'_>> = records
            .iter()
            .map(|r| BeginItem {
                id: r.id,
                token: "t",
                entry_id: "",
            })
            .collect();
        let now = now_micros();
        let results = store
            .begin_attempts(&items, now, now + 30_000_000, Duration::ZERO)
            .await;
        let leased: Vec<Option<Option<SubscriptionId>>> = results
            .into_iter()
            .map(|r| match r.unwrap() {
                BeginAttempt::Go(l) => Some(l.subscription.map(|s| s.id)),
                _ => None,
            })
            .collect();
        assert_eq!(leased, [Some(Some(sub.id)), Some(None)]);
    }
    // The queue entries were never read by a consumer (no entry ids given): nothing is left pending.
    store.quit().await;
}
