//! The retry schedule (`promote_due`) and the consumer groups (`ensure_*_group`, recovery from a Redis that
//! lost everything).

use delivery_model::keys::Shard;
use std::collections::HashMap;

use delivery_model::ids::DeliveryId;
use delivery_model::keys::{EVENTS_GROUP, QUEUE_GROUP};
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::store::Store;

use crate::harness::{CONSUMER, Ctx};

fn delivery() -> QueueMessage {
    QueueMessage::DeliveryV1 {
        delivery_id: DeliveryId::new_v7(),
    }
}

#[tokio::test]
async fn promote_due_moves_only_due_members_and_only_once() {
    let ctx = Ctx::start().await;
    let (m1, m2, m3) = (delivery(), delivery(), delivery());
    ctx.store.schedule(&m1, 1_000).await.unwrap();
    ctx.store.schedule(&m2, 2_000).await.unwrap();
    ctx.store.schedule(&m3, 5_000).await.unwrap();
    // Scheduling the same message again keeps one member (the later due time).
    ctx.store.schedule(&m2, 2_500).await.unwrap();
    assert_eq!(ctx.store.scheduled_len().await.unwrap(), 3);

    assert_eq!(ctx.store.promote_due(999, 10).await.unwrap(), 0);
    assert_eq!(ctx.store.promote_due(2_500, 10).await.unwrap(), 2);

    let queued: Vec<QueueMessage> = ctx.queue().await.into_iter().map(|(_, m)| m).collect();
    assert_eq!(queued, vec![m1, m2]);
    assert_eq!(
        ctx.zall(&ctx.k().scheduled(Shard::ZERO)).await,
        vec![(m3.encode(), 5_000.0)]
    );
    assert_eq!(
        ctx.store.promote_due(2_500, 10).await.unwrap(),
        0,
        "already moved"
    );
    assert_eq!(ctx.queue().await.len(), 2);
}

#[tokio::test]
async fn promote_due_respects_the_limit_oldest_first() {
    let ctx = Ctx::start().await;
    let msgs: Vec<QueueMessage> = (0..5).map(|_| delivery()).collect();
    for (i, m) in msgs.iter().enumerate() {
        ctx.store.schedule(m, 100 + i as i64).await.unwrap();
    }
    assert_eq!(ctx.store.promote_due(1_000, 2).await.unwrap(), 2);
    let queued: Vec<QueueMessage> = ctx.queue().await.into_iter().map(|(_, m)| m).collect();
    assert_eq!(queued, msgs[..2].to_vec());
    assert_eq!(ctx.store.scheduled_len().await.unwrap(), 3);
}

#[tokio::test]
async fn concurrent_promotes_move_each_member_exactly_once() {
    let ctx = Ctx::start().await;
    let msgs: Vec<QueueMessage> = (0..200).map(|_| delivery()).collect();
    for (i, m) in msgs.iter().enumerate() {
        ctx.store.schedule(m, 1_000 + i as i64).await.unwrap();
    }
    // Two workers, each with its own connections, promoting small batches as fast as they can.
    let (s1, s2) = (ctx.store.clone(), ctx.other_store().await);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let run = |store: Store, barrier: std::sync::Arc<tokio::sync::Barrier>| async move {
        barrier.wait().await;
        let mut moved = 0;
        loop {
            match store.promote_due(10_000, 3).await.unwrap() {
                0 => return moved,
                n => moved += n,
            }
        }
    };
    let t1 = tokio::spawn(run(s1, barrier.clone()));
    let t2 = tokio::spawn(run(s2, barrier));
    let (n1, n2) = (t1.await.unwrap(), t2.await.unwrap());

    assert_eq!(n1 + n2, 200, "{n1} + {n2}");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, m) in ctx.queue().await {
        *seen.entry(m.encode()).or_default() += 1;
    }
    assert_eq!(seen.len(), 200);
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicates: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert_eq!(ctx.store.scheduled_len().await.unwrap(), 0);
}

#[tokio::test]
async fn ensure_groups_is_idempotent_and_keeps_the_groups_position() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let queue = k.queue_stream(Shard::ZERO);
    assert!(!ctx.store.group_exists(&queue, QUEUE_GROUP).await.unwrap());
    for _ in 0..2 {
        ctx.store.ensure_queue_group().await.unwrap();
        ctx.store.ensure_events_group("0").await.unwrap();
    }
    assert!(ctx.store.group_exists(&queue, QUEUE_GROUP).await.unwrap());
    assert!(
        ctx.store
            .group_exists(k.events_stream(), EVENTS_GROUP)
            .await
            .unwrap()
    );
    assert!(!ctx.store.group_exists(&queue, EVENTS_GROUP).await.unwrap());

    // An entry read and acknowledged is not handed out again after a repeated ensure.
    let m = delivery();
    ctx.xadd(&queue, MESSAGE_FIELD, &m.encode()).await;
    let first = ctx.read_queue().await;
    assert_eq!(
        first.iter().map(|(_, q)| q.clone()).collect::<Vec<_>>(),
        vec![m]
    );
    ctx.store
        .ack_queue(&ctx.k().queue_stream(Shard::ZERO), &[first[0].0.clone()])
        .await
        .unwrap();
    ctx.store.ensure_queue_group().await.unwrap();
    assert!(ctx.read_queue().await.is_empty());
    assert!(
        ctx.queue().await.is_empty(),
        "acked queue entries are deleted"
    );
    ctx.assert_nothing_pending();
}

