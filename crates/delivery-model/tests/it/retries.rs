//! An administrator's retry of a failed delivery: only a `failed` resource-change delivery of an active
//! subscription goes back to `pending` and onto the queue; everything else is refused and left as it was.

use delivery_model::keys::Shard;
use std::time::Duration;

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus, field};
use delivery_model::ids::{AddonId, DeliveryId};
use delivery_model::queue::QueueMessage;
use delivery_model::store::import::LegacyPlacement;
use delivery_model::store::retries::RetryResult;
use delivery_model::store::{AttemptOutcome, BeginAttempt, CircuitUpdate, FinishResult};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;

use crate::harness::{ACTIVE_TTL, Ctx, SEC, go};

/// A delivery that has failed for good (one attempt, `HTTP 410`), with its subscription.
async fn failed_delivery(ctx: &Ctx) -> (DeliveryRecord, Subscription) {
    let (rec, sub, entry) = ctx.delivery_in_flight().await;
    let now = now_micros();
    go(ctx, rec.id, "A", now).await;
    let outcome = AttemptOutcome::Failed {
        error: "HTTP 410".into(),
    };
    let r = ctx
        .store
        .finish_attempt(&rec, "A", &entry, &outcome, &CircuitUpdate::none(), now)
        .await
        .unwrap();
    assert_eq!(r, FinishResult::Written);
    let got = ctx.stored_delivery(rec.id).await;
    assert_eq!(got.status, DeliveryStatus::Failed);
    (got, sub)
}

/// The delivery messages on the queue for `id`.
async fn queued(ctx: &Ctx, id: DeliveryId) -> usize {
    ctx.queue()
        .await
        .iter()
        .filter(|(_, m)| *m == QueueMessage::DeliveryV1 { delivery_id: id })
        .count()
}

#[tokio::test]
async fn a_failed_delivery_goes_back_to_pending_with_a_fresh_budget_and_is_queued() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let (rec, _sub) = failed_delivery(&ctx).await;
    assert_eq!(queued(&ctx, rec.id).await, 0);
    let now = now_micros() + SEC;

    let r = ctx.store.retry_delivery(rec.id, now).await.unwrap();

    let RetryResult::Queued(answered) = r else {
        panic!("expected Queued, got {r:?}")
    };
    let got = ctx.stored_delivery(rec.id).await;
    assert_eq!(*answered, got, "the answer is the record as stored");
    assert_eq!(
        (got.status, got.attempts, got.last_activity_at),
        (DeliveryStatus::Pending, 0, now)
    );
    assert_eq!(
        got.last_error.as_deref(),
        Some("HTTP 410"),
        "the last error stays until the next attempt"
    );
    assert_eq!(got.next_retry_at, None);
    let ttl = ctx.ttl(&k.delivery(rec.id)).await;
    assert!(
        ttl > 0 && ttl <= ACTIVE_TTL.as_secs() as i64,
        "active TTL again: {ttl}"
    );
    let id = rec.id.to_string();
    assert!(
        ctx.zscore(
            &k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Failed),
            &id
        )
        .await
        .is_none()
    );
    assert_eq!(
        ctx.zscore(
            &k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Pending),
            &id
        )
        .await,
        Some((rec.created_at / 1000) as f64),
        "indexed as pending at its creation time"
    );
    assert_eq!(queued(&ctx, rec.id).await, 1);

    // The worker takes it like any new delivery.
    let t = now_micros() + 2 * SEC;
    let begin = ctx
        .store
        .begin_attempt(rec.id, "B", t, t + 30 * SEC, Duration::ZERO)
        .await
        .unwrap();
    assert!(matches!(begin, BeginAttempt::Go(_)), "{begin:?}");

    // A second retry while it is pending is refused and queues nothing more.
    let again = ctx.store.retry_delivery(rec.id, t).await.unwrap();
    assert_eq!(again, RetryResult::NotFailed(DeliveryStatus::Pending));
    assert_eq!(queued(&ctx, rec.id).await, 1);
}

#[tokio::test]
async fn only_failed_deliveries_of_active_subscriptions_are_retried() {
    let ctx = Ctx::start().await;
    // The pending delivery's entry stays pending: it is read, never attempted.
    ctx.allow_pending();
    let now = now_micros();

    // Pending: refused, untouched.
    let (pending, _sub, _entry) = ctx.delivery_in_flight().await;
    let before = ctx.hgetall(&ctx.k().delivery(pending.id)).await;
    assert_eq!(
        ctx.store.retry_delivery(pending.id, now).await.unwrap(),
        RetryResult::NotFailed(DeliveryStatus::Pending)
    );
    assert_eq!(ctx.hgetall(&ctx.k().delivery(pending.id)).await, before);

    // Gone.
    assert_eq!(
        ctx.store
            .retry_delivery(DeliveryId::new_v7(), now)
            .await
            .unwrap(),
        RetryResult::Missing
    );

    // Paused subscription, then deleted subscription: refused, still failed.
    let (rec, sub) = failed_delivery(&ctx).await;
    assert!(
        ctx.store
            .set_subscription_status(
                sub.id,
                SubscriptionStatus::Active,
                SubscriptionStatus::PendingDelete,
                now,
                false
            )
            .await
            .unwrap()
    );
    assert_eq!(
        ctx.store.retry_delivery(rec.id, now).await.unwrap(),
        RetryResult::SubscriptionNotActive(Some(SubscriptionStatus::PendingDelete))
    );
    let (rec2, sub2) = failed_delivery(&ctx).await;
    ctx.del(&ctx.k().subscription(sub2.id)).await;
    assert_eq!(
        ctx.store.retry_delivery(rec2.id, now).await.unwrap(),
        RetryResult::SubscriptionNotActive(None)
    );
    for id in [rec.id, rec2.id] {
        let got = ctx.stored_delivery(id).await;
        assert_eq!(got.status, DeliveryStatus::Failed);
        assert_eq!(queued(&ctx, id).await, 0);
    }
}

