//! Endpoint health (issue #18): a `410 Gone` disables the subscription and fails its pending deliveries
//! without a further attempt; permanent failures past `worker.disable_after_failures` do too.

use delivery_model::delivery::{DeliveryStatus, field};
use delivery_model::subscription::{DisabledReason, SubscriptionStatus};
use delivery_model::time::now_micros;
use test_support::inproc::InProcess;
use test_support::receiver::Receiver;
use test_support::redis::RedisServer;
use test_support::store::StoreFixture;
use test_support::wait;

use super::{TIMEOUT, queue_one, settings, status};

const DISABLED: &str = "hookline_worker_subscriptions_disabled_total";

#[tokio::test]
async fn a_410_disables_the_subscription_and_fails_its_pending_deliveries() {
    let receiver = Receiver::start().await;
    receiver.set_default_status(410);
    let redis = RedisServer::start();
    let settings = settings(&redis, &[]);
    let fixture = StoreFixture::on(redis, settings.store_options()).await;
    let gone = queue_one(&fixture, &receiver).await;
    let sub = fixture
        .store
        .get_delivery(gone)
        .await
        .unwrap()
        .unwrap()
        .subscription_id;
    // A second delivery waiting for a retry an hour away: the disable fails it without an attempt.
    let waiting = fixture.queue_delivery(sub).await.id;
    let later = (now_micros() + 3_600_000_000).to_string();
    fixture
        .hset(&fixture.k().delivery(waiting), field::NEXT_RETRY_AT, &later)
        .await;
    let mut svc = InProcess::start_on(fixture, settings, delivery_worker::run);

    wait::until("both deliveries failed", TIMEOUT, || async {
        (status(&svc.store, gone).await == DeliveryStatus::Failed
            && status(&svc.store, waiting).await == DeliveryStatus::Failed)
            .then_some(())
    })
    .await;
    let s = svc.store.get_subscription(sub).await.unwrap().unwrap();
    assert_eq!(s.status, SubscriptionStatus::Inactive);
    assert_eq!(s.disabled_reason, Some(DisabledReason::Gone));
    assert!(s.disabled_at.is_some());
    assert_eq!(s.publication_failures, 1);
    let record = |id| svc.store.get_delivery(id);
    let first = record(gone).await.unwrap().unwrap();
    assert!(
        first.last_error.unwrap().starts_with("HTTP 410"),
        "its own answer"
    );
    assert_eq!(first.attempts, 1, "no retry after a 410");
    let second = record(waiting).await.unwrap().unwrap();
    assert_eq!(
        second.last_error.as_deref(),
        Some(DisabledReason::Gone.delivery_error())
    );
    assert_eq!(second.attempts, 0, "failed without an attempt");
    assert!(
        svc.store
            .match_candidates("threat_model.created")
            .await
            .unwrap()
            .is_empty(),
        "a disabled subscription matches no event"
    );
    wait::until("the disable is counted", TIMEOUT, || async {
        (svc.metric(DISABLED, &[("reason", "gone")]) == 1.0).then_some(())
    })
    .await;
    // The sampler's next round (every 5 s) sees it.
    wait::until("the inactive gauge shows it", TIMEOUT, || async {
        (svc.metric("hookline_worker_subscriptions_inactive", &[]) == 1.0).then_some(())
    })
    .await;
    svc.stop().await.unwrap();
    assert_eq!(receiver.deliveries().len(), 1, "one request in all");
}

#[tokio::test]
async fn failures_past_the_threshold_disable_the_subscription() {
    let receiver = Receiver::start().await;
    receiver.set_default_status(500);
    let redis = RedisServer::start();
    // Each delivery fails for good on its first attempt; the second failure in a row disables.
    let settings = settings(
        &redis,
        &[
            ("HOOKLINE__WORKER__MAX_ATTEMPTS", "1"),
            ("HOOKLINE__WORKER__DISABLE_AFTER_FAILURES", "2"),
            ("HOOKLINE__WORKER__DISABLE_AFTER_FAILING_FOR_SECS", "0"),
        ],
    );
    let mut svc = InProcess::start(redis, settings, delivery_worker::run).await;
    let first = queue_one(&svc, &receiver).await;
    let sub = svc
        .store
        .get_delivery(first)
        .await
        .unwrap()
        .unwrap()
        .subscription_id;
    wait::until("the first delivery failed", TIMEOUT, || async {
        (status(&svc.store, first).await == DeliveryStatus::Failed).then_some(())
    })
    .await;
    let s = svc.store.get_subscription(sub).await.unwrap().unwrap();
    assert_eq!(
        s.status,
        SubscriptionStatus::Active,
        "one failure: below the threshold"
    );

    let second = svc.queue_delivery(sub).await.id;
    wait::until("the subscription is disabled", TIMEOUT, || async {
        let s = svc.store.get_subscription(sub).await.unwrap().unwrap();
        (s.status == SubscriptionStatus::Inactive).then_some(s)
    })
    .await;
    assert_eq!(status(&svc.store, second).await, DeliveryStatus::Failed);
    let s = svc.store.get_subscription(sub).await.unwrap().unwrap();
    assert_eq!(s.disabled_reason, Some(DisabledReason::Failing));
    assert_eq!(s.publication_failures, 2);
    wait::until("the disable is counted", TIMEOUT, || async {
        (svc.metric(DISABLED, &[("reason", "failing")]) == 1.0).then_some(())
    })
    .await;
    svc.stop().await.unwrap();
}
