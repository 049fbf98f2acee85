//! Outcomes on a real Redis Cluster (issue #15 step 2, `docs/cluster.md` §4.2–4.3): the outcome script stays
//! in its shard's slot and stays fenced by the lease; the subscription counters follow through each shard's
//! `sub_outcomes` stream and the fold, which applies every effect exactly once however many workers fold at
//! the same time; the circuit breaker gets the signals of the written attempts only. Status callbacks, admin
//! retries and the stale sweep work in the record's shard and send their counter effects the same way.

use std::time::Duration;

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{Keyspace, QUEUE_GROUP, Shard};
use delivery_model::store::callbacks::{CallbackResult, CallbackUpdate};
use delivery_model::store::import::LegacyPlacement;
use delivery_model::store::retries::RetryResult;
use delivery_model::store::{
    AttemptOutcome, BeginAttempt, BeginItem, CircuitPolicy, CircuitSignal, FinishItem,
    FinishResult, HealthPolicy, Store,
};
use delivery_model::subscription::{DisabledReason, Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};
use fred::prelude::*;
use test_support::cluster::Cluster;

const HOST: &str = "receiver.example.com";

use crate::cluster_delivery::connect;

/// A fresh delivery id of `shard`.
fn id_in(k: &Keyspace, shard: Shard) -> DeliveryId {
    loop {
        let id = DeliveryId::new_v7();
        if k.shard_of(id) == shard {
            return id;
        }
    }
}

/// A leased delivery of `sub` on `shard`: created, enqueued, read from its queue and leased with `token`.
/// Returns the record and its queue entry id.
async fn leased(
    store: &Store,
    sub: &Subscription,
    shard: Shard,
    token: &str,
) -> (DeliveryRecord, String) {
    let k = store.keys();
    let record = DeliveryRecord::new_pending(id_in(k, shard), sub.id, "a.b", "{}", now_micros());
    assert!(store.create_and_enqueue_delivery(&record).await.unwrap());
    let reader = store.reader().await.unwrap();
    let read = reader
        .read_group(&k.queue_stream(shard), QUEUE_GROUP, "w", 1, 100)
        .await
        .unwrap();
    reader.quit().await;
    let entry = read[0].id.clone();
    let now = now_micros();
    let item = BeginItem {
        id: record.id,
        token,
        entry_id: &entry,
    };
    let began = store
        .begin_attempts(&[item], now, now + 30_000_000, Duration::ZERO)
        .await;
    assert!(matches!(began[0], Ok(BeginAttempt::Go(_))));
    (record, entry)
}

fn outcome(
    (record, entry): &(DeliveryRecord, String),
    token: &str,
    outcome: AttemptOutcome,
    signal: CircuitSignal,
) -> FinishItem {
    FinishItem {
        id: record.id,
        subscription_id: record.subscription_id,
        token: token.to_owned(),
        entry_id: entry.clone(),
        outcome,
        host: HOST.to_owned(),
        signal,
        log: None,
    }
}

async fn stream_len(raw: &Client, key: String) -> u64 {
    raw.xlen(key).await.unwrap()
}

/// One fold by a worker with the default health policy: how many effects it applied.
async fn fold(store: &Store) -> usize {
    store
        .fold_outcomes(&HealthPolicy::default())
        .await
        .unwrap()
        .applied
}

async fn finish(store: &Store, item: FinishItem, at: Micros) -> FinishResult {
    store
        .finish_attempts(&[item], &CircuitPolicy::default(), at)
        .await
        .unwrap()[0]
}

