//! FIFO lanes (issue #18, `docs/flow.md` §2): an ordered subscription's deliveries go out one at a time per
//! lane, in input order. A retry holds its lane while other lanes and subscriptions flow; a terminal outcome
//! (the worker's, a receiver's callback, the stale sweep) moves it on; a failed head blocks it when the
//! subscription asks, until an administrator retries or skips it; a disable drops it.

use std::collections::HashMap;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::event::StreamEvent;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{EVENTS_GROUP, Shard};
use delivery_model::lane::{Lane, LaneId, LaneOnFailure, Ordering, OrderingKey};
use delivery_model::queue::MESSAGE_FIELD;
use delivery_model::store::callbacks::CallbackUpdate;
use delivery_model::store::retries::RetryResult;
use delivery_model::store::{AttemptOutcome, Fanned, FanoutEntry, LaneSkip, Store};
use delivery_model::subscription::{DisabledReason, Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};

use fred::prelude::*;

use crate::fair::{queued, work_once};
use crate::harness::{Ctx, SEC, subscription};

const EVENT: &str = "threat_model.created";

/// An active subscription ordered by `key` (`None`: one lane), blocking on failure when `block`.
pub(crate) async fn ordered(ctx: &Ctx, key: Option<OrderingKey>, block: bool) -> Subscription {
    let mut sub = subscription(SubscriptionStatus::PendingVerification, &[EVENT]);
    sub.ordering = Some(Ordering {
        key,
        on_failure: if block {
            LaneOnFailure::Block
        } else {
            LaneOnFailure::Skip
        },
    });
    ctx.create(&sub).await;
    let store = &ctx.store;
    let now = now_micros();
    let pv = SubscriptionStatus::PendingVerification;
    assert!(
        store
            .set_subscription_status(sub.id, pv, SubscriptionStatus::Active, now, true)
            .await
            .unwrap()
    );
    sub.status = SubscriptionStatus::Active;
    assert_eq!(ctx.stored_subscription(sub.id).await.ordering, sub.ordering);
    sub
}

/// An event of object `object` (the ordering key used here).
pub(crate) fn event_of(object: &str) -> StreamEvent {
    let mut e = crate::harness::event(0);
    e.event_type = EVENT.to_owned();
    e.object_id = Some(object.to_owned());
    e
}

/// Publishes one input entry per object in `objects`, reads them as a consumer and fans them out to `subs`
/// in one batch, as the consumer does (then raises the lane watermark, as it does on a cluster); returns each
/// entry's delivery id per subscription, in entry order.
pub(crate) async fn fan_out(
    store: &Store,
    subs: &[&Subscription],
    objects: &[&str],
) -> Vec<Vec<DeliveryId>> {
    let entries = read_entries(store, objects).await;
    fan_out_entries(store, subs, &entries, objects).await
}

/// Publishes one event per object and reads the entries as consumer `c` (pending until fanned out).
pub(crate) async fn read_entries(store: &Store, objects: &[&str]) -> Vec<String> {
    store.ensure_events_group("0").await.unwrap();
    for o in objects {
        store.publish_event(&event_of(o)).await.unwrap();
    }
    let reader = store.reader().await.unwrap();
    let read = reader
        .read_group(store.keys().events_stream(), EVENTS_GROUP, "c", 1000, 100)
        .await
        .unwrap();
    reader.quit().await;
    read.into_iter().map(|e| e.id).collect()
}

/// Fans out input entries `entries` (of objects `objects`) to `subs` in one batch, then raises the lane
/// watermark.
pub(crate) async fn fan_out_entries(
    store: &Store,
    subs: &[&Subscription],
    entries: &[String],
    objects: &[&str],
) -> Vec<Vec<DeliveryId>> {
    fan_out_counted(store, subs, entries, objects).await.0
}

/// [`fan_out_entries`], also answering what the fan-out reported (created, waiting in their lanes).
pub(crate) async fn fan_out_counted(
    store: &Store,
    subs: &[&Subscription],
    entries: &[String],
    objects: &[&str],
) -> (Vec<Vec<DeliveryId>>, Fanned) {
    let ids: Vec<SubscriptionId> = subs.iter().map(|s| s.id).collect();
    let lanes: Vec<Vec<Option<Lane>>> = objects
        .iter()
        .map(|o| {
            subs.iter()
                .map(|s| s.ordering.map(|ord| ord.lane_of(s.id, &event_of(o))))
                .collect()
        })
        .collect();
    let batch: Vec<FanoutEntry<'_>> = entries
        .iter()
        .zip(&lanes)
        .map(|(e, lanes)| FanoutEntry {
            entry_id: e,
            event_type: EVENT,
            envelope: r#"{"event_type":"threat_model.created","data":{}}"#,
            subscriptions: &ids,
            lanes,
            trace: None,
        })
        .collect();
    let fanned = store
        .fanout_batch_matched(&batch, now_micros(), None)
        .await
        .unwrap();
    store.raise_lane_watermark().await.unwrap();
    let ids = entries
        .iter()
        .zip(&lanes)
        .map(|(e, lanes)| {
            ids.iter()
                .zip(lanes)
                .map(|(s, lane)| store.fanout_id(e, *s, lane.as_ref()))
                .collect()
        })
        .collect();
    (ids, fanned)
}

