//! The event-consumer on a real Redis Cluster (issue #15): deliveries fanned out across the queue shards
//! with every entry acknowledged, a dead replica's pending entries taken over and fanned out once, and an
//! `addon.invoked` entry routed to its record's shard once.

use std::collections::BTreeMap;

use delivery_model::delivery::DeliveryRecord;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{EVENTS_GROUP, Layout};
use delivery_model::store::Store;
use delivery_model::store::connection::fred_config;
use delivery_model::store::import::LegacyPlacement;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use prometheus::Registry;
use service_common::config::Settings;
use service_common::service::Context;
use test_support::cluster::{Cluster, ClusterOptions};
use test_support::inproc::test_settings;
use test_support::redis::hookline_cluster_acl_rule;
use test_support::wait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{BASE, EVENTS, OWNER, TIMEOUT, event};

/// The consumer running in process against a cluster, as the services' ACL user.
struct OnCluster {
    store: Store,
    /// A client of its own, on the service's options, for what the test reads.
    raw: Client,
    settings: Option<Settings>,
    registry: Registry,
    token: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// Dropped last: the servers outlive the service and the store.
    cluster: Cluster,
}

impl OnCluster {
    /// A cluster and the service's store on it, the service not started yet ([`run`](Self::run)).
    async fn prepare(extra: &[(&str, &str)]) -> Self {
        let cluster = Cluster::start_with(ClusterOptions {
            acl_rule: Some(hookline_cluster_acl_rule()),
            ..ClusterOptions::new(3, 0)
        });
        let mut env: Vec<(&str, &str)> = BASE.iter().chain(extra).copied().collect();
        env.push(("HOOKLINE__REDIS__CLUSTER_SHARDS", "6"));
        // The cluster is this test's own, and the ACL user's key patterns are the unprefixed ones.
        env.push(("HOOKLINE__REDIS__KEY_PREFIX", ""));
        let access: Vec<(String, String)> = cluster
            .service_env()
            .into_iter()
            .filter(|(k, _)| k != "HOOKLINE__REDIS__URL")
            .collect();
        env.extend(access.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let settings = test_settings(&cluster.url(), &env);
        let store = service_common::redis::connect_as(event_consumer::SERVICE, &settings)
            .await
            .unwrap();
        assert_eq!(store.keys().layout(), Layout::Cluster { shards: 6 });
        let raw = Builder::from_config(fred_config(&settings.store_options()).unwrap())
            .build()
            .unwrap();
        raw.init().await.unwrap();
        Self {
            store,
            raw,
            settings: Some(settings),
            registry: Registry::new(),
            token: CancellationToken::new(),
            task: None,
            cluster,
        }
    }

    async fn start(extra: &[(&str, &str)]) -> Self {
        let mut svc = Self::prepare(extra).await;
        svc.run();
        svc
    }

    fn run(&mut self) {
        let settings = self.settings.take().unwrap();
        self.task = Some(tokio::spawn(event_consumer::run(Context {
            settings,
            store: self.store.clone(),
            registry: self.registry.clone(),
            shutdown: self.token.clone(),
        })));
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], n: f64) {
        wait::until(&format!("{name}{labels:?} >= {n}"), TIMEOUT, || async {
            (self.metric(name, labels) >= n).then_some(())
        })
        .await;
    }

    async fn subscribe(&self) -> Subscription {
        let sub = Subscription::new(
            OWNER,
            "hook",
            "http://127.0.0.1:9/hook",
            vec!["threat_model.created".into()],
            SubscriptionStatus::Active,
            now_micros(),
        );
        assert!(self.store.create_subscription(&sub).await.unwrap());
        sub
    }

    /// Queue entries per shard index.
    async fn queues(&self) -> BTreeMap<u16, u64> {
        let k = self.store.keys();
        let mut out = BTreeMap::new();
        for shard in k.shards() {
            let n: u64 = self.raw.xlen(k.queue_stream(shard)).await.unwrap();
            out.insert(shard.index(), n);
        }
        out
    }

    async fn events_pending(&self) -> u64 {
        let v: Value = self
            .raw
            .xpending(self.store.keys().events_stream(), EVENTS_GROUP, ())
            .await
            .unwrap();
        v.into_array().first().and_then(Value::as_u64).unwrap_or(0)
    }

    async fn stop(mut self) {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.store.quit().await;
        self.raw.quit().await.unwrap();
        // The services' ACL user (with the documented cluster additions) was refused nothing.
        assert!(
            self.cluster.acl_log().is_empty(),
            "{:?}",
            self.cluster.acl_log()
        );
    }
}

#[tokio::test]
async fn fans_out_across_the_shards_and_acknowledges_every_entry() {
    let svc = OnCluster::start(&[]).await;
    for _ in 0..4 {
        svc.subscribe().await;
    }
    for _ in 0..3 {
        svc.store
            .publish_event(&event("threat_model.created"))
            .await
            .unwrap();
    }
    svc.store
        .publish_event(&event("threat_model.deleted"))
        .await
        .unwrap();
    svc.wait_metric(EVENTS, &[("outcome", "fanned_out")], 3.0)
        .await;
    svc.wait_metric(EVENTS, &[("outcome", "no_match")], 1.0)
        .await;
    let queues = svc.queues().await;
    assert_eq!(queues.values().sum::<u64>(), 12, "{queues:?}");
    assert!(
        queues.values().filter(|&&n| n > 0).count() > 1,
        "{queues:?}"
    );
    assert_eq!(svc.events_pending().await, 0);
    svc.stop().await;
}

#[tokio::test]
async fn takes_over_a_dead_replicas_entries_and_fans_them_out_once() {
    let mut svc = OnCluster::prepare(&[("HOOKLINE__CONSUMER__CLAIM_IDLE_MS", "300")]).await;
    svc.subscribe().await;
    svc.subscribe().await;
    // Before the service starts, a replica reads the entry and dies with it pending in its list.
    let store = &svc.store;
    store.ensure_events_group("0").await.unwrap();
    store
        .publish_event(&event("threat_model.created"))
        .await
        .unwrap();
    let reader = store.reader().await.unwrap();
    let taken = reader
        .read_group(
            store.keys().events_stream(),
            EVENTS_GROUP,
            "dead-pod",
            10,
            0,
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    reader.quit().await;
    svc.run();
    svc.wait_metric("hookline_consumer_reclaimed_total", &[], 1.0)
        .await;
    svc.wait_metric(EVENTS, &[("outcome", "fanned_out")], 1.0)
        .await;
    assert_eq!(svc.queues().await.values().sum::<u64>(), 2);
    assert_eq!(svc.events_pending().await, 0);
    svc.stop().await;
}

#[tokio::test]
async fn routes_an_addon_invocation_to_its_shard_once() {
    let svc = OnCluster::start(&[]).await;
    let record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        SubscriptionId::new_v4(),
        "addon.invoked",
        "{}",
        now_micros(),
    );
    svc.store
        .import_delivery(
            &record,
            LegacyPlacement::Keep {
                ttl: std::time::Duration::from_secs(600),
            },
            now_micros(),
        )
        .await
        .unwrap();
    let mut invoked = event("addon.invoked");
    invoked.delivery_id = Some(record.id);
    svc.store.publish_event(&invoked).await.unwrap();
    wait::until("the invocation is routed", TIMEOUT, || async {
        (svc.events_pending().await == 0 && svc.queues().await.values().sum::<u64>() == 1)
            .then_some(())
    })
    .await;
    let shard = svc.store.keys().shard_of(record.id).index();
    assert_eq!(svc.queues().await[&shard], 1);
    svc.stop().await;
}
