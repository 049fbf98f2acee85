//! Connecting, and surviving a Redis that restarts empty (scripts and groups are gone).

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
            .group_exists(&ctx.k().queue_stream(), QUEUE_GROUP)
            .await
            .unwrap()
    );
    let queued: Vec<QueueMessage> = ctx.queue().await.into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        queued,
        vec![QueueMessage::ChallengeV1 {
            subscription_id: sub.id
        }]
    );
}
