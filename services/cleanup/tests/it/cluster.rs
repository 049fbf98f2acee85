//! Cleanup on a real Redis Cluster (issue #15): the delivery indexes of every queue shard are found without
//! a `SCAN` (the record-creating scripts register them) and pruned in their own slot, a stale `in_progress`
//! delivery is failed in its shard and counted through the fold, and the cycle's lease and state live in the
//! control slot. A redrive job walks every shard and queues each delivery in its own.

use std::collections::HashSet;
use std::time::Duration;

use cleanup::cycle::Action;
use delivery_model::delivery::DeliveryStatus;
use delivery_model::keys::Shard;
use delivery_model::store::{HealthPolicy, Store, StoreOptions};
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;
use fred::prelude::*;
use prometheus::Registry;
use test_support::cluster::Cluster;
use test_support::wait;
use tokio_util::sync::CancellationToken;

use crate::harness::{DAY, LONG_TTL, SECOND, config, progress, record, subscription};

async fn store(cluster: &Cluster, ttl: Duration) -> Store {
    Store::connect(&StoreOptions {
        cluster_shards: 6,
        active_ttl: ttl,
        terminal_ttl: ttl,
        ..cluster.admin_options()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn every_shard_is_pruned_and_swept_without_a_scan() {
    let cluster = Cluster::start(3, 0);
    let live_store = store(&cluster, LONG_TTL).await;
    let short = store(&cluster, Duration::from_secs(1)).await;
    let k = live_store.keys().clone();
    let sub = subscription(SubscriptionStatus::Active, DAY);
    assert!(live_store.create_subscription(&sub).await.unwrap());

    // Short-lived and long-lived records of one subscription, spread over the shards.
    let (mut dead, mut live) = (Vec::new(), Vec::new());
    for i in 0..24 {
        let r = record(sub.id, "threat_model.updated");
        let s = if i % 2 == 0 { &short } else { &live_store };
        assert!(s.create_and_enqueue_delivery(&r).await.unwrap());
        if i % 2 == 0 {
            dead.push(r.id)
        } else {
            live.push(r.id)
        }
    }
    let shards: HashSet<Shard> = dead.iter().map(|id| k.shard_of(*id)).collect();
    assert!(shards.len() > 1, "the records span shards");
    // A delivery stuck in progress since long ago, in some shard.
    let mut stale = record(sub.id, "threat_model.updated");
    let long_ago = now_micros() - 3600 * SECOND;
    stale.created_at = long_ago;
    assert!(
        live_store
            .create_and_enqueue_delivery(&stale)
            .await
            .unwrap()
    );
    progress(&live_store, &stale, long_ago).await;
    let raw = Builder::from_config(
        delivery_model::store::connection::fred_config(&cluster.admin_options()).unwrap(),
    )
    .build()
    .unwrap();
    raw.init().await.unwrap();
    wait::until(
        "the short-lived records expire",
        Duration::from_secs(10),
        || async {
            for id in &dead {
                let n: u64 = raw.exists(k.delivery(*id)).await.unwrap();
                if n > 0 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;

    let metrics = cleanup::metrics::Metrics::register(&Registry::new()).unwrap();
    let cleaner = cleanup::cycle::Cleaner::new(live_store.clone(), config(), metrics);
    let report = match cleaner
        .cycle(&CancellationToken::new(), cleanup::cycle::Budget::Unlimited)
        .await
        .unwrap()
    {
        cleanup::cycle::CycleOutcome::Completed(r) => r,
        other => panic!("the cycle did not complete: {other:?}"),
    };
    assert_eq!(report.changed(Action::StaleFailed), 1);
    assert!(report.changed(Action::IndexPruned) >= dead.len() as u64);
    // Every shard's indexes hold the live records only.
    for shard in k.shards() {
        let by_sub: Vec<String> = raw
            .zrange(
                k.deliveries_by_subscription(shard, sub.id),
                0,
                -1,
                None,
                false,
                None,
                false,
            )
            .await
            .unwrap();
        for id in &dead {
            assert!(
                !by_sub.contains(&id.to_string()),
                "a dead member stayed in {shard:?}"
            );
        }
    }
    for id in &live {
        let by_sub: Vec<String> = raw
            .zrange(
                k.deliveries_by_subscription(k.shard_of(*id), sub.id),
                0,
                -1,
                None,
                false,
                None,
                false,
            )
            .await
            .unwrap();
        assert!(by_sub.contains(&id.to_string()), "a live member was pruned");
    }
    let swept = live_store.get_delivery(stale.id).await.unwrap().unwrap();
    assert_eq!(swept.status, DeliveryStatus::Failed);
    // The stale delivery counts against the subscription once the counters are folded.
    live_store
        .fold_outcomes(&HealthPolicy::default())
        .await
        .unwrap();
    let s = live_store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(s.publication_failures, 1);
    raw.quit().await.unwrap();
    short.quit().await;
    live_store.quit().await;
}

/// A redrive job on a cluster: the walk over the failed index merges every shard (the admin lists' merge),
/// each delivery is queued in its own shard, once, and the job's state stays in the control slot.
#[tokio::test]
async fn a_redrive_job_queues_failed_deliveries_of_every_shard_once() {
    use cleanup::redrive::{RedriveConfig, Runner};
    use delivery_model::delivery::field;
    use delivery_model::redrive::{JobState, RedriveFilter, RedriveJob};
    use delivery_model::store::import::LegacyPlacement;
    use delivery_model::store::redrive::StartResult;

    let cluster = Cluster::start(3, 0);
    let store = store(&cluster, LONG_TTL).await;
    let k = store.keys().clone();
    let raw = Builder::from_config(
        delivery_model::store::connection::fred_config(&cluster.admin_options()).unwrap(),
    )
    .build()
    .unwrap();
    raw.init().await.unwrap();
    let sub = subscription(SubscriptionStatus::Active, DAY);
    assert!(store.create_subscription(&sub).await.unwrap());
    // 30 failed deliveries whose last attempt got a 500, and 6 whose got a 404 (left alone by the filter).
    let (mut wanted, mut other) = (Vec::new(), Vec::new());
    for i in 0..36 {
        let status = if i < 30 { 500 } else { 404 };
        let mut r = record(sub.id, "threat_model.created");
        r.created_at = now_micros() - 3600 * SECOND + i * 1000;
        r.status = DeliveryStatus::Failed;
        r.attempts = 5;
        store
            .import_delivery(&r, LegacyPlacement::Keep { ttl: LONG_TTL }, now_micros())
            .await
            .unwrap();
        let line = format!(
            r#"{{"attempt":5,"started_at":{},"duration_ms":3,"outcome":"failed","status_code":{status},"error":"HTTP {status}"}}"#,
            r.created_at
        );
        let _: () = raw
            .hset(k.delivery(r.id), (field::ATTEMPT_LOG, line))
            .await
            .unwrap();
        if status == 500 {
            &mut wanted
        } else {
            &mut other
        }
        .push(r.id);
    }
    let shards: HashSet<Shard> = wanted.iter().map(|id| k.shard_of(*id)).collect();
    assert!(shards.len() > 2, "the failed deliveries span shards");

    let filter = RedriveFilter {
        status_codes: vec![500],
        ..RedriveFilter::default()
    };
    let job = RedriveJob::new(sub.id, filter, 200, "admin-1", now_micros());
    assert_eq!(
        store.start_redrive(&job).await.unwrap(),
        StartResult::Started
    );
    let metrics = cleanup::metrics::Metrics::register(&Registry::new()).unwrap();
    let runner = Runner::new(
        store.clone(),
        RedriveConfig {
            replica: "it".into(),
            lease_ttl: Duration::from_secs(1),
            tick: Duration::from_millis(100),
        },
        metrics,
    );
    let token = CancellationToken::new();
    let task = tokio::spawn(runner.run(token.clone()));
    let done = wait::until("the job completes", Duration::from_secs(30), || async {
        let j = store.get_redrive(sub.id).await.unwrap().unwrap();
        (j.state == JobState::Completed).then_some(j)
    })
    .await;
    token.cancel();
    task.await.unwrap();
    assert_eq!((done.matched, done.queued, done.skipped), (30, 30, 0));
    assert_eq!(done.scanned, 36);
    for id in &wanted {
        let r = store.get_delivery(*id).await.unwrap().unwrap();
        assert_eq!(r.status, DeliveryStatus::Pending);
    }
    for id in &other {
        let r = store.get_delivery(*id).await.unwrap().unwrap();
        assert_eq!(r.status, DeliveryStatus::Failed);
    }
    // One queue entry per queued delivery, in its own shard.
    let mut queued = 0;
    for shard in k.shards() {
        let n: u64 = raw.xlen(k.queue_stream(shard)).await.unwrap();
        let expected = wanted.iter().filter(|id| k.shard_of(**id) == shard).count() as u64;
        assert_eq!(n, expected, "{shard:?}");
        queued += n;
    }
    assert_eq!(queued, 30);
    raw.quit().await.unwrap();
    store.quit().await;
}
