//! The lag sampler: every [`SAMPLE_EVERY`] it reads the input stream's backlog in the consumer group and
//! sets the lag gauges. Every replica samples the same shared group, so dashboards and alerts take `max`
//! over replicas. The gauges exist as long as a consumer runs: when they vanish, no consumer runs (the
//! consumer-stopped alert reads both).

use std::time::Duration;

use delivery_model::store::Store;
use delivery_model::time::now_micros;
use service_common::shutdown;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the backlog is read (three cheap Redis commands).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples until `token` is cancelled. A failed read counts as a Redis error and keeps the last values.
pub async fn run(store: Store, metrics: Metrics, token: CancellationToken) {
    loop {
        match store.events_backlog().await {
            Ok(b) => {
                let now_ms = u64::try_from(now_micros() / 1000).unwrap_or(0);
                metrics
                    .events_unread
                    .set(i64::try_from(b.unread).unwrap_or(i64::MAX));
                metrics
                    .events_pending
                    .set(i64::try_from(b.pending).unwrap_or(i64::MAX));
                metrics.events_oldest_age.set(b.oldest_age_secs(now_ms));
            }
            Err(e) => {
                metrics.redis_errors.inc();
                tracing::debug!(error = %e, "reading the input stream's backlog failed");
            }
        }
        if !shutdown::sleep(&token, SAMPLE_EVERY).await {
            return;
        }
    }
}

/// How often the lane watermark is raised whether or not batches arrive.
pub const LANES_EVERY: Duration = Duration::from_secs(1);

/// Raises the FIFO lanes' input watermark every [`LANES_EVERY`] until `token` is cancelled. A lane held
/// until the entries before it were acknowledged is released by the fan-out that acknowledges them; this
/// tick covers the acknowledgements that raise nothing themselves (another replica's last batch, malformed
/// entries, add-on routes), so a held lane never waits for the next event or for cleanup.
pub async fn raise_lanes(store: Store, metrics: Metrics, token: CancellationToken) {
    while shutdown::sleep(&token, LANES_EVERY).await {
        if let Err(e) = store.raise_lane_watermark().await {
            metrics.redis_errors.inc();
            tracing::debug!(error = %e, "raising the lane watermark failed; the next tick retries");
        }
    }
}
