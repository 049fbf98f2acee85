//! The delivery-worker service: sends every delivery and verification challenge.
//!
//! - [`worker`]: the loops — the shared queue reader with bounded slots as its handler, moving due retries to
//!   the queue, gauges — and the drain on shutdown.
//! - [`dispatch`]: one queue entry start to finish (lease, request, outcome, fenced write), and challenges.
//! - [`outcomes`]: the group commit that writes the outcomes of attempts finished meanwhile in one call.
//! - [`client`]: the one outbound HTTP client (keep-alive, HTTP/2, rustls, timeouts, capped bodies).
//! - [`guard`]: the outbound address policy (SSRF guard) the client's resolver applies at connect time.
//! - [`delegation`]: TMI's `X-TMI-Delegation-Token` for addon deliveries.
//! - [`metrics`]: this service's Prometheus metrics.

pub mod client;
pub mod delegation;
pub mod dispatch;
pub mod guard;
pub mod metrics;
pub mod outcomes;
pub mod worker;

use std::sync::Arc;

use anyhow::Context as _;
use delivery_model::reader::GroupReader;
use delivery_model::store::Store;
use service_common::config::Settings;
use service_common::ops::{self, ReadyCheck};
use service_common::service::Context;

/// The service's name in logs, metrics and its consumer name.
pub const SERVICE: &str = "delivery-worker";

/// `/readyz`: Redis answers and the queue's consumer group exists.
pub fn readiness(settings: &Settings, store: &Store) -> ReadyCheck {
    ops::group_ready(store.clone(), &worker::group_spec(settings, store))
}

/// Builds the dispatcher, creates the queue's consumer group if missing, and runs the worker until
/// `shutdown` is cancelled and in-flight work has drained.
///
/// # Errors
/// Invalid outbound settings, metrics registered twice in `registry`, or the consumer group cannot be
/// created.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let (settings, store) = (&ctx.settings, ctx.store);
    let metrics = metrics::Metrics::register(&ctx.registry)?;
    let reader = GroupReader::new(store.clone(), worker::group_spec(settings, &store));
    reader
        .ensure_groups()
        .await
        .context("creating the queue's consumer group")?;
    let cfg = dispatch::DispatchConfig::from_settings(settings)?;
    let client = client::HttpClient::new(&settings.outbound, cfg.host_ceiling())?;
    let delegation = delegation::Delegation::new(
        settings.worker.delegation_key.expose(),
        &settings.worker.delegation_issuer,
        settings.worker.delegation_ttl_secs,
        &settings.auth.admin_group,
    );
    let dispatcher = Arc::new(dispatch::Dispatcher::new(
        store.clone(),
        client,
        cfg,
        delegation,
        metrics.clone(),
    ));
    worker::run(
        reader,
        store,
        dispatcher,
        worker::WorkerConfig::from_settings(settings),
        metrics,
        ctx.shutdown,
    )
    .await;
    Ok(())
}