#[tokio::test]
async fn after_flushall_reads_fail_with_nogroup_until_the_group_is_recreated() {
    let ctx = Ctx::start().await;
    let k = ctx.k();
    let queue = k.queue_stream(Shard::ZERO);
    ctx.store.ensure_queue_group().await.unwrap();
    ctx.store.ensure_events_group("$").await.unwrap();
    let reader = ctx.store.reader().await.unwrap();
    assert!(
        reader
            .read_group(&queue, QUEUE_GROUP, CONSUMER, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Redis restarted without persistence.
    ctx.flushall().await;

    let err = reader
        .read_group(&queue, QUEUE_GROUP, CONSUMER, 10, 10)
        .await
        .unwrap_err();
    assert!(err.is_nogroup(), "{err}");
    let err = reader
        .read_group(k.events_stream(), EVENTS_GROUP, CONSUMER, 10, 10)
        .await
        .unwrap_err();
    assert!(err.is_nogroup(), "{err}");
    assert!(!ctx.store.group_exists(&queue, QUEUE_GROUP).await.unwrap());

    ctx.store.ensure_queue_group().await.unwrap();
    ctx.store.ensure_events_group("0").await.unwrap();

    assert!(ctx.store.group_exists(&queue, QUEUE_GROUP).await.unwrap());
    let m = delivery();
    ctx.store.schedule(&m, 0).await.unwrap();
    assert_eq!(ctx.store.promote_due(1, 10).await.unwrap(), 1);
    let got = reader
        .read_group(&queue, QUEUE_GROUP, CONSUMER, 10, 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        reader
            .read_group(k.events_stream(), EVENTS_GROUP, CONSUMER, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    ctx.store
        .ack_queue(&ctx.k().queue_stream(Shard::ZERO), &[got[0].id.clone()])
        .await
        .unwrap();
    reader.quit().await;
    ctx.assert_nothing_pending();
}

#[tokio::test]
async fn claim_stale_takes_over_a_dead_consumers_entries_but_not_deleted_ones() {
    let ctx = Ctx::start().await;
    let queue = ctx.k().queue_stream(Shard::ZERO);
    let (m1, m2) = (delivery(), delivery());
    ctx.store.ensure_queue_group().await.unwrap();
    let e1 = ctx.xadd(&queue, MESSAGE_FIELD, &m1.encode()).await;
    let e2 = ctx.xadd(&queue, MESSAGE_FIELD, &m2.encode()).await;
    // The dead consumer read both; one of them was finished (acked and deleted) by someone else meanwhile.
    let dead = ctx.store.reader().await.unwrap();
    assert_eq!(
        dead.read_group(&queue, QUEUE_GROUP, "dead", 10, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    ctx.xdel(&queue, &e2).await;
    assert_eq!(ctx.store.queue_depth().await.unwrap(), (1, 2));

    let alive = ctx.store.reader().await.unwrap();
    let young = alive
        .claim_stale(&queue, QUEUE_GROUP, "alive", 60_000, 10)
        .await
        .unwrap();
    assert!(young.is_empty(), "not idle long enough: {young:?}");
    let claimed = alive
        .claim_stale(&queue, QUEUE_GROUP, "alive", 0, 10)
        .await
        .unwrap();

    assert_eq!(
        claimed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec![e1.as_str()]
    );
    assert_eq!(
        QueueMessage::decode(&claimed[0].fields[MESSAGE_FIELD]).unwrap(),
        m1
    );
    // Redis dropped the deleted entry from the pending list.
    assert_eq!(ctx.store.queue_depth().await.unwrap(), (1, 1));
    ctx.store
        .ack_queue(&ctx.k().queue_stream(Shard::ZERO), &[e1])
        .await
        .unwrap();
    assert_eq!(ctx.store.queue_depth().await.unwrap(), (0, 0));
    ctx.assert_nothing_pending();
}

#[tokio::test]
async fn queue_depth_without_a_group_counts_no_pending() {
    let ctx = Ctx::start().await;
    assert_eq!(ctx.store.queue_depth().await.unwrap(), (0, 0));
    ctx.store.schedule(&delivery(), 0).await.unwrap();
    ctx.store.promote_due(1, 10).await.unwrap();
    assert_eq!(ctx.store.queue_depth().await.unwrap(), (1, 0));
    assert_eq!(ctx.store.scheduled_len().await.unwrap(), 0);
}
