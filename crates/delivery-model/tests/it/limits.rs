//! The per-subscription limiter (issue #18) in the store: the rate limit reserves each deferred delivery's
//! send time (it passes then without being counted again), an in-flight slot is freed by its release or by
//! its lease expiring (a dead worker cannot keep it), and a release wakes the oldest waiter on its shard's
//! schedule.

use std::time::Duration;

use delivery_model::ids::DeliveryId;
use delivery_model::keys::Shard;
use delivery_model::queue::QueueMessage;
use delivery_model::store::{LimitDecision, LimitTiming};
use delivery_model::subscription::{RateLimit, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;

use crate::harness::{Ctx, SEC, subscription};

const TIMING: LimitTiming = LimitTiming {
    horizon: Duration::from_secs(600),
    wait: Duration::from_secs(30),
};

#[tokio::test]
async fn the_rate_limit_reserves_the_next_send_time() {
    let ctx = Ctx::start().await;
    let sub = subscription(SubscriptionStatus::Active, &["e"]);
    let sub = delivery_model::subscription::Subscription {
        rate_limit: Some(RateLimit {
            per_second: 10,
            burst: 2,
        }),
        ..sub
    };
    let now = now_micros();
    let ask = |id, at| ctx.store.limit_acquire(&sub, id, at, at + 30 * SEC, TIMING);
    let ids: Vec<DeliveryId> = (0..4).map(|_| DeliveryId::new_v7()).collect();
    // A burst of two goes at once; then one every 100 ms, each reserved in turn.
    assert_eq!(ask(ids[0], now).await.unwrap(), LimitDecision::Go);
    assert_eq!(ask(ids[1], now).await.unwrap(), LimitDecision::Go);
    let interval = SEC / 10;
    assert_eq!(
        ask(ids[2], now).await.unwrap(),
        LimitDecision::Rate { at: now + interval }
    );
    assert_eq!(
        ask(ids[3], now).await.unwrap(),
        LimitDecision::Rate {
            at: now + 2 * interval
        }
    );
    // Back at its time, a reserved delivery passes without taking another one's turn.
    assert_eq!(
        ask(ids[2], now + interval).await.unwrap(),
        LimitDecision::Go
    );
    assert_eq!(
        ask(DeliveryId::new_v7(), now + interval).await.unwrap(),
        LimitDecision::Rate {
            at: now + 3 * interval
        }
    );
}

#[tokio::test]
async fn an_in_flight_slot_is_freed_by_release_or_by_its_lease_and_a_release_wakes_a_waiter() {
    let ctx = Ctx::start().await;
    let (sub, mut items) = ctx.deliveries_in_flight(1).await;
    let sub = delivery_model::subscription::Subscription {
        max_in_flight: Some(1),
        ..sub
    };
    let (waiter, entry) = items.pop().unwrap();
    let now = now_micros();
    let holder = DeliveryId::new_v7();
    let ask = |id, at, lease| ctx.store.limit_acquire(&sub, id, at, lease, TIMING);

    assert_eq!(
        ask(holder, now, now + SEC).await.unwrap(),
        LimitDecision::Go
    );
    assert_eq!(
        ask(waiter.id, now, now + SEC).await.unwrap(),
        LimitDecision::InFlight { at: now + 30 * SEC },
        "no slot: asks again a lease later unless woken"
    );
    // The holder's worker died: once its lease has passed, the slot is free again.
    let later = now + 2 * SEC;
    let other = DeliveryId::new_v7();
    assert_eq!(
        ask(other, later, later + SEC).await.unwrap(),
        LimitDecision::Go
    );

    // The waiter sits on its shard's schedule; the release of `other` wakes it (due now).
    let k = ctx.k();
    let msg = QueueMessage::DeliveryV1 {
        delivery_id: waiter.id,
    }
    .encode();
    ctx.store
        .ack_queue(&k.queue_stream(Shard::ZERO), &[entry])
        .await
        .unwrap();
    ctx.hset(
        &k.delivery(waiter.id),
        "next_retry_at",
        &(now + 30 * SEC).to_string(),
    )
    .await;
    let due_ms = ((now + 30 * SEC) / 1000) as f64;
    let _: () = ctx
        .raw
        .zadd(
            k.scheduled(Shard::ZERO),
            None,
            None,
            false,
            false,
            (due_ms, msg.as_str()),
        )
        .await
        .unwrap();
    let woke_at = later + SEC;
    assert!(
        ctx.store
            .limit_release(sub.id, other, woke_at)
            .await
            .unwrap()
    );
    assert_eq!(
        ctx.zscore(&k.scheduled(Shard::ZERO), &msg).await,
        Some((woke_at / 1000) as f64)
    );
    assert_eq!(
        ctx.stored_delivery(waiter.id).await.next_retry_at,
        Some(woke_at)
    );
    assert_eq!(
        ask(waiter.id, woke_at, woke_at + SEC).await.unwrap(),
        LimitDecision::Go,
        "the woken waiter gets the slot"
    );
}
