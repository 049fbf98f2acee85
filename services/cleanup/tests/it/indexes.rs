//! Index hygiene: members of expired records leave every delivery index, live ones stay.

use delivery_model::keys::Shard;
use std::time::Duration;

use cleanup::cycle::Action;
use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::store::cleanup::IndexPosition;
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;

use crate::harness::{Ctx, DAY, SECOND, config, record, subscription};

#[tokio::test]
async fn expired_records_leave_every_index_and_live_ones_stay() {
    let ctx = Ctx::start().await;
    let k = ctx.store.keys().clone();
    let short = ctx.store_with_ttl(Duration::from_secs(1)).await;
    let kept = subscription(SubscriptionStatus::Active, DAY);
    let deleted = subscription(SubscriptionStatus::Active, DAY);
    ctx.create(&kept).await;
    ctx.create(&deleted).await;
    let addon = AddonId::new_v4();

    // Short-lived records in every kind of index: two subscriptions (one deleted later), a known and an
    // unknown event type, an addon, all four statuses, the activity index.
    let mut dead = Vec::new();
    for (sub, event, status) in [
        (kept.id, "threat_model.created", DeliveryStatus::Pending),
        (kept.id, "team.created", DeliveryStatus::Delivered),
        (deleted.id, "threat_model.created", DeliveryStatus::Failed),
        (deleted.id, "webhook.test", DeliveryStatus::Pending),
    ] {
        let mut r = record(sub, event);
        r.status = status;
        assert!(short.create_and_enqueue_delivery(&r).await.unwrap());
        dead.push(r.id);
    }
    let mut invoked = record(kept.id, "addon.invoked");
    invoked.addon_id = Some(addon);
    assert!(short.create_and_enqueue_delivery(&invoked).await.unwrap());
    dead.push(invoked.id);
    let stale = ctx
        .in_progress(&short, deleted.id, now_micros() - SECOND)
        .await;
    dead.push(stale.id);
    assert!(ctx.store.delete_subscription(deleted.id).await.unwrap());

    // Long-lived records sharing those indexes must survive.
    let mut live = Vec::new();
    for (sub, event) in [(kept.id, "threat_model.created"), (kept.id, "team.created")] {
        let r = record(sub, event);
        assert!(ctx.store.create_and_enqueue_delivery(&r).await.unwrap());
        live.push(r.id);
    }
    let mut live_invoked = record(kept.id, "addon.invoked");
    live_invoked.addon_id = Some(addon);
    assert!(
        ctx.store
            .create_and_enqueue_delivery(&live_invoked)
            .await
            .unwrap()
    );
    live.push(live_invoked.id);

    let indexes = [
        k.deliveries_all(Shard::ZERO),
        k.deliveries_by_subscription(Shard::ZERO, kept.id),
        k.deliveries_by_subscription(Shard::ZERO, deleted.id),
        k.deliveries_by_event(Shard::ZERO, "threat_model.created"),
        k.deliveries_by_event(Shard::ZERO, "team.created"),
        k.deliveries_by_event(Shard::ZERO, "webhook.test"),
        k.deliveries_by_event(Shard::ZERO, "addon.invoked"),
        k.deliveries_by_event(Shard::ZERO, "threat_model.updated"),
        k.deliveries_by_addon(Shard::ZERO, addon),
        k.deliveries_activity(Shard::ZERO),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Pending),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::InProgress),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Delivered),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Failed),
    ];
    ctx.wait_expired(&dead).await;
    let ghosts = |members: &std::collections::BTreeSet<String>| {
        dead.iter()
            .filter(|id| members.contains(&id.to_string()))
            .count()
    };
    let mut before = 0;
    for index in &indexes {
        before += ghosts(&ctx.zmembers(index).await);
    }
    // Six records in four indexes each (all, subscription, status, event), plus one addon and one activity entry.
    assert_eq!(before, 6 * 4 + 1 + 1);

    let (cleaner, metrics) = ctx.cleaner(config());
    let report = ctx.cycle(&cleaner).await;
    assert_eq!(
        report.changed(Action::IndexPruned),
        6 * 4 + 1 + 1,
        "{report:?}"
    );
    assert_eq!(metrics.items.with_label_values(&["index_pruned"]).get(), 26);
    for index in &indexes {
        let members = ctx.zmembers(index).await;
        assert_eq!(
            ghosts(&members),
            0,
            "{index} still lists expired deliveries: {members:?}"
        );
    }
    for index in [
        k.deliveries_by_subscription(Shard::ZERO, deleted.id),
        k.deliveries_by_event(Shard::ZERO, "webhook.test"),
        k.deliveries_activity(Shard::ZERO),
    ] {
        assert!(!ctx.exists(&index).await, "{index} emptied away");
    }
    let all = ctx.zmembers(&k.deliveries_all(Shard::ZERO)).await;
    assert!(
        live.iter().all(|id| all.contains(&id.to_string())),
        "live records stay listed"
    );
    assert!(
        ctx.zmembers(&k.deliveries_by_addon(Shard::ZERO, addon))
            .await
            .contains(&live_invoked.id.to_string())
    );
    let page = ctx.store.list_deliveries(None, 0, 100).await.unwrap();
    assert_eq!(page.total, 3, "the admin list's total counts no ghosts");
    // Emptied indexes left the registry; live ones are still in it.
    let registered = ctx.store.delivery_indexes().await.unwrap();
    assert!(!registered.contains(&k.deliveries_by_subscription(Shard::ZERO, deleted.id)));
    assert!(registered.contains(&k.deliveries_by_event(Shard::ZERO, "team.created")));

    // The next pass (due at once with no pass interval) finds nothing more.
    let report = ctx.cycle(&cleaner).await;
    assert_eq!(report.changed(Action::IndexPruned), 0);
}

#[tokio::test]
async fn a_walk_in_small_chunks_visits_members_sharing_a_score_exactly_once() {
    let ctx = Ctx::start().await;
    let k = ctx.store.keys().clone();
    let short = ctx.store_with_ttl(Duration::from_secs(1)).await;
    let sub = SubscriptionId::new_v4();
    let created = now_micros();
    // Thirteen records with the very same created_at (so the same score): live and dead interleaved.
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for i in 0..13 {
        let mut r = record(sub, "threat_model.updated");
        r.id = DeliveryId::new_v7();
        r.created_at = created;
        if i % 2 == 0 {
            assert!(ctx.store.create_and_enqueue_delivery(&r).await.unwrap());
            live.push(r.id);
        } else {
            assert!(short.create_and_enqueue_delivery(&r).await.unwrap());
            dead.push(r.id);
        }
    }
    let index = k.deliveries_by_subscription(Shard::ZERO, sub);
    ctx.wait_expired(&dead).await;

    let mut at = IndexPosition::default();
    let (mut examined, mut removed, mut chunks) = (0, 0, 0);
    loop {
        let chunk = ctx
            .store
            .prune_delivery_index(&index, &at, 2)
            .await
            .unwrap();
        examined += chunk.examined;
        removed += chunk.removed;
        chunks += 1;
        assert!(chunks < 20, "the walk must end");
        match chunk.next {
            Some(next) => at = next,
            None => break,
        }
    }
    assert_eq!(examined, 13, "every member visited exactly once");
    assert_eq!(removed, dead.len() as u64);
    let left = ctx.zmembers(&index).await;
    assert_eq!(left.len(), live.len());
    assert!(live.iter().all(|id| left.contains(&id.to_string())));
}
