//! The event-consumer in process (its library's `run`) against a private redis-server: what it does with
//! each kind of entry, and the reader's recovery paths (own pending entries, a stalled replica's entries, a
//! lost group) and shutdown, each observed through Redis and the service's own metrics. [`cluster`]: the
//! same service on a real Redis Cluster.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use delivery_model::event::StreamEvent;
use delivery_model::keys::EVENTS_GROUP;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use fred::types::Value;
use test_support::inproc::{InProcess, test_settings};
use test_support::redis::RedisServer;
use test_support::store::StoreFixture;
use test_support::wait;

mod cluster;

const EVENTS: &str = "hookline_consumer_events_total";
const TIMEOUT: Duration = Duration::from_secs(10);
const OWNER: &str = "owner-1";

/// Settings every test here starts from: short blocking reads, so a stop is quick.
const BASE: &[(&str, &str)] = &[("HOOKLINE__CONSUMER__BLOCK_MS", "200")];

async fn start(redis: RedisServer, extra: &[(&str, &str)]) -> InProcess {
    let env: Vec<(&str, &str)> = BASE.iter().chain(extra).copied().collect();
    let settings = test_settings(&redis.url(), &env);
    InProcess::start(redis, settings, event_consumer::run).await
}

fn event(event_type: &str) -> StreamEvent {
    StreamEvent {
        event_type: event_type.into(),
        threat_model_id: Some("tm-1".into()),
        object_id: Some("tm-1".into()),
        object_type: Some("threat_model".into()),
        owner_id: Some(OWNER.into()),
        timestamp: Some("2026-04-01T12:00:00Z".into()),
        payload: r#"{"threat_model_id":"tm-1","data":{"name":"Payments"}}"#.into(),
        delivery_id: None,
        trace: None,
    }
}

async fn subscribe(svc: &InProcess, events: &[&str]) -> Subscription {
    let sub = Subscription::new(
        OWNER,
        "hook",
        "http://127.0.0.1:9/hook",
        events.iter().map(|e| (*e).to_owned()).collect(),
        SubscriptionStatus::Active,
        now_micros(),
    );
    assert!(svc.store.create_subscription(&sub).await.unwrap());
    sub
}

/// Entries of the input group not yet acknowledged.
async fn pending(svc: &InProcess) -> u64 {
    svc.pending(svc.k().events_stream(), EVENTS_GROUP).await
}

async fn queue_len(svc: &InProcess) -> usize {
    svc.queue().await.len()
}

/// Waits until the counter `name{labels}` reaches `n`.
async fn wait_metric(svc: &InProcess, name: &str, labels: &[(&str, &str)], n: f64) {
    wait::until(&format!("{name}{labels:?} >= {n}"), TIMEOUT, || async {
        (svc.metric(name, labels) >= n).then_some(())
    })
    .await;
}

