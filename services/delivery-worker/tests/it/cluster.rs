//! The delivery-worker on a real Redis Cluster (issue #15), in process as the services' ACL user:
//! deliveries of every queue shard reach the receiver and are acknowledged, the outcome scripts stay in
//! their shard's slot, and the subscription counters and the circuit breaker (in other slots) follow
//! through the fold and the breaker's own script.

use std::collections::HashSet;

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::DeliveryId;
use delivery_model::keys::QUEUE_GROUP;
use delivery_model::store::import::LegacyPlacement;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use test_support::cluster::OnCluster;
use test_support::receiver::Receiver;
use test_support::wait;

use crate::{BASE, DELIVERIES, TIMEOUT};

/// A worker on a 6-shard cluster, `extra` settings on top of the in-process base.
async fn worker(extra: &[(&str, &str)]) -> OnCluster {
    let env: Vec<(&str, &str)> = BASE.iter().chain(extra).copied().collect();
    let mut svc = OnCluster::prepare(6, &env).await;
    svc.run(delivery_worker::SERVICE, delivery_worker::run)
        .await;
    svc
}

/// An active subscription to `receiver`.
async fn subscribe(svc: &OnCluster, receiver: &Receiver) -> Subscription {
    let sub = Subscription::new(
        "owner-1",
        "hook",
        format!("{}/hook", receiver.url()),
        vec!["threat_model.created".into()],
        SubscriptionStatus::Active,
        now_micros(),
    );
    assert!(svc.store.create_subscription(&sub).await.unwrap());
    sub
}

/// `n` queued deliveries for `sub`, spread over the shards by their ids.
async fn queue(svc: &OnCluster, sub: &Subscription, n: usize) -> Vec<DeliveryId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let record = DeliveryRecord::new_pending(
            DeliveryId::new_v7(),
            sub.id,
            "threat_model.created",
            "{}",
            now_micros(),
        );
        svc.store
            .import_delivery(&record, LegacyPlacement::Enqueue, now_micros())
            .await
            .unwrap();
        ids.push(record.id);
    }
    ids
}

async fn statuses(svc: &OnCluster, ids: &[DeliveryId]) -> Vec<DeliveryStatus> {
    let mut out = Vec::new();
    for id in ids {
        out.push(svc.store.get_delivery(*id).await.unwrap().unwrap().status);
    }
    out
}

/// Entries read but not acknowledged, over every shard's queue.
async fn pending(svc: &OnCluster) -> u64 {
    let k = svc.store.keys();
    let mut n = 0;
    for shard in k.shards() {
        let v: Value = svc
            .raw
            .xpending(k.queue_stream(shard), QUEUE_GROUP, ())
            .await
            .unwrap();
        n += v.into_array().first().and_then(Value::as_u64).unwrap_or(0);
    }
    n
}

#[tokio::test]
async fn delivers_from_every_shard_and_folds_the_subscription_counters() {
    let receiver = Receiver::start().await;
    let svc = worker(&[]).await;
    let sub = subscribe(&svc, &receiver).await;
    let ids = queue(&svc, &sub, 24).await;
    let shards: HashSet<_> = ids
        .iter()
        .map(|id| svc.store.keys().shard_of(*id))
        .collect();
    assert!(
        shards.len() >= 3,
        "the deliveries span the shards: {shards:?}"
    );

    receiver.wait_for_deliveries(24, TIMEOUT).await;
    wait::until("every delivery is delivered", TIMEOUT, || async {
        statuses(&svc, &ids)
            .await
            .iter()
            .all(|s| *s == DeliveryStatus::Delivered)
            .then_some(())
    })
    .await;
    svc.wait_metric(
        delivery_worker::SERVICE,
        DELIVERIES,
        &[("outcome", "delivered")],
        24.0,
    )
    .await;
    assert_eq!(pending(&svc).await, 0, "every queue entry is acknowledged");
    assert_eq!(receiver.count_by_delivery_id().len(), 24, "each sent once");

    // The successes reach the subscription through the fold (about a second later).
    let fresh = wait::until("the fold records the success", TIMEOUT, || async {
        let s = svc.store.get_subscription(sub.id).await.unwrap().unwrap();
        s.last_successful_use.map(|_| s)
    })
    .await;
    assert_eq!(fresh.publication_failures, 0);
    // What is folded is trimmed: once every shard is folded, at most its last folded entry stays.
    let k = svc.store.keys();
    wait::until(
        "every shard's effects are folded and trimmed",
        TIMEOUT,
        || async {
            for shard in k.shards() {
                let len: u64 = svc.raw.xlen(k.sub_outcomes(shard)).await.unwrap();
                if len > 1 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    svc.stop().await;
}

#[tokio::test]
async fn failures_reach_the_subscription_and_open_the_circuit() {
    let receiver = Receiver::start().await;
    receiver.set_default_status(500);
    let svc = worker(&[
        ("HOOKLINE__WORKER__MAX_ATTEMPTS", "1"),
        ("HOOKLINE__WORKER__CIRCUIT_FAILURE_THRESHOLD", "3"),
        ("HOOKLINE__WORKER__CIRCUIT_OPEN_MS", "60000"),
    ])
    .await;
    let sub = subscribe(&svc, &receiver).await;
    let ids = queue(&svc, &sub, 3).await;
    wait::until("the deliveries fail", TIMEOUT, || async {
        statuses(&svc, &ids)
            .await
            .iter()
            .all(|s| *s == DeliveryStatus::Failed)
            .then_some(())
    })
    .await;
    // Three failures, on whichever shards, counted once each through the fold.
    wait::until("the fold counts three failures", TIMEOUT, || async {
        let s = svc.store.get_subscription(sub.id).await.unwrap().unwrap();
        (s.publication_failures == 3).then_some(())
    })
    .await;
    // The third consecutive failure opened the host's circuit (an untagged key, its own script).
    let circuit = svc.store.keys().circuit(&receiver.addr().ip().to_string());
    let opens: Option<u64> = svc.raw.hget(&circuit, "opens").await.unwrap();
    assert_eq!(opens, Some(1), "the circuit opened once");
    // Nothing more is sent while it is open.
    let more = queue(&svc, &sub, 1).await;
    svc.wait_metric(
        delivery_worker::SERVICE,
        DELIVERIES,
        &[("outcome", "circuit_open")],
        1.0,
    )
    .await;
    assert_eq!(
        receiver.deliveries().len(),
        3,
        "the open circuit sent nothing"
    );
    assert_eq!(statuses(&svc, &more).await, [DeliveryStatus::Pending]);
    let s = svc.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(s.publication_failures, 3, "a deferral is not a failure");
    svc.stop().await;
}
