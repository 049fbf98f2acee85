//! The target of the cluster tests: a 3-master Redis Cluster with the services' ACL user, the settings a
//! binary needs to use it, and what the tests read on it (each delivery's queue and schedule entries, the
//! challenges).

use std::collections::HashMap;

use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::store::{Store, StoreOptions};
use fred::prelude::*;
use test_support::cluster::{Cluster, ClusterOptions};
use test_support::redis::hookline_cluster_acl_rule;

use crate::harness::service_env;

/// Queue shards of the target's layout.
pub const SHARDS: u16 = 6;

/// A 3-master cluster with the services' ACL user, the env a binary needs to use it (laid out in
/// [`SHARDS`] shards), the test's own store and raw client on it (admin user).
pub struct Target {
    pub env: Vec<(String, String)>,
    pub store: Store,
    pub raw: Client,
    pub cluster: Cluster,
}

impl Target {
    pub async fn start() -> Self {
        let cluster = Cluster::start_with(ClusterOptions {
            acl_rule: Some(hookline_cluster_acl_rule()),
            ..ClusterOptions::new(3, 0)
        });
        let mut env = service_env(cluster.service_env());
        env.push(("HOOKLINE__REDIS__CLUSTER_SHARDS".into(), SHARDS.to_string()));
        let opts = StoreOptions {
            cluster_shards: SHARDS,
            ..cluster.admin_options()
        };
        let store = Store::connect(&opts).await.unwrap();
        let raw =
            Builder::from_config(delivery_model::store::connection::fred_config(&opts).unwrap())
                .build()
                .unwrap();
        raw.init().await.unwrap();
        Self {
            env,
            store,
            raw,
            cluster,
        }
    }

    /// How many queue and schedule entries name each delivery ([`entries`]).
    pub async fn entries(&self) -> HashMap<DeliveryId, (u32, u32)> {
        entries(&self.store, &self.raw).await
    }

    /// Every challenge on the control queue ([`challenges`]).
    pub async fn challenges(&self) -> Vec<SubscriptionId> {
        challenges(&self.store, &self.raw).await
    }

    /// Stops the test's clients and checks that the services' ACL user was refused nothing.
    pub async fn finish(self) {
        self.store.quit().await;
        let _ = self.raw.quit().await;
        let log = self.cluster.acl_log();
        assert!(log.is_empty(), "the ACL user was refused: {log:?}");
    }
}

/// How many queue and schedule entries name each delivery (queue, schedule), over every shard's queue and
/// schedule (the one queue and schedule on one node), read by the test's `raw` client.
pub async fn entries(store: &Store, raw: &Client) -> HashMap<DeliveryId, (u32, u32)> {
    let k = store.keys();
    let mut n: HashMap<DeliveryId, (u32, u32)> = HashMap::new();
    for stream in k.worker_streams() {
        let entries: Vec<(String, HashMap<String, String>)> =
            raw.xrange(&stream, "-", "+", None).await.unwrap();
        for (_, fields) in entries {
            if let Ok(QueueMessage::DeliveryV1 { delivery_id }) =
                QueueMessage::decode(&fields[MESSAGE_FIELD])
            {
                n.entry(delivery_id).or_default().0 += 1;
            }
        }
    }
    for (schedule, _) in k.schedules() {
        let members: Vec<String> = raw
            .zrange(&schedule, 0, -1, None, false, None, false)
            .await
            .unwrap();
        for m in members {
            if let Ok(QueueMessage::DeliveryV1 { delivery_id }) = QueueMessage::decode(&m) {
                n.entry(delivery_id).or_default().1 += 1;
            }
        }
    }
    n
}

/// Every challenge on the control queue (the one queue on one node).
pub async fn challenges(store: &Store, raw: &Client) -> Vec<SubscriptionId> {
    let entries: Vec<(String, HashMap<String, String>)> = raw
        .xrange(store.keys().challenge_queue(), "-", "+", None)
        .await
        .unwrap();
    entries
        .into_iter()
        .filter_map(|(_, f)| match QueueMessage::decode(&f[MESSAGE_FIELD]) {
            Ok(QueueMessage::ChallengeV1 {
                subscription_id, ..
            }) => Some(subscription_id),
            _ => None,
        })
        .collect()
}
