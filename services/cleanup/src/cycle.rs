//! One cleanup cycle: every step in turn, chunk by chunk, under the lease.
//!
//! Steps, in TMI's order followed by Hookline's own:
//!
//! 1. **Stale** — `in_progress` deliveries without activity for `stale_after` become `failed`
//!    ([`Store::fail_stale_deliveries`]), oldest first from the activity index.
//! 2. **Lifecycle** — active subscriptions that are idle or broken become `pending_delete`
//!    ([`crate::lifecycle::verdict`], applied by compare-and-set). Steps 2 and 3 start a walk over their
//!    status set at most once per `interval`, so catch-up cycles run back to back do not re-read every
//!    subscription each time.
//! 3. **Deletion** — `pending_delete` subscriptions past the grace period are deleted with their add-ons
//!    ([`Store::delete_subscription`]; their deliveries expire by TTL).
//! 4. **Indexes** — at most every `index_pass_interval`, a pass registers index keys (bounded `SCAN`) and then
//!    walks every delivery index, removing members whose record has expired.
//! 5. **Streams** — `tmi:events` and the queue lose the entries every consumer group has acknowledged.
//! 6. **Fair** — the safety nets of flow control: fair sharing's ([`Store::fair_sweep`]: a subscription whose
//!    counted queue places went missing is refilled from its parked deliveries) and FIFO lanes'
//!    ([`Store::lane_sweep`]: a lane whose head's record expired moves on); parked and lane depths are
//!    sampled.
//!
//! Pacing inside a step follows svix's `expired_message_cleaner`: a full chunk means more work, so the next
//! chunk runs at once; a partial chunk means the step has caught up. A step stops after its chunk budget; the
//! cycle then reports that it has not caught up and the loop starts the next cycle at once, so no step waits
//! long behind another. After every chunk the lease is renewed and the walk state saved (one script), and the
//! shutdown token is checked: a cycle stops between chunks, never inside one.
//!
//! [`Store::fail_stale_deliveries`]: delivery_model::store::Store::fail_stale_deliveries
//! [`Store::delete_subscription`]: delivery_model::store::Store::delete_subscription
//! [`Store::fair_sweep`]: delivery_model::store::Store::fair_sweep
//! [`Store::lane_sweep`]: delivery_model::store::Store::lane_sweep

use std::time::{Duration, Instant};

use delivery_model::ids::SubscriptionId;
use delivery_model::store::Store;
use delivery_model::store::cleanup::{IndexPosition, TrimChunk};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::config::{CleanupConfig, stale_message};
use crate::error::Result;
use crate::lease::Lease;
use crate::lifecycle::{Verdict, due_for_deletion, verdict};
use crate::metrics::Metrics;
// The metric label enums live in `metrics` (which needs nothing from here); re-exported at their old path.
pub use crate::metrics::{Action, CycleEnd};
use crate::state::{IndexPass, START, WalkState};

/// Subscriptions read at once within a chunk.
const READ_CONCURRENCY: usize = 32;

/// The steps of a cycle, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Stale,
    Lifecycle,
    Deletion,
    Indexes,
    Streams,
    Fair,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Stale,
        Step::Lifecycle,
        Step::Deletion,
        Step::Indexes,
        Step::Streams,
        Step::Fair,
    ];
}

/// How many chunks each step may run in one cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// The loop: a step stops after this many chunks, so the others get their turn.
    PerStep(u32),
    /// `--once`: every step runs until it has caught up.
    Unlimited,
}

impl Budget {
    fn exhausted(self, chunks: u32) -> bool {
        matches!(self, Budget::PerStep(max) if chunks >= max)
    }
}

/// What a cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub(crate) changed: [u64; Action::ALL.len()],
    /// Every step caught up; false when a step stopped at its chunk budget with work left.
    pub caught_up: bool,
    pub duration: Duration,
}

impl CycleReport {
    /// Items changed by `action` in this cycle.
    pub fn changed(&self, action: Action) -> u64 {
        self.changed[action.index()]
    }

