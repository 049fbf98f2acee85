//! The delivery-worker in process (its library's `run`) against a private redis-server and a real receiver
//! on loopback: a queued delivery reaches the receiver, a dead worker's entry is taken over, and an attempt
//! in flight at shutdown is finished before `run` returns; entries dropped without an attempt are counted,
//! and an attempt that waited for its host keeps its lease for its whole request.

#![expect(clippy::unwrap_used, reason = "tests")]

mod cluster;

use delivery_model::keys::Shard;
use std::time::Duration;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::DeliveryId;
use delivery_model::keys::QUEUE_GROUP;
use delivery_model::store::{BeginAttempt, Store};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use test_support::inproc::{InProcess, test_settings};
use test_support::receiver::Receiver;
use test_support::redis::RedisServer;
use test_support::store::StoreFixture;
use test_support::wait;

mod health;
mod limits;

const TIMEOUT: Duration = Duration::from_secs(10);
const DELIVERIES: &str = "hookline_worker_deliveries_total";

/// Short blocking reads (a quick stop) and a short lease (a quick takeover): request timeout 1 s plus a
/// 200 ms margin, so a dead worker's entry is taken over after 2.2 s.
const BASE: &[(&str, &str)] = &[
    ("HOOKLINE__WORKER__BLOCK_MS", "200"),
    ("HOOKLINE__OUTBOUND__REQUEST_TIMEOUT_MS", "1000"),
    ("HOOKLINE__OUTBOUND__RESPONSE_HEADER_TIMEOUT_MS", "1000"),
    ("HOOKLINE__WORKER__LEASE_MARGIN_MS", "200"),
    ("HOOKLINE__SHUTDOWN__GRACE_PERIOD_SECS", "5"),
];

fn settings(redis: &RedisServer, extra: &[(&str, &str)]) -> service_common::config::Settings {
    let env: Vec<(&str, &str)> = BASE.iter().chain(extra).copied().collect();
    test_settings(&redis.url(), &env)
}

/// Creates an active subscription to `receiver` and one queued delivery for it.
async fn queue_one(fixture: &StoreFixture, receiver: &Receiver) -> DeliveryId {
    let sub = Subscription::new(
        "owner-1",
        "hook",
        format!("{}/hook", receiver.url()),
        vec!["threat_model.created".into()],
        SubscriptionStatus::Active,
        now_micros(),
    );
    fixture.create(&sub).await;
    fixture.queue_delivery(sub.id).await.id
}

async fn status(store: &Store, id: DeliveryId) -> DeliveryStatus {
    store.get_delivery(id).await.unwrap().unwrap().status
}

async fn queue_pending(svc: &InProcess) -> u64 {
    svc.pending(&svc.k().queue_stream(Shard::ZERO), QUEUE_GROUP)
        .await
}

async fn wait_delivered(svc: &InProcess, id: DeliveryId) {
    wait::until("the delivery is delivered", TIMEOUT, || async {
        (status(&svc.store, id).await == DeliveryStatus::Delivered).then_some(())
    })
    .await;
}

#[tokio::test]
async fn delivers_a_queued_delivery_and_acknowledges_it() {
    let receiver = Receiver::start().await;
    let redis = RedisServer::start();
    let settings = settings(&redis, &[]);
    let mut svc = InProcess::start(redis, settings, delivery_worker::run).await;
    let id = queue_one(&svc, &receiver).await;

    let got = receiver.wait_for_deliveries(1, TIMEOUT).await;
    assert_eq!(got[0].delivery_id(), Some(id.to_string().as_str()));
    wait_delivered(&svc, id).await;
    // The counter moves just after the outcome is written: wait for it rather than race it.
    wait::until("counted delivered", TIMEOUT, || async {
        (svc.metric(DELIVERIES, &[("outcome", "delivered")]) >= 1.0).then_some(())
    })
    .await;
    assert_eq!(svc.metric(DELIVERIES, &[("outcome", "delivered")]), 1.0);
    assert_eq!(
        queue_pending(&svc).await,
        0,
        "the queue entry is acknowledged"
    );
    svc.stop().await.unwrap();
    assert_eq!(receiver.deliveries().len(), 1, "sent once");
}

