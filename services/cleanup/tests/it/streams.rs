//! Stream trimming: only entries every consumer group has acknowledged go.

use cleanup::cycle::Action;
use delivery_model::keys::EVENTS_GROUP;
use delivery_model::keys::Shard;
use delivery_model::store::cleanup::TrimChunk;
use fred::prelude::*;
use fred::types::Value;

use crate::harness::{Ctx, config};

async fn xadd(ctx: &Ctx, stream: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id: String = ctx
            .raw
            .xadd(stream, false, None, "*", vec![("n", i.to_string())])
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

async fn read(ctx: &Ctx, stream: &str, group: &str, count: u64) -> Vec<String> {
    let v: Value = ctx
        .raw
        .xreadgroup(group, "c1", Some(count), None, false, stream, ">")
        .await
        .unwrap();
    // [[stream, [[id, fields], …]]]
    v.into_array()
        .into_iter()
        .flat_map(|s| {
            s.into_array()
                .into_iter()
                .nth(1)
                .map(Value::into_array)
                .unwrap_or_default()
        })
        .filter_map(|e| {
            e.into_array()
                .into_iter()
                .next()
                .and_then(|id| id.as_string())
        })
        .collect()
}

async fn ack(ctx: &Ctx, stream: &str, group: &str, ids: &[String]) {
    let _: i64 = ctx.raw.xack(stream, group, ids.to_vec()).await.unwrap();
}

async fn entries(ctx: &Ctx, stream: &str) -> Vec<String> {
    let v: Vec<(String, std::collections::HashMap<String, String>)> =
        ctx.raw.xrange_values(stream, "-", "+", None).await.unwrap();
    v.into_iter().map(|(id, _)| id).collect()
}

#[tokio::test]
async fn only_entries_every_group_acknowledged_are_trimmed() {
    let ctx = Ctx::start().await;
    let stream = ctx.store.keys().events_stream().to_owned();
    ctx.store.ensure_events_group("0").await.unwrap();
    let ids = xadd(&ctx, &stream, 8).await;
    // The consumer group has read six entries and acknowledged all but the fourth; two are unread.
    let got = read(&ctx, &stream, EVENTS_GROUP, 6).await;
    assert_eq!(got, ids[..6]);
    ack(
        &ctx,
        &stream,
        EVENTS_GROUP,
        &[&ids[..3], &ids[4..6]].concat(),
    )
    .await;
    // A second group (another consumer of TMI's stream) is further behind on reading but has acknowledged
    // everything it read.
    let _: Value = ctx
        .raw
        .xgroup_create(&stream, "audit", "0", false)
        .await
        .unwrap();
    let audit = read(&ctx, &stream, "audit", 5).await;
    ack(&ctx, &stream, "audit", &audit).await;

    let (cleaner, metrics) = ctx.cleaner(config());
    let report = ctx.cycle(&cleaner).await;
    assert_eq!(
        report.changed(Action::StreamTrimmed),
        3,
        "below the pending fourth entry"
    );
    assert_eq!(
        metrics.items.with_label_values(&["stream_trimmed"]).get(),
        3
    );
    assert_eq!(
        entries(&ctx, &stream).await,
        ids[3..],
        "the pending entry and everything after it stay"
    );

    // Once the pending entry is acknowledged, the slower group decides: it has read five, so the fifth is
    // the floor (kept: only entries strictly below it go) and its unread entries stay.
    ack(&ctx, &stream, EVENTS_GROUP, &ids[3..4]).await;
    ctx.cycle(&cleaner).await;
    assert_eq!(entries(&ctx, &stream).await, ids[4..]);
    // And once everyone has read and acknowledged everything, all but the last entry go (it is the floor).
    let rest = read(&ctx, &stream, "audit", 10).await;
    ack(&ctx, &stream, "audit", &rest).await;
    let rest = read(&ctx, &stream, EVENTS_GROUP, 10).await;
    ack(&ctx, &stream, EVENTS_GROUP, &rest).await;
    ctx.cycle(&cleaner).await;
    assert_eq!(entries(&ctx, &stream).await, ids[7..]);
}

#[tokio::test]
async fn streams_without_groups_and_groups_at_the_start_keep_everything() {
    let ctx = Ctx::start().await;
    let queue = ctx.store.keys().queue_stream(Shard::ZERO);
    let ids = xadd(&ctx, &queue, 4).await;
    assert_eq!(
        ctx.store.trim_acknowledged(&queue, 100).await.unwrap(),
        TrimChunk::NoGroups
    );
    ctx.store.ensure_queue_group().await.unwrap();
    assert_eq!(
        ctx.store.trim_acknowledged(&queue, 100).await.unwrap(),
        TrimChunk::NothingToTrim,
        "a group that has read nothing keeps everything"
    );
    assert_eq!(
        ctx.store
            .trim_acknowledged("no-such-stream", 100)
            .await
            .unwrap(),
        TrimChunk::NoGroups
    );
    assert_eq!(entries(&ctx, &queue).await, ids);
}

#[tokio::test]
async fn a_large_backlog_is_trimmed_a_chunk_at_a_time() {
    let ctx = Ctx::start().await;
    let stream = ctx.store.keys().events_stream().to_owned();
    ctx.store.ensure_events_group("0").await.unwrap();
    let ids = xadd(&ctx, &stream, 10).await;
    let got = read(&ctx, &stream, EVENTS_GROUP, 10).await;
    ack(&ctx, &stream, EVENTS_GROUP, &got).await;
    assert_eq!(
        ctx.store.trim_acknowledged(&stream, 4).await.unwrap(),
        TrimChunk::Trimmed {
            removed: 4,
            more: true
        }
    );
    assert_eq!(
        ctx.store.trim_acknowledged(&stream, 4).await.unwrap(),
        TrimChunk::Trimmed {
            removed: 4,
            more: true
        }
    );
    assert_eq!(
        ctx.store.trim_acknowledged(&stream, 4).await.unwrap(),
        TrimChunk::Trimmed {
            removed: 1,
            more: false
        }
    );
    assert_eq!(
        ctx.store.trim_acknowledged(&stream, 4).await.unwrap(),
        TrimChunk::NothingToTrim
    );
    assert_eq!(entries(&ctx, &stream).await, ids[9..]);
}