#[tokio::test]
async fn outcomes_stay_fenced_and_the_counters_fold_exactly_once() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = connect(&cluster).await;
    let (other, _other_raw) = connect(&cluster).await;
    let k = store.keys().clone();
    store.ensure_queue_group().await.unwrap();
    let sub = Subscription::new(
        "owner-1",
        "it",
        "https://receiver.example.com/hook",
        vec!["a.b".into()],
        SubscriptionStatus::Active,
        now_micros(),
    );
    assert!(store.create_subscription(&sub).await.unwrap());
    let mut shards = k.shards();
    let (x, y) = (shards.next().unwrap(), shards.next().unwrap());
    let ok = leased(&store, &sub, x, "T0").await;
    let bad1 = leased(&store, &sub, y, "T1").await;
    let bad2 = leased(&store, &sub, y, "T2").await;

    // A stale token writes nothing: no outcome, no counter effect, no circuit signal.
    let failed = || AttemptOutcome::Failed {
        error: "HTTP 500".into(),
    };
    let fenced = finish(
        &store,
        outcome(&bad1, "old", failed(), CircuitSignal::Failure),
        now_micros(),
    )
    .await;
    assert_eq!(fenced, FinishResult::Fenced);
    assert_eq!(stream_len(&raw, k.sub_outcomes(y)).await, 0);
    let circuit: u64 = raw.exists(k.circuit(HOST)).await.unwrap();
    assert_eq!(circuit, 0, "a fenced attempt tells the breaker nothing");
    // Items of two shards cannot share one script.
    let mixed = [
        outcome(&ok, "T0", AttemptOutcome::Delivered, CircuitSignal::Success),
        outcome(&bad1, "T1", failed(), CircuitSignal::Failure),
    ];
    assert!(
        store
            .finish_attempts(&mixed, &CircuitPolicy::default(), now_micros())
            .await
            .is_err()
    );

    // A success on shard x before two failures on shard y.
    let t0 = now_micros();
    let written = |r| assert_eq!(r, FinishResult::Written);
    written(
        finish(
            &store,
            outcome(&ok, "T0", AttemptOutcome::Delivered, CircuitSignal::Success),
            t0,
        )
        .await,
    );
    written(
        finish(
            &store,
            outcome(&bad1, "T1", failed(), CircuitSignal::Failure),
            t0 + 1,
        )
        .await,
    );
    written(
        finish(
            &store,
            outcome(&bad2, "T2", failed(), CircuitSignal::Failure),
            t0 + 2,
        )
        .await,
    );
    assert_eq!(stream_len(&raw, k.sub_outcomes(x)).await, 1);
    assert_eq!(stream_len(&raw, k.sub_outcomes(y)).await, 2);
    let failures: Option<u64> = raw.hget(k.circuit(HOST), "failures").await.unwrap();
    assert_eq!(
        failures,
        Some(2),
        "the breaker counted both failures after the success"
    );
    // Nothing reached the subscription yet: its hash is in another slot.
    let before = store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(
        (before.publication_failures, before.last_successful_use),
        (0, None)
    );

    // Two workers fold at once: each effect is applied once, whoever wins each shard.
    let (a, b) = tokio::join!(fold(&store), fold(&other));
    assert_eq!(a + b, 3);
    assert_eq!(fold(&store).await, 0, "nothing is folded twice");
    let after = store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(after.last_successful_use, Some(t0));
    assert_eq!(
        after.publication_failures, 2,
        "failures after the last success count"
    );
    // Every queue entry was acknowledged with its outcome.
    for shard in [x, y] {
        let v: Value = raw
            .xpending(k.queue_stream(shard), QUEUE_GROUP, ())
            .await
            .unwrap();
        assert_eq!(v.into_array().first().and_then(Value::as_u64), Some(0));
    }
    store.quit().await;
    other.quit().await;
}