#[tokio::test]
async fn takes_over_the_entry_of_a_dead_worker() {
    let receiver = Receiver::start().await;
    let redis = RedisServer::start();
    let settings = settings(&redis, &[]);
    // Before the service starts, another worker reads the entry and dies holding it.
    let fixture = StoreFixture::on(redis, settings.store_options()).await;
    fixture.store.ensure_queue_group().await.unwrap();
    let id = queue_one(&fixture, &receiver).await;
    let reader = fixture.store.reader().await.unwrap();
    let taken = reader
        .read_group(
            &fixture.k().queue_stream(Shard::ZERO),
            QUEUE_GROUP,
            "dead-worker",
            10,
            0,
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the dead worker holds the entry");
    reader.quit().await;

    let mut svc = InProcess::start_on(fixture, settings, delivery_worker::run);
    wait_delivered(&svc, id).await;
    assert_eq!(svc.metric("hookline_worker_reclaimed_total", &[]), 1.0);
    assert_eq!(queue_pending(&svc).await, 0);
    svc.stop().await.unwrap();
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test]
async fn finishes_an_attempt_in_flight_before_returning() {
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(700));
    let redis = RedisServer::start();
    let settings = settings(&redis, &[]);
    let mut svc = InProcess::start(redis, settings, delivery_worker::run).await;
    let id = queue_one(&svc, &receiver).await;
    wait::until("an attempt is in flight", TIMEOUT, || async {
        (svc.metric("hookline_worker_in_flight", &[]) >= 1.0).then_some(())
    })
    .await;

    svc.stop().await.unwrap();
    // `run` returned only after the slow receiver answered and the outcome was written.
    assert_eq!(status(&svc.store, id).await, DeliveryStatus::Delivered);
    assert_eq!(queue_pending(&svc).await, 0);
}

