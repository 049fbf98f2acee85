//! Prometheus metrics of the cleanup service. Each doc comment is the metric's HELP text. Labels stay
//! bounded: the six actions and four cycle outcomes.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

use crate::cycle::{Action, CycleEnd};

/// All metrics of this service.
#[derive(Clone)]
pub struct Metrics {
    /// Items changed, by action (stale_failed, index_pruned, idle_pending_delete, broken_pending_delete,
    /// subscription_deleted, stream_trimmed).
    pub items: IntCounterVec,
    /// Cycles, by how they ended (completed, interrupted, lease_busy, failed).
    pub cycles: IntCounterVec,
    /// Duration of the cycles run under the lease, in seconds.
    pub cycle_duration: Histogram,
    /// When the last cycle completed, in Unix seconds (0 until one has).
    pub last_success: IntGauge,
    /// 1 while this replica holds the cleanup lease, else 0.
    pub lease_held: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics, every label already at zero so dashboards see them from the start.
    ///
    /// # Errors
    /// A metric registered twice.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            items: IntCounterVec::new(
                Opts::new("hookline_cleanup_items_total", "Items changed, by action."),
                &["action"],
            )?,
            cycles: IntCounterVec::new(
                Opts::new(
                    "hookline_cleanup_cycles_total",
                    "Cycles, by how they ended.",
                ),
                &["outcome"],
            )?,
            cycle_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "hookline_cleanup_cycle_duration_seconds",
                    "Duration of the cycles run under the lease.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ]),
            )?,
            last_success: IntGauge::new(
                "hookline_cleanup_last_success_timestamp_seconds",
                "When the last cycle completed, in Unix seconds.",
            )?,
            lease_held: IntGauge::new(
                "hookline_cleanup_lease_held",
                "1 while this replica holds the cleanup lease.",
            )?,
        };
        for a in Action::ALL {
            m.items.with_label_values(&[a.label()]).inc_by(0);
        }
        for e in CycleEnd::ALL {
            m.cycles.with_label_values(&[e.label()]).inc_by(0);
        }
        registry.register(Box::new(m.items.clone()))?;
        registry.register(Box::new(m.cycles.clone()))?;
        registry.register(Box::new(m.cycle_duration.clone()))?;
        registry.register(Box::new(m.last_success.clone()))?;
        registry.register(Box::new(m.lease_held.clone()))?;
        Ok(m)
    }

    pub(crate) fn changed(&self, action: Action, n: u64) {
        self.items.with_label_values(&[action.label()]).inc_by(n);
    }

    pub(crate) fn cycle_ended(&self, end: CycleEnd) {
        self.cycles.with_label_values(&[end.label()]).inc();
    }
}
