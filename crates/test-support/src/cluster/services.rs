//! Services run in process on a real cluster as the services' ACL user: the cluster counterpart of
//! [`InProcess`](crate::inproc::InProcess), for one or several services sharing the cluster (a consumer
//! and a worker make a pipeline). Each service connects through `service_common::redis::connect`, as its
//! binary does.

use std::future::Future;
use std::time::Duration;

use delivery_model::store::Store;
use delivery_model::store::connection::fred_config;
use fred::prelude::*;
use prometheus::Registry;
use service_common::config::Settings;
use service_common::service::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Cluster, ClusterOptions};
use crate::inproc::{registry_metric, test_settings};
use crate::redis::hookline_cluster_acl_rule;
use crate::wait;

/// How long [`OnCluster::wait_metric`] waits.
const WAIT: Duration = Duration::from_secs(15);

struct Running {
    name: &'static str,
    registry: Registry,
    token: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A 3-master cluster with the services' ACL user, the settings every service here runs with, a store and
/// a raw client of the test's own on the same options, and the services started with [`run`](Self::run).
pub struct OnCluster {
    /// The test's store (not a service's): to prepare state and read results.
    pub store: Store,
    /// A client of its own, on the services' options, for what the test reads directly.
    pub raw: Client,
    pub settings: Settings,
    services: Vec<Running>,
    /// Dropped last: the servers outlive the services and the store.
    pub cluster: Cluster,
}

impl OnCluster {
    /// A cluster laid out in `shards` queue shards, with `extra` settings (`HOOKLINE__…` pairs) on top of
    /// [`test_settings`]; no service running yet. Keys are unprefixed: the ACL user's key patterns are.
    ///
    /// # Panics
    /// The cluster cannot be started or reached.
    pub async fn prepare(shards: u16, extra: &[(&str, &str)]) -> Self {
        let cluster = Cluster::start_with(ClusterOptions {
            acl_rule: Some(hookline_cluster_acl_rule()),
            ..ClusterOptions::new(3, 0)
        });
        let shards = shards.to_string();
        let mut env: Vec<(&str, &str)> = extra.to_vec();
        env.push(("HOOKLINE__REDIS__CLUSTER_SHARDS", &shards));
        env.push(("HOOKLINE__REDIS__KEY_PREFIX", ""));
        let access: Vec<(String, String)> = cluster
            .service_env()
            .into_iter()
            .filter(|(k, _)| k != "HOOKLINE__REDIS__URL")
            .collect();
        env.extend(access.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let settings = test_settings(&cluster.url(), &env);
        let store = Store::connect(&settings.store_options())
            .await
            .unwrap_or_else(|e| panic!("the test's store on the cluster: {e}"));
        let raw = fred_config(&settings.store_options())
            .and_then(|c| Ok(Builder::from_config(c).build()?))
            .unwrap_or_else(|e| panic!("the test's client: {e}"));
        raw.init()
            .await
            .unwrap_or_else(|e| panic!("the test's client: {e}"));
        Self {
            store,
            raw,
            settings,
            services: Vec::new(),
            cluster,
        }
    }

    /// Starts `run` as service `name` (its own store, connected as that service would be, and its own
    /// registry and shutdown token).
    ///
    /// # Panics
    /// The service cannot connect.
    pub async fn run<F, Fut>(&mut self, name: &'static str, run: F)
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let store = service_common::redis::connect(&self.settings)
            .await
            .unwrap_or_else(|e| panic!("{name} on the cluster: {e}"));
        let (registry, token) = (Registry::new(), CancellationToken::new());
        let task = tokio::spawn(run(Context {
            settings: self.settings.clone(),
            store,
            registry: registry.clone(),
            shutdown: token.clone(),
        }));
        self.services.push(Running {
            name,
            registry,
            token,
            task: Some(task),
        });
    }

    /// A counter or gauge of service `name` ([`InProcess::metric`](crate::inproc::InProcess::metric)).
    pub fn metric(&self, name: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.services
            .iter()
            .filter(|s| s.name == name)
            .map(|s| registry_metric(&s.registry, metric, labels))
            .sum()
    }

    /// Waits until [`metric`](Self::metric) reaches `n`.
    pub async fn wait_metric(&self, name: &str, metric: &str, labels: &[(&str, &str)], n: f64) {
        wait::until(
            &format!("{name}: {metric}{labels:?} >= {n}"),
            WAIT,
            || async { (self.metric(name, metric, labels) >= n).then_some(()) },
        )
        .await;
    }

    /// Stops every service (the last started first) and checks that each returned cleanly and that the
    /// services' ACL user was refused nothing.
    ///
    /// # Panics
    /// A service failed or panicked, or the ACL log is not empty.
    pub async fn stop(mut self) {
        while let Some(mut s) = self.services.pop() {
            s.token.cancel();
            if let Some(task) = s.task.take() {
                let r = tokio::time::timeout(WAIT, task)
                    .await
                    .unwrap_or_else(|_| panic!("{} did not stop", s.name));
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => panic!("{} failed: {e:#}", s.name),
                    Err(e) => panic!("{} panicked: {e}", s.name),
                }
            }
        }
        self.store.quit().await;
        let _ = self.raw.quit().await;
        let log = self.cluster.acl_log();
        assert!(
            log.is_empty(),
            "the services' ACL user was refused: {log:?}"
        );
    }
}

impl Drop for OnCluster {
    fn drop(&mut self) {
        for s in &mut self.services {
            s.token.cancel();
            if let Some(task) = s.task.take() {
                task.abort();
            }
        }
    }
}
