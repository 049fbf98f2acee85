//! Test deliveries (`create_and_enqueue_delivery`) and reading records back (`get_delivery`,
//! `list_deliveries`).

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus, Invoker};
use delivery_model::event::{StreamEvent, field as event_field};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::keys::Shard;
use delivery_model::queue::QueueMessage;
use delivery_model::time::{Micros, now_micros};

use crate::harness::{ACTIVE_TTL, Ctx, TERMINAL_TTL, ms};

fn record(sub: SubscriptionId, created_at: Micros) -> DeliveryRecord {
    DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        sub,
        "webhook.test",
        r#"{"event_type":"webhook.test"}"#,
        created_at,
    )
}

#[tokio::test]
async fn create_and_enqueue_writes_record_indexes_and_one_queue_message() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let mut rec = record(SubscriptionId::new_v4(), now_micros());
    rec.event_type = "addon.invoked".into();
    rec.addon_id = Some(AddonId::new_v4());
    rec.invoked_by = Some(Invoker {
        uuid: "u-1".into(),
        email: "a@example.com".into(),
        name: "A".into(),
        ..Default::default()
    });

    assert!(ctx.store.create_and_enqueue_delivery(&rec).await.unwrap());

    assert_eq!(
        ctx.store.get_delivery(rec.id).await.unwrap(),
        Some(rec.clone())
    );
    let ttl = ctx.ttl(&k.delivery(rec.id)).await;
    assert!(ttl > 0 && ttl <= ACTIVE_TTL.as_secs() as i64, "ttl {ttl}");
    let member = rec.id.to_string();
    for index in [
        k.deliveries_all(Shard::ZERO),
        k.deliveries_by_subscription(Shard::ZERO, rec.subscription_id),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Pending),
        k.deliveries_by_event(Shard::ZERO, "addon.invoked"),
        k.deliveries_by_addon(Shard::ZERO, rec.addon_id.unwrap()),
    ] {
        assert_eq!(
            ctx.zscore(&index, &member).await,
            Some(ms(rec.created_at)),
            "{index}"
        );
    }
    let queued: Vec<QueueMessage> = ctx.queue().await.into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        queued,
        vec![QueueMessage::DeliveryV1 {
            delivery_id: rec.id
        }]
    );

    // The same id again: refused, nothing overwritten or enqueued.
    let mut again = rec.clone();
    again.payload = "{}".into();
    assert!(!ctx.store.create_and_enqueue_delivery(&again).await.unwrap());
    assert_eq!(
        ctx.store
            .get_delivery(rec.id)
            .await
            .unwrap()
            .map(|r| r.payload),
        Some(rec.payload)
    );
    assert_eq!(ctx.queue().await.len(), 1);
}

#[tokio::test]
async fn a_record_created_terminal_gets_the_terminal_ttl() {
    let ctx = Ctx::start().await;
    let mut rec = record(SubscriptionId::new_v4(), now_micros());
    rec.status = DeliveryStatus::Failed;
    assert!(ctx.store.create_and_enqueue_delivery(&rec).await.unwrap());
    let ttl = ctx.ttl(&ctx.k().delivery(rec.id)).await;
    assert!(
        ttl > ACTIVE_TTL.as_secs() as i64 && ttl <= TERMINAL_TTL.as_secs() as i64,
        "ttl {ttl}"
    );
    assert!(
        ctx.zscore(
            &ctx.k()
                .deliveries_by_status(Shard::ZERO, DeliveryStatus::Failed),
            &rec.id.to_string()
        )
        .await
        .is_some()
    );
}

