//! The one front door of every service's binary.
//!
//! Each service library exposes the same entry, `run(`[`Context`]`)`, and a readiness check; [`main`] owns what every `main.rs` would otherwise repeat around it:
//! 1. start-up ([`startup::init`]: TLS provider, configuration, telemetry);
//! 2. connecting to Redis, failing fast on a bad URL or credentials;
//! 3. the process's shutdown token (SIGTERM/SIGINT);
//! 4. the ops listener (`/healthz`, `/readyz`, `/metrics`), which outlives the service's drain so probes
//!    and scrapes keep answering while in-flight work finishes;
//! 5. closing the Redis connections once the service has returned.
//!
//! Tests call a service's `run` directly, in process, with their own store, registry and token.

use std::future::Future;

use anyhow::Context as _;
use delivery_model::store::Store;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// The runtime of a service whose work is one loop waiting on Redis (the event-consumer): `threads` worker
/// threads unless `TOKIO_WORKER_THREADS` (tokio's own variable) says otherwise. The other services take
/// tokio's default, a thread per core.
///
/// Why fewer threads can be better: with a thread per core, a Redis reply read by one thread often wakes a
/// task parked on another, and every such wake-up is a futex call and a context switch. A loop that spends
/// its time waiting gains nothing from a second thread and pays that hand-off per reply; at a moderate
/// rate it is most of the process's CPU per event (issue #21, figures in `docs/operations.md`).
///
/// # Errors
/// The runtime cannot be built (threads or the I/O driver).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(threads);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

/// What a service's `run` is given: its settings, its Redis, where it registers its metrics, and when to
/// stop.
pub struct Context {
    pub settings: Settings,
    pub store: Store,
    /// Rendered by `/metrics`.
    pub registry: Registry,
    /// Fired by SIGTERM/SIGINT (or by a test): stop taking work, drain, return.
    pub shutdown: CancellationToken,
}
use crate::ops::{self, ReadyCheck};
use crate::{redis, shutdown, startup};

/// Runs one service process from start-up to exit: see the module doc. `readiness` builds the service's
/// `/readyz` check; `run` is the service's entry, which returns once `shutdown` has fired and its work has
/// drained.
///
/// # Errors
/// Start-up failures (configuration, Redis, the ops listener) and whatever `run` returns.
pub async fn main<R, F, Fut>(service: &'static str, readiness: R, run: F) -> anyhow::Result<()>
where
    R: FnOnce(&Settings, &Store) -> ReadyCheck,
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (settings, _telemetry) = startup::init(service)?;
    let store = redis::connect(&settings)
        .await
        .context("connecting to Redis")?;
    let token = shutdown::token();
    let registry = Registry::new();
    let listener = ops::bind(settings.ops.listen, service)
        .await
        .context("binding the ops listener")?;
    let ready = readiness(&settings, &store);
    let ops_token = CancellationToken::new();
    let ops_task = tokio::spawn(ops::serve(
        listener,
        registry.clone(),
        ready,
        ops_token.clone(),
    ));

    // The service runs as a task on the runtime's worker threads, not on the thread that blocks in `main`:
    // there, every Redis reply (read by fred's connection tasks on the workers) had to wake another thread,
    // tens of context switches per delivery at a moderate rate (issue #21).
    let result = tokio::spawn(run(Context {
        settings,
        store: store.clone(),
        registry,
        shutdown: token,
    }))
    .await
    .unwrap_or_else(|e| Err(anyhow::anyhow!("the service task failed: {e}")));
    ops_token.cancel();
    let _ = ops_task.await;
    store.quit().await;
    tracing::info!("stopped");
    result
}
