//! Event fan-out: one input entry becomes one delivery per active subscription, enqueued and acknowledged in
//! the same script, and reprocessing the entry creates nothing twice.

use delivery_model::delivery::{DeliveryStatus, field};
use delivery_model::event::StreamEvent;
use delivery_model::ids::{DeliveryId, FanoutKey};
use delivery_model::keys::EVENTS_GROUP;
use delivery_model::keys::Shard;
use delivery_model::queue::QueueMessage;
use delivery_model::store::FanoutEntry;
use delivery_model::subscription::SubscriptionStatus::{
    Active, PendingDelete, PendingVerification,
};
use delivery_model::time::now_micros;
use delivery_model::trace::TraceContext;

use crate::harness::{ACTIVE_TTL, CONSUMER, Ctx, ms, subscription};

const TM: &str = "0f6c0000-0000-4000-8000-000000000001";

fn event() -> StreamEvent {
    StreamEvent {
        event_type: "threat_model.created".into(),
        threat_model_id: Some(TM.into()),
        object_id: Some(TM.into()),
        object_type: Some("threat_model".into()),
        owner_id: Some("owner-1".into()),
        timestamp: Some("2026-04-01T12:00:00Z".into()),
        payload: format!(
            r#"{{"threat_model_id":"{TM}","object_id":"{TM}","object_type":"threat_model","data":{{"name":"Payments", "x":1.50}}}}"#
        ),
        delivery_id: None,
        trace: None,
    }
}

/// Publishes an event and reads it as a consumer of the input group, so it is pending; returns its entry id.
async fn publish_and_read(ctx: &Ctx, event: &StreamEvent) -> String {
    ctx.store.ensure_events_group("0").await.unwrap();
    let entry_id = ctx.store.publish_event(event).await.unwrap();
    let reader = ctx.store.reader().await.unwrap();
    let got = reader
        .read_group(ctx.k().events_stream(), EVENTS_GROUP, CONSUMER, 10, 10)
        .await
        .unwrap();
    reader.quit().await;
    assert_eq!(
        got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec![entry_id.as_str()]
    );
    assert_eq!(ctx.pending(ctx.k().events_stream(), EVENTS_GROUP).await, 1);
    entry_id
}

#[tokio::test]
async fn fanout_creates_one_pending_record_per_active_subscription_enqueues_and_acks() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let a = ctx.verified(&["threat_model.created"]).await;
    let b = ctx.verified(&["*"]).await;
    // Matched earlier, but no longer active when the script runs: skipped.
    let unverified = subscription(PendingVerification, &["*"]);
    ctx.create(&unverified).await;
    let retired = ctx.verified(&["*"]).await;
    assert!(
        ctx.store
            .set_subscription_status(retired.id, Active, PendingDelete, now_micros(), false)
            .await
            .unwrap()
    );
    let ev = event();
    let envelope = ev.envelope().unwrap();
    let entry_id = publish_and_read(&ctx, &ev).await;
    let queue_before = ctx.queue().await.len(); // the unverified subscriptions' challenges
    let now = now_micros();

    let created = ctx
        .store
        .fanout(
            &entry_id,
            &ev.event_type,
            &envelope,
            &[a.id, b.id, unverified.id, retired.id],
            now,
        )
        .await
        .unwrap();

    assert_eq!(created, 2);
    assert_eq!(
        ctx.pending(k.events_stream(), EVENTS_GROUP).await,
        0,
        "the input entry is acknowledged"
    );
    for sub in [&a, &b] {
        let id = DeliveryId::for_fanout(&entry_id, sub.id);
        let r = ctx.store.get_delivery(id).await.unwrap().expect("record");
        assert_eq!(
            (r.subscription_id, r.status, r.attempts),
            (sub.id, DeliveryStatus::Pending, 0)
        );
        assert_eq!(
            (r.event_type.as_str(), r.created_at, r.last_activity_at),
            ("threat_model.created", now, now)
        );
        assert_eq!(
            r.payload, envelope,
            "the payload is the envelope, byte for byte"
        );
        assert_eq!(
            (r.next_retry_at, r.delivered_at, r.last_error),
            (None, None, None)
        );
        let ttl = ctx.ttl(&k.delivery(id)).await;
        assert!(ttl > 0 && ttl <= ACTIVE_TTL.as_secs() as i64, "ttl {ttl}");
        let member = id.to_string();
        for index in [
            k.deliveries_all(Shard::ZERO),
            k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Pending),
            k.deliveries_by_event(Shard::ZERO, "threat_model.created"),
            k.deliveries_by_subscription(Shard::ZERO, sub.id),
        ] {
            assert_eq!(ctx.zscore(&index, &member).await, Some(ms(now)), "{index}");
        }
    }
    for skipped in [&unverified, &retired] {
        let id = DeliveryId::for_fanout(&entry_id, skipped.id);
        assert!(!ctx.exists(&k.delivery(id)).await);
        assert_eq!(
            ctx.zscore(&k.deliveries_all(Shard::ZERO), &id.to_string())
                .await,
            None
        );
    }
    let queued: Vec<QueueMessage> = ctx
        .queue()
        .await
        .into_iter()
        .skip(queue_before)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        queued,
        vec![
            QueueMessage::DeliveryV1 {
                delivery_id: DeliveryId::for_fanout(&entry_id, a.id)
            },
            QueueMessage::DeliveryV1 {
                delivery_id: DeliveryId::for_fanout(&entry_id, b.id)
            },
        ]
    );
    assert_eq!(ctx.zall(&k.deliveries_all(Shard::ZERO)).await.len(), 2);
    ctx.assert_nothing_pending();
}