async fn status(ctx: &Ctx, id: DeliveryId) -> DeliveryStatus {
    ctx.stored_delivery(id).await.status
}

/// Works the queue once (the one shard), giving each delivery the outcome `pick` chooses.
async fn work(
    store: &Store,
    now: Micros,
    pick: impl Fn(DeliveryId) -> AttemptOutcome,
) -> Vec<DeliveryId> {
    work_once(store, Shard::ZERO, now, pick).await.0
}

fn failed() -> AttemptOutcome {
    AttemptOutcome::Failed {
        error: "HTTP 500".into(),
    }
}

#[tokio::test]
async fn each_lane_sends_one_delivery_at_a_time_in_order_and_a_retry_holds_only_its_own_lane() {
    let ctx = Ctx::start().await;
    let store = &ctx.store;
    let sub = ordered(&ctx, Some(OrderingKey::ObjectId), false).await;
    let plain = ctx.verified(&[EVENT]).await;
    let objects = ["a", "b", "a", "a", "b"];
    let entries = read_entries(store, &objects).await;
    let (ids, fanned) = fan_out_counted(store, &[&sub, &plain], &entries, &objects).await;
    // Lane a's second and third and lane b's second wait behind their lane's first (lane deferrals).
    let waiting = Fanned {
        created: 10,
        lane_waiting: 3,
    };
    assert_eq!(fanned, waiting);
    let (a, b): (Vec<DeliveryId>, Vec<DeliveryId>) = {
        let of = |i: &[usize]| i.iter().map(|&i| ids[i][0]).collect::<Vec<_>>();
        (of(&[0, 2, 3]), of(&[1, 4]))
    };
    let unordered: Vec<DeliveryId> = ids.iter().map(|d| d[1]).collect();

    // Only each lane's head is queued; the unordered subscription's deliveries all are.
    let q = queued(&ctx.raw, store, Shard::ZERO).await;
    assert!(q.contains(&a[0]) && q.contains(&b[0]), "{q:?}");
    assert!(!q.contains(&a[1]) && !q.contains(&a[2]) && !q.contains(&b[1]));
    assert!(unordered.iter().all(|d| q.contains(d)));
    assert_eq!(q.len(), 2 + unordered.len());
    assert_eq!(status(&ctx, a[1]).await, DeliveryStatus::Pending);

    // Lane b's head fails and will be retried: lane a moves on, lane b waits.
    let now = now_micros();
    let retry_b = |id| {
        if id == b[0] {
            AttemptOutcome::Retry {
                error: "HTTP 500".into(),
                at: now + SEC,
            }
        } else {
            AttemptOutcome::Delivered
        }
    };
    let sent = work(store, now, retry_b).await;
    assert_eq!(sent.len(), 2 + unordered.len());
    assert_eq!(queued(&ctx.raw, store, Shard::ZERO).await, vec![a[1]]);

    // The retry comes due ahead of nothing: promotion queues the lane head as is.
    assert_eq!(store.promote_due(now / 1000 + 2000, 100).await.unwrap(), 1);
    let sent = work(store, now + 2 * SEC, |_| AttemptOutcome::Delivered).await;
    assert_eq!(sent, vec![a[1], b[0]]);
    let sent = work(store, now + 2 * SEC, |_| AttemptOutcome::Delivered).await;
    assert_eq!(sent, vec![a[2], b[1]]);
    assert!(
        work(store, now + 2 * SEC, |_| AttemptOutcome::Delivered)
            .await
            .is_empty()
    );
    for id in a.iter().chain(&b) {
        assert_eq!(status(&ctx, *id).await, DeliveryStatus::Delivered);
    }
    assert!(
        ctx.smembers(&store.keys().lanes(Shard::ZERO))
            .await
            .is_empty()
    );

    // Reprocessing the same entries creates nothing, queues nothing and defers nothing.
    let (_, again) = fan_out_counted(store, &[&sub, &plain], &entries, &objects).await;
    assert_eq!(again, Fanned::default());
    assert!(queued(&ctx.raw, store, Shard::ZERO).await.is_empty());
}

