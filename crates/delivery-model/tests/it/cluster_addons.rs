//! Add-on invocations and deletes on a real Redis Cluster (docs/cluster.md §4.4, §4.6): the reservation on
//! the control slot keeps every limit, the record is created with its queue entry in its shard (routed, so
//! the consumer only acknowledges the `addon.invoked` entry), and a delete is refused while a delivery of
//! the add-on is active in any shard.

use std::time::Duration;

use delivery_model::addon::Addon;
use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::event::StreamEvent;
use delivery_model::ids::{AddonId, DeliveryId};
use delivery_model::store::Store;
use delivery_model::store::addons::{
    CreateAddon, DeleteAddon, Invocation, InvocationLimits, InvokeOutcome,
};
use delivery_model::store::callbacks::CallbackUpdate;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use test_support::cluster::Cluster;

const INVOKER: &str = "alice";

fn limits() -> InvocationLimits {
    InvocationLimits {
        max_active: 1,
        max_per_hour: 10,
        dedup_window: Duration::from_secs(5),
    }
}

/// Invokes `addon` for [`INVOKER`]; returns the outcome and the record it would create.
async fn invoke(store: &Store, addon: &Addon) -> (InvokeOutcome, DeliveryRecord) {
    let mut record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        addon.webhook_id,
        "addon.invoked",
        "{}",
        now_micros(),
    );
    record.addon_id = Some(addon.id);
    let event = StreamEvent {
        event_type: "addon.invoked".into(),
        threat_model_id: None,
        object_id: None,
        object_type: None,
        owner_id: None,
        timestamp: None,
        payload: "{}".into(),
        delivery_id: Some(record.id),
        trace: None,
    };
    let inv = Invocation {
        addon: addon.id,
        invoker: INVOKER,
        record: &record,
        event: &event,
    };
    let outcome = store
        .invoke_addon(&inv, &limits(), now_micros())
        .await
        .unwrap();
    (outcome, record)
}

#[tokio::test]
async fn invocations_keep_their_limits_and_deletes_wait_for_active_deliveries() {
    let cluster = Cluster::start(3, 0);
    let (store, raw) = crate::cluster_delivery::connect(&cluster).await;
    let k = store.keys().clone();
    let sub = Subscription::new(
        "owner-1",
        "it",
        "https://receiver.example.com/hook",
        vec!["addon.invoked".into()],
        SubscriptionStatus::Active,
        now_micros(),
    );
    assert!(store.create_subscription(&sub).await.unwrap());
    let addon = Addon {
        id: AddonId::new_v4(),
        created_at: now_micros(),
        name: "scan".into(),
        webhook_id: sub.id,
        description: None,
        icon: None,
        objects: Vec::new(),
        threat_model_id: None,
        parameters: Vec::new(),
    };
    assert_eq!(
        store.create_addon(&addon).await.unwrap(),
        CreateAddon::Created
    );

    // Created: the record, routed, with one queue entry in its shard, and the entry for TMI's readers.
    let (outcome, first) = invoke(&store, &addon).await;
    assert_eq!(outcome, InvokeOutcome::Created);
    let shard = k.shard_of(first.id);
    let routed: Option<String> = raw.hget(k.delivery(first.id), "routed").await.unwrap();
    assert_eq!(routed.as_deref(), Some("1"));
    let queued: u64 = raw.xlen(k.queue_stream(shard)).await.unwrap();
    assert_eq!(queued, 1);
    let entries: u64 = raw.xlen(k.events_stream()).await.unwrap();
    assert_eq!(entries, 1);

    // The active limit of one: refused, naming the active delivery (read from its shard).
    let (outcome, _) = invoke(&store, &addon).await;
    match outcome {
        InvokeOutcome::ActiveLimit { active } => {
            assert_eq!(active.len(), 1);
            assert_eq!(active[0].delivery_id, first.id);
        }
        other => panic!("not refused by the active limit: {other:?}"),
    }
    // A delete waits for it too, and leaves no mark behind.
    assert_eq!(
        store.delete_addon(addon.id).await.unwrap(),
        DeleteAddon::Active
    );
    let mark: Option<String> = raw.hget(k.addon(addon.id), "deleting_until").await.unwrap();
    assert_eq!(mark, None);

    // Once it is delivered, the next invocation passes the active limit (the set is pruned) but is a
    // duplicate within the window: refused without consuming the hour.
    let delivered = CallbackUpdate {
        status: DeliveryStatus::Delivered,
        percent: None,
        message: None,
    };
    store
        .apply_callback(first.id, sub.id, &delivered, now_micros())
        .await
        .unwrap();
    let (outcome, _) = invoke(&store, &addon).await;
    assert_eq!(outcome, InvokeOutcome::Duplicate);
    let hourly: u64 = raw.zcard(k.addon_hourly(INVOKER)).await.unwrap();
    assert_eq!(hourly, 1);

    // Nothing active any more: the delete goes through, and later invocations find no add-on.
    assert_eq!(
        store.delete_addon(addon.id).await.unwrap(),
        DeleteAddon::Deleted
    );
    assert_eq!(
        store.delete_addon(addon.id).await.unwrap(),
        DeleteAddon::NotFound
    );
    let (outcome, _) = invoke(&store, &addon).await;
    assert_eq!(outcome, InvokeOutcome::AddonGone);
    raw.quit().await.unwrap();
    store.quit().await;
}
