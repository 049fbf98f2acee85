//! Prometheus metrics of the cleanup service. Each doc comment is the metric's HELP text. Labels stay
//! bounded: the seven actions ([`Action`]) and four cycle outcomes ([`CycleEnd`]), both defined here so that
//! this module depends on no other (the cycle and the lease report through it).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// What cleanup changes; the `action` label of `hookline_cleanup_items_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// An `in_progress` delivery without callbacks became `failed`.
    StaleFailed,
    /// An index member whose record had expired was removed.
    IndexPruned,
    /// An idle subscription became `pending_delete`.
    IdlePendingDelete,
    /// A broken subscription became `pending_delete`.
    BrokenPendingDelete,
    /// A `pending_delete` subscription was deleted.
    SubscriptionDeleted,
    /// An acknowledged stream entry was trimmed.
    StreamTrimmed,
    /// A parked delivery was moved to its queue by the fair sweep (its subscription's places had gone
    /// missing), not by an acknowledgement.
    FairRefilled,
    /// A FIFO lane whose head was done with (its record expired while it waited) was moved on by the sweep.
    LaneMoved,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::StaleFailed,
        Action::IndexPruned,
        Action::IdlePendingDelete,
        Action::BrokenPendingDelete,
        Action::SubscriptionDeleted,
        Action::StreamTrimmed,
        Action::FairRefilled,
        Action::LaneMoved,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Action::StaleFailed => "stale_failed",
            Action::IndexPruned => "index_pruned",
            Action::IdlePendingDelete => "idle_pending_delete",
            Action::BrokenPendingDelete => "broken_pending_delete",
            Action::SubscriptionDeleted => "subscription_deleted",
            Action::StreamTrimmed => "stream_trimmed",
            Action::FairRefilled => "fair_refilled",
            Action::LaneMoved => "lane_moved",
        }
    }

    /// The slot of this action in a cycle report's counts.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// How a cycle ended; the `outcome` label of `hookline_cleanup_cycles_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CycleEnd {
    Completed,
    Interrupted,
    LeaseBusy,
    Failed,
}

impl CycleEnd {
    pub const ALL: [CycleEnd; 4] = [
        CycleEnd::Completed,
        CycleEnd::Interrupted,
        CycleEnd::LeaseBusy,
        CycleEnd::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CycleEnd::Completed => "completed",
            CycleEnd::Interrupted => "interrupted",
            CycleEnd::LeaseBusy => "lease_busy",
            CycleEnd::Failed => "failed",
        }
    }
}

/// All metrics of this service.
#[derive(Clone)]
pub struct Metrics {
    /// Items changed, by action (stale_failed, index_pruned, idle_pending_delete, broken_pending_delete,
    /// subscription_deleted, stream_trimmed, fair_refilled, lane_moved).
    pub items: IntCounterVec,
    /// Cycles, by how they ended (completed, interrupted, lease_busy, failed).
    pub cycles: IntCounterVec,
    /// Duration of the cycles run under the lease, in seconds.
    pub cycle_duration: Histogram,
    /// When the last cycle completed, in Unix seconds (0 until one has).
    pub last_success: IntGauge,
    /// 1 while this replica holds the cleanup lease, else 0.
    pub lease_held: IntGauge,
    /// Failed deliveries queued again by redrive jobs.
    pub redrive_queued: IntCounter,
    /// Failed deliveries a redrive job matched but did not queue (changed meanwhile, subscription inactive).
    pub redrive_skipped: IntCounter,
    /// Redrive jobs running, as the runner holding the lease sees them (0 on the other replicas).
    pub redrive_active: IntGauge,
    /// 1 while this replica holds the redrive runner's lease, else 0.
    pub redrive_lease_held: IntGauge,
    /// Deliveries parked beyond their subscription's fair share of the queue, at the last cycle.
    pub fair_parked: IntGauge,
    /// Subscriptions with parked deliveries, at the last cycle.
    pub fair_parking: IntGauge,
    /// Non-empty FIFO lanes, deliveries in them, and lanes blocked on a failed head, at the last cycle.
    pub lanes: IntGauge,
    pub lane_deliveries: IntGauge,
    pub lanes_blocked: IntGauge,
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
            redrive_queued: IntCounter::new(
                "hookline_cleanup_redrive_queued_total",
                "Failed deliveries queued again by redrive jobs.",
            )?,
            redrive_skipped: IntCounter::new(
                "hookline_cleanup_redrive_skipped_total",
                "Failed deliveries a redrive job matched but did not queue.",
            )?,
            redrive_active: IntGauge::new(
                "hookline_cleanup_redrive_active_jobs",
                "Redrive jobs running (reported by the replica holding the redrive lease).",
            )?,
            redrive_lease_held: IntGauge::new(
                "hookline_cleanup_redrive_lease_held",
                "1 while this replica holds the redrive runner's lease.",
            )?,
            fair_parked: IntGauge::new(
                "hookline_fair_parked_deliveries",
                "Deliveries parked beyond their subscription's fair share of the queue (at the last cleanup cycle).",
            )?,
            fair_parking: IntGauge::new(
                "hookline_fair_parking_subscriptions",
                "Subscriptions with deliveries parked beyond their fair share (at the last cleanup cycle).",
            )?,
            lanes: IntGauge::new(
                "hookline_lanes",
                "Non-empty FIFO lanes of ordered subscriptions (at the last cleanup cycle).",
            )?,
            lane_deliveries: IntGauge::new(
                "hookline_lane_deliveries",
                "Deliveries in FIFO lanes, each lane's head included: the lane depth (at the last cleanup cycle).",
            )?,
            lanes_blocked: IntGauge::new(
                "hookline_lanes_blocked",
                "FIFO lanes waiting for an administrator: their head failed and the subscription blocks on failure (at the last cleanup cycle).",
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
        registry.register(Box::new(m.redrive_queued.clone()))?;
        registry.register(Box::new(m.redrive_skipped.clone()))?;
        registry.register(Box::new(m.redrive_active.clone()))?;
        registry.register(Box::new(m.redrive_lease_held.clone()))?;
        registry.register(Box::new(m.fair_parked.clone()))?;
        registry.register(Box::new(m.fair_parking.clone()))?;
        registry.register(Box::new(m.lanes.clone()))?;
        registry.register(Box::new(m.lane_deliveries.clone()))?;
        registry.register(Box::new(m.lanes_blocked.clone()))?;
        Ok(m)
    }

    pub(crate) fn changed(&self, action: Action, n: u64) {
        self.items.with_label_values(&[action.label()]).inc_by(n);
    }

    pub(crate) fn cycle_ended(&self, end: CycleEnd) {
        self.cycles.with_label_values(&[end.label()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_labels_are_distinct_and_indexed_in_order() {
        for (i, a) in Action::ALL.into_iter().enumerate() {
            assert_eq!(a.index(), i);
        }
        let mut labels: Vec<_> = Action::ALL.iter().map(|a| a.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Action::ALL.len());
    }
}
