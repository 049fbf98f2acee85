//! Subscriptions: the hash, its indexes, the status compare-and-set and the challenge bookkeeping.

use delivery_model::keys::Shard;
use std::collections::BTreeSet;

use delivery_model::ids::SubscriptionId;
use delivery_model::queue::QueueMessage;
use delivery_model::store::ChallengeFailure;
use delivery_model::subscription::SubscriptionStatus::{
    Active, PendingDelete, PendingVerification,
};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};

use crate::harness::{Ctx, ms, subscription};

/// The ids of `subs`, for comparing with index sets.
fn ids(subs: &[&Subscription]) -> BTreeSet<String> {
    subs.iter().map(|s| s.id.to_string()).collect()
}

/// The ids in the index of subscriptions in `status`.
async fn in_status(ctx: &Ctx, status: SubscriptionStatus) -> BTreeSet<String> {
    ctx.smembers(&ctx.k().subscriptions_by_status(status)).await
}

/// `sub` has moved from the status index of `from` to that of `to`, where it is alone.
async fn assert_moved(
    ctx: &Ctx,
    sub: &Subscription,
    from: SubscriptionStatus,
    to: SubscriptionStatus,
) {
    assert!(in_status(ctx, from).await.is_empty(), "{from} index");
    assert_eq!(in_status(ctx, to).await, ids(&[sub]), "{to} index");
}

/// A failed challenge of `id` reported at `now`, out of [`MAX_CHALLENGES`], the next due at `due_ms`.
async fn challenge_failed(
    ctx: &Ctx,
    id: SubscriptionId,
    due_ms: i64,
    now: Micros,
) -> ChallengeFailure {
    ctx.store
        .challenge_failed(id, None, MAX_CHALLENGES, due_ms, now)
        .await
        .unwrap()
}

/// The challenges a subscription gets before it is given up.
const MAX_CHALLENGES: u32 = 3;

async fn match_ids(ctx: &Ctx, event: &str) -> BTreeSet<String> {
    ctx.store
        .match_candidates(event)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id.to_string())
        .collect()
}

#[tokio::test]
async fn create_writes_hash_indexes_and_enqueues_first_challenge() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let mut sub = subscription(
        PendingVerification,
        &["threat_model.created", "diagram.updated"],
    );
    sub.threat_model_id = Some("tm-1".into());

    ctx.create(&sub).await;

    assert_eq!(
        ctx.store.get_subscription(sub.id).await.unwrap(),
        Some(sub.clone())
    );
    let id = sub.id.to_string();
    assert_eq!(
        ctx.zscore(&k.subscriptions_all(), &id).await,
        Some(ms(sub.created_at))
    );
    assert_eq!(
        ctx.zscore(&k.subscriptions_by_threat_model("tm-1"), &id)
            .await,
        Some(ms(sub.created_at))
    );
    assert_eq!(
        ctx.smembers(&k.subscriptions_by_owner("owner-1")).await,
        ids(&[&sub])
    );
    assert_eq!(in_status(&ctx, PendingVerification).await, ids(&[&sub]));
    assert_eq!(
        ctx.store
            .count_subscriptions_by_owner("owner-1")
            .await
            .unwrap(),
        1
    );
    // Not verified yet, so not matchable.
    assert!(
        ctx.smembers(&k.subscriptions_by_event("threat_model.created"))
            .await
            .is_empty()
    );
    assert!(
        ctx.store
            .match_candidates("threat_model.created")
            .await
            .unwrap()
            .is_empty()
    );

    let challenge = QueueMessage::ChallengeV1 {
        subscription_id: sub.id,
        trace: None,
    };
    let queued: Vec<QueueMessage> = ctx.queue().await.into_iter().map(|(_, m)| m).collect();
    assert_eq!(queued, vec![challenge.clone()]);

    // Same id again: refused, and nothing is written or enqueued twice.
    let mut again = sub.clone();
    again.name = "replaced".into();
    assert!(!ctx.store.create_subscription(&again).await.unwrap());
    assert_eq!(
        ctx.store
            .get_subscription(sub.id)
            .await
            .unwrap()
            .map(|s| s.name),
        Some("it".into())
    );
    assert_eq!(ctx.queue().await.len(), 1);
}

