//! The cluster key layout on a real Redis Cluster (issue #15, `docs/cluster.md`), as the services' ACL user:
//! the control scripts and the per-shard scripts run with their `#!lua` shebang and put every key in its
//! tag's slot; a script handed a key of a second slot fails loudly instead of working on whichever node
//! happens to hold both; and a store refuses a shard count other than the one the data was laid out with.

use std::time::Duration;

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::error::Error;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{Layout, key_slot};
use delivery_model::queue::QueueMessage;
use delivery_model::store::{Store, StoreOptions};
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;
use fred::prelude::*;
use test_support::cluster::{Cluster, ClusterOptions};
use test_support::redis::hookline_cluster_acl_rule;

use crate::harness::subscription;

/// A raw admin client on the cluster (reads what the store wrote).
async fn admin(cluster: &Cluster) -> Client {
    let opts = cluster.admin_options();
    let client =
        Builder::from_config(delivery_model::store::connection::fred_config(&opts).unwrap())
            .build()
            .unwrap();
    client.init().await.unwrap();
    client
}

#[tokio::test]
async fn control_and_shard_scripts_run_on_a_real_cluster_with_one_slot_each() {
    let cluster = Cluster::start_with(ClusterOptions {
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    });
    let opts = StoreOptions {
        cluster_shards: 6,
        ..cluster.service_options()
    };
    let store = Store::connect(&opts).await.unwrap();
    let k = store.keys().clone();
    assert_eq!(k.layout(), Layout::Cluster { shards: 6 });
    let raw = admin(&cluster).await;
    store.ensure_queue_group().await.unwrap();

    // Control: the subscription and its challenge in one script, on the control queue.
    let sub = subscription(SubscriptionStatus::PendingVerification, &["a.b"]);
    assert!(store.create_subscription(&sub).await.unwrap());
    let challenges: u64 = raw.xlen(k.challenge_queue()).await.unwrap();
    assert_eq!(challenges, 1);
    assert!(
        store
            .set_subscription_status(
                sub.id,
                SubscriptionStatus::PendingVerification,
                SubscriptionStatus::Active,
                now_micros(),
                true,
            )
            .await
            .unwrap()
    );
    let in_event_set: bool = raw
        .sismember(k.subscriptions_by_event("a.b"), sub.id.to_string())
        .await
        .unwrap();
    assert!(in_event_set);

    // Shards: test deliveries of every shard, each with its record, indexes and queue entry in its slot.
    let mut per_shard = [None; 6];
    while per_shard.iter().any(Option::is_none) {
        let id = DeliveryId::new_v7();
        per_shard[usize::from(k.shard_of(id).index())].get_or_insert(id);
    }
    for id in per_shard.iter().flatten() {
        let shard = k.shard_of(*id);
        let record = DeliveryRecord::new_pending(*id, sub.id, "a.b", "{}", now_micros());
        assert!(store.create_and_enqueue_delivery(&record).await.unwrap());
        assert_eq!(store.get_delivery(*id).await.unwrap().unwrap().id, *id);
        let queue = k.queue_stream(shard);
        assert_eq!(key_slot(&queue), key_slot(&k.delivery(*id)));
        let len: u64 = raw.xlen(&queue).await.unwrap();
        assert_eq!(len, 1, "{queue}");
        let score: Option<f64> = raw
            .zscore(
                k.deliveries_by_status(shard, DeliveryStatus::Pending),
                id.to_string(),
            )
            .await
            .unwrap();
        assert!(score.is_some());
        // A retry goes back to its own shard's schedule, a challenge retry to the control one.
        store
            .schedule(&QueueMessage::DeliveryV1 { delivery_id: *id }, 1)
            .await
            .unwrap();
        let due: u64 = raw.zcard(k.scheduled(shard)).await.unwrap();
        assert_eq!(due, 1);
    }
    store
        .schedule(
            &QueueMessage::ChallengeV1 {
                subscription_id: sub.id,
                trace: None,
            },
            1,
        )
        .await
        .unwrap();
    let due: u64 = raw.zcard(k.challenge_scheduled()).await.unwrap();
    assert_eq!(due, 1);

    // Cleanup's lease and state: control.
    let ttl = Duration::from_secs(5);
    assert!(store.acquire_cleanup_lease("me", ttl).await.unwrap());
    assert!(
        store
            .commit_cleanup_lease("me", ttl, &[("f".into(), "v".into())])
            .await
            .unwrap()
    );
    assert!(store.release_cleanup_lease("me").await.unwrap());
    store.quit().await;
    raw.quit().await.unwrap();
    assert!(cluster.acl_log().is_empty(), "{:?}", cluster.acl_log());
}

/// Why every script runs with `#!lua` on a cluster (docs/cluster.md §1.2): a plain script may touch a key of
/// another slot as long as it is on the same node, so a layout mistake would pass or fail depending on
/// where the slots sit; with the shebang the second slot is refused at once. Shown on two keys of one node
/// in different slots (a shard's record and a subscription); `keys::tests` and the cluster tests of every
/// split script show that Hookline's own scripts keep to one slot.
#[tokio::test]
async fn a_script_reaching_a_second_slot_fails_loudly() {
    let cluster = Cluster::start(3, 0);
    let store = Store::connect(&cluster.admin_options()).await.unwrap();
    let k = store.keys().clone();
    let sub = k.subscription(SubscriptionId::new_v4());
    let control_node = cluster.node_for_key(&sub);
    let id = std::iter::repeat_with(DeliveryId::new_v7)
        .find(|id| cluster.node_for_key(&k.delivery(*id)) == control_node)
        .unwrap();
    let record = k.delivery(id);
    let raw = Builder::from_config(
        delivery_model::store::connection::fred_config(&cluster.admin_options()).unwrap(),
    )
    .build()
    .unwrap();
    raw.init().await.unwrap();
    let body = "redis.call('EXISTS', KEYS[1]) return redis.call('EXISTS', ARGV[1])";
    // Without the shebang the undeclared key of the other slot is read: it happens to be on this node.
    let plain: i64 = raw
        .eval(body, vec![record.clone()], vec![sub.clone()])
        .await
        .unwrap();
    assert_eq!(plain, 0);
    let Err(e) = raw
        .eval::<i64, _, _, _>(format!("#!lua\n{body}"), vec![record], vec![sub])
        .await
    else {
        panic!("a cross-slot script must fail");
    };
    assert!(
        e.details()
            .contains("Script attempted to access keys that do not hash to the same slot"),
        "{e}"
    );
    raw.quit().await.unwrap();
    store.quit().await;
}

#[tokio::test]
async fn a_store_refuses_another_shard_count_than_the_data_has() {
    let cluster = Cluster::start(3, 0);
    let first = Store::connect(&cluster.admin_options()).await.unwrap();
    // The same count again: fine (every replica of every service connects this way).
    Store::connect(&cluster.admin_options())
        .await
        .unwrap()
        .quit()
        .await;
    let other = StoreOptions {
        cluster_shards: 4,
        ..cluster.admin_options()
    };
    let e = Store::connect(&other).await.err().unwrap();
    assert!(matches!(e, Error::Config(_)), "{e}");
    assert!(e.to_string().contains("redis.cluster_shards is 4"), "{e}");
    assert!(e.to_string().contains("laid out with 12"), "{e}");
    first.quit().await;
}