#[tokio::test]
async fn a_failed_head_skips_or_blocks_its_lane_as_the_subscription_chose() {
    let ctx = Ctx::start().await;
    let store = &ctx.store;
    let skip = ordered(&ctx, None, false).await;
    let block = ordered(&ctx, None, true).await;
    let ids = fan_out(store, &[&skip, &block], &["x", "y", "z"]).await;
    let (s, b): (Vec<DeliveryId>, Vec<DeliveryId>) = (
        ids.iter().map(|d| d[0]).collect(),
        ids.iter().map(|d| d[1]).collect(),
    );
    let now = now_micros();

    // Both heads fail for good: the skipping lane sends its next one, the blocking lane waits.
    // (Two lanes released by one watermark go in lane-name order, which is random here.)
    let mut sent = work(store, now, |_| failed()).await;
    sent.sort();
    let mut heads = vec![s[0], b[0]];
    heads.sort();
    assert_eq!(sent, heads);
    assert_eq!(queued(&ctx.raw, store, Shard::ZERO).await, vec![s[1]]);
    let sweep = store.lane_sweep().await.unwrap();
    assert_eq!(
        (sweep.lanes, sweep.blocked, sweep.depth, sweep.moved),
        (2, 1, 5, 0)
    );

    // Skipping only applies to a failed head.
    let lane = LaneId::new(block.id, None);
    assert_eq!(
        store.skip_lane(&LaneId::new(skip.id, None)).await.unwrap(),
        LaneSkip::NotFailed {
            head: Some(s[1]),
            status: "pending".into()
        }
    );
    // An administrator retries the blocked head: it goes again, in its place, and this time it is delivered.
    assert!(matches!(
        store.retry_delivery(b[0], now).await.unwrap(),
        RetryResult::Queued(_)
    ));
    let sent = work(store, now, |_| AttemptOutcome::Delivered).await;
    assert_eq!(sent, vec![s[1], b[0]]);
    // The next fails too; the administrator skips it: the lane moves on without sending it again.
    assert_eq!(
        work(store, now, |id| if id == b[1] {
            failed()
        } else {
            AttemptOutcome::Delivered
        })
        .await,
        vec![s[2], b[1]]
    );
    assert!(queued(&ctx.raw, store, Shard::ZERO).await.is_empty());
    assert_eq!(
        store.skip_lane(&lane).await.unwrap(),
        LaneSkip::Skipped { head: b[1] }
    );
    assert_eq!(status(&ctx, b[1]).await, DeliveryStatus::Failed);
    assert_eq!(
        work(store, now, |_| AttemptOutcome::Delivered).await,
        vec![b[2]]
    );
    assert_eq!(store.skip_lane(&lane).await.unwrap(), LaneSkip::Empty);

    // A failed delivery retried after its lane moved on rejoins its lane in its input position: after the
    // delivery out, before later work.
    let more = fan_out(store, &[&skip], &["x", "x"]).await;
    assert_eq!(queued(&ctx.raw, store, Shard::ZERO).await, vec![more[0][0]]);
    assert!(matches!(
        store.retry_delivery(s[0], now).await.unwrap(),
        RetryResult::Queued(_)
    ));
    assert_eq!(queued(&ctx.raw, store, Shard::ZERO).await, vec![more[0][0]]);
    let mut order = Vec::new();
    for _ in 0..3 {
        order.extend(work(store, now, |_| AttemptOutcome::Delivered).await);
    }
    assert_eq!(order, vec![more[0][0], s[0], more[1][0]]);
}

#[tokio::test]
async fn callbacks_and_the_stale_sweep_move_a_lane_whose_head_answered_async() {
    let ctx = Ctx::start().await;
    let store = &ctx.store;
    let sub = ordered(&ctx, Some(OrderingKey::ObjectId), false).await;
    let ids = fan_out(store, &[&sub], &["a", "a", "a"]).await;
    let d: Vec<DeliveryId> = ids.iter().map(|v| v[0]).collect();
    let now = now_micros();

    // 2xx with async callbacks: the lane waits for the receiver's verdict.
    assert_eq!(
        work(store, now, |_| AttemptOutcome::InProgress).await,
        vec![d[0]]
    );
    assert!(queued(&ctx.raw, store, Shard::ZERO).await.is_empty());
    let update = |status| CallbackUpdate {
        status,
        percent: None,
        message: None,
    };
    store
        .apply_callback(d[0], sub.id, &update(DeliveryStatus::InProgress), now)
        .await
        .unwrap();
    assert!(queued(&ctx.raw, store, Shard::ZERO).await.is_empty());
    store
        .apply_callback(d[0], sub.id, &update(DeliveryStatus::Delivered), now)
        .await
        .unwrap();
    assert_eq!(queued(&ctx.raw, store, Shard::ZERO).await, vec![d[1]]);

    // The next one goes async and is never heard of again: the stale sweep fails it and the lane moves on.
    assert_eq!(
        work(store, now, |_| AttemptOutcome::InProgress).await,
        vec![d[1]]
    );
    let swept = store
        .fail_stale_deliveries(now + SEC, now + SEC, 100, "stale")
        .await
        .unwrap();
    assert_eq!(swept.failed, vec![d[1]]);
    assert_eq!(queued(&ctx.raw, store, Shard::ZERO).await, vec![d[2]]);
}