#[tokio::test]
async fn callbacks_retries_and_stale_sweeps_stay_in_their_shard() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = connect(&cluster).await;
    let k = store.keys().clone();
    store.ensure_queue_group().await.unwrap();
    let sub = Subscription::new(
        "owner-1",
        "it",
        "https://receiver.example.com/hook",
        vec!["a.b".into()],
        SubscriptionStatus::Active,
        now_micros(),
    );
    assert!(store.create_subscription(&sub).await.unwrap());
    let _: () = raw
        .hset(k.subscription(sub.id), ("timeout_count", "3"))
        .await
        .unwrap();
    let mut shards = k.shards();
    let (x, y) = (shards.next().unwrap(), shards.next().unwrap());
    // Two deliveries answered 2xx with `X-TMI-Callback: async`, on two shards.
    let t0 = now_micros() - 10_000_000;
    let called = leased(&store, &sub, x, "T0").await;
    let silent = leased(&store, &sub, y, "T1").await;
    for (d, token) in [(&called, "T0"), (&silent, "T1")] {
        let r = finish(
            &store,
            outcome(d, token, AttemptOutcome::InProgress, CircuitSignal::Success),
            t0,
        )
        .await;
        assert_eq!(r, FinishResult::Written);
    }

    // The receiver reports one of them delivered: the record in its shard, the counter through the fold.
    let update = CallbackUpdate {
        status: DeliveryStatus::Delivered,
        percent: None,
        message: None,
    };
    let r = store
        .apply_callback(called.0.id, sub.id, &update, now_micros())
        .await
        .unwrap();
    assert_eq!(
        r,
        CallbackResult::Updated {
            status: DeliveryStatus::Delivered,
            percent: 100
        }
    );
    // The other goes stale: cleanup fails it in its shard and counts it through the fold.
    let sweep = store
        .fail_stale_deliveries(now_micros() - 1_000_000, now_micros(), 100, "no callback")
        .await
        .unwrap();
    assert_eq!(sweep.failed, [silent.0.id]);
    assert_eq!(fold(&store).await, 4, "two successes, a callback, a stale");
    let s = store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(
        s.timeout_count, 0,
        "a delivered callback resets the timeout count"
    );
    assert_eq!(
        s.publication_failures, 1,
        "the stale delivery counts after the successes"
    );

    // An admin retry of the stale one: the subscription's status is read first, the record moved in its shard.
    let before = stream_len(&raw, k.queue_stream(y)).await;
    match store
        .retry_delivery(silent.0.id, now_micros())
        .await
        .unwrap()
    {
        RetryResult::Queued(r) => assert_eq!(r.status, DeliveryStatus::Pending),
        other => panic!("not queued: {other:?}"),
    }
    assert_eq!(stream_len(&raw, k.queue_stream(y)).await, before + 1);
    // A failed delivery of a subscription that no longer exists stays failed.
    let orphan = DeliveryRecord {
        status: DeliveryStatus::Failed,
        ..DeliveryRecord::new_pending(
            DeliveryId::new_v7(),
            SubscriptionId::new_v4(),
            "a.b",
            "{}",
            now_micros(),
        )
    };
    store
        .import_delivery(
            &orphan,
            LegacyPlacement::Keep {
                ttl: Duration::from_secs(600),
            },
            now_micros(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.retry_delivery(orphan.id, now_micros()).await.unwrap(),
        RetryResult::SubscriptionNotActive(None)
    );
    store.quit().await;
}

#[tokio::test]
async fn a_410_disables_its_subscription_in_the_fold() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = connect(&cluster).await;
    let k = store.keys().clone();
    store.ensure_queue_group().await.unwrap();
    let sub = Subscription::new(
        "owner-1",
        "it",
        "https://receiver.example.com/hook",
        vec!["a.b".into()],
        SubscriptionStatus::Active,
        now_micros(),
    );
    assert!(store.create_subscription(&sub).await.unwrap());
    let shard = k.shards().next().unwrap();
    let gone = leased(&store, &sub, shard, "T0").await;
    let error = "HTTP 410".to_owned();
    // The shard script writes the outcome; the subscription (another slot) is disabled by the fold.
    let r = finish(
        &store,
        outcome(
            &gone,
            "T0",
            AttemptOutcome::Gone { error },
            CircuitSignal::Failure,
        ),
        now_micros(),
    )
    .await;
    assert_eq!(r, FinishResult::Written);
    let before = store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(before.status, SubscriptionStatus::Active);
    let folded = store.fold_outcomes(&HealthPolicy::default()).await.unwrap();
    assert_eq!(folded.disabled, [(sub.id, DisabledReason::Gone)]);
    let after = store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(after.status, SubscriptionStatus::Inactive);
    assert_eq!(after.publication_failures, 1);
    // It no longer matches events (the consumer's candidate set).
    let members: Vec<String> = raw.smembers(k.subscriptions_by_event("a.b")).await.unwrap();
    assert!(members.is_empty(), "{members:?}");
    store.quit().await;
}
