//! A service run in process, the way mini-redis starts its server in its tests: the service library's
//! `run(Context)` on a spawned task against a private redis-server, with a
//! registry the test reads counters from and a token the test cancels.
//!
//! ```ignore
//! let redis = RedisServer::start();
//! let svc = InProcess::start(redis, test_settings(&redis_url, &[]), event_consumer::run).await;
//! // … publish, then wait on svc.counter("hookline_consumer_events_total", &[("outcome", "fanned_out")])
//! svc.stop().await.unwrap();
//! ```

use std::future::Future;
use std::ops::Deref;
use std::time::Duration;

use prometheus::Registry;
use service_common::config::Settings;
use service_common::service::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::redis::RedisServer;
use crate::store::StoreFixture;

/// Longest a stopped service may take to return before [`InProcess::stop`] gives up on it.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The HS256 secret of [`test_settings`].
pub const TEST_JWT_SECRET: &str = "in-process-test-secret-0123456789abcdef";

/// Settings for an in-process service on `redis_url`: the embedded defaults, a random key prefix, loopback
/// receivers reachable over plain HTTP through the allowlist, and `extra` (`HOOKLINE__…` pairs) on top.
///
/// # Panics
/// Invalid `extra` settings (a test's own mistake).
pub fn test_settings(redis_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("HOOKLINE__REDIS__URL".into(), redis_url.into()),
        ("HOOKLINE__REDIS__POOL_SIZE".into(), "2".into()),
        (
            "HOOKLINE__REDIS__KEY_PREFIX".into(),
            format!("t{}:", uuid::Uuid::new_v4().simple()),
        ),
        // Every service validates the auth section; the background services never use the secret.
        ("HOOKLINE__AUTH__JWT_SECRET".into(), TEST_JWT_SECRET.into()),
        (
            "HOOKLINE__OUTBOUND__ALLOW_HTTP_TARGETS".into(),
            "true".into(),
        ),
        ("HOOKLINE__OUTBOUND__ALLOWLIST".into(), "127.0.0.1".into()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Settings::load_from(env).unwrap_or_else(|e| panic!("test settings: {e}"))
}

/// One service running in this process, with its Redis. Derefs to the [`StoreFixture`] on the service's
/// own store options (its `store`, `raw` client and `redis` server), so dropping it checks, like every
/// store test, that no queue or input entry was left pending. Fields drop in order: the task is aborted
/// before the fixture checks.
pub struct InProcess {
    pub settings: Settings,
    /// The registry the service registered its metrics in.
    pub registry: Registry,
    token: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    fixture: StoreFixture,
}

impl Deref for InProcess {
    type Target = StoreFixture;

    fn deref(&self) -> &StoreFixture {
        &self.fixture
    }
}

impl InProcess {
    /// Connects a store and a raw client to `redis` with the service's store options, then spawns `run`
    /// with `settings`.
    ///
    /// # Panics
    /// Redis cannot be reached.
    pub async fn start<F, Fut>(redis: RedisServer, settings: Settings, run: F) -> Self
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let fixture = StoreFixture::on(redis, settings.store_options()).await;
        Self::start_on(fixture, settings, run)
    }

    /// As [`start`](Self::start), on a fixture the test has already prepared state with (connected with
    /// `settings.store_options()`).
    pub fn start_on<F, Fut>(fixture: StoreFixture, settings: Settings, run: F) -> Self
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let registry = Registry::new();
        let token = CancellationToken::new();
        let task = tokio::spawn(run(Context {
            settings: settings.clone(),
            store: fixture.store.clone(),
            registry: registry.clone(),
            shutdown: token.clone(),
        }));
        Self {
            settings,
            registry,
            token,
            task: Some(task),
            fixture,
        }
    }

    /// Cancels the service's token and waits for `run` to return (at most [`STOP_DEADLINE`]).
    ///
    /// # Errors
    /// What `run` returned, a panic in it, or the deadline.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.token.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(STOP_DEADLINE, task).await {
            Ok(joined) => joined?,
            Err(_) => anyhow::bail!("the service did not stop within {STOP_DEADLINE:?}"),
        }
    }

    /// Whether `run` has returned (by itself: an error, or the end of its work).
    pub fn finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// The value of a counter or gauge in the service's registry whose labels include `labels`; 0 when no
    /// such series exists yet.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        registry_metric(&self.registry, name, labels)
    }
}

/// The value of a counter or gauge in `registry` whose labels include `labels`; 0 when no such series
/// exists yet.
pub fn registry_metric(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        // A series is either a counter or a gauge; the other reads as 0.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