#[tokio::test]
async fn fanout_again_for_the_same_entry_creates_and_enqueues_nothing() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let sub = ctx.verified(&["threat_model.created"]).await;
    let ev = event();
    let envelope = ev.envelope().unwrap();
    let entry_id = publish_and_read(&ctx, &ev).await;
    let now = now_micros();
    assert_eq!(
        ctx.store
            .fanout(&entry_id, &ev.event_type, &envelope, &[sub.id], now)
            .await
            .unwrap(),
        1
    );
    let id = DeliveryId::for_fanout(&entry_id, sub.id);
    let record = ctx.hgetall(&k.delivery(id)).await;
    let queue = ctx.queue().await;

    // A crash after the script but before the consumer noticed: the entry is processed again, later.
    let again = ctx
        .store
        .fanout(
            &entry_id,
            &ev.event_type,
            &envelope,
            &[sub.id],
            now + 5_000_000,
        )
        .await
        .unwrap();

    assert_eq!(again, 0);
    assert_eq!(ctx.queue().await, queue, "no extra queue entries");
    assert_eq!(
        ctx.hgetall(&k.delivery(id)).await,
        record,
        "the record is untouched"
    );
    assert_eq!(ctx.zall(&k.deliveries_all(Shard::ZERO)).await.len(), 1);
    assert_eq!(ctx.pending(k.events_stream(), EVENTS_GROUP).await, 0);
}

#[tokio::test]
async fn fanout_with_no_active_subscription_still_acks_the_entry() {
    let ctx = Ctx::start().await;
    let unverified = subscription(PendingVerification, &["*"]);
    ctx.create(&unverified).await;
    let ev = event();
    let entry_id = publish_and_read(&ctx, &ev).await;

    let created = ctx
        .store
        .fanout(
            &entry_id,
            &ev.event_type,
            "{}",
            &[unverified.id],
            now_micros(),
        )
        .await
        .unwrap();

    assert_eq!(created, 0);
    assert_eq!(ctx.pending(ctx.k().events_stream(), EVENTS_GROUP).await, 0);
    assert!(
        ctx.zall(&ctx.k().deliveries_all(Shard::ZERO))
            .await
            .is_empty()
    );
    assert_eq!(
        ctx.hget(
            &ctx.k()
                .delivery(DeliveryId::for_fanout(&entry_id, unverified.id)),
            field::STATUS
        )
        .await,
        None
    );
}

/// With `consumer.fanout_id_key` set, fan-out ids are keyed (issue #16): not the public derivation anyone
/// could compute from the entry and subscription ids, and the same again when the entry is replayed.
#[tokio::test]
async fn keyed_fanout_ids_cannot_be_computed_from_public_inputs() {
    let key = FanoutKey::new("deployment-secret-for-fanout-ids-0123456789");
    let ctx = Ctx::start_with(|o| o.fanout_id_key = Some(key.clone())).await;
    let sub = ctx.verified(&["*"]).await;
    let ev = event();
    let envelope = ev.envelope().unwrap();
    let entry_id = publish_and_read(&ctx, &ev).await;
    let now = now_micros();
    let subs = [sub.id];
    let fan = || {
        ctx.store
            .fanout(&entry_id, &ev.event_type, &envelope, &subs, now)
    };
    assert_eq!(fan().await.unwrap(), 1);
    let public = DeliveryId::for_fanout(&entry_id, sub.id);
    assert!(
        ctx.store.get_delivery(public).await.unwrap().is_none(),
        "the predictable id is not used"
    );
    let keyed = DeliveryId::for_fanout_keyed(Some(&key), &entry_id, sub.id);
    assert_eq!(ctx.stored_delivery(keyed).await.subscription_id, sub.id);
    // A replay of the entry (a crash before the ack) finds the same id and creates nothing.
    assert_eq!(fan().await.unwrap(), 0);
}

