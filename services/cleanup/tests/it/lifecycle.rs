//! Subscription lifecycle: idle and broken subscriptions go to pending_delete, then away.

use std::time::Duration;

use cleanup::cycle::Action;
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;
use test_support::wait;

use crate::harness::{Ctx, DAY, config, subscription};

#[tokio::test]
async fn idle_and_broken_subscriptions_are_deleted_and_the_rest_kept() {
    let ctx = Ctx::start().await;
    let idle = subscription(SubscriptionStatus::Active, 91 * DAY);
    let mut idle_since_success = subscription(SubscriptionStatus::Active, 400 * DAY);
    idle_since_success.last_successful_use = Some(now_micros() - 91 * DAY);
    let mut broken = subscription(SubscriptionStatus::Active, 30 * DAY);
    broken.publication_failures = 10;
    broken.last_successful_use = Some(now_micros() - 8 * DAY);
    let healthy = subscription(SubscriptionStatus::Active, 400 * DAY);
    let mut failing_but_recent = subscription(SubscriptionStatus::Active, 30 * DAY);
    failing_but_recent.publication_failures = 50;
    failing_but_recent.last_successful_use = Some(now_micros() - 6 * DAY);
    let mut pinned = subscription(SubscriptionStatus::Active, 400 * DAY);
    pinned.operator_pinned = true;
    let unverified = subscription(SubscriptionStatus::PendingVerification, 400 * DAY);
    let mut healthy = healthy;
    healthy.last_successful_use = Some(now_micros() - DAY);
    for s in [
        &idle,
        &idle_since_success,
        &broken,
        &healthy,
        &failing_but_recent,
        &pinned,
        &unverified,
    ] {
        ctx.create(s).await;
    }

    let (cleaner, metrics) = ctx.cleaner(config());
    let report = ctx.cycle(&cleaner).await;
    assert_eq!(report.changed(Action::IdlePendingDelete), 2);
    assert_eq!(report.changed(Action::BrokenPendingDelete), 1);
    assert_eq!(
        report.changed(Action::SubscriptionDeleted),
        3,
        "no grace: deleted in the same cycle, as TMI does"
    );
    assert_eq!(
        metrics
            .items
            .with_label_values(&["subscription_deleted"])
            .get(),
        3
    );
    for s in [&idle, &idle_since_success, &broken] {
        assert!(ctx.subscription(s.id).await.is_none(), "{} deleted", s.id);
        let k = ctx.store.keys();
        assert!(
            !ctx.store
                .subscription_ids_by_status(SubscriptionStatus::PendingDelete)
                .await
                .unwrap()
                .contains(&s.id)
        );
        let matched: std::collections::BTreeSet<String> =
            ctx.zmembers(&k.subscriptions_all()).await;
        assert!(
            !matched.contains(&s.id.to_string()),
            "left the subscription list"
        );
    }
    for (s, status) in [
        (&healthy, SubscriptionStatus::Active),
        (&failing_but_recent, SubscriptionStatus::Active),
        (&pinned, SubscriptionStatus::Active),
        (&unverified, SubscriptionStatus::PendingVerification),
    ] {
        assert_eq!(
            ctx.subscription(s.id).await.map(|s| s.status),
            Some(status),
            "{} kept",
            s.id
        );
    }
    // Matching no longer finds the deleted ones.
    let candidates = ctx
        .store
        .match_candidates("threat_model.updated")
        .await
        .unwrap();
    let ids: Vec<_> = candidates.iter().map(|s| s.id).collect();
    assert!(ids.contains(&healthy.id) && !ids.contains(&idle.id) && !ids.contains(&broken.id));
}

#[tokio::test]
async fn a_grace_period_keeps_pending_delete_visible_first_and_spares_pinned_ones() {
    let ctx = Ctx::start().await;
    let idle = subscription(SubscriptionStatus::Active, 91 * DAY);
    ctx.create(&idle).await;
    let mut pinned = subscription(SubscriptionStatus::PendingDelete, 91 * DAY);
    pinned.operator_pinned = true;
    ctx.create(&pinned).await;
    let mut cfg = config();
    cfg.lifecycle.delete_grace = Duration::from_secs(1);
    let (cleaner, _) = ctx.cleaner(cfg);

    let report = ctx.cycle(&cleaner).await;
    assert_eq!(report.changed(Action::IdlePendingDelete), 1);
    assert_eq!(report.changed(Action::SubscriptionDeleted), 0);
    let s = ctx.subscription(idle.id).await.unwrap();
    assert_eq!(s.status, SubscriptionStatus::PendingDelete);
    assert!(
        s.modified_at > idle.modified_at,
        "the status change is dated"
    );
    assert!(
        ctx.store
            .match_candidates("threat_model.updated")
            .await
            .unwrap()
            .is_empty(),
        "out of the match index"
    );

    wait::until(
        "the idle subscription is deleted after the grace period",
        Duration::from_secs(10),
        || async {
            ctx.cycle(&cleaner).await;
            ctx.subscription(idle.id).await.is_none().then_some(())
        },
    )
    .await;
    assert!(
        ctx.subscription(pinned.id).await.is_some(),
        "pinned subscriptions are never deleted"
    );
}

#[tokio::test]
async fn subscription_walks_start_at_most_once_per_interval() {
    let ctx = Ctx::start().await;
    let mut cfg = config();
    cfg.interval = Duration::from_secs(3600);
    let (cleaner, _) = ctx.cleaner(cfg);
    ctx.cycle(&cleaner).await;

    // Catch-up cycles right after a walk leave the subscriptions alone …
    let idle = subscription(SubscriptionStatus::Active, 91 * DAY);
    ctx.create(&idle).await;
    let report = ctx.cycle(&cleaner).await;
    assert_eq!(report.changed(Action::IdlePendingDelete), 0);
    assert_eq!(
        ctx.subscription(idle.id).await.unwrap().status,
        SubscriptionStatus::Active
    );
    // … until the next walk is due.
    let state = ctx.store.keys().cleanup_state();
    ctx.hset(&state, "lifecycle.active_next_walk_ms", "0").await;
    let report = ctx.cycle(&cleaner).await;
    assert_eq!(report.changed(Action::IdlePendingDelete), 1);
}
