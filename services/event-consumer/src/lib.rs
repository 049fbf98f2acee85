//! The event-consumer service: from resource-change events to delivery records.
//!
//! - [`consumer`]: the per-batch work over the input stream (match, fan out, route addon invocations,
//!   acknowledge) as a [`BatchHandler`](delivery_model::reader::BatchHandler) of the shared
//!   [`GroupReader`], and the reading spec built from settings.
//! - [`candidates`]: the subscriptions each event type can match, kept while the match generation holds.
//! - [`metrics`]: this service's Prometheus metrics.
//! - [`sampler`]: the consumer-lag gauges, sampled every 5 s, and the FIFO lanes' watermark, raised every
//!   second.

pub mod candidates;
pub mod consumer;
pub mod metrics;
pub mod sampler;

use anyhow::Context as _;
use delivery_model::reader::GroupReader;
use delivery_model::store::Store;
use service_common::config::Settings;
use service_common::ops::{self, ReadyCheck};
use service_common::service::Context;
use tokio_util::sync::CancellationToken;

/// The service's name in logs, metrics and its consumer name.
pub const SERVICE: &str = "event-consumer";

/// `/readyz`: Redis answers and the input stream's consumer group exists.
pub fn readiness(settings: &Settings, store: &Store) -> ReadyCheck {
    ops::group_ready(store.clone(), &consumer::group_spec(settings, store))
}

/// Creates the consumer group if missing, then consumes until the context's `shutdown` is cancelled. The batch in hand
/// when it fires is finished first (it takes milliseconds); entries not yet read stay in the stream for the
/// next replica.
///
/// # Errors
/// Metrics registered twice in the context's registry, or the consumer group cannot be created.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    if ctx.settings.consumer.fanout_id_key.is_empty() {
        tracing::warn!(
            "consumer.fanout_id_key is not set: fan-out delivery ids are derived from public inputs and can \
             be predicted; set it (at least 32 bytes) from a Secret"
        );
    }
    let metrics = metrics::Metrics::register(&ctx.registry)?;
    let reader = GroupReader::new(
        ctx.store.clone(),
        consumer::group_spec(&ctx.settings, &ctx.store),
    );
    reader
        .ensure_groups()
        .await
        .context("creating the input stream's consumer group")?;
    let sampling = CancellationToken::new();
    let sampler = tokio::spawn(sampler::run(
        ctx.store.clone(),
        metrics.clone(),
        sampling.clone(),
    ));
    let lanes = tokio::spawn(sampler::raise_lanes(
        ctx.store.clone(),
        metrics.clone(),
        sampling.clone(),
    ));
    let consumer = consumer::Consumer::new(ctx.store, &ctx.settings, metrics);
    reader.run(&consumer, &ctx.shutdown).await;
    sampling.cancel();
    let _ = sampler.await;
    let _ = lanes.await;
    Ok(())
}