#[tokio::test]
async fn fanout_stores_each_entrys_trace_context_in_its_records_only() {
    let ctx = Ctx::start().await;
    let sub = ctx.verified(&["*"]).await;
    let ev = event();
    let envelope = ev.envelope().unwrap();
    let traced_entry = publish_and_read(&ctx, &ev).await;
    let trace = TraceContext::parse(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        Some("vendor=x"),
    );
    let plain_entry = ctx.store.publish_event(&ev).await.unwrap();
    let reader = ctx.store.reader().await.unwrap();
    reader
        .read_group(ctx.k().events_stream(), EVENTS_GROUP, CONSUMER, 10, 10)
        .await
        .unwrap();
    reader.quit().await;
    let subs = [sub.id];
    let entry = |entry_id, trace| FanoutEntry {
        entry_id,
        event_type: &ev.event_type,
        envelope: &envelope,
        subscriptions: &subs,
        lanes: &[],
        trace,
    };
    let batch = [
        entry(traced_entry.as_str(), trace.as_ref()),
        entry(plain_entry.as_str(), None),
    ];
    assert_eq!(
        ctx.store.fanout_batch(&batch, now_micros()).await.unwrap(),
        2
    );
    let traced = DeliveryId::for_fanout(&traced_entry, sub.id);
    let plain = DeliveryId::for_fanout(&plain_entry, sub.id);
    for (id, expected) in [(traced, trace.clone()), (plain, None)] {
        let record = ctx.store.get_delivery(id).await.unwrap().expect("record");
        assert_eq!(record.trace, expected);
    }
    let raw = ctx.hgetall(&ctx.k().delivery(plain)).await;
    assert!(
        !raw.contains_key(field::TRACEPARENT) && !raw.contains_key(field::TRACESTATE),
        "no empty trace fields on a record without a context: {raw:?}"
    );
}

/// Issue #21: a fan-out matched at an older match generation writes nothing and acknowledges nothing (the
/// consumer then matches the entry again); matched at the current one, or unchecked, it goes through.
#[tokio::test]
async fn fanout_matched_at_an_old_generation_writes_nothing() {
    let ctx = Ctx::start().await;
    let sub = ctx.verified(&["threat_model.created"]).await;
    let seen = ctx.store.match_generation().await.unwrap();
    // Another subscription changes the match sets after the consumer read its candidates.
    ctx.verified(&["threat_model.created"]).await;
    let current = ctx.store.match_generation().await.unwrap();
    assert!(
        current > seen,
        "creating a subscription moves the generation"
    );
    let ev = event();
    let envelope = ev.envelope().unwrap();
    let entry_id = publish_and_read(&ctx, &ev).await;
    let subs = [sub.id];
    let batch = [FanoutEntry {
        entry_id: &entry_id,
        event_type: &ev.event_type,
        envelope: &envelope,
        subscriptions: &subs,
        lanes: &[],
        trace: None,
    }];
    let queue = ctx.queue().await;

    let err = ctx
        .store
        .fanout_batch_matched(&batch, now_micros(), Some(seen))
        .await
        .unwrap_err();
    assert!(matches!(err, delivery_model::Error::StaleMatch), "{err}");
    assert!(ctx.store.fanout_checks_match_generation());
    assert_eq!(ctx.queue().await, queue, "nothing queued");
    assert!(
        ctx.zall(&ctx.k().deliveries_all(Shard::ZERO))
            .await
            .is_empty(),
        "no record"
    );
    assert_eq!(
        ctx.pending(ctx.k().events_stream(), EVENTS_GROUP).await,
        1,
        "the entry stays pending"
    );

    assert_eq!(
        ctx.store
            .fanout_batch_matched(&batch, now_micros(), Some(current))
            .await
            .unwrap()
            .created,
        1
    );
    assert_eq!(ctx.pending(ctx.k().events_stream(), EVENTS_GROUP).await, 0);
}
