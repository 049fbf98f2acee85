//! A consumer group's backlog ([`Store::queue_backlog`]), the source of the lag gauges: unread entries,
//! pending ones, and the append time of the oldest entry not acknowledged, as entries are read and
//! acknowledged.

use delivery_model::ids::DeliveryId;
use delivery_model::queue::QueueMessage;
use delivery_model::store::GroupBacklog;
use delivery_model::store::entry_time_ms;

use crate::harness::Ctx;

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
    let ids = ctx.entry_ids(&ctx.k().queue_stream()).await;
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

    ctx.store.ack_queue(&ids[..1]).await.unwrap();
    let b = ctx.store.queue_backlog().await.unwrap();
    let second_ms = entry_time_ms(&ids[1]).map(|t| t as u64);
    assert_eq!((b.unread, b.pending, b.oldest_ms), (0, 2, second_ms));
    assert!(b.oldest_age_secs(second_ms.unwrap() + 1_500) >= 1.5);

    ctx.store.ack_queue(&ids[1..]).await.unwrap();
    let b = ctx.store.queue_backlog().await.unwrap();
    assert_eq!(
        (b.unread, b.pending, b.oldest_ms),
        (0, 0, None),
        "caught up"
    );
    assert!(b.oldest_age_secs(u64::MAX).abs() < f64::EPSILON);
}
