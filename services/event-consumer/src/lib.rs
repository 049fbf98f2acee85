//! The event-consumer service: from resource-change events to delivery records.
//!
//! - [`consumer`]: the read loop over the input stream (batched `XREADGROUP`, own-pending recovery,
//!   reclaiming a dead replica's entries, recreating a lost group) and the per-batch processing: match,
//!   fan out, route addon invocations, acknowledge.
//! - [`metrics`]: this service's Prometheus metrics.

pub mod consumer;
pub mod metrics;

use delivery_model::store::Store;
use service_common::config::Settings;
use tokio_util::sync::CancellationToken;

/// Runs the consumer until `token` is cancelled. The batch in hand when it fires is finished first (it
/// takes milliseconds); entries not yet read stay in the stream for the next replica.
pub async fn run(
    settings: &Settings,
    store: Store,
    metrics: metrics::Metrics,
    token: CancellationToken,
) {
    let cfg = consumer::ConsumerConfig::from_settings(settings);
    consumer::Consumer::new(store, cfg, metrics)
        .run(token)
        .await;
}