#[tokio::test]
async fn an_addon_invocation_is_not_retried() {
    let ctx = Ctx::start().await;
    let (rec, _sub) = failed_delivery(&ctx).await;
    ctx.hset(
        &ctx.k().delivery(rec.id),
        field::ADDON_ID,
        &AddonId::new_v4().to_string(),
    )
    .await;
    assert_eq!(
        ctx.store
            .retry_delivery(rec.id, now_micros())
            .await
            .unwrap(),
        RetryResult::AddonInvocation
    );
    let got = ctx.stored_delivery(rec.id).await;
    assert_eq!(got.status, DeliveryStatus::Failed);
    assert_eq!(queued(&ctx, rec.id).await, 0);
}

/// A failed delivery of `sub` created at `created_ms`, stored as an import stores it.
async fn import_failed(ctx: &Ctx, sub: &Subscription, created_ms: i64) -> DeliveryRecord {
    let mut record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        sub.id,
        "threat_model.created",
        r#"{"event_type":"threat_model.created","data":{}}"#,
        created_ms * 1000,
    );
    record.status = DeliveryStatus::Failed;
    record.attempts = 5;
    ctx.store
        .import_delivery(
            &record,
            LegacyPlacement::Keep {
                ttl: Duration::from_secs(3600),
            },
            now_micros(),
        )
        .await
        .unwrap();
    record
}

#[tokio::test]
async fn retry_failed_takes_the_range_oldest_first_a_bounded_number_per_call() {
    let ctx = Ctx::start().await;
    let now = now_micros();
    let base = now / 1000 - 60_000;
    let sub = Subscription::new(
        "owner",
        "bulk",
        "https://receiver.example/hook",
        vec!["threat_model.created".into()],
        SubscriptionStatus::Active,
        now,
    );
    ctx.store.import_subscription(&sub).await.unwrap();
    let before_range = import_failed(&ctx, &sub, base).await;
    let in_range: Vec<DeliveryRecord> = {
        let mut v = Vec::new();
        for i in 1..=3 {
            v.push(import_failed(&ctx, &sub, base + i * 1000).await);
        }
        v
    };
    // An add-on invocation in the range: failed, but never retried by this.
    let addon = import_failed(&ctx, &sub, base + 1500).await;
    ctx.hset(
        &ctx.k().delivery(addon.id),
        field::ADDON_ID,
        &AddonId::new_v4().to_string(),
    )
    .await;
    // Another subscription's failed delivery in the range.
    let other_sub = Subscription::new(
        "owner",
        "other",
        "https://other.example/hook",
        vec!["threat_model.created".into()],
        SubscriptionStatus::Active,
        now,
    );
    ctx.store.import_subscription(&other_sub).await.unwrap();
    let other = import_failed(&ctx, &other_sub, base + 2000).await;

    let (from, to) = (Some(base + 500), Some(base + 3000));
    let first = ctx
        .store
        .retry_failed(sub.id, from, to, 2, now)
        .await
        .unwrap();
    assert_eq!(
        (first.queued, first.skipped, first.more),
        (1, 1, true),
        "the oldest two in the range: one delivery, then the add-on invocation"
    );
    let second = ctx
        .store
        .retry_failed(sub.id, from, to, 10, now)
        .await
        .unwrap();
    assert_eq!((second.queued, second.skipped, second.more), (2, 1, false));
    let third = ctx
        .store
        .retry_failed(sub.id, from, to, 10, now)
        .await
        .unwrap();
    assert_eq!(
        (third.queued, third.more),
        (0, false),
        "nothing left to retry"
    );

    for r in &in_range {
        let got = ctx.stored_delivery(r.id).await;
        assert_eq!((got.status, got.attempts), (DeliveryStatus::Pending, 0));
        assert_eq!(queued(&ctx, r.id).await, 1, "queued exactly once");
    }
    for r in [&before_range, &addon, &other] {
        let got = ctx.stored_delivery(r.id).await;
        assert_eq!(got.status, DeliveryStatus::Failed, "untouched");
        assert_eq!(queued(&ctx, r.id).await, 0);
    }
}
