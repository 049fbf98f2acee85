//! The delivery-worker service: sends every delivery and verification challenge.
//!
//! - [`worker`]: the loops — queue reader with bounded slots, reclaiming a dead worker's entries, moving due
//!   retries to the queue, gauges — and the drain on shutdown.
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

use delivery_model::store::Store;
use service_common::config::Settings;
use tokio_util::sync::CancellationToken;

/// Builds the dispatcher and runs the worker until `token` is cancelled and in-flight work has drained.
///
/// # Errors
/// Invalid outbound settings.
pub async fn run(
    settings: &Settings,
    store: Store,
    metrics: metrics::Metrics,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let client =
        client::HttpClient::new(&settings.outbound, settings.worker.max_in_flight_per_host)?;
    let delegation = delegation::Delegation::new(
        &settings.worker.delegation_key,
        &settings.worker.delegation_issuer,
        settings.worker.delegation_ttl_secs,
    );
    let cfg = dispatch::DispatchConfig::from_settings(settings)?;
    let dispatcher = Arc::new(dispatch::Dispatcher::new(
        store.clone(),
        client,
        cfg,
        delegation,
        metrics.clone(),
    ));
    worker::run(
        store,
        dispatcher,
        worker::WorkerConfig::from_settings(settings),
        metrics,
        token,
    )
    .await;
    Ok(())
}
