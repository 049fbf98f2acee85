//! A consumer group's backlog ([`Store::queue_backlog`]), the source of the lag gauges: unread entries,
//! pending ones, and the append time of the oldest entry not acknowledged, as entries are read and
//! acknowledged.

use delivery_model::ids::DeliveryId;
use delivery_model::keys::{EVENTS_GROUP, Shard};
use delivery_model::queue::QueueMessage;
use delivery_model::store::GroupBacklog;
use delivery_model::store::entry_time_ms;

use crate::harness::{CONSUMER, Ctx, event};

#[tokio::test]
async fn backlog_follows_reads_and_acknowledgements() {
    let ctx = Ctx::start().await;
    assert_eq!(
        ctx.store.queue_backlog().await.unwrap(),
        GroupBacklog::default(),
        "no queue stream yet"
    );

    for i in 0..3 {
        let msg = QueueMessage::DeliveryV1 {
            delivery_id: DeliveryId::new_v7(),
        };
        ctx.store.schedule(&msg, 100 + i).await.unwrap();
    }
    assert_eq!(ctx.store.promote_due(1_000, 10).await.unwrap(), 3);
    ctx.store.ensure_queue_group().await.unwrap();
    let queue = ctx.k().queue_stream(Shard::ZERO);
    let ids = ctx.entry_ids(&queue).await;
    let first_ms = entry_time_ms(&ids[0]).map(|t| t as u64);
    let b = ctx.store.queue_backlog().await.unwrap();
    assert_eq!(
        (b.unread, b.pending, b.oldest_ms),
        (3, 0, first_ms),
        "none read yet"
    );

    let read = ctx.read_queue().await;
    assert_eq!(read.len(), 3);
    let b = ctx.store.queue_backlog().await.unwrap();
    assert_eq!(
        (b.unread, b.pending, b.oldest_ms),
        (0, 3, first_ms),
        "all read"
    );

    ctx.store.ack_queue(&queue, &ids[..1]).await.unwrap();
    let b = ctx.store.queue_backlog().await.unwrap();
    let second_ms = entry_time_ms(&ids[1]).map(|t| t as u64);
    assert_eq!((b.unread, b.pending, b.oldest_ms), (0, 2, second_ms));
    assert!(b.oldest_age_secs(second_ms.unwrap() + 1_500) >= 1.5);

    ctx.store.ack_queue(&queue, &ids[1..]).await.unwrap();
    let b = ctx.store.queue_backlog().await.unwrap();
    assert_eq!(
        (b.unread, b.pending, b.oldest_ms),
        (0, 0, None),
        "caught up"
    );
    assert!(b.oldest_age_secs(u64::MAX).abs() < f64::EPSILON);
}

#[tokio::test]
async fn consumer_lag_counts_unread_events_and_ages_the_oldest_unacknowledged() {
    let ctx = Ctx::start().await;
    let stream = ctx.k().events_stream().to_owned();
    ctx.store.ensure_events_group("$").await.unwrap();
    assert_eq!(
        ctx.store.events_backlog().await.unwrap(),
        GroupBacklog::default()
    );

    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(ctx.store.publish_event(&event(n)).await.unwrap());
    }
    let first_ms = entry_time_ms(&ids[0]).map(|t| t as u64);
    let b = ctx.store.events_backlog().await.unwrap();
    assert_eq!((b.unread, b.pending, b.oldest_ms), (5, 0, first_ms));

    // A consumer reads two and acknowledges the first: one pending, three unread, the second is oldest.
    let reader = ctx.store.reader().await.unwrap();
    let read = reader
        .read_group(&stream, EVENTS_GROUP, CONSUMER, 2, 10)
        .await
        .unwrap();
    reader.quit().await;
    assert_eq!(read.len(), 2);
    ctx.store.ack_events(&ids[..1]).await.unwrap();
    let b = ctx.store.events_backlog().await.unwrap();
    let second_ms = entry_time_ms(&ids[1]).map(|t| t as u64);
    assert_eq!((b.unread, b.pending, b.oldest_ms), (3, 1, second_ms));

    let reader = ctx.store.reader().await.unwrap();
    reader
        .read_group(&stream, EVENTS_GROUP, CONSUMER, 10, 10)
        .await
        .unwrap();
    reader.quit().await;
    ctx.store.ack_events(&ids[1..]).await.unwrap();
    let b = ctx.store.events_backlog().await.unwrap();
    assert_eq!((b.unread, b.pending, b.oldest_ms), (0, 0, None));
}
