//! Connecting, and surviving a Redis that restarts empty (scripts and groups are gone).

use delivery_model::keys::Shard;
use std::time::{Duration, Instant};

use delivery_model::keys::QUEUE_GROUP;
use delivery_model::queue::QueueMessage;
use delivery_model::store::{Store, StoreOptions};
use delivery_model::subscription::SubscriptionStatus::PendingVerification;
use test_support::redis::free_port;
use test_support::wait;

use crate::harness::{Ctx, subscription};

#[tokio::test]
async fn connect_fails_fast_when_redis_is_unreachable() {
    let mut opts = StoreOptions::new(format!("redis://127.0.0.1:{}", free_port()));
    opts.command_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let res = Store::connect(&opts).await;
    assert!(res.is_err(), "connected to nothing");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    opts.url = "not a url".into();
    assert!(Store::connect(&opts).await.is_err());
}

#[tokio::test]
async fn after_a_redis_restart_the_store_reconnects_and_reloads_its_scripts() {
    let mut ctx = Ctx::start().await;
    // Load the create script once, so the restarted server's empty script cache is what is tested.
    ctx.create(&subscription(PendingVerification, &["*"])).await;

    ctx.redis.restart_empty();
    let store = ctx.store.clone();
    wait::until("the store reconnects", Duration::from_secs(15), || {
        let store = store.clone();
        async move { store.ping().await.ok() }
    })
    .await;

    let sub = subscription(PendingVerification, &["*"]);
    assert!(
        ctx.store.create_subscription(&sub).await.unwrap(),
        "EVALSHA falls back to loading the script"
    );
    assert_eq!(
        ctx.store.get_subscription(sub.id).await.unwrap(),
        Some(sub.clone())
    );
    ctx.store.ensure_queue_group().await.unwrap();
    assert!(
        ctx.store
            .group_exists(&ctx.k().queue_stream(Shard::ZERO), QUEUE_GROUP)
            .await
            .unwrap()
    );
    let queued: Vec<QueueMessage> = ctx.queue().await.into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        queued,
        vec![QueueMessage::ChallengeV1 {
            subscription_id: sub.id,
            trace: None,
        }]
    );
}

/// A Redis that stops answering without closing the connection (blackholed by a proxy): every call fails
/// within its bound (a blocking read within block + command timeout), and once the path returns the store
/// and the read connection work again, though the connections open during the silence never do.
#[tokio::test]
async fn half_open_connections_time_out_within_the_bound_and_are_replaced() {
    let redis = test_support::redis::RedisServer::start();
    let proxy = test_support::proxy::Proxy::start(redis.port()).await;
    let mut opts = StoreOptions::new(proxy.redis_url());
    opts.command_timeout = Duration::from_millis(500);
    let store = Store::connect(&opts).await.unwrap();
    store.ensure_queue_group().await.unwrap();
    let queue = store.keys().queue_stream(Shard::ZERO);
    let reader = store.reader().await.unwrap();
    let block_ms = 300;

    proxy.blackhole();
    let started = Instant::now();
    let err = reader
        .read_group(&queue, QUEUE_GROUP, "c1", 10, block_ms)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err}");
    let bound = Duration::from_millis(block_ms) + opts.command_timeout;
    assert!(
        took >= bound && took < bound + Duration::from_millis(700),
        "read took {took:?}"
    );
    let started = Instant::now();
    assert!(store.ping().await.unwrap_err().is_timeout());
    assert!(started.elapsed() < opts.command_timeout + Duration::from_millis(700));

    proxy.restore_new_only();
    wait::until(
        "the pool replaced its silent connections",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move { store.ping().await.ok() }
        },
    )
    .await;
    reader.reconnect().await.unwrap();
    let entries = reader
        .read_group(&queue, QUEUE_GROUP, "c1", 10, 50)
        .await
        .unwrap();
    assert!(entries.is_empty());
}