#[tokio::test]
async fn a_disable_drops_the_lanes_and_the_sweep_moves_a_lane_whose_head_expired() {
    let ctx = Ctx::start().await;
    let store = &ctx.store;
    let sub = ordered(&ctx, Some(OrderingKey::ObjectId), true).await;
    let ids = fan_out(store, &[&sub], &["a", "a", "b", "b"]).await;
    let d: Vec<DeliveryId> = ids.iter().map(|v| v[0]).collect();
    let now = now_micros();

    // Lane b's head expires while queued (its record gone; a worker reading its entry acknowledges it as
    // missing, here it is simply removed): the sweep moves the lane on.
    ctx.del(&store.keys().delivery(d[2])).await;
    let queue = store.keys().queue_stream(Shard::ZERO);
    let entries: Vec<(String, HashMap<String, String>)> =
        ctx.raw.xrange(&queue, "-", "+", None).await.unwrap();
    let expired: Vec<String> = entries
        .into_iter()
        .filter(|(_, f)| f[MESSAGE_FIELD].contains(&d[2].to_string()))
        .map(|(id, _)| id)
        .collect();
    let _: i64 = ctx.raw.xdel(&queue, expired).await.unwrap();
    assert_eq!(store.lane_sweep().await.unwrap().moved, 1);
    let q = queued(&ctx.raw, store, Shard::ZERO).await;
    assert!(q.contains(&d[3]), "{q:?}");

    // The receiver answers 410 to lane a's head: the subscription is disabled, its waiting delivery fails
    // without an attempt, and the lanes are gone.
    let gone = |id| {
        if id == d[0] {
            AttemptOutcome::Gone {
                error: "HTTP 410".into(),
            }
        } else {
            AttemptOutcome::Delivered
        }
    };
    assert_eq!(work(store, now, gone).await, vec![d[0], d[3]]);
    assert_eq!(
        ctx.stored_subscription(sub.id).await.status,
        SubscriptionStatus::Inactive
    );
    let failed = store
        .fail_disabled_pending(sub.id, DisabledReason::Gone, now)
        .await
        .unwrap();
    assert_eq!(failed, 1);
    assert_eq!(status(&ctx, d[1]).await, DeliveryStatus::Failed);
    assert!(queued(&ctx.raw, store, Shard::ZERO).await.is_empty());
    let sweep = store.lane_sweep().await.unwrap();
    assert_eq!((sweep.lanes, sweep.depth), (0, 0));
    assert!(
        !ctx.exists(&store.keys().lane(&LaneId::new(sub.id, Some("a"))))
            .await
    );
}

#[tokio::test]
async fn entries_fanned_out_by_two_consumers_in_reverse_order_still_go_out_in_input_order() {
    let ctx = Ctx::start().await;
    let store = &ctx.store;
    let sub = ordered(&ctx, None, false).await;
    let objects = ["o"; 4];
    store.ensure_events_group("0").await.unwrap();
    for o in objects {
        store.publish_event(&event_of(o)).await.unwrap();
    }
    // Consumer a reads the first two entries, consumer b the next two; b writes first.
    let reader = store.reader().await.unwrap();
    let mut read = Vec::new();
    for c in ["a", "b"] {
        let got = reader
            .read_group(store.keys().events_stream(), EVENTS_GROUP, c, 2, 100)
            .await
            .unwrap();
        read.push(got.into_iter().map(|e| e.id).collect::<Vec<_>>());
    }
    reader.quit().await;
    let later = fan_out_entries(store, &[&sub], &read[1], &objects[..2]).await;
    // The first entries are still pending: nothing of the lane may go out before them.
    assert!(queued(&ctx.raw, store, Shard::ZERO).await.is_empty());
    assert_eq!(
        store.skip_lane(&LaneId::new(sub.id, None)).await.unwrap(),
        LaneSkip::NotFailed {
            head: None,
            status: "waiting".into()
        }
    );
    let earlier = fan_out_entries(store, &[&sub], &read[0], &objects[..2]).await;
    let mut order = Vec::new();
    for _ in 0..5 {
        order.extend(work(store, now_micros(), |_| AttemptOutcome::Delivered).await);
    }
    let expected: Vec<DeliveryId> = earlier.iter().chain(&later).map(|d| d[0]).collect();
    assert_eq!(order, expected);
}
