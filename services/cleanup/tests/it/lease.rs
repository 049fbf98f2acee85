//! The lease: one cycle at a time, released by its holder only, expiring when the holder dies.

use std::time::Duration;

use cleanup::cycle::{Budget, Cleaner, CycleOutcome};
use cleanup::error::Error;
use cleanup::lease::Lease;
use cleanup::state::WalkState;
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;
use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::harness::{Ctx, DAY, SECOND, config, subscription};

#[tokio::test]
async fn a_held_lease_makes_other_cycles_skip_and_only_its_holder_releases_it() {
    let ctx = Ctx::start().await;
    let lease = ctx.store.keys().cleanup_lease();
    let ttl = Duration::from_secs(10);
    assert!(ctx.store.acquire_cleanup_lease("a", ttl).await.unwrap());
    assert!(
        !ctx.store.acquire_cleanup_lease("b", ttl).await.unwrap(),
        "one holder at a time"
    );

    let (cleaner, metrics) = ctx.cleaner(config());
    let outcome = cleaner
        .cycle(&CancellationToken::new(), Budget::Unlimited)
        .await
        .unwrap();
    assert_eq!(outcome, CycleOutcome::LeaseBusy);
    assert_eq!(metrics.cycles.with_label_values(&["lease_busy"]).get(), 1);

    assert!(
        !ctx.store.release_cleanup_lease("b").await.unwrap(),
        "not b's to release"
    );
    assert!(
        !ctx.store.commit_cleanup_lease("b", ttl, &[]).await.unwrap(),
        "nor to renew"
    );
    assert!(
        ctx.store
            .commit_cleanup_lease("a", ttl, &WalkState::default().to_fields())
            .await
            .unwrap()
    );
    assert!(ctx.store.release_cleanup_lease("a").await.unwrap());
    assert!(!ctx.exists(&lease).await);

    assert!(matches!(
        cleaner
            .cycle(&CancellationToken::new(), Budget::Unlimited)
            .await
            .unwrap(),
        CycleOutcome::Completed(_)
    ));
    assert!(!ctx.exists(&lease).await, "released after the cycle");
    assert_eq!(metrics.lease_held.get(), 0);
    assert!(metrics.last_success.get() > 0);
}

#[tokio::test]
async fn a_crashed_holders_lease_expires() {
    let ctx = Ctx::start().await;
    assert!(
        ctx.store
            .acquire_cleanup_lease("crashed", Duration::from_millis(300))
            .await
            .unwrap()
    );
    let (cleaner, _) = ctx.cleaner(config());
    assert_eq!(
        cleaner
            .cycle(&CancellationToken::new(), Budget::Unlimited)
            .await
            .unwrap(),
        CycleOutcome::LeaseBusy
    );
    test_support::wait::until(
        "the dead holder's lease expires",
        Duration::from_secs(5),
        || async {
            match cleaner
                .cycle(&CancellationToken::new(), Budget::Unlimited)
                .await
                .unwrap()
            {
                CycleOutcome::Completed(_) => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_lost_lease_can_neither_be_renewed_nor_move_the_walks() {
    let ctx = Ctx::start().await;
    let metrics = cleanup::metrics::Metrics::register(&prometheus::Registry::new()).unwrap();
    let lease = Lease::acquire(&ctx.store, "r1", Duration::from_secs(10), &metrics)
        .await
        .unwrap()
        .expect("the lease is free");
    assert_eq!(metrics.lease_held.get(), 1);
    let mut state = WalkState {
        active_cursor: "7".into(),
        ..WalkState::default()
    };
    lease.commit(&state).await.unwrap();
    assert_eq!(
        WalkState::from_fields(&ctx.store.cleanup_state().await.unwrap()),
        state
    );

    // It expired during a stall and another replica took it.
    let key = ctx.store.keys().cleanup_lease();
    let _: () = ctx
        .raw
        .set(&key, "r2:other", None, None, false)
        .await
        .unwrap();
    state.active_cursor = "9".into();
    assert!(matches!(lease.commit(&state).await, Err(Error::LeaseLost)));
    assert_eq!(metrics.lease_held.get(), 0);
    assert_eq!(
        WalkState::from_fields(&ctx.store.cleanup_state().await.unwrap()).active_cursor,
        "7",
        "a replica without the lease cannot move the walks"
    );
    lease.release().await;
    let holder: Option<String> = ctx.raw.get(&key).await.unwrap();
    assert_eq!(
        holder.as_deref(),
        Some("r2:other"),
        "and cannot release the new holder's lease"
    );
}

#[tokio::test]
async fn shutdown_stops_a_cycle_between_chunks_and_releases_the_lease() {
    let ctx = Ctx::start().await;
    let (cleaner, metrics) = ctx.cleaner(config());
    let token = CancellationToken::new();
    token.cancel();
    let outcome = cleaner.cycle(&token, Budget::Unlimited).await.unwrap();
    assert!(
        matches!(outcome, CycleOutcome::Interrupted(_)),
        "{outcome:?}"
    );
    assert!(!ctx.exists(&ctx.store.keys().cleanup_lease()).await);
    assert_eq!(metrics.cycles.with_label_values(&["interrupted"]).get(), 1);
}

#[tokio::test]
async fn two_cleaners_racing_fail_each_stale_delivery_once() {
    let ctx = Ctx::start().await;
    let mut sub = subscription(SubscriptionStatus::Active, DAY);
    // A recent success keeps it from counting as broken once its failures pass ten.
    sub.last_successful_use = Some(now_micros());
    ctx.create(&sub).await;
    const N: u64 = 25;
    for _ in 0..N {
        ctx.in_progress(&ctx.store, sub.id, now_micros() - 20 * 60 * SECOND)
            .await;
    }
    let (a, ma) = ctx.cleaner(config());
    let (b, mb) = ctx.cleaner(config());
    // Both run cycles of one chunk per step: whichever holds the lease works, the other skips.
    tokio::join!(cycles(&a, 100), cycles(&b, 100));
    let failed = ma.items.with_label_values(&["stale_failed"]).get()
        + mb.items.with_label_values(&["stale_failed"]).get();
    assert_eq!(failed, N);
    assert_eq!(
        ctx.subscription(sub.id).await.unwrap().publication_failures,
        N as u32
    );
    assert!(
        ma.cycles.with_label_values(&["lease_busy"]).get()
            + mb.cycles.with_label_values(&["lease_busy"]).get()
            > 0,
        "the two really overlapped"
    );
}

async fn cycles(c: &Cleaner, n: usize) {
    for _ in 0..n {
        c.cycle(&CancellationToken::new(), Budget::PerStep(1))
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
}
