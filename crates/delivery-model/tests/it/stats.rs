//! The console's delivery statistics (`Store::record_stats` and its readers): what an outcome batch adds
//! to the per-minute and per-subscription-hour hashes, their TTLs, and the same on a real Redis Cluster as
//! the services' ACL user (the hashes are untagged: single-key commands only).

use delivery_model::ids::SubscriptionId;
use delivery_model::stats::{Counted, OutcomeSample};
use delivery_model::store::Store;
use fred::prelude::*;
use test_support::cluster::{Cluster, ClusterOptions};
use test_support::redis::hookline_cluster_acl_rule;

use crate::harness::Ctx;

/// 2026-04-01T12:00:30Z.
const NOW_SECS: i64 = 1_775_044_830;

fn samples(sub: SubscriptionId) -> Vec<OutcomeSample> {
    let s = |counted, duration_ms| OutcomeSample {
        subscription: sub,
        counted,
        duration_ms,
    };
    vec![
        s(Counted::Delivered, Some(12)),
        s(Counted::Retried, Some(700)),
        s(Counted::Failed, Some(40)),
        s(Counted::Failed, None),
        s(Counted::AttemptOnly, Some(3)),
    ]
}

async fn check_readback(store: &Store, sub: SubscriptionId) {
    let minutes = store.minute_stats(NOW_SECS, 3).await.unwrap();
    assert_eq!(minutes.len(), 3);
    assert_eq!(minutes[2].0, NOW_SECS - 30, "the current minute last");
    let m = &minutes[2].1;
    assert_eq!((m.delivered, m.failed, m.retried, m.attempts), (1, 2, 1, 4));
    assert_eq!(m.latency.total(), 4);
    assert_eq!(minutes[0].1, Default::default(), "nothing two minutes ago");
    let hours = store
        .subscription_hour_stats(sub, NOW_SECS, 24)
        .await
        .unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(hours[23].0, NOW_SECS - 30, "the current hour last (12:00)");
    assert_eq!((hours[23].1.delivered, hours[23].1.failed), (1, 2));
    assert!(hours[..23].iter().all(|(_, h)| h.delivered + h.failed == 0));
}

#[tokio::test]
async fn outcomes_are_counted_per_minute_and_per_subscription_hour() {
    let ctx = Ctx::start().await;
    let sub = SubscriptionId::new_v4();
    ctx.store
        .record_stats(&samples(sub), NOW_SECS)
        .await
        .unwrap();
    check_readback(&ctx.store, sub).await;
    // Counters add up across writers (every replica increments the same hashes).
    ctx.other_store()
        .await
        .record_stats(&samples(sub)[..1], NOW_SECS)
        .await
        .unwrap();
    let m = &ctx.store.minute_stats(NOW_SECS, 1).await.unwrap()[0].1;
    assert_eq!((m.delivered, m.attempts), (2, 5));
    let minute_key = ctx.k().stats_minute(NOW_SECS / 60);
    let hour_key = ctx.k().stats_subscription_hour(sub, NOW_SECS / 3600);
    let ttl: i64 = ctx.raw.ttl(&minute_key).await.unwrap();
    assert!((7000..=7200).contains(&ttl), "minute TTL {ttl}");
    let ttl: i64 = ctx.raw.ttl(&hour_key).await.unwrap();
    assert!((89_000..=90_000).contains(&ttl), "hour TTL {ttl}");
    assert_eq!(ctx.hget(&minute_key, "lat:10").await, None);
    assert_eq!(ctx.hget(&minute_key, "lat:25").await.as_deref(), Some("2"));
    assert_eq!(
        ctx.hget(&minute_key, "lat:1000").await.as_deref(),
        Some("1")
    );
    // Nothing to count writes nothing.
    ctx.store.record_stats(&[], NOW_SECS + 3600).await.unwrap();
    let exists: i64 = ctx
        .raw
        .exists(ctx.k().stats_minute(NOW_SECS / 60 + 60))
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn counters_work_on_a_cluster_as_the_services_acl_user() {
    let cluster = Cluster::start_with(ClusterOptions {
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    });
    let store = Store::connect(&cluster.service_options()).await.unwrap();
    let sub = SubscriptionId::new_v4();
    store.record_stats(&samples(sub), NOW_SECS).await.unwrap();
    check_readback(&store, sub).await;
}
