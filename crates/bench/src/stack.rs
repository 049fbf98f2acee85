//! One measured stack: a private Redis (one redis-server, or a Redis Cluster: [`RedisSpec`]), the receiver,
//! the services (release binaries) and the subscriptions, started fresh for every run so that no run
//! inherits another's records, backlog or Redis memory.
//!
//! Services run with Hookline's defaults. The only settings the stack adds are the ones a loopback benchmark
//! cannot do without (Redis URL, JWT secret, http:// and 127.0.0.1 targets, quiet logs); a phase that needs
//! another override passes it in [`StackSpec::extra_env`] and says why, and `--service-env` applies to all.

use std::time::Duration;

use delivery_model::store::connection::fred_config;
use delivery_model::store::{Store, StoreOptions};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use fred::prelude::{Builder, Client, ClientLike};
use service_common::config::Settings;
use test_support::service::{Service, ServiceBin};

use crate::backend::{Backend, RedisNode, RedisSpec, command_calls};
use crate::cpu::{Role, bench_roles};
use crate::hops::Exporter;
use crate::load::{self, EVENT_TYPE, Publisher};
use crate::sink::Sink;

/// The JWT secret the gateway of every stack verifies with (at least 32 bytes).
const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef";

/// Events published (and delivered) before a run's measurements start: connections, script cache.
const WARM_UP_EVENTS: usize = 200;

/// What to start.
pub(crate) struct StackSpec<'a> {
    /// The Redis the stack runs on.
    pub(crate) redis: RedisSpec,
    /// Matching subscriptions per event, all on the receiver's host:port (distinct paths).
    pub(crate) subscriptions: usize,
    /// Start an api-gateway (events come through `POST /events`).
    pub(crate) gateway: bool,
    pub(crate) workers: usize,
    /// How long the receiver waits before answering.
    pub(crate) receiver_delay: Duration,
    /// A phase's own overrides; each must be explained where it is set.
    pub(crate) extra_env: Vec<(String, String)>,
    /// `--service-env`, applied last.
    pub(crate) service_env: &'a [(String, String)],
}

/// A running stack. Fields drop in order: services before Redis, so they never see Redis vanish.
pub(crate) struct Stack {
    pub(crate) sink: Sink,
    pub(crate) store: Store,
    pub(crate) raw: Client,
    pub(crate) gateway: Option<Service>,
    pub(crate) consumer: Service,
    pub(crate) workers: Vec<Service>,
    /// The services' settings as they load them (defaults + the stack's environment).
    pub(crate) settings: Settings,
    pub(crate) subscriptions: usize,
    /// The receiver's answer delay: an arrival is counted before the answer, so an attempt ends this long
    /// after its delivery is seen.
    pub(crate) receiver_delay: Duration,
    /// The Redis processes serving data (CPU and command counts are read from them).
    pub(crate) redis_nodes: Vec<RedisNode>,
    pub(crate) redis: Backend,
}

/// The services' environment: the loopback necessities, then `extra`, then `overrides`.
pub(crate) fn env(
    redis_url: &str,
    extra: &[(String, String)],
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("HOOKLINE__REDIS__URL", redis_url),
        ("HOOKLINE__AUTH__JWT_SECRET", JWT_SECRET),
        ("HOOKLINE__OUTBOUND__ALLOW_HTTP_TARGETS", "true"),
        ("HOOKLINE__OUTBOUND__ALLOWLIST", "127.0.0.1"),
        // Start-up lines only (the harness reads the `listening` lines). Per-request and per-event info
        // lines (the gateway's `request served` and `event published`) stay off, as they would cost a JSON
        // line per event through a pipe the harness drains: a cost of the test harness, not of Hookline.
        (
            "HOOKLINE__TELEMETRY__LOG_LEVEL",
            "warn,service_common=info,api_gateway=info,api_gateway::middleware=warn,api_gateway::routes=warn",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, val) in extra.iter().chain(overrides) {
        v.retain(|(ek, _)| ek != k);
        v.push((k.clone(), val.clone()));
    }
    v
}