#[tokio::test]
async fn counts_queue_entries_it_drops_without_an_attempt() {
    let receiver = Receiver::start().await;
    let redis = RedisServer::start();
    let settings = settings(&redis, &[]);
    // Before the service starts: a queued delivery whose record expired (a worker outage longer than the
    // active TTL).
    let fixture = StoreFixture::on(redis, settings.store_options()).await;
    let id = queue_one(&fixture, &receiver).await;
    fixture.del(&fixture.k().delivery(id)).await;
    let mut svc = InProcess::start_on(fixture, settings, delivery_worker::run);
    wait::until("the expired delivery is counted", TIMEOUT, || async {
        (svc.metric("hookline_worker_dropped_total", &[("reason", "expired")]) == 1.0).then_some(())
    })
    .await;
    assert_eq!(queue_pending(&svc).await, 0, "its entry is acknowledged");
    svc.stop().await.unwrap();
    assert!(receiver.deliveries().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn an_attempt_that_waited_for_its_host_keeps_its_lease_for_the_whole_request() {
    // One slot per host and a receiver slower than the lease margin (200 ms): the second delivery waits
    // about 700 ms for the slot, then sends a request that may take the whole 1 s timeout.
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(700));
    let redis = RedisServer::start();
    let settings = settings(&redis, &[("HOOKLINE__WORKER__MAX_IN_FLIGHT_PER_HOST", "1")]);
    let request_timeout = settings.outbound.request_timeout();
    // Both queued before the worker starts, so they are leased together in one batch.
    let fixture = StoreFixture::on(redis, settings.store_options()).await;
    let first = queue_one(&fixture, &receiver).await;
    let sub = fixture
        .store
        .get_delivery(first)
        .await
        .unwrap()
        .unwrap()
        .subscription_id;
    let second = fixture.queue_delivery(sub).await.id;
    let mut svc = InProcess::start_on(fixture, settings, delivery_worker::run);

    let got = receiver.wait_for_deliveries(2, TIMEOUT).await;
    let arrived = now_micros();
    let waited: DeliveryId = got[1].delivery_id().unwrap().parse().unwrap();
    assert!(waited == first || waited == second);
    // Another worker looking at the delivery any time before that request can time out finds the lease
    // live: it cannot POST the delivery a second time.
    let until = arrived + i64::try_from(request_timeout.as_micros()).unwrap();
    let competitor = svc
        .store
        .begin_attempt(
            waited,
            "competitor",
            until,
            until + 1_000_000,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(
        matches!(competitor, BeginAttempt::Busy),
        "the lease ran out before the request could: {competitor:?}"
    );
    wait_delivered(&svc, first).await;
    wait_delivered(&svc, second).await;
    // The counter moves just after the outcome is written: wait for it rather than race it.
    wait::until("both counted delivered", TIMEOUT, || async {
        (svc.metric(DELIVERIES, &[("outcome", "delivered")]) >= 2.0).then_some(())
    })
    .await;
    svc.stop().await.unwrap();
    assert_eq!(svc.metric(DELIVERIES, &[("outcome", "delivered")]), 2.0);
    assert_eq!(receiver.deliveries().len(), 2, "each sent once");
}

/// Issue #21: the per-host limit adapts. A fast host with work waiting grows past the configured
/// `max_in_flight_per_host`, while a slow host (answers slower than 500 ms) stays at it.
#[tokio::test]
async fn a_fast_host_gets_more_slots_than_the_floor_and_a_slow_host_does_not() {
    let fast = Receiver::start().await;
    fast.set_delay(Duration::from_millis(40));
    // Another loopback address: another host to the per-host limits.
    let slow = Receiver::start_on(std::net::Ipv4Addr::new(127, 0, 0, 2)).await;
    slow.set_delay(Duration::from_millis(700));
    let redis = RedisServer::start();
    let settings = settings(
        &redis,
        &[
            ("HOOKLINE__WORKER__MAX_IN_FLIGHT", "24"),
            ("HOOKLINE__WORKER__MAX_IN_FLIGHT_PER_HOST", "2"),
            ("HOOKLINE__WORKER__SCHEDULER_INTERVAL_MS", "50"),
            ("HOOKLINE__OUTBOUND__ALLOWLIST", "127.0.0.1,127.0.0.2"),
        ],
    );
    let fixture = StoreFixture::on(redis, settings.store_options()).await;
    let mut subs = Vec::new();
    for rx in [&fast, &slow] {
        let sub = Subscription::new(
            "owner-1",
            "hook",
            format!("{}/hook", rx.url()),
            vec!["threat_model.created".into()],
            SubscriptionStatus::Active,
            now_micros(),
        );
        fixture.create(&sub).await;
        subs.push(sub.id);
    }
    for _ in 0..120 {
        fixture.queue_delivery(subs[0]).await;
    }
    for _ in 0..6 {
        fixture.queue_delivery(subs[1]).await;
    }
    let mut svc = InProcess::start_on(fixture, settings, delivery_worker::run);

    fast.wait_for_deliveries(120, Duration::from_secs(30)).await;
    slow.wait_for_deliveries(6, Duration::from_secs(30)).await;
    assert!(
        fast.max_concurrent() >= 6,
        "the fast host grew past its floor of 2: {} at once",
        fast.max_concurrent()
    );
    assert!(
        slow.max_concurrent() <= 2,
        "the slow host stays at its floor: {} at once",
        slow.max_concurrent()
    );
    assert_eq!(
        fast.count_by_delivery_id().values().max(),
        Some(&1),
        "one POST per delivery"
    );
    svc.stop().await.unwrap();
}
