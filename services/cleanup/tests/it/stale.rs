//! Stale `in_progress` deliveries: found through the activity index, failed by compare-and-set.

use cleanup::cycle::Action;
use delivery_model::delivery::DeliveryStatus;
use delivery_model::keys::Shard;
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;

use delivery_model::store::callbacks::CallbackResult;

use crate::harness::{Ctx, DAY, SECOND, config, progress, subscription};

#[tokio::test]
async fn stale_deliveries_fail_and_count_against_their_subscription() {
    let ctx = Ctx::start().await;
    let sub = subscription(SubscriptionStatus::Active, DAY);
    ctx.create(&sub).await;
    let now = now_micros();
    // Seven stale ones (more than two chunks of three), one fresh one.
    let mut stale = Vec::new();
    for i in 0..7 {
        stale.push(
            ctx.in_progress(&ctx.store, sub.id, now - 16 * 60 * SECOND - i)
                .await,
        );
    }
    let fresh = ctx.in_progress(&ctx.store, sub.id, now - 60 * SECOND).await;

    let (cleaner, metrics) = ctx.cleaner(config());
    let report = ctx.cycle(&cleaner).await;
    assert_eq!(report.changed(Action::StaleFailed), 7);
    assert_eq!(metrics.items.with_label_values(&["stale_failed"]).get(), 7);

    let k = ctx.store.keys();
    for r in &stale {
        let d = ctx.store.get_delivery(r.id).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(
            d.last_error.as_deref(),
            Some("no status callback for 15 minutes")
        );
        assert!(d.last_activity_at >= now, "the failure is activity");
        let id = r.id.to_string();
        assert_eq!(
            ctx.zscore(&k.deliveries_activity(Shard::ZERO), &id).await,
            None,
            "left the activity index"
        );
        assert_eq!(
            ctx.zscore(
                &k.deliveries_by_status(Shard::ZERO, DeliveryStatus::InProgress),
                &id
            )
            .await,
            None
        );
        assert_eq!(
            ctx.zscore(
                &k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Failed),
                &id
            )
            .await,
            Some((r.created_at / 1000) as f64),
            "moved to the failed index, still scored by created_at"
        );
        assert!(ctx.ttl(&k.delivery(r.id)).await > 3600, "terminal TTL");
    }
    let d = ctx.store.get_delivery(fresh.id).await.unwrap().unwrap();
    assert_eq!(
        d.status,
        DeliveryStatus::InProgress,
        "a delivery active a minute ago stays"
    );
    assert_eq!(
        ctx.subscription(sub.id).await.unwrap().publication_failures,
        7,
        "one per stale delivery"
    );

    // Nothing is failed twice.
    let again = ctx.cycle(&cleaner).await;
    assert_eq!(again.changed(Action::StaleFailed), 0);
    assert_eq!(
        ctx.subscription(sub.id).await.unwrap().publication_failures,
        7
    );
}

#[tokio::test]
async fn a_callback_that_lands_first_wins_over_the_sweep() {
    let ctx = Ctx::start().await;
    let sub = subscription(SubscriptionStatus::Active, DAY);
    ctx.create(&sub).await;
    let old = now_micros() - 20 * 60 * SECOND;
    let touched = ctx.in_progress(&ctx.store, sub.id, old).await;
    let unindexed = ctx.in_progress(&ctx.store, sub.id, old).await;
    let completed = ctx.in_progress(&ctx.store, sub.id, old).await;
    let k = ctx.store.keys();

    // A progress callback: record and index refreshed together.
    assert!(matches!(
        progress(&ctx.store, &touched, now_micros()).await,
        CallbackResult::Updated { .. }
    ));
    // A writer that refreshed the record but not the index: the sweep must read the record, not trust the score.
    let recent = now_micros().to_string();
    ctx.hset(&k.delivery(unindexed.id), "last_activity_at", &recent)
        .await;
    // A completion callback moved the record out of in_progress but left its index entry behind.
    ctx.hset(&k.delivery(completed.id), "status", "delivered")
        .await;

    let sweep = ctx
        .store
        .fail_stale_deliveries(now_micros() - 15 * 60 * SECOND, now_micros(), 10, "stale")
        .await
        .unwrap();
    assert!(sweep.failed.is_empty(), "{sweep:?}");
    assert_eq!(
        (sweep.examined, sweep.refreshed, sweep.dropped),
        (2, 1, 1),
        "{sweep:?}"
    );
    for r in [&touched, &unindexed] {
        let d = ctx.store.get_delivery(r.id).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::InProgress);
    }
    assert_eq!(
        ctx.zscore(
            &k.deliveries_activity(Shard::ZERO),
            &unindexed.id.to_string()
        )
        .await,
        Some(recent.parse::<f64>().unwrap()),
        "re-scored at its true activity time"
    );
    assert_eq!(
        ctx.zscore(
            &k.deliveries_activity(Shard::ZERO),
            &completed.id.to_string()
        )
        .await,
        None
    );
    let d = ctx.store.get_delivery(completed.id).await.unwrap().unwrap();
    assert_eq!(
        d.status,
        DeliveryStatus::Delivered,
        "a terminal record is never failed"
    );
    assert_eq!(
        ctx.subscription(sub.id).await.unwrap().publication_failures,
        0
    );
    // A callback arriving after the failure finds a terminal record and changes nothing.
    let late = ctx.in_progress(&ctx.store, sub.id, old).await;
    let sweep = ctx
        .store
        .fail_stale_deliveries(now_micros() - 15 * 60 * SECOND, now_micros(), 10, "stale")
        .await
        .unwrap();
    assert_eq!(sweep.failed, vec![late.id]);
    assert_eq!(
        progress(&ctx.store, &late, now_micros()).await,
        CallbackResult::Terminal(DeliveryStatus::Failed)
    );
    assert_eq!(
        ctx.zscore(&k.deliveries_activity(Shard::ZERO), &late.id.to_string())
            .await,
        None
    );
}

#[tokio::test]
async fn expired_and_orphaned_deliveries_are_handled_without_inventing_records() {
    let ctx = Ctx::start().await;
    let gone = subscription(SubscriptionStatus::Active, DAY);
    ctx.create(&gone).await;
    let old = now_micros() - 20 * 60 * SECOND;
    let orphan = ctx.in_progress(&ctx.store, gone.id, old).await;
    let expired = ctx.in_progress(&ctx.store, gone.id, old).await;
    assert!(ctx.store.delete_subscription(gone.id).await.unwrap());
    let k = ctx.store.keys();
    let _: i64 = fred::interfaces::KeysInterface::del(&ctx.raw, k.delivery(expired.id))
        .await
        .unwrap();

    let sweep = ctx
        .store
        .fail_stale_deliveries(now_micros() - 15 * 60 * SECOND, now_micros(), 10, "stale")
        .await
        .unwrap();
    assert_eq!(
        sweep.failed,
        vec![orphan.id],
        "its subscription is gone, the delivery still fails"
    );
    assert_eq!(sweep.dropped, 1, "the expired one just leaves the index");
    assert!(
        !ctx.exists(&k.subscription(gone.id)).await,
        "no subscription hash was recreated"
    );
    assert!(
        !ctx.exists(&k.delivery(expired.id)).await,
        "no delivery hash was recreated"
    );
}