impl Stack {
    /// Starts everything `spec` asks for, with `spec.subscriptions` active subscriptions (written straight
    /// into the store: the benchmark measures delivery, not verification).
    ///
    /// # Errors
    /// Redis or the receiver cannot be reached, or the environment is not a valid configuration.
    ///
    /// # Panics
    /// When a service binary is missing or does not start (the test harness's rule; its output is printed).
    pub(crate) async fn start(spec: &StackSpec<'_>) -> anyhow::Result<Self> {
        let redis = Backend::start(spec.redis);
        let sink = Sink::start(spec.receiver_delay)?;
        let mut extra = Backend::extra_env(spec.redis);
        extra.extend(spec.extra_env.iter().cloned());
        let e = env(&redis.url(), &extra, spec.service_env);
        let settings = Settings::load_from(e.clone())?;
        // The services' own store options (so the same key layout and shard count), with a pool and a
        // timeout for a publisher that floods.
        let opts = StoreOptions {
            pool_size: 4,
            command_timeout: Duration::from_secs(10),
            ..settings.store_options()
        };
        let store = Store::connect(&opts).await?;
        let k = spec.subscriptions.max(1);
        for i in 0..k {
            let now = delivery_model::time::now_micros();
            let sub = Subscription {
                secret: Some("bench-secret-0123456789abcdef".into()),
                ..Subscription::new(
                    "bench",
                    format!("bench-{i}"),
                    sink.url(i),
                    vec![EVENT_TYPE.into()],
                    SubscriptionStatus::Active,
                    now,
                )
            };
            store.create_subscription(&sub).await?;
        }
        let gateway = if spec.gateway {
            let g = Service::start(ServiceBin::ApiGateway, &e).await;
            // Started means its API listener is up; its ops listener (metrics) logs its own line.
            g.wait_for_log(r#""kind":"ops""#, Duration::from_secs(10))
                .await;
            Some(g)
        } else {
            None
        };
        let consumer = Service::start(ServiceBin::EventConsumer, &e).await;
        let mut workers = Vec::new();
        for _ in 0..spec.workers.max(1) {
            workers.push(Service::start(ServiceBin::DeliveryWorker, &e).await);
        }
        let raw = Builder::from_config(fred_config(&opts)?).build()?;
        raw.init().await?;
        let redis_nodes = redis.nodes()?;
        Ok(Self {
            sink,
            store,
            raw,
            gateway,
            consumer,
            workers,
            settings,
            subscriptions: k,
            receiver_delay: spec.receiver_delay,
            redis_nodes,
            redis,
        })
    }

    /// The publisher for this stack: the gateway's `POST /events` when it has one, else XADD.
    ///
    /// # Errors
    /// The token cannot be minted.
    pub(crate) fn publisher(&self, producers: usize) -> anyhow::Result<Publisher> {
        match &self.gateway {
            Some(g) => Publisher::api(&g.api_url("/events"), &self.settings.auth, producers),
            None => Ok(Publisher::Xadd(self.store.clone())),
        }
    }

    /// Publishes [`WARM_UP_EVENTS`] events and waits for their deliveries, then clears the receiver.
    ///
    /// # Errors
    /// Publishing fails, or the deliveries do not all arrive within a minute.
    pub(crate) async fn warm_up(&self, publisher: &Publisher) -> anyhow::Result<()> {
        let sent = load::burst(publisher, WARM_UP_EVENTS, 32).await;
        sent.ensure_all(WARM_UP_EVENTS)?;
        self.sink
            .expect(
                (WARM_UP_EVENTS * self.subscriptions) as u64,
                Duration::from_secs(60),
            )
            .await?;
        // Let the last attempts answer and write their outcomes, so none falls into the measured window.
        tokio::time::sleep(self.settle()).await;
        self.sink.reset();
        Ok(())
    }

    /// How long after the last arrival every attempt has answered and written its outcome (the receiver's
    /// delay plus a margin for the outcome writes, which are group-committed).
    pub(crate) fn settle(&self) -> Duration {
        self.receiver_delay + Duration::from_millis(300)
    }

    /// Commands each of [`redis_nodes`](Self::redis_nodes) has executed since it started, in that order
    /// (`None` for a node that did not answer).
    pub(crate) fn redis_command_calls(&self) -> Vec<Option<u64>> {
        self.redis_nodes
            .iter()
            .map(|n| {
                self.redis
                    .info(n.port, "commandstats")
                    .map(|i| command_calls(&i))
            })
            .collect()
    }

    /// Where CPU is charged: each Redis process (first, in [`redis_nodes`](Self::redis_nodes) order), each
    /// service, the publisher and the receiver.
    pub(crate) fn roles(&self) -> Vec<Role> {
        let mut roles: Vec<Role> = self
            .redis_nodes
            .iter()
            .map(|n| Role::process(n.name.clone(), n.pid))
            .collect();
        if let Some(g) = &self.gateway {
            roles.push(Role::process("api-gateway", g.pid()));
        }
        roles.push(Role::process("event-consumer", self.consumer.pid()));
        for (i, w) in self.workers.iter().enumerate() {
            let name = if self.workers.len() == 1 {
                "delivery-worker".to_owned()
            } else {
                format!("delivery-worker {}", i + 1)
            };
            roles.push(Role::process(name, w.pid()));
        }
        roles.extend(bench_roles());
        roles
    }

    /// Every service whose histograms a hop may come from, with its kind.
    pub(crate) fn exporters(&self) -> Vec<(Exporter, &Service)> {
        let mut v = Vec::new();
        if let Some(g) = &self.gateway {
            v.push((Exporter::Gateway, g));
        }
        v.push((Exporter::Consumer, &self.consumer));
        v.extend(self.workers.iter().map(|w| (Exporter::Worker, w)));
        v
    }
}