    fn total(&self) -> u64 {
        self.changed.iter().sum()
    }
}

/// The result of [`Cleaner::cycle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CycleOutcome {
    /// Every step ran (up to its budget).
    Completed(CycleReport),
    /// Shutdown was requested; the cycle stopped between two chunks with its state saved.
    Interrupted(CycleReport),
    /// Another replica holds the lease: nothing was done.
    LeaseBusy,
}

/// Runs cleanup cycles against one store.
pub struct Cleaner {
    store: Store,
    cfg: CleanupConfig,
    metrics: Metrics,
    stale_error: String,
}

fn micros(d: Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

impl Cleaner {
    pub fn new(store: Store, cfg: CleanupConfig, metrics: Metrics) -> Self {
        let stale_error = stale_message(cfg.stale_after);
        Self {
            store,
            cfg,
            metrics,
            stale_error,
        }
    }

    /// Runs one cycle if the lease is free.
    ///
    /// # Errors
    /// Redis failure or a lost lease; the lease is released (or left to expire) and the walk state of the
    /// last finished chunk is kept, so the next cycle resumes there.
    pub async fn cycle(&self, token: &CancellationToken, budget: Budget) -> Result<CycleOutcome> {
        let lease = match Lease::acquire(
            &self.store,
            &self.cfg.replica,
            self.cfg.lease_ttl,
            &self.metrics,
        )
        .await
        {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                self.metrics.cycle_ended(CycleEnd::LeaseBusy);
                tracing::debug!("another replica holds the cleanup lease; skipping this cycle");
                return Ok(CycleOutcome::LeaseBusy);
            }
            Err(e) => {
                self.metrics.cycle_ended(CycleEnd::Failed);
                return Err(e);
            }
        };
        let started = Instant::now();
        let mut report = CycleReport {
            caught_up: true,
            ..CycleReport::default()
        };
        let run = self.steps(&lease, token, budget, &mut report).await;
        lease.release().await;
        report.duration = started.elapsed();
        self.metrics
            .cycle_duration
            .observe(report.duration.as_secs_f64());
        let end = match &run {
            Ok(Run::Finished) => CycleEnd::Completed,
            Ok(Run::Interrupted) => CycleEnd::Interrupted,
            Err(_) => CycleEnd::Failed,
        };
        self.metrics.cycle_ended(end);
        self.log(&report, end);
        match run? {
            Run::Finished => {
                let now_secs = now_micros() / 1_000_000;
                self.metrics.last_success.set(now_secs);
                Ok(CycleOutcome::Completed(report))
            }
            Run::Interrupted => Ok(CycleOutcome::Interrupted(report)),
        }
    }

    fn log(&self, report: &CycleReport, end: CycleEnd) {
        let duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX);
        let c = |a: Action| report.changed(a);
        if report.total() > 0 || end != CycleEnd::Completed {
            tracing::info!(
                outcome = end.label(),
                caught_up = report.caught_up,
                duration_ms,
                stale_failed = c(Action::StaleFailed),
                index_pruned = c(Action::IndexPruned),
                idle_pending_delete = c(Action::IdlePendingDelete),
                broken_pending_delete = c(Action::BrokenPendingDelete),
                subscription_deleted = c(Action::SubscriptionDeleted),
                stream_trimmed = c(Action::StreamTrimmed),
                fair_refilled = c(Action::FairRefilled),
                lane_moved = c(Action::LaneMoved),
                "cleanup cycle ended"
            );
        } else {
            tracing::debug!(
                duration_ms,
                caught_up = report.caught_up,
                "cleanup cycle ended; nothing to change"
            );
        }
    }

    fn record(&self, report: &mut CycleReport, action: Action, n: u64) {
        if n > 0 {
            report.changed[action.index()] += n;
            self.metrics.changed(action, n);
        }
    }

    async fn steps(
        &self,
        lease: &Lease,
        token: &CancellationToken,
        budget: Budget,
        report: &mut CycleReport,
    ) -> Result<Run> {
        let mut state = WalkState::from_fields(&self.store.cleanup_state().await?);
        let mut stream = 0;
        for step in Step::ALL {
            let mut chunks = 0;
            loop {
                if token.is_cancelled() {
                    return Ok(Run::Interrupted);
                }
                let more = match step {
                    Step::Stale => self.stale_chunk(report).await?,
                    Step::Lifecycle => self.lifecycle_chunk(&mut state, report).await?,
                    Step::Deletion => self.deletion_chunk(&mut state, report).await?,
                    Step::Indexes => self.index_chunk(&mut state, report).await?,
                    Step::Streams => self.stream_chunk(&mut stream, report).await?,
                    Step::Fair => self.fair_sweep(report).await?,
                };
                lease.commit(&state).await?;
                chunks += 1;
                if !more {
                    break;
                }
                if budget.exhausted(chunks) {
                    report.caught_up = false;
                    break;
                }
            }
        }
        Ok(Run::Finished)
    }

    fn full(&self, n: u64) -> bool {
        n >= u64::from(self.cfg.chunk_size)
    }

    // ---- 1. stale in_progress deliveries -----------------------------------------------------------------

    async fn stale_chunk(&self, report: &mut CycleReport) -> Result<bool> {
        let now = now_micros();
        let cutoff = now.saturating_sub(micros(self.cfg.stale_after));
        let sweep = self
            .store
            .fail_stale_deliveries(cutoff, now, self.cfg.chunk_size, &self.stale_error)
            .await?;
        for id in &sweep.failed {
            tracing::info!(delivery.id = %id, reason = %self.stale_error, "in_progress delivery failed");
        }
        self.record(report, Action::StaleFailed, sweep.failed.len() as u64);
        Ok(self.full(sweep.examined))
    }

    // ---- 2. idle and broken subscriptions ----------------------------------------------------------------

    /// Reads subscriptions; ones deleted meanwhile are skipped, and so are unreadable ones (logged), which
    /// must not stop the lifecycle of all the others.
    async fn read_subscriptions(&self, ids: Vec<SubscriptionId>) -> Result<Vec<Subscription>> {
        let read: Vec<(SubscriptionId, delivery_model::Result<Option<Subscription>>)> =
            futures::stream::iter(ids)
                .map(|id| async move { (id, self.store.get_subscription(id).await) })
                .buffer_unordered(READ_CONCURRENCY)
                .collect()
                .await;
        let mut subs = Vec::with_capacity(read.len());
        for (id, r) in read {
            match r {
                Ok(Some(s)) => subs.push(s),
                Ok(None) => {}
                Err(e @ (delivery_model::Error::Decode(_) | delivery_model::Error::Json(_))) => {
                    tracing::warn!(subscription.id = %id, error = %e, "unreadable subscription skipped by the lifecycle");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(subs)
    }

    /// Whether a subscription walk standing at `cursor` may take a chunk now: one under way always may; a new
    /// one only once `next_walk_ms` has come.
    fn walk_due(cursor: &str, next_walk_ms: i64) -> bool {
        cursor != START || now_micros() / 1000 >= next_walk_ms
    }

    /// The start time of the walk after one that has just ended.
    fn next_walk_ms(&self) -> i64 {
        let interval = i64::try_from(self.cfg.interval.as_millis()).unwrap_or(i64::MAX);
        (now_micros() / 1000).saturating_add(interval)
    }

    async fn lifecycle_chunk(
        &self,
        state: &mut WalkState,
        report: &mut CycleReport,
    ) -> Result<bool> {
        if !Self::walk_due(&state.active_cursor, state.active_next_walk_ms) {
            return Ok(false);
        }
        let (next, ids) = self
            .store
            .scan_subscription_ids(
                SubscriptionStatus::Active,
                &state.active_cursor,
                self.cfg.chunk_size,
            )
            .await?;
        let now = now_micros();
        for sub in self.read_subscriptions(ids).await? {
            let action = match verdict(&sub, now, &self.cfg.lifecycle) {
                Verdict::Keep => continue,
                Verdict::Idle => Action::IdlePendingDelete,
                Verdict::Broken => Action::BrokenPendingDelete,
            };
            let changed = self
                .store
                .set_subscription_status(
                    sub.id,
                    SubscriptionStatus::Active,
                    SubscriptionStatus::PendingDelete,
                    now,
                    false,
                )
                .await?;
            if changed {
                tracing::info!(
                    subscription.id = %sub.id,
                    reason = action.label(),
                    publication_failures = sub.publication_failures,
                    "subscription is now pending_delete"
                );
                self.record(report, action, 1);
            }
        }
        state.active_cursor = next;
        if state.active_cursor == START {
            state.active_next_walk_ms = self.next_walk_ms();
            return Ok(false);
        }
        Ok(true)
    }

    // ---- 3. deletion -------------------------------------------------------------------------------------

    async fn deletion_chunk(
        &self,
        state: &mut WalkState,
        report: &mut CycleReport,
    ) -> Result<bool> {
        if !Self::walk_due(
            &state.pending_delete_cursor,
            state.pending_delete_next_walk_ms,
        ) {
            return Ok(false);
        }
        let (next, ids) = self
            .store
            .scan_subscription_ids(
                SubscriptionStatus::PendingDelete,
                &state.pending_delete_cursor,
                self.cfg.chunk_size,
            )
            .await?;
        let now = now_micros();
        for sub in self.read_subscriptions(ids).await? {
            if !due_for_deletion(&sub, now, &self.cfg.lifecycle) {
                continue;
            }
            // Re-read just before deleting: a subscription that left pending_delete since the chunk's read
            // (an operator's fix) must survive. `delete_subscription` itself is unconditional.
            let current = self.store.get_subscription(sub.id).await?;
            if !current.is_some_and(|s| due_for_deletion(&s, now, &self.cfg.lifecycle)) {
                continue;
            }
            // One script deletes the subscription, its index entries and its add-ons (TMI's cascade).
            if self.store.delete_subscription(sub.id).await? {
                tracing::info!(subscription.id = %sub.id, "pending_delete subscription deleted");
                self.record(report, Action::SubscriptionDeleted, 1);
            }
        }
        state.pending_delete_cursor = next;
        if state.pending_delete_cursor == START {
            state.pending_delete_next_walk_ms = self.next_walk_ms();
            return Ok(false);
        }
        Ok(true)
    }

    // ---- 4. index hygiene --------------------------------------------------------------------------------

    /// The first delivery index after `after` in key order (the first of all with `None`).
    async fn next_index(&self, after: Option<&str>) -> Result<Option<String>> {
        let keys = self.store.delivery_indexes().await?;
        Ok(keys
            .into_iter()
            .find(|k| after.is_none_or(|a| k.as_str() > a)))
    }

    async fn index_chunk(&self, state: &mut WalkState, report: &mut CycleReport) -> Result<bool> {
        if state.index == IndexPass::Idle {
            let now_ms = now_micros() / 1000;
            if now_ms < state.next_index_pass_ms {
                return Ok(false);
            }
            let interval =
                i64::try_from(self.cfg.index_pass_interval.as_millis()).unwrap_or(i64::MAX);
            state.next_index_pass_ms = now_ms.saturating_add(interval);
            state.index = IndexPass::Scanning {
                cursor: START.to_owned(),
            };
        }
        state.index = match &state.index {
            IndexPass::Idle => IndexPass::Idle,
            IndexPass::Scanning { cursor } => {
                let (next, added) = self
                    .store
                    .discover_delivery_indexes(cursor, self.cfg.chunk_size)
                    .await?;
                if added > 0 {
                    tracing::debug!(count = added, "delivery indexes registered for pruning");
                }
                if next != START {
                    IndexPass::Scanning { cursor: next }
                } else {
                    match self.next_index(None).await? {
                        Some(key) => IndexPass::Pruning {
                            key,
                            at: IndexPosition::default(),
                        },
                        None => IndexPass::Idle,
                    }
                }
            }
            IndexPass::Pruning { key, at } => {
                let chunk = self
                    .store
                    .prune_delivery_index(key, at, self.cfg.chunk_size)
                    .await?;
                self.record(report, Action::IndexPruned, chunk.removed);
                if chunk.removed > 0 {
                    tracing::debug!(index = %key, count = chunk.removed, "expired deliveries removed from an index");
                }
                match chunk.next {
                    Some(at) => IndexPass::Pruning {
                        key: key.clone(),
                        at,
                    },
                    None => match self.next_index(Some(key)).await? {
                        Some(key) => IndexPass::Pruning {
                            key,
                            at: IndexPosition::default(),
                        },
                        None => IndexPass::Idle,
                    },
                }
            }
        };
        Ok(state.index != IndexPass::Idle)
    }

    // ---- 5. streams --------------------------------------------------------------------------------------

    /// Trims the stream at `*at` (0: the input stream, then every queue a worker reads: one on a single
    /// node), moving on once it has caught up.
    async fn stream_chunk(&self, at: &mut usize, report: &mut CycleReport) -> Result<bool> {
        let k = self.store.keys();
        let mut streams = vec![k.events_stream().to_owned()];
        streams.extend(k.worker_streams());
        let Some(stream) = streams.get(*at) else {
            return Ok(false);
        };
        let more = match self
            .store
            .trim_acknowledged(stream, self.cfg.chunk_size)
            .await?
        {
            TrimChunk::Trimmed { removed, more } => {
                tracing::debug!(stream = %stream, count = removed, "acknowledged entries trimmed");
                self.record(report, Action::StreamTrimmed, removed);
                more
            }
            TrimChunk::FloorMoved => {
                tracing::debug!(stream = %stream, "a consumer group moved back while trimming; trying next cycle");
                false
            }
            TrimChunk::NoGroups | TrimChunk::NothingToTrim => false,
        };
        if !more {
            *at += 1;
        }
        Ok(*at < streams.len())
    }

    // ---- 6. flow control's safety nets --------------------------------------------------------------------

    /// One sweep of every shard's parking set and lanes set (bounded by their members, a page per script).
    async fn fair_sweep(&self, report: &mut CycleReport) -> Result<bool> {
        let sweep = self.store.fair_sweep(now_micros()).await?;
        self.metrics
            .fair_parked
            .set(i64::try_from(sweep.parked).unwrap_or(i64::MAX));
        self.metrics
            .fair_parking
            .set(i64::try_from(sweep.parking).unwrap_or(i64::MAX));
        if sweep.moved > 0 {
            tracing::info!(
                moved = sweep.moved,
                "fair sweep refilled subscriptions whose queue places had gone missing"
            );
        }
        self.record(report, Action::FairRefilled, sweep.moved);
        // A held lane waits for the watermark; raised here too in case no consumer runs.
        self.store.raise_lane_watermark().await?;
        let lanes = self.store.lane_sweep().await?;
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.lanes.set(gauge(lanes.lanes));
        self.metrics.lane_deliveries.set(gauge(lanes.depth));
        self.metrics.lanes_blocked.set(gauge(lanes.blocked));
        if lanes.moved > 0 {
            tracing::info!(
                moved = lanes.moved,
                "lane sweep moved on lanes whose head had expired"
            );
        }
        self.record(report, Action::LaneMoved, lanes.moved);
        Ok(false)
    }
}

/// How the steps of a cycle ended.
enum Run {
    Finished,
    Interrupted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_loop_has_a_chunk_budget() {
        assert!(!Budget::Unlimited.exhausted(u32::MAX));
        assert!(!Budget::PerStep(3).exhausted(2));
        assert!(Budget::PerStep(3).exhausted(3));
    }
}