#[tokio::test]
async fn create_without_threat_model_writes_no_threat_model_index() {
    let ctx = Ctx::start().await;
    let sub = subscription(PendingVerification, &["*"]);
    ctx.create(&sub).await;
    let tm_keys = ctx
        .keys_matching(&format!(
            "{}*",
            ctx.k().subscriptions_by_threat_model_prefix()
        ))
        .await;
    assert!(tm_keys.is_empty(), "{tm_keys:?}");
    assert_eq!(
        ctx.store
            .list_subscriptions(None, 0, 10)
            .await
            .unwrap()
            .total,
        1
    );
    assert_eq!(
        ctx.store
            .list_subscriptions(Some("tm-1"), 0, 10)
            .await
            .unwrap()
            .total,
        0
    );
}

#[tokio::test]
async fn create_active_subscription_is_matchable_without_a_challenge() {
    let ctx = Ctx::start().await;
    let sub = subscription(Active, &["threat_model.created"]);
    ctx.create(&sub).await;

    assert!(
        ctx.queue().await.is_empty(),
        "an active subscription needs no challenge"
    );
    assert_eq!(in_status(&ctx, Active).await, ids(&[&sub]));
    assert_eq!(
        ctx.smembers(&ctx.k().subscriptions_by_event("threat_model.created"))
            .await,
        ids(&[&sub])
    );
    assert_eq!(match_ids(&ctx, "threat_model.created").await, ids(&[&sub]));
}

#[tokio::test]
async fn status_cas_keeps_status_and_event_indexes_true() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let sub = subscription(
        PendingVerification,
        &["threat_model.created", "diagram.updated"],
    );
    ctx.create(&sub).await;
    let events = ["threat_model.created", "diagram.updated"];

    // Wrong expectation: nothing changes.
    let t1 = sub.modified_at + 1_000;
    assert!(
        !ctx.store
            .set_subscription_status(sub.id, Active, PendingDelete, t1, false)
            .await
            .unwrap()
    );
    let stored = ctx.stored_subscription(sub.id).await;
    assert_eq!(
        (stored.status, stored.modified_at),
        (PendingVerification, sub.modified_at)
    );

    // Verified: moves between status sets and joins every listed event's set.
    assert!(
        ctx.store
            .set_subscription_status(sub.id, PendingVerification, Active, t1, true)
            .await
            .unwrap()
    );
    let stored = ctx.stored_subscription(sub.id).await;
    assert_eq!(
        (stored.status, stored.modified_at, stored.challenges_sent),
        (Active, t1, 1)
    );
    assert_moved(&ctx, &sub, PendingVerification, Active).await;
    for e in events {
        assert_eq!(
            ctx.smembers(&k.subscriptions_by_event(e)).await,
            ids(&[&sub]),
            "event set {e}"
        );
    }
    assert_eq!(match_ids(&ctx, "diagram.updated").await, ids(&[&sub]));
    assert!(match_ids(&ctx, "diagram.created").await.is_empty());

    // The same CAS again fails: the status is no longer pending_verification.
    assert!(
        !ctx.store
            .set_subscription_status(sub.id, PendingVerification, Active, t1, true)
            .await
            .unwrap()
    );
    assert_eq!(ctx.stored_subscription(sub.id).await.challenges_sent, 1);

    // Leaving active drops it from every event set.
    let t2 = t1 + 1_000;
    assert!(
        ctx.store
            .set_subscription_status(sub.id, Active, PendingDelete, t2, false)
            .await
            .unwrap()
    );
    for e in events {
        assert!(
            ctx.smembers(&k.subscriptions_by_event(e)).await.is_empty(),
            "event set {e}"
        );
    }
    assert_moved(&ctx, &sub, Active, PendingDelete).await;
    assert_eq!(
        ctx.store
            .subscription_ids_by_status(PendingDelete)
            .await
            .unwrap(),
        vec![sub.id]
    );
    assert!(match_ids(&ctx, "threat_model.created").await.is_empty());
}

