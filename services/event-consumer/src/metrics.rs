//! Prometheus metrics of the event-consumer. Each doc comment is the metric's HELP text.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// All metrics of this service.
#[derive(Clone)]
pub struct Metrics {
    /// Input entries processed, by outcome (fanned_out, no_match, routed, route_skipped, malformed).
    pub events: IntCounterVec,
    /// Delivery records created by fan-out.
    pub deliveries_created: IntCounter,
    /// Deliveries deferred at fan-out, by reason: `lane` (joined its FIFO lane behind an earlier delivery;
    /// queued when the lane moves on). The worker counts the deferrals of its attempts
    /// (`hookline_worker_deferrals_total`).
    pub deferrals: IntCounterVec,
    /// Input entries taken over from other consumers' pending lists (a replica died).
    pub reclaimed: IntCounter,
    /// Times the consumer group was found missing and recreated (Redis lost its data).
    pub group_recreated: IntCounter,
    /// Failed reads or writes against Redis, retried.
    pub redis_errors: IntCounter,
    /// Time to process one batch, in seconds.
    pub batch_duration: Histogram,
    /// Hop latency: from an input entry's append to the stream (its id's time, millisecond resolution) to
    /// its deliveries written and the entry acknowledged, in seconds.
    pub event_lag: Histogram,
    /// Consumer lag: input entries the consumer group has not read yet (sampled).
    pub events_unread: IntGauge,
    /// Input entries read by a consumer of the group and not acknowledged yet (sampled).
    pub events_pending: IntGauge,
    /// Age of the oldest input entry the group has not acknowledged, read or not, in seconds; 0 when caught
    /// up (sampled).
    pub events_oldest_age: Gauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    ///
    /// # Errors
    /// A metric registered twice.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            events: IntCounterVec::new(
                Opts::new(
                    "hookline_consumer_events_total",
                    "Input entries processed, by outcome.",
                ),
                &["outcome"],
            )?,
            deliveries_created: IntCounter::new(
                "hookline_consumer_deliveries_created_total",
                "Delivery records created by fan-out.",
            )?,
            deferrals: IntCounterVec::new(
                Opts::new(
                    "hookline_consumer_deferrals_total",
                    "Deliveries deferred at fan-out, by reason.",
                ),
                &["reason"],
            )?,
            reclaimed: IntCounter::new(
                "hookline_consumer_reclaimed_total",
                "Input entries taken over from other consumers' pending lists.",
            )?,
            group_recreated: IntCounter::new(
                "hookline_consumer_group_recreated_total",
                "Times the consumer group was missing and recreated.",
            )?,
            redis_errors: IntCounter::new(
                "hookline_consumer_redis_errors_total",
                "Failed Redis operations, retried.",
            )?,
            batch_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "hookline_consumer_batch_duration_seconds",
                    "Time to process one batch.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
            event_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "hookline_consumer_event_lag_seconds",
                    "Time from an input entry's append to its fan-out written and acknowledged.",
                )
                .buckets(service_common::ops::hop_buckets()),
            )?,
            events_unread: IntGauge::new(
                "hookline_consumer_events_lag",
                "Input entries the consumer group has not read yet.",
            )?,
            events_pending: IntGauge::new(
                "hookline_consumer_events_pending",
                "Input entries read and not acknowledged yet.",
            )?,
            events_oldest_age: Gauge::new(
                "hookline_consumer_events_oldest_age_seconds",
                "Age of the oldest input entry not acknowledged (0 when caught up).",
            )?,
        };
        registry.register(Box::new(m.event_lag.clone()))?;
        registry.register(Box::new(m.events_unread.clone()))?;
        registry.register(Box::new(m.events_pending.clone()))?;
        registry.register(Box::new(m.events_oldest_age.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.deliveries_created.clone()))?;
        registry.register(Box::new(m.deferrals.clone()))?;
        registry.register(Box::new(m.reclaimed.clone()))?;
        registry.register(Box::new(m.group_recreated.clone()))?;
        registry.register(Box::new(m.redis_errors.clone()))?;
        registry.register(Box::new(m.batch_duration.clone()))?;
        Ok(m)
    }
}
