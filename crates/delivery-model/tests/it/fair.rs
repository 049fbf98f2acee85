//! Fair sharing (issue #18, `docs/flow.md` §1): a subscription has at most its share of each shard's queue;
//! the rest of its deliveries wait parked, in order, and take the places its entries leave — through the
//! outcome, the lease's acknowledgement of finished work, promotion of a retry, and cleanup's sweep. Every
//! pending delivery is in exactly one of the queue and the parked list, and none is lost or sent twice.
//!
//! The drain helpers work on both layouts; `cluster_fair` runs them on a real cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{QUEUE_GROUP, Shard};
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::store::{
    AttemptOutcome, BeginAttempt, BeginItem, CircuitPolicy, CircuitSignal, FanoutEntry, FinishItem,
    Store,
};
use delivery_model::subscription::{DisabledReason, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};
use fred::prelude::*;

use crate::harness::{CONSUMER, Ctx, SEC};

/// Fans out one input entry per id in `entries`, each to `sub` alone, in one batch; returns the delivery ids
/// in entry order (the ids fan-out derives, without a fan-out key).
pub(crate) async fn fan_out(
    store: &Store,
    sub: SubscriptionId,
    entries: &[String],
) -> Vec<DeliveryId> {
    let subs = [sub];
    let batch: Vec<FanoutEntry<'_>> = entries
        .iter()
        .map(|e| FanoutEntry {
            entry_id: e,
            event_type: "threat_model.created",
            envelope: r#"{"event_type":"threat_model.created","data":{}}"#,
            subscriptions: &subs,
            lanes: &[],
            trace: None,
        })
        .collect();
    store.fanout_batch(&batch, now_micros()).await.unwrap();
    entries
        .iter()
        .map(|e| DeliveryId::for_fanout_keyed(None, e, sub))
        .collect()
}

