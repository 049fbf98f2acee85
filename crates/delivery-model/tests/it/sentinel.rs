//! A store that reaches its primary through Sentinel: after the primary is SIGKILLed and a replica
//! promoted, the pool and a dedicated read connection follow, and scripts reload on the new primary
//! (Redis 7 does not replicate its script cache).

use delivery_model::keys::Shard;
use std::time::Duration;

use delivery_model::keys::QUEUE_GROUP;
use delivery_model::store::{Store, StoreOptions};
use delivery_model::subscription::SubscriptionStatus::PendingVerification;
use test_support::sentinel::{DOWN_AFTER_MS, MASTER_NAME, Reply, Topology, command, info_field};
use test_support::wait;

use crate::harness::subscription;

fn cached_scripts(port: u16) -> Option<u64> {
    info_field(port, "memory", "number_of_cached_scripts")?
        .parse()
        .ok()
}

/// A store that knows only the sentinels: the URL names a port nothing listens on, so every connection
/// must come from asking them.
async fn sentinel_store(topo: &Topology) -> Store {
    let opts = StoreOptions {
        command_timeout: Duration::from_secs(1),
        sentinel: Some(topo.sentinel_options()),
        ..StoreOptions::new(format!(
            "redis://127.0.0.1:{}",
            test_support::redis::free_port()
        ))
    };
    Store::connect(&opts).await.unwrap()
}

#[tokio::test]
async fn over_sentinel_the_store_follows_a_failover_and_reloads_its_scripts() {
    let mut topo = Topology::start().await;
    let store = sentinel_store(&topo).await;
    store.ensure_queue_group().await.unwrap();
    let reader = store.reader().await.unwrap();
    let before = subscription(PendingVerification, &["*"]);
    assert!(store.create_subscription(&before).await.unwrap());
    let (primary, replica) = (topo.primary_port(), topo.replica_port());
    // The replica has the data (replication caught up) but not the script.
    wait::until("the replica caught up", Duration::from_secs(10), || async {
        let p = info_field(primary, "replication", "master_repl_offset");
        (p.is_some() && p == info_field(replica, "replication", "master_repl_offset")).then_some(())
    })
    .await;
    assert_eq!(cached_scripts(replica), Some(0));

    topo.kill_primary();
    topo.wait_for_promotion(Duration::from_millis(DOWN_AFTER_MS + 15_000))
        .await;
    wait::until(
        "the store reaches the new primary",
        Duration::from_secs(15),
        || async { store.ping().await.ok() },
    )
    .await;

    let after = subscription(PendingVerification, &["*"]);
    assert!(
        store.create_subscription(&after).await.unwrap(),
        "EVALSHA falls back to loading the script on the new primary"
    );
    assert!(cached_scripts(replica).unwrap_or(0) >= 1);
    assert_eq!(
        store.get_subscription(before.id).await.unwrap(),
        Some(before.clone()),
        "what had replicated survived the failover"
    );
    assert!(store.get_subscription(after.id).await.unwrap().is_some());
    // The group replicated, and the read connection opened before the kill reads from the new primary.
    let queue = store.keys().queue_stream(Shard::ZERO);
    wait::until(
        "the read connection follows",
        Duration::from_secs(15),
        || async {
            reader
                .read_group(&queue, QUEUE_GROUP, "c1", 10, 100)
                .await
                .ok()
        },
    )
    .await;
    store.quit().await;
}

#[tokio::test]
async fn a_manual_failover_with_the_old_primary_alive_is_followed_too() {
    // `SENTINEL FAILOVER` demotes a primary that keeps running: the store must not stay on it (its writes
    // would fail with READONLY). Sentinel disconnects the demoted node's clients, so they rediscover.
    let topo = Topology::start().await;
    let store = sentinel_store(&topo).await;
    assert!(
        store
            .create_subscription(&subscription(PendingVerification, &["*"]))
            .await
            .unwrap()
    );
    let reply = command(
        topo.sentinel_addrs()[0]
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap(),
        &["SENTINEL", "FAILOVER", MASTER_NAME],
    );
    assert_eq!(reply, Some(Reply::Simple("OK".into())));
    topo.wait_for_promotion(Duration::from_secs(20)).await;
    wait::until(
        "the old primary is a replica",
        Duration::from_secs(20),
        || async {
            (info_field(topo.primary_port(), "replication", "role").as_deref() == Some("slave"))
                .then_some(())
        },
    )
    .await;
    let after = subscription(PendingVerification, &["*"]);
    wait::until(
        "writes reach the new primary",
        Duration::from_secs(15),
        || async { store.create_subscription(&after).await.ok() },
    )
    .await;
    assert!(store.get_subscription(after.id).await.unwrap().is_some());
    store.quit().await;
}
