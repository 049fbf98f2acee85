//! Endpoint health (issue #18) in the store: a `gone` outcome disables the subscription in the same fenced
//! write (a stale attempt disables nothing), and the disabled subscription's pending deliveries fail
//! without an attempt, except one an attempt holds.

use delivery_model::delivery::DeliveryStatus;
use delivery_model::keys::Shard;
use delivery_model::store::{AttemptOutcome, CircuitUpdate, FinishResult};
use delivery_model::subscription::{DisabledReason, SubscriptionStatus};
use delivery_model::time::now_micros;

use crate::harness::{Ctx, go};

#[tokio::test]
async fn a_gone_outcome_disables_its_subscription_only_when_it_holds_the_lease() {
    let ctx = Ctx::start().await;
    let (sub, mut items) = ctx.deliveries_in_flight(3).await;
    let (idle, idle_entry) = items.pop().unwrap();
    let (leased, leased_entry) = items.pop().unwrap();
    let (gone, gone_entry) = items.pop().unwrap();
    let now = now_micros();
    go(&ctx, gone.id, "A", now).await;
    go(&ctx, leased.id, "B", now).await;
    let outcome = AttemptOutcome::Gone {
        error: "HTTP 410: bye".into(),
    };
    let none = CircuitUpdate::none();
    let generation = ctx.store.match_generation().await.unwrap();

    let stale = ctx
        .store
        .finish_attempt(&gone, "stale", &gone_entry, &outcome, &none, now)
        .await
        .unwrap();
    assert_eq!(stale, FinishResult::Fenced);
    let s = ctx.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(
        s.status,
        SubscriptionStatus::Active,
        "a fenced write disables nothing"
    );

    let r = ctx
        .store
        .finish_attempt(&gone, "A", &gone_entry, &outcome, &none, now)
        .await
        .unwrap();
    assert_eq!(r, FinishResult::Disabled(DisabledReason::Gone));
    let s = ctx.store.get_subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(
        (s.status, s.disabled_reason, s.disabled_at),
        (
            SubscriptionStatus::Inactive,
            Some(DisabledReason::Gone),
            Some(now)
        )
    );
    assert_eq!(
        ctx.stored_delivery(gone.id).await.status,
        DeliveryStatus::Failed
    );
    let inactive = ctx
        .store
        .subscription_ids_by_status(SubscriptionStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(inactive, vec![sub.id]);
    assert!(
        ctx.store
            .match_candidates("threat_model.created")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ctx.store.match_generation().await.unwrap(),
        generation + 1,
        "the consumer's cached candidates are invalidated"
    );

    let failed = ctx
        .store
        .fail_disabled_pending(sub.id, DisabledReason::Gone, now + 1)
        .await
        .unwrap();
    assert_eq!(failed, 1, "the unleased pending delivery");
    let idle = ctx.stored_delivery(idle.id).await;
    assert_eq!(idle.status, DeliveryStatus::Failed);
    assert_eq!(
        idle.last_error.as_deref(),
        Some(DisabledReason::Gone.delivery_error())
    );
    assert_eq!(
        ctx.stored_delivery(leased.id).await.status,
        DeliveryStatus::Pending,
        "an attempt in flight keeps its delivery"
    );

    // The attempt in flight ends as usual; the failed delivery's entry is dropped when read.
    let done = ctx
        .store
        .finish_attempt(
            &leased,
            "B",
            &leased_entry,
            &AttemptOutcome::Delivered,
            &none,
            now,
        )
        .await
        .unwrap();
    assert_eq!(done, FinishResult::Written);
    ctx.store
        .ack_queue(&ctx.k().queue_stream(Shard::ZERO), &[idle_entry])
        .await
        .unwrap();
}