/// Input entry ids `tag-0` … (fan-out only derives ids from them and acknowledges them: unknown ids are
/// acknowledged as nothing).
pub(crate) fn entries(tag: u32, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// The delivery messages of shard `shard`'s queue, in order (challenges left out).
pub(crate) async fn queued(raw: &Client, store: &Store, shard: Shard) -> Vec<DeliveryId> {
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = raw
        .xrange(store.keys().queue_stream(shard), "-", "+", None)
        .await
        .unwrap();
    entries
        .into_iter()
        .filter_map(|(_, f)| match QueueMessage::decode(f.get(MESSAGE_FIELD)?) {
            Ok(QueueMessage::DeliveryV1 { delivery_id }) => Some(delivery_id),
            _ => None,
        })
        .collect()
}

/// The parked deliveries of `sub` in shard `shard`, oldest first.
pub(crate) async fn parked(
    raw: &Client,
    store: &Store,
    shard: Shard,
    sub: SubscriptionId,
) -> Vec<DeliveryId> {
    let key = format!("{}{sub}", store.keys().fair_parked_prefix(shard));
    let list: Vec<String> = raw
        .custom(fred::cmd!("LRANGE"), vec![key, "0".into(), "-1".into()])
        .await
        .unwrap();
    list.iter()
        .map(|m| match QueueMessage::decode(m).unwrap() {
            QueueMessage::DeliveryV1 { delivery_id } => delivery_id,
            other => panic!("parked a non-delivery message {other:?}"),
        })
        .collect()
}

/// Reads shard `shard`'s queue once as a worker would: the deliveries read (entry id, delivery id), in
/// order; anything else is acknowledged.
async fn read_work(store: &Store, shard: Shard) -> Vec<(String, DeliveryId)> {
    store.ensure_queue_group().await.unwrap();
    let queue = store.keys().queue_stream(shard);
    let reader = store.reader().await.unwrap();
    let read = reader
        .read_group(&queue, QUEUE_GROUP, CONSUMER, 1000, 1)
        .await
        .unwrap();
    reader.quit().await;
    let (mut work, mut other) = (Vec::new(), Vec::new());
    for e in read {
        match QueueMessage::decode(&e.fields[MESSAGE_FIELD]) {
            Ok(QueueMessage::DeliveryV1 { delivery_id }) => work.push((e.id, delivery_id)),
            _ => other.push(e.id),
        }
    }
    store.ack_queue(&queue, &other).await.unwrap();
    work
}

/// Takes the leases of `work` (token `t`) at `now`.
async fn lease(store: &Store, work: &[(String, DeliveryId)], now: Micros) -> Vec<BeginAttempt> {
    let items: Vec<BeginItem<'_>> = work
        .iter()
        .map(|(entry, id)| BeginItem {
            id: *id,
            token: "t",
            entry_id: entry,
        })
        .collect();
    store
        .begin_attempts(&items, now, now + 30 * SEC, Duration::ZERO)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// The outcome item of a leased delivery of `sub` read from `entry`.
fn finished(
    entry: &str,
    id: DeliveryId,
    sub: SubscriptionId,
    outcome: AttemptOutcome,
) -> FinishItem {
    FinishItem {
        id,
        subscription_id: sub,
        token: "t".into(),
        entry_id: entry.to_owned(),
        outcome,
        host: String::new(),
        signal: CircuitSignal::None,
        log: None,
    }
}

/// Reads shard `shard`'s queue once as a worker would and gives every delivery read the outcome `outcome`
/// picks (after taking its lease); acknowledges anything else. Returns the deliveries attempted, in read
/// order, and those found finished already (`Done`).
pub(crate) async fn work_once(
    store: &Store,
    shard: Shard,
    now: Micros,
    outcome: impl Fn(DeliveryId) -> AttemptOutcome,
) -> (Vec<DeliveryId>, Vec<DeliveryId>) {
    let work = read_work(store, shard).await;
    let began = lease(store, &work, now).await;
    let (mut attempted, mut done, mut finish) = (Vec::new(), Vec::new(), Vec::new());
    for ((entry, id), b) in work.iter().zip(began) {
        match b {
            BeginAttempt::Go(leased) => {
                attempted.push(*id);
                finish.push(finished(
                    entry,
                    *id,
                    leased.record.subscription_id,
                    outcome(*id),
                ));
            }
            BeginAttempt::Done(_) => done.push(*id),
            other => panic!("unexpected {other:?} for {id}"),
        }
    }
    store
        .finish_attempts(&finish, &CircuitPolicy::default(), now)
        .await
        .unwrap();
    (attempted, done)
}

/// Works shard `shard`'s queue, delivering everything, until it is empty; returns the deliveries in the
/// order they were attempted, checking before each read that `sub` never has more than `share` entries
/// in the queue.
pub(crate) async fn drain(
    raw: &Client,
    store: &Store,
    shard: Shard,
    sub: SubscriptionId,
    share: usize,
) -> Vec<DeliveryId> {
    let mut order = Vec::new();
    for _ in 0..1000 {
        let before = queued(raw, store, shard).await;
        if before.is_empty() {
            return order;
        }
        let subs = subscriptions_of(store, &before).await;
        let of_sub = subs.iter().filter(|s| **s == sub).count();
        assert!(
            of_sub <= share,
            "{of_sub} entries of the busy subscription queued, share {share}"
        );
        let (attempted, _) =
            work_once(store, shard, now_micros(), |_| AttemptOutcome::Delivered).await;
        order.extend(attempted);
    }
    panic!("the queue never drained");
}

async fn subscriptions_of(store: &Store, ids: &[DeliveryId]) -> Vec<SubscriptionId> {
    let mut out = Vec::new();
    for id in ids {
        out.push(
            store
                .get_delivery(*id)
                .await
                .unwrap()
                .unwrap()
                .subscription_id,
        );
    }
    out
}

async fn fair_ctx(share: u32) -> Ctx {
    Ctx::start_with(|o| o.fair_share = share).await
}

/// The fixture's raw client (a second handle on the same connection).
fn raw(ctx: &Ctx) -> Client {
    ctx.raw.clone()
}

#[tokio::test]
async fn a_backlog_is_parked_beyond_the_share_and_a_later_subscription_is_queued_behind_the_share_only()
 {
    let ctx = fair_ctx(4).await;
    let (store, raw) = (&ctx.store, raw(&ctx));
    let busy = ctx.verified(&["threat_model.created"]).await;
    let calm = ctx.verified(&["threat_model.created"]).await;
    let backlog = fan_out(store, busy.id, &entries(1, 20)).await;
    let later = fan_out(store, calm.id, &entries(2, 1)).await;

    let mut expected: Vec<DeliveryId> = backlog[..4].to_vec();
    expected.push(later[0]);
    assert_eq!(queued(&raw, store, Shard::ZERO).await, expected);
    assert_eq!(
        parked(&raw, store, Shard::ZERO, busy.id).await,
        backlog[4..].to_vec()
    );
    assert_eq!(
        ctx.smembers(&store.keys().fair_parking(Shard::ZERO)).await,
        [busy.id.to_string()].into()
    );
    // The per-subscription keys expire (set once per script call, not per message).
    let k = store.keys();
    let counted = format!("{}{}", k.fair_queued_prefix(Shard::ZERO), busy.id);
    let parked_list = format!("{}{}", k.fair_parked_prefix(Shard::ZERO), busy.id);
    for key in [&counted, &parked_list] {
        assert!(ctx.ttl(key).await > 0, "{key} has a TTL");
    }
    // Parked deliveries are ordinary pending records.
    for id in &backlog {
        assert_eq!(ctx.stored_delivery(*id).await.status.to_string(), "pending");
    }

    // Each outcome gives its place to the next parked delivery: all 20 go once, in order, never more than 4
    // at a time in the queue.
    let order = drain(&raw, store, Shard::ZERO, busy.id, 4).await;
    let busy_order: Vec<DeliveryId> = order
        .iter()
        .copied()
        .filter(|id| backlog.contains(id))
        .collect();
    assert_eq!(busy_order, backlog);
    assert_eq!(order.len(), 21);
    assert!(
        order[..5].contains(&later[0]),
        "the later subscription went in the first read"
    );
    assert!(parked(&raw, store, Shard::ZERO, busy.id).await.is_empty());
    assert!(
        ctx.smembers(&store.keys().fair_parking(Shard::ZERO))
            .await
            .is_empty()
    );
    assert!(
        !ctx.exists(&counted).await,
        "every counted place was released"
    );
}

#[tokio::test]
async fn a_retry_coming_due_takes_a_place_like_fresh_work_and_is_parked_ahead_of_it() {
    let ctx = fair_ctx(2).await;
    let (store, raw) = (&ctx.store, raw(&ctx));
    let sub = ctx.verified(&["threat_model.created"]).await;
    let ids = fan_out(store, sub.id, &entries(1, 5)).await;
    let now = now_micros();
    // The first read holds ids[0], ids[1]: the first fails for a retry due now, the second stays leased.
    let first = ids[0];
    let (attempted, _) = work_once(store, Shard::ZERO, now, |id| {
        if id == first {
            AttemptOutcome::Retry {
                error: "HTTP 500".into(),
                at: now,
            }
        } else {
            AttemptOutcome::InProgress
        }
    })
    .await;
    assert_eq!(attempted, ids[..2].to_vec());
    // Both places were released and refilled from the parked list.
    assert_eq!(queued(&raw, store, Shard::ZERO).await, ids[2..4].to_vec());
    assert_eq!(parked(&raw, store, Shard::ZERO, sub.id).await, vec![ids[4]]);

    // The retry comes due while the subscription has its share queued: parked, ahead of fresh work.
    assert_eq!(store.promote_due(now / 1000 + 1, 100).await.unwrap(), 1);
    assert_eq!(queued(&raw, store, Shard::ZERO).await, ids[2..4].to_vec());
    assert_eq!(
        parked(&raw, store, Shard::ZERO, sub.id).await,
        vec![first, ids[4]]
    );

    let order = drain(&raw, store, Shard::ZERO, sub.id, 2).await;
    assert_eq!(order, vec![ids[2], ids[3], first, ids[4]]);
    assert_eq!(ctx.stored_delivery(first).await.attempts, 2);
}

#[tokio::test]
async fn finished_work_acknowledged_by_the_lease_releases_its_place() {
    let ctx = fair_ctx(2).await;
    let (store, raw) = (&ctx.store, raw(&ctx));
    let sub = ctx.verified(&["threat_model.created"]).await;
    let ids = fan_out(store, sub.id, &entries(1, 5)).await;
    // Disabled: every pending delivery, parked or queued, fails without an attempt.
    let now = now_micros();
    assert!(
        store
            .set_subscription_status(
                sub.id,
                SubscriptionStatus::Active,
                SubscriptionStatus::Inactive,
                now,
                false
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .fail_disabled_pending(sub.id, DisabledReason::Gone, now)
            .await
            .unwrap(),
        5
    );
    // The worker finds them finished: each acknowledgement moves the next parked one up, until none is left.
    let mut done = Vec::new();
    for _ in 0..10 {
        let (attempted, d) = work_once(store, Shard::ZERO, now_micros(), |_| {
            AttemptOutcome::Delivered
        })
        .await;
        assert!(attempted.is_empty());
        if d.is_empty() {
            break;
        }
        done.extend(d);
    }
    assert_eq!(done, ids);
    assert!(queued(&raw, store, Shard::ZERO).await.is_empty());
    assert!(
        ctx.smembers(&store.keys().fair_parking(Shard::ZERO))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_sweep_refills_a_subscription_whose_places_went_missing() {
    let ctx = fair_ctx(3).await;
    let (store, raw) = (&ctx.store, raw(&ctx));
    let sub = ctx.verified(&["threat_model.created"]).await;
    let ids = fan_out(store, sub.id, &entries(1, 7)).await;
    // An operator deletes the three queued entries: nothing will ever release their places.
    let queue = store.keys().queue_stream(Shard::ZERO);
    let all: Vec<(String, BTreeMap<String, String>)> =
        raw.xrange(&queue, "-", "+", None).await.unwrap();
    for (entry, fields) in all {
        if fields[MESSAGE_FIELD].contains("delivery_v1") {
            ctx.xdel(&queue, &entry).await;
        }
    }
    assert!(queued(&raw, store, Shard::ZERO).await.is_empty());

    // Within the stale bound the places still count: nothing moves, the depth is reported.
    let now = now_micros();
    let sweep = store.fair_sweep(now).await.unwrap();
    assert_eq!((sweep.parking, sweep.parked, sweep.moved), (1, 4, 0));
    // Past it they are forgotten and the subscription refilled to its share, in order.
    let later = now + 16 * 60 * SEC;
    let sweep = store.fair_sweep(later).await.unwrap();
    assert_eq!((sweep.parking, sweep.parked, sweep.moved), (1, 1, 3));
    assert_eq!(queued(&raw, store, Shard::ZERO).await, ids[3..6].to_vec());
    assert_eq!(parked(&raw, store, Shard::ZERO, sub.id).await, vec![ids[6]]);
    let order = drain(&raw, store, Shard::ZERO, sub.id, 3).await;
    assert_eq!(order, ids[3..].to_vec());
    let sweep = store.fair_sweep(now_micros()).await.unwrap();
    assert_eq!((sweep.parking, sweep.parked, sweep.moved), (0, 0, 0));
}

#[tokio::test]
async fn with_fair_sharing_off_nothing_is_parked_and_what_was_parked_is_drained() {
    let ctx = fair_ctx(2).await;
    let (store, raw) = (&ctx.store, raw(&ctx));
    let sub = ctx.verified(&["threat_model.created"]).await;
    let ids = fan_out(store, sub.id, &entries(1, 5)).await;
    assert_eq!(
        parked(&raw, store, Shard::ZERO, sub.id).await,
        ids[2..].to_vec()
    );

    let off = ctx.store_with(|o| o.fair_share = 0).await;
    let more = fan_out(&off, sub.id, &entries(2, 3)).await;
    let mut expected = ids[..2].to_vec();
    expected.extend(&more);
    assert_eq!(queued(&raw, store, Shard::ZERO).await, expected);
    let sweep = off.fair_sweep(now_micros()).await.unwrap();
    assert_eq!((sweep.parking, sweep.parked, sweep.moved), (1, 0, 3));
    expected.extend(&ids[2..]);
    assert_eq!(queued(&raw, store, Shard::ZERO).await, expected);
    assert!(
        ctx.smembers(&store.keys().fair_parking(Shard::ZERO))
            .await
            .is_empty()
    );
    let order = drain(&raw, &off, Shard::ZERO, sub.id, usize::MAX).await;
    assert_eq!(order.len(), 8);
}

#[tokio::test]
async fn a_leased_delivery_gives_its_place_before_its_outcome() {
    let ctx = fair_ctx(2).await;
    let (store, raw) = (&ctx.store, raw(&ctx));
    let sub = ctx.verified(&["threat_model.created"]).await;
    let ids = fan_out(store, sub.id, &entries(1, 6)).await;
    let work = read_work(store, Shard::ZERO).await;
    assert_eq!(
        work.iter().map(|w| w.1).collect::<Vec<_>>(),
        ids[..2].to_vec()
    );
    // Read but not leased yet: still counted, nothing moves.
    assert_eq!(
        parked(&raw, store, Shard::ZERO, sub.id).await,
        ids[2..].to_vec()
    );

    let now = now_micros();
    let began = lease(store, &work, now).await;
    assert!(began.iter().all(|b| matches!(b, BeginAttempt::Go(_))));
    // In flight, the two no longer stand in anyone's way: the next two wait to be read in their places.
    assert_eq!(queued(&raw, store, Shard::ZERO).await, ids[..4].to_vec());
    assert_eq!(
        parked(&raw, store, Shard::ZERO, sub.id).await,
        ids[4..].to_vec()
    );

    let finish: Vec<FinishItem> = work
        .iter()
        .map(|(entry, id)| finished(entry, *id, sub.id, AttemptOutcome::Delivered))
        .collect();
    store
        .finish_attempts(&finish, &CircuitPolicy::default(), now)
        .await
        .unwrap();
    // The outcomes take nothing more off the parked list.
    assert_eq!(queued(&raw, store, Shard::ZERO).await, ids[2..4].to_vec());
    assert_eq!(
        drain(&raw, store, Shard::ZERO, sub.id, 2).await,
        ids[2..].to_vec()
    );
}

/// The share adapts: a backlogged subscription alone is refilled to its whole share; while another
/// subscription has fresh work in the shard, to a quarter of it. Its deliveries still go once each, in order.
#[tokio::test]
async fn beside_another_subscriptions_work_a_backlog_gets_a_quarter_of_the_share() {
    let ctx = fair_ctx(8).await;
    let (store, raw) = (&ctx.store, raw(&ctx));
    let busy = ctx.verified(&["threat_model.created"]).await;
    let calm = ctx.verified(&["threat_model.created"]).await;
    let backlog = fan_out(store, busy.id, &entries(1, 30)).await;
    assert_eq!(
        queued(&raw, store, Shard::ZERO).await,
        backlog[..8].to_vec()
    );

    // Alone: the leases' released places are refilled to the whole share.
    let (first, _) = work_once(store, Shard::ZERO, now_micros(), |_| {
        AttemptOutcome::Delivered
    })
    .await;
    assert_eq!(first, backlog[..8].to_vec());
    assert_eq!(
        queued(&raw, store, Shard::ZERO).await,
        backlog[8..16].to_vec()
    );

    // Another subscription's work arrives: from now on the backlog is refilled to 8 / 4 = 2.
    let later = fan_out(store, calm.id, &entries(2, 1)).await;
    let (second, _) = work_once(store, Shard::ZERO, now_micros(), |_| {
        AttemptOutcome::Delivered
    })
    .await;
    let mut expected = backlog[8..16].to_vec();
    expected.push(later[0]);
    assert_eq!(second, expected);
    assert_eq!(
        queued(&raw, store, Shard::ZERO).await,
        backlog[16..18].to_vec(),
        "a quarter of the share while another subscription is busy"
    );
    let recent = ctx.zall(&store.keys().fair_recent(Shard::ZERO)).await;
    assert_eq!(recent.len(), 2, "both subscriptions noted: {recent:?}");

    // The rest drains once each, in order.
    let rest = drain(&raw, store, Shard::ZERO, busy.id, 8).await;
    assert_eq!(rest, backlog[16..].to_vec());
    assert!(parked(&raw, store, Shard::ZERO, busy.id).await.is_empty());
}

/// Backlogged subscriptions side by side have no light neighbour to protect: each keeps its whole share,
/// so a worker reading a saturated shard still gets full reads (ten quarters starved them, issue #21).
#[tokio::test]
async fn backlogged_subscriptions_side_by_side_each_keep_the_whole_share() {
    let ctx = fair_ctx(8).await;
    let (store, raw) = (&ctx.store, raw(&ctx));
    let a = ctx.verified(&["threat_model.created"]).await;
    let b = ctx.verified(&["threat_model.created"]).await;
    let backlog_a = fan_out(store, a.id, &entries(1, 30)).await;
    let backlog_b = fan_out(store, b.id, &entries(2, 30)).await;
    let mut expected = backlog_a[..8].to_vec();
    expected.extend_from_slice(&backlog_b[..8]);
    assert_eq!(queued(&raw, store, Shard::ZERO).await, expected);
    let parking = ctx.smembers(&store.keys().fair_parking(Shard::ZERO)).await;
    assert_eq!(parking, [a.id.to_string(), b.id.to_string()].into());

    // Both refilled to the whole share, not a quarter of it.
    let (first, _) = work_once(store, Shard::ZERO, now_micros(), |_| {
        AttemptOutcome::Delivered
    })
    .await;
    assert_eq!(first, expected);
    let now_queued = queued(&raw, store, Shard::ZERO).await;
    let of = |backlog: &[DeliveryId]| now_queued.iter().filter(|d| backlog.contains(d)).count();
    assert_eq!((of(&backlog_a), of(&backlog_b)), (8, 8), "{now_queued:?}");

    // Each drains once, in order.
    let rest_a = drain(&raw, store, Shard::ZERO, a.id, 8).await;
    let from_a: Vec<DeliveryId> = rest_a
        .iter()
        .copied()
        .filter(|d| backlog_a.contains(d))
        .collect();
    assert_eq!(from_a, backlog_a[8..].to_vec());
}