#[tokio::test]
async fn status_cas_on_a_missing_subscription_writes_nothing() {
    let ctx = Ctx::start().await;
    let ghost = subscription(PendingVerification, &["*"]);
    assert!(
        !ctx.store
            .set_subscription_status(ghost.id, PendingVerification, Active, now_micros(), true)
            .await
            .unwrap()
    );
    assert!(!ctx.exists(&ctx.k().subscription(ghost.id)).await);
    assert!(in_status(&ctx, Active).await.is_empty());
}

#[tokio::test]
async fn match_candidates_are_exactly_the_active_subscriptions_listing_the_event_or_wildcard() {
    let ctx = Ctx::start().await;
    let tm_created = ctx.verified(&["threat_model.created"]).await;
    let wildcard = ctx.verified(&["*"]).await;
    let diagram = ctx.verified(&["diagram.created", "diagram.updated"]).await;
    let unverified = subscription(PendingVerification, &["threat_model.created", "*"]);
    ctx.create(&unverified).await;
    let retired = ctx.verified(&["threat_model.created", "*"]).await;
    assert!(
        ctx.store
            .set_subscription_status(retired.id, Active, PendingDelete, now_micros(), false)
            .await
            .unwrap()
    );

    assert_eq!(
        match_ids(&ctx, "threat_model.created").await,
        ids(&[&tm_created, &wildcard])
    );
    assert_eq!(
        match_ids(&ctx, "diagram.updated").await,
        ids(&[&diagram, &wildcard])
    );
    assert_eq!(match_ids(&ctx, "note.created").await, ids(&[&wildcard]));
    let got = ctx
        .store
        .match_candidates("threat_model.created")
        .await
        .unwrap();
    assert!(got.iter().all(|s| s.status == Active), "{got:?}");
}

#[tokio::test]
async fn challenge_failures_retry_then_exhaust_to_pending_delete() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let sub = subscription(PendingVerification, &["*"]);
    ctx.create(&sub).await;
    let member = QueueMessage::ChallengeV1 {
        subscription_id: sub.id,
        trace: None,
    }
    .encode();
    let now = now_micros();

    // The first two failures are retried. Each retry is promoted (the worker sends it) before the next
    // failure, as in a real run.
    for (sent, due) in [(1, 1_000), (2, 2_000)] {
        assert_eq!(
            challenge_failed(&ctx, sub.id, due, now).await,
            ChallengeFailure::Retry
        );
        assert_eq!(
            ctx.zall(&k.scheduled(Shard::ZERO)).await,
            vec![(member.clone(), due as f64)]
        );
        let stored = ctx.stored_subscription(sub.id).await;
        assert_eq!(
            (stored.status, stored.challenges_sent, stored.modified_at),
            (PendingVerification, sent, now)
        );
        assert_eq!(ctx.store.promote_due(due, 10).await.unwrap(), 1);
    }

    // The third failure is the last: no further challenge is scheduled.
    assert_eq!(
        challenge_failed(&ctx, sub.id, 3_000, now + 1).await,
        ChallengeFailure::Exhausted
    );
    assert!(ctx.zall(&k.scheduled(Shard::ZERO)).await.is_empty());
    let stored = ctx.stored_subscription(sub.id).await;
    assert_eq!(
        (stored.status, stored.challenges_sent, stored.modified_at),
        (PendingDelete, 3, now + 1)
    );
    assert_moved(&ctx, &sub, PendingVerification, PendingDelete).await;

    // Once out of pending_verification, a late failure report changes nothing.
    assert_eq!(
        challenge_failed(&ctx, sub.id, 4_000, now + 2).await,
        ChallengeFailure::Gone
    );
    assert_eq!(ctx.stored_subscription(sub.id).await.challenges_sent, 3);
    assert!(ctx.zall(&k.scheduled(Shard::ZERO)).await.is_empty());
}