/// Waits until the service has created the input group (it does so at start).
async fn wait_group(svc: &InProcess) {
    wait::until("the input group exists", TIMEOUT, || async {
        svc.store
            .group_exists(svc.store.keys().events_stream(), EVENTS_GROUP)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn fans_out_matching_events_and_acknowledges_every_entry() {
    let mut svc = start(RedisServer::start(), &[]).await;
    let sub = subscribe(&svc, &["threat_model.created"]).await;
    svc.store
        .publish_event(&event("threat_model.created"))
        .await
        .unwrap();
    svc.store
        .publish_event(&event("threat_model.deleted"))
        .await
        .unwrap();

    wait_metric(&svc, EVENTS, &[("outcome", "no_match")], 1.0).await;
    wait_metric(&svc, EVENTS, &[("outcome", "fanned_out")], 1.0).await;
    assert_eq!(
        svc.metric("hookline_consumer_deliveries_created_total", &[]),
        1.0
    );
    let page = svc
        .store
        .list_deliveries(Some(sub.id), 0, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "one delivery for the matching event");
    assert_eq!(queue_len(&svc).await, 1, "the delivery is queued");
    assert_eq!(pending(&svc).await, 0, "both entries are acknowledged");
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn acknowledges_and_counts_a_malformed_entry() {
    let mut svc = start(RedisServer::start(), &[]).await;
    wait_group(&svc).await;
    svc.xadd(svc.k().events_stream(), "unexpected", "field")
        .await;
    wait_metric(&svc, EVENTS, &[("outcome", "malformed")], 1.0).await;
    assert_eq!(pending(&svc).await, 0, "a malformed entry is never retried");
    svc.stop().await.unwrap();
}

/// Before the service starts: publishes one event and reads it as `consumer`, which then dies with the
/// entry pending in its list. Returns the service, started on that state.
async fn start_after_left_pending_by(extra: &[(&str, &str)], consumer: &str) -> InProcess {
    let redis = RedisServer::start();
    let env: Vec<(&str, &str)> = BASE.iter().chain(extra).copied().collect();
    let settings = test_settings(&redis.url(), &env);
    let fixture = StoreFixture::on(redis, settings.store_options()).await;
    let store = &fixture.store;
    store.ensure_events_group("0").await.unwrap();
    store
        .publish_event(&event("threat_model.created"))
        .await
        .unwrap();
    let reader = store.reader().await.unwrap();
    let taken = reader
        .read_group(store.keys().events_stream(), EVENTS_GROUP, consumer, 10, 0)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "{consumer} holds the entry");
    reader.quit().await;
    InProcess::start_on(fixture, settings, event_consumer::run)
}

#[tokio::test]
async fn rereads_its_own_pending_entries_at_start() {
    // Claiming is pushed out of reach, so only the re-read of the replica's own pending list can pick the
    // entry up.
    let extra = [
        ("HOOKLINE__CONSUMER__CONSUMER_NAME", "replica-0"),
        ("HOOKLINE__CONSUMER__CLAIM_IDLE_MS", "3600000"),
    ];
    let mut svc = start_after_left_pending_by(&extra, "replica-0").await;
    wait_metric(&svc, EVENTS, &[("outcome", "no_match")], 1.0).await;
    assert_eq!(pending(&svc).await, 0);
    assert_eq!(svc.metric("hookline_consumer_reclaimed_total", &[]), 0.0);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn takes_over_the_entries_of_a_stalled_replica() {
    let extra = [("HOOKLINE__CONSUMER__CLAIM_IDLE_MS", "300")];
    let mut svc = start_after_left_pending_by(&extra, "stalled").await;
    wait_metric(&svc, "hookline_consumer_reclaimed_total", &[], 1.0).await;
    wait_metric(&svc, EVENTS, &[("outcome", "no_match")], 1.0).await;
    assert_eq!(pending(&svc).await, 0);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn recreates_a_lost_group_without_a_restart() {
    let mut svc = start(RedisServer::start(), &[]).await;
    wait_group(&svc).await;
    let _: Value = svc
        .raw
        .xgroup_destroy(svc.store.keys().events_stream(), EVENTS_GROUP)
        .await
        .unwrap();
    wait_metric(&svc, "hookline_consumer_group_recreated_total", &[], 1.0).await;
    wait_group(&svc).await;
    svc.store
        .publish_event(&event("threat_model.created"))
        .await
        .unwrap();
    wait_metric(&svc, EVENTS, &[("outcome", "no_match")], 1.0).await;
    assert!(!svc.finished(), "the service keeps running");
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_consumer_stops_cleanly() {
    let mut svc = start(RedisServer::start(), &[]).await;
    wait_group(&svc).await;
    // The blocking read in flight is let finish (200 ms here); then `run` returns Ok.
    svc.stop().await.unwrap();
    assert!(svc.finished());
}

/// Loss budget (issue #14): with `redis.wait_replicas = 1`, an input entry is acknowledged only once a real
/// replica has confirmed its deliveries; with the replica down it stays pending (its deliveries written on
/// the primary), and once a replica is back the entry is fanned out again — creating nothing twice — and
/// acknowledged.
#[tokio::test]
async fn with_a_replica_to_wait_for_entries_are_acknowledged_only_once_it_confirms() {
    let redis = RedisServer::start();
    let mut replica = test_support::replica::ReplicaServer::start(&redis);
    let mut svc = start(
        redis,
        &[
            ("HOOKLINE__REDIS__WAIT_REPLICAS", "1"),
            ("HOOKLINE__REDIS__WAIT_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let sub = subscribe(&svc, &["threat_model.created"]).await;
    wait_group(&svc).await;
    replica.kill();
    // The producer is not Hookline: it does not wait.
    svc.store
        .without_ack_wait()
        .publish_event(&event("threat_model.created"))
        .await
        .unwrap();
    wait_metric(&svc, "hookline_consumer_redis_errors_total", &[], 1.0).await;
    let deliveries = || async {
        svc.store
            .list_deliveries(Some(sub.id), 0, 10)
            .await
            .unwrap()
    };
    assert_eq!(deliveries().await.items.len(), 1, "written on the primary");
    assert_eq!(
        pending(&svc).await,
        1,
        "not acknowledged without the replica"
    );

    let _replica = test_support::replica::ReplicaServer::start(&svc.redis);
    wait::until("the entry is acknowledged", TIMEOUT, || async {
        (pending(&svc).await == 0).then_some(())
    })
    .await;
    assert_eq!(deliveries().await.items.len(), 1, "nothing created twice");
    assert_eq!(queue_len(&svc).await, 1, "queued once");
    svc.stop().await.unwrap();
}

fn deliveries_created(svc: &InProcess) -> f64 {
    svc.metric("hookline_consumer_deliveries_created_total", &[])
}

async fn publish_created(svc: &InProcess) {
    svc.store
        .publish_event(&event("threat_model.created"))
        .await
        .unwrap();
}

async fn wait_deliveries_created(svc: &InProcess, n: f64) {
    wait::until(&format!("{n} deliveries created"), TIMEOUT, || async {
        (deliveries_created(svc) >= n).then_some(())
    })
    .await;
}

/// Issue #21: the consumer keeps the candidates it read between batches, and still sees every change at
/// once: a subscription that becomes active, one that is paused and one that is deleted, each between two
/// events. (Stale candidates would show: a missing delivery, or a `fanned_out` count instead of `no_match`.)
#[tokio::test]
async fn cached_candidates_follow_every_subscription_change() {
    let mut svc = start(RedisServer::start(), &[]).await;
    let first = subscribe(&svc, &["threat_model.created"]).await;
    publish_created(&svc).await;
    wait_deliveries_created(&svc, 1.0).await;

    // A second subscription, created pending and activated afterwards: the next event reaches both.
    let second = Subscription::new(
        OWNER,
        "hook-2",
        "http://127.0.0.1:9/hook",
        vec!["threat_model.created".into()],
        SubscriptionStatus::PendingVerification,
        now_micros(),
    );
    assert!(svc.store.create_subscription(&second).await.unwrap());
    publish_created(&svc).await;
    wait_metric(&svc, EVENTS, &[("outcome", "fanned_out")], 2.0).await;
    assert_eq!(
        deliveries_created(&svc),
        2.0,
        "not active yet: only the first"
    );
    assert!(
        svc.store
            .set_subscription_status(
                second.id,
                SubscriptionStatus::PendingVerification,
                SubscriptionStatus::Active,
                now_micros(),
                false,
            )
            .await
            .unwrap()
    );
    publish_created(&svc).await;
    wait_deliveries_created(&svc, 4.0).await;

    // The first paused, the second deleted: the next event matches nothing.
    assert!(
        svc.store
            .set_subscription_status(
                first.id,
                SubscriptionStatus::Active,
                SubscriptionStatus::Inactive,
                now_micros(),
                false,
            )
            .await
            .unwrap()
    );
    assert!(svc.store.delete_subscription(second.id).await.unwrap());
    publish_created(&svc).await;
    wait_metric(&svc, EVENTS, &[("outcome", "no_match")], 1.0).await;
    assert_eq!(deliveries_created(&svc), 4.0);
    assert_eq!(
        svc.metric(EVENTS, &[("outcome", "fanned_out")]),
        3.0,
        "the last event was not matched against stale candidates"
    );
    svc.stop().await.unwrap();
}
