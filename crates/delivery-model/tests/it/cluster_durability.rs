//! The loss budget on a real Redis Cluster (`docs/cluster.md`, open question 3): with `wait_replicas = 1`,
//! every acknowledged write is on its master's replica when the call returns, because each `WAIT` goes to
//! the master of a slot just written, on the connection that carried the write. A master whose replica is
//! down fails the writes of its slots with `NotReplicated` (the fan-out leaves its input entries pending),
//! while the writes to other masters go on.

use std::time::Duration;

use delivery_model::Error;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{EVENTS_GROUP, Keyspace};
use delivery_model::store::quotas::{QuotaCreate, SubscriptionLimits};
use delivery_model::store::{FanoutEntry, Store, StoreOptions};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use test_support::cluster::{Cluster, key_slot};

use crate::harness::event;

const LIMITS: SubscriptionLimits = SubscriptionLimits {
    max_subscriptions: 10,
    per_minute: 10,
    per_day: 100,
};

/// Long enough for a loopback replica on a busy 2-core machine; short, so the "replica down" case is quick.
const WAIT_TIMEOUT: Duration = Duration::from_millis(1000);

async fn waiting_store(cluster: &Cluster) -> Store {
    Store::connect(&StoreOptions {
        cluster_shards: 6,
        wait_replicas: 1,
        wait_timeout: WAIT_TIMEOUT,
        ..cluster.admin_options()
    })
    .await
    .unwrap()
}

/// Whether `key` is on the replica of the master that serves it, read at once (no waiting).
fn on_its_replica(cluster: &Cluster, key: &str) -> bool {
    cluster.node_has_key(cluster.replica_for_slot(key_slot(key)), key)
}

/// Reads `n` new events of the input stream as consumer `c`; returns their entry ids.
async fn read_pending(store: &Store, n: u32) -> Vec<String> {
    for i in 0..n {
        store.publish_event(&event(i)).await.unwrap();
    }
    let reader = store.reader().await.unwrap();
    let read = reader
        .read_group(store.keys().events_stream(), EVENTS_GROUP, "c", 100, 100)
        .await
        .unwrap();
    reader.quit().await;
    read.into_iter().map(|e| e.id).collect()
}

fn fanout<'a>(entries: &'a [String], subs: &'a [SubscriptionId]) -> Vec<FanoutEntry<'a>> {
    entries
        .iter()
        .map(|e| FanoutEntry {
            entry_id: e,
            event_type: "threat_model.created",
            envelope: "{}",
            subscriptions: subs,
            lanes: &[],
            trace: None,
        })
        .collect()
}

fn record_keys(k: &Keyspace, entries: &[String], subs: &[SubscriptionId]) -> Vec<String> {
    entries
        .iter()
        .flat_map(|e| {
            subs.iter()
                .map(|s| k.delivery(DeliveryId::for_fanout(e, *s)))
        })
        .collect()
}

#[tokio::test]
async fn acknowledged_writes_are_on_their_masters_replicas_when_the_call_returns() {
    let cluster = Cluster::start(3, 1);
    let store = waiting_store(&cluster).await;
    let k = store.keys().clone();
    assert_eq!(store.ack_wait().replicas(), 1);

    // A subscription create (control slot) through the API's path.
    let sub = Subscription::new(
        "owner-1",
        "hook",
        "https://receiver.example/hook",
        vec!["*".into()],
        SubscriptionStatus::PendingVerification,
        now_micros(),
    );
    let created = store
        .create_subscription_within_quota(&sub, &LIMITS, now_micros(), None)
        .await
        .unwrap();
    assert!(
        matches!(created, QuotaCreate::Created { .. }),
        "{created:?}"
    );
    assert!(on_its_replica(&cluster, &k.subscription(sub.id)));

    // The first event creates the input stream: on the replica as soon as publish returns.
    store.ensure_events_group("0").await.unwrap();
    let entries = read_pending(&store, 3).await;
    assert!(on_its_replica(&cluster, k.events_stream()));

    // A fan-out over every shard: each record is on its own master's replica before the entries are
    // acknowledged, and the fan-out returns only after both.
    let subs: Vec<SubscriptionId> = (0..12).map(|_| SubscriptionId::new_v4()).collect();
    let batch = fanout(&entries, &subs);
    assert_eq!(store.fanout_batch(&batch, now_micros()).await.unwrap(), 36);
    let keys = record_keys(&k, &entries, &subs);
    let masters: std::collections::HashSet<u16> =
        keys.iter().map(|key| cluster.node_for_key(key)).collect();
    assert_eq!(masters.len(), 3, "the records span every master");
    for key in &keys {
        assert!(on_its_replica(&cluster, key), "{key} not on its replica");
    }
    store.quit().await;
}

#[tokio::test]
async fn a_master_without_its_replica_fails_its_writes_and_the_entries_stay_pending() {
    let mut cluster = Cluster::start(3, 1);
    let store = waiting_store(&cluster).await;
    let k = store.keys().clone();
    store.ensure_events_group("0").await.unwrap();
    let entries = read_pending(&store, 2).await;
    let subs: Vec<SubscriptionId> = (0..12).map(|_| SubscriptionId::new_v4()).collect();
    let keys = record_keys(&k, &entries, &subs);

    // The replica of a master that owns some of the records (not the input stream's master) goes down.
    let stream_master = cluster.node_for_key(k.events_stream());
    let Some(victim) = keys
        .iter()
        .find(|key| cluster.node_for_key(key) != stream_master)
    else {
        panic!("every record is on the input stream's master")
    };
    let victim_master = cluster.node_for_key(victim);
    cluster.kill_node(cluster.replica_for_slot(key_slot(victim)));

    let batch = fanout(&entries, &subs);
    let err = store.fanout_batch(&batch, now_micros()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                wanted: 1,
                confirmed: 0
            }
        ),
        "{err}"
    );
    // Not acknowledged: the consumer fans the entries out again (same ids, nothing twice).
    let (_, raw) = crate::cluster_delivery::connect(&cluster).await;
    let pending: Value = raw
        .xpending(k.events_stream(), EVENTS_GROUP, ())
        .await
        .unwrap();
    assert_eq!(
        pending.into_array().first().and_then(Value::as_u64),
        Some(2),
        "both entries stay pending"
    );

    // Writes to the other masters' slots are confirmed as before.
    let other = keys
        .iter()
        .find(|key| cluster.node_for_key(key) != victim_master)
        .cloned();
    assert!(other.is_some());
    let sub = Subscription::new(
        "owner-1",
        "hook",
        "https://receiver.example/hook",
        vec!["*".into()],
        SubscriptionStatus::PendingVerification,
        now_micros(),
    );
    let control_master = cluster.node_for_key(&k.subscription(sub.id));
    let result = store
        .create_subscription_within_quota(&sub, &LIMITS, now_micros(), None)
        .await;
    if control_master == victim_master {
        assert!(matches!(result, Err(Error::NotReplicated { .. })));
    } else {
        assert!(
            matches!(result, Ok(QuotaCreate::Created { .. })),
            "{result:?}"
        );
    }
    store.quit().await;
}