#[tokio::test]
async fn challenge_failure_on_an_active_or_missing_subscription_is_gone() {
    let ctx = Ctx::start().await;
    let active = ctx.verified(&["*"]).await;
    let before = ctx.stored_subscription(active.id).await;

    assert_eq!(
        challenge_failed(&ctx, active.id, 1_000, now_micros()).await,
        ChallengeFailure::Gone
    );
    assert_eq!(ctx.stored_subscription(active.id).await, before);
    assert!(ctx.zall(&ctx.k().scheduled(Shard::ZERO)).await.is_empty());

    let ghost = subscription(PendingVerification, &["*"]);
    assert_eq!(
        challenge_failed(&ctx, ghost.id, 1_000, now_micros()).await,
        ChallengeFailure::Gone
    );
    assert!(!ctx.exists(&ctx.k().subscription(ghost.id)).await);
}

#[tokio::test]
async fn delete_removes_the_hash_and_every_index_entry() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let mut sub = subscription(PendingVerification, &["threat_model.created", "*"]);
    sub.threat_model_id = Some("tm-9".into());
    ctx.create(&sub).await;
    assert!(
        ctx.store
            .set_subscription_status(sub.id, PendingVerification, Active, now_micros(), true)
            .await
            .unwrap()
    );
    let keep = ctx.verified(&["threat_model.created"]).await;
    let id = sub.id.to_string();

    assert!(ctx.store.delete_subscription(sub.id).await.unwrap());

    assert!(!ctx.exists(&k.subscription(sub.id)).await);
    assert_eq!(ctx.store.get_subscription(sub.id).await.unwrap(), None);
    assert_eq!(ctx.zscore(&k.subscriptions_all(), &id).await, None);
    assert_eq!(
        ctx.zscore(&k.subscriptions_by_threat_model("tm-9"), &id)
            .await,
        None
    );
    for status in SubscriptionStatus::ALL {
        assert!(
            !in_status(&ctx, status).await.contains(&id),
            "status set {status}"
        );
    }
    assert!(
        !ctx.smembers(&k.subscriptions_by_owner("owner-1"))
            .await
            .contains(&id)
    );
    assert!(
        ctx.smembers(&k.subscriptions_by_event("*"))
            .await
            .is_empty()
    );
    assert_eq!(
        ctx.smembers(&k.subscriptions_by_event("threat_model.created"))
            .await,
        ids(&[&keep])
    );
    assert_eq!(match_ids(&ctx, "threat_model.created").await, ids(&[&keep]));
    assert_eq!(
        ctx.store
            .count_subscriptions_by_owner("owner-1")
            .await
            .unwrap(),
        1
    );

    // The other subscription is untouched, and a second delete finds nothing.
    assert!(ctx.store.get_subscription(keep.id).await.unwrap().is_some());
    assert!(!ctx.store.delete_subscription(sub.id).await.unwrap());
}

#[tokio::test]
async fn list_subscriptions_newest_first_with_total() {
    let ctx = Ctx::start().await;
    let mut subs = Vec::new();
    for i in 0..4_i64 {
        let mut s = subscription(PendingVerification, &["*"]);
        s.created_at = 1_700_000_000_000_000 + i * 1_000_000;
        s.threat_model_id = (i % 2 == 0).then(|| "tm-even".to_owned());
        ctx.create(&s).await;
        subs.push(s);
    }
    let page = ctx.store.list_subscriptions(None, 1, 2).await.unwrap();
    assert_eq!(page.total, 4);
    assert_eq!(
        page.items.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![subs[2].id, subs[1].id]
    );
    let page = ctx
        .store
        .list_subscriptions(Some("tm-even"), 0, 10)
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(
        page.items.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![subs[2].id, subs[0].id]
    );
}
