//! The event-consumer on a real Redis Cluster (issue #15): deliveries fanned out across the queue shards
//! with every entry acknowledged, a dead replica's pending entries taken over and fanned out once, and an
//! `addon.invoked` entry routed to its record's shard once.

use std::collections::BTreeMap;

use delivery_model::delivery::DeliveryRecord;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{EVENTS_GROUP, Layout};
use delivery_model::store::import::LegacyPlacement;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use test_support::cluster::OnCluster;
use test_support::wait;

use crate::{BASE, EVENTS, OWNER, TIMEOUT, event};

/// The consumer in process on a 6-shard cluster, as the services' ACL user, not started yet.
async fn prepare(extra: &[(&str, &str)]) -> OnCluster {
    let env: Vec<(&str, &str)> = BASE.iter().chain(extra).copied().collect();
    let svc = OnCluster::prepare(6, &env).await;
    assert_eq!(svc.store.keys().layout(), Layout::Cluster { shards: 6 });
    svc
}

async fn start(extra: &[(&str, &str)]) -> OnCluster {
    let mut svc = prepare(extra).await;
    svc.run(event_consumer::SERVICE, event_consumer::run).await;
    svc
}

async fn wait_metric(svc: &OnCluster, name: &str, labels: &[(&str, &str)], n: f64) {
    svc.wait_metric(event_consumer::SERVICE, name, labels, n)
        .await;
}

async fn subscribe(svc: &OnCluster) -> Subscription {
    let sub = Subscription::new(
        OWNER,
        "hook",
        "http://127.0.0.1:9/hook",
        vec!["threat_model.created".into()],
        SubscriptionStatus::Active,
        now_micros(),
    );
    assert!(svc.store.create_subscription(&sub).await.unwrap());
    sub
}

/// Queue entries per shard index.
async fn queues(svc: &OnCluster) -> BTreeMap<u16, u64> {
    let k = svc.store.keys();
    let mut out = BTreeMap::new();
    for shard in k.shards() {
        let n: u64 = svc.raw.xlen(k.queue_stream(shard)).await.unwrap();
        out.insert(shard.index(), n);
    }
    out
}

async fn events_pending(svc: &OnCluster) -> u64 {
    let v: Value = svc
        .raw
        .xpending(svc.store.keys().events_stream(), EVENTS_GROUP, ())
        .await
        .unwrap();
    v.into_array().first().and_then(Value::as_u64).unwrap_or(0)
}

#[tokio::test]
async fn fans_out_across_the_shards_and_acknowledges_every_entry() {
    let svc = start(&[]).await;
    for _ in 0..4 {
        subscribe(&svc).await;
    }
    for _ in 0..3 {
        svc.store
            .publish_event(&event("threat_model.created"))
            .await
            .unwrap();
    }
    svc.store
        .publish_event(&event("threat_model.deleted"))
        .await
        .unwrap();
    wait_metric(&svc, EVENTS, &[("outcome", "fanned_out")], 3.0).await;
    wait_metric(&svc, EVENTS, &[("outcome", "no_match")], 1.0).await;
    let queues = queues(&svc).await;
    assert_eq!(queues.values().sum::<u64>(), 12, "{queues:?}");
    assert!(
        queues.values().filter(|&&n| n > 0).count() > 1,
        "{queues:?}"
    );
    assert_eq!(events_pending(&svc).await, 0);
    svc.stop().await;
}

#[tokio::test]
async fn takes_over_a_dead_replicas_entries_and_fans_them_out_once() {
    let mut svc = prepare(&[("HOOKLINE__CONSUMER__CLAIM_IDLE_MS", "300")]).await;
    subscribe(&svc).await;
    subscribe(&svc).await;
    // Before the service starts, a replica reads the entry and dies with it pending in its list.
    let store = &svc.store;
    store.ensure_events_group("0").await.unwrap();
    store
        .publish_event(&event("threat_model.created"))
        .await
        .unwrap();
    let reader = store.reader().await.unwrap();
    let taken = reader
        .read_group(
            store.keys().events_stream(),
            EVENTS_GROUP,
            "dead-pod",
            10,
            0,
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    reader.quit().await;
    svc.run(event_consumer::SERVICE, event_consumer::run).await;
    wait_metric(&svc, "hookline_consumer_reclaimed_total", &[], 1.0).await;
    wait_metric(&svc, EVENTS, &[("outcome", "fanned_out")], 1.0).await;
    assert_eq!(queues(&svc).await.values().sum::<u64>(), 2);
    assert_eq!(events_pending(&svc).await, 0);
    svc.stop().await;
}

#[tokio::test]
async fn routes_an_addon_invocation_to_its_shard_once() {
    let svc = start(&[]).await;
    let record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        SubscriptionId::new_v4(),
        "addon.invoked",
        "{}",
        now_micros(),
    );
    svc.store
        .import_delivery(
            &record,
            LegacyPlacement::Keep {
                ttl: std::time::Duration::from_secs(600),
            },
            now_micros(),
        )
        .await
        .unwrap();
    let mut invoked = event("addon.invoked");
    invoked.delivery_id = Some(record.id);
    svc.store.publish_event(&invoked).await.unwrap();
    wait::until("the invocation is routed", TIMEOUT, || async {
        (events_pending(&svc).await == 0 && queues(&svc).await.values().sum::<u64>() == 1)
            .then_some(())
    })
    .await;
    let shard = svc.store.keys().shard_of(record.id).index();
    assert_eq!(queues(&svc).await[&shard], 1);
    svc.stop().await;
}