#[tokio::test]
async fn list_deliveries_is_oldest_first_with_total_offset_and_limit() {
    let ctx = Ctx::start().await;
    let (a, b) = (SubscriptionId::new_v4(), SubscriptionId::new_v4());
    let base = 1_775_044_800_000_000;
    // Created out of order, one second apart; sub b's records interleave with a's.
    let mut of_a = Vec::new();
    for i in [3_i64, 0, 4, 1, 2] {
        let r = record(a, base + i * 2_000_000);
        assert!(ctx.store.create_and_enqueue_delivery(&r).await.unwrap());
        of_a.push(r);
    }
    let mut of_b = Vec::new();
    for i in [1_i64, 0] {
        let r = record(b, base + i * 2_000_000 + 1_000_000);
        assert!(ctx.store.create_and_enqueue_delivery(&r).await.unwrap());
        of_b.push(r);
    }
    of_a.sort_by_key(|r| r.created_at);
    let mut all: Vec<&DeliveryRecord> = of_a.iter().chain(&of_b).collect();
    all.sort_by_key(|r| r.created_at);
    let ids = |items: &[DeliveryRecord]| items.iter().map(|r| r.id).collect::<Vec<_>>();

    let page = ctx.store.list_deliveries(None, 0, 100).await.unwrap();
    assert_eq!(page.total, 7);
    assert_eq!(
        ids(&page.items),
        all.iter().map(|r| r.id).collect::<Vec<_>>()
    );
    assert_eq!(page.items[0], *all[0], "full records");

    let page = ctx.store.list_deliveries(Some(a), 1, 2).await.unwrap();
    assert_eq!(
        (page.total, ids(&page.items)),
        (5, vec![of_a[1].id, of_a[2].id])
    );
    let page = ctx.store.list_deliveries(Some(a), 4, 10).await.unwrap();
    assert_eq!((page.total, ids(&page.items)), (5, vec![of_a[4].id]));
    let page = ctx.store.list_deliveries(Some(a), 10, 10).await.unwrap();
    assert_eq!((page.total, page.items.len()), (5, 0));
    let page = ctx.store.list_deliveries(Some(b), 0, 0).await.unwrap();
    assert_eq!((page.total, page.items.len()), (2, 0));
    let page = ctx
        .store
        .list_deliveries(Some(SubscriptionId::new_v4()), 0, 10)
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (0, 0));
}

#[tokio::test]
async fn list_skips_records_that_expired_but_counts_their_index_entries() {
    let ctx = Ctx::start().await;
    let sub = SubscriptionId::new_v4();
    let (old, new) = (record(sub, 1_000_000), record(sub, 2_000_000));
    for r in [&old, &new] {
        assert!(ctx.store.create_and_enqueue_delivery(r).await.unwrap());
    }
    // TTL ran out; cleanup has not pruned the index yet.
    ctx.del(&ctx.k().delivery(old.id)).await;

    let page = ctx.store.list_deliveries(Some(sub), 0, 10).await.unwrap();
    assert_eq!(page.items, vec![new]);
    assert_eq!(page.total, 2);
    assert_eq!(ctx.store.get_delivery(old.id).await.unwrap(), None);
}

#[tokio::test]
async fn create_delivery_and_emit_appends_the_event_naming_the_record() {
    let ctx = Ctx::start().await;
    let mut rec = record(SubscriptionId::new_v4(), now_micros());
    rec.event_type = "addon.invoked".into();
    rec.addon_id = Some(AddonId::new_v4());
    let event = StreamEvent {
        event_type: "addon.invoked".into(),
        threat_model_id: Some("tm-1".into()),
        object_id: None,
        object_type: None,
        owner_id: Some("owner-1".into()),
        timestamp: None,
        payload: r#"{"data":{}}"#.into(),
        delivery_id: Some(rec.id),
        trace: None,
    };

    assert!(
        ctx.store
            .create_delivery_and_emit(&rec, &event)
            .await
            .unwrap()
    );

    assert_eq!(
        ctx.store.get_delivery(rec.id).await.unwrap(),
        Some(rec.clone())
    );
    let entries = ctx.entries(ctx.k().events_stream()).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(StreamEvent::decode(&entries[0].1).unwrap(), event);
    assert_eq!(entries[0].1[event_field::DELIVERY_ID], rec.id.to_string());
    assert!(
        ctx.queue().await.is_empty(),
        "the event-consumer routes it, not this call"
    );
    // Once only.
    assert!(
        !ctx.store
            .create_delivery_and_emit(&rec, &event)
            .await
            .unwrap()
    );
    assert_eq!(ctx.entries(ctx.k().events_stream()).await.len(), 1);
}
