//! The redrive runner (issue #18): advances the running redrive jobs at their pace.
//!
//! It lives in cleanup because cleanup already is the service of leased background work over Redis, with
//! no hot path to disturb: the delivery-worker's scheduler runs on every replica by design, and a redrive
//! must run on exactly one. One replica at a time holds the runner's lease (`hookline:redrive:lease`, its
//! own key, so a long cleanup cycle never delays a redrive and the other way round), renews it every tick,
//! and releases it when it stops; a crashed holder's lease expires after `[cleanup] lease_ttl_ms`.
//!
//! Each tick, every running job that is due takes one small step: the next few matching failed
//! deliveries after its cursor (`pace × tick`, at least one), each queued again with the `retry_delivery`
//! compare-and-set, then the counters and the new cursor in one compare-and-set on the old cursor, and the
//! next step made due `matched / pace` seconds later. A step repeated after a crash or a lost lease finds
//! the deliveries it already queued no longer `failed`, so none is queued twice; the job's state is all in
//! Redis, so any replica resumes it.

use std::time::Duration;

use delivery_model::redrive::{JobState, RedriveJob};
use delivery_model::store::Store;
use delivery_model::store::redrive::Step;
use delivery_model::store::retries::RetryResult;
use delivery_model::time::now_micros;
use service_common::shutdown;
use tokio_util::sync::CancellationToken;

use crate::config::CleanupConfig;
use crate::error::Result;
use crate::metrics::Metrics;

/// Most deliveries one step queues (a pace above `MAX_STEP / tick` takes a step every tick).
const MAX_STEP: u64 = 100;
/// Most failed deliveries one step looks at (a filter that matches few keeps steps short).
const MAX_SCAN: u64 = 1000;

/// How the runner runs.
#[derive(Clone, Debug)]
pub struct RedriveConfig {
    /// Names this replica in the lease token (the pod name).
    pub replica: String,
    /// Lifetime of the runner's lease, renewed every tick.
    pub lease_ttl: Duration,
    /// Pause between ticks.
    pub tick: Duration,
}

impl RedriveConfig {
    /// The runner's settings: the cleanup lease's TTL and a tick of 100 ms.
    pub fn from_cleanup(c: &CleanupConfig) -> Self {
        Self {
            replica: c.replica.clone(),
            lease_ttl: c.lease_ttl,
            tick: Duration::from_millis(100),
        }
    }
}

/// The runner: one per cleanup replica, only the lease holder works.
pub struct Runner {
    store: Store,
    cfg: RedriveConfig,
    metrics: Metrics,
    /// Our lease token while we hold the lease.
    lease: Option<String>,
}

impl Runner {
    pub fn new(store: Store, cfg: RedriveConfig, metrics: Metrics) -> Self {
        Self {
            store,
            cfg,
            metrics,
            lease: None,
        }
    }

    /// Ticks until `token` is cancelled, then releases the lease.
    pub async fn run(mut self, token: CancellationToken) {
        while !token.is_cancelled() {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "redrive step failed; trying again next tick");
            }
            if !shutdown::sleep(&token, self.cfg.tick).await {
                break;
            }
        }
        if let Some(t) = self.lease.take() {
            self.metrics.redrive_lease_held.set(0);
            if let Err(e) = self.store.release_redrive_lease(&t).await {
                tracing::warn!(error = %e, "releasing the redrive lease failed; it expires by itself");
            }
        }
    }

    /// One tick: hold the lease, then one step of every due job.
    ///
    /// # Errors
    /// Redis failure (the step in hand is repeated safely next tick).
    pub async fn tick(&mut self) -> Result<()> {
        if !self.hold_lease().await? {
            return Ok(());
        }
        let subs = self.store.running_redrives().await?;
        self.metrics
            .redrive_active
            .set(i64::try_from(subs.len()).unwrap_or(i64::MAX));
        for sub in subs {
            let Some(job) = self.store.get_redrive(sub).await? else {
                continue;
            };
            if job.state == JobState::Running && job.next_at <= now_micros() {
                self.step(&job).await?;
            }
        }
        Ok(())
    }

    /// Renews our lease or takes a free one; whether we hold it now.
    async fn hold_lease(&mut self) -> Result<bool> {
        if let Some(t) = &self.lease {
            if self
                .store
                .renew_redrive_lease(t, self.cfg.lease_ttl)
                .await?
            {
                return Ok(true);
            }
            tracing::warn!("the redrive lease was lost (expired or taken over)");
            self.lease = None;
        }
        let token = format!("{}:{}", self.cfg.replica, uuid::Uuid::new_v4().simple());
        let held = self
            .store
            .acquire_redrive_lease(&token, self.cfg.lease_ttl)
            .await?;
        if held {
            tracing::info!(lease.token = %token, "redrive lease acquired");
            self.lease = Some(token);
        } else {
            self.metrics.redrive_active.set(0);
        }
        self.metrics.redrive_lease_held.set(i64::from(held));
        Ok(held)
    }

    /// One step of `job` (see the module doc).
    async fn step(&self, job: &RedriveJob) -> Result<()> {
        let pace = u64::from(job.pace.max(1));
        let tick_ms = u64::try_from(self.cfg.tick.as_millis()).unwrap_or(u64::MAX);
        let want = (pace.saturating_mul(tick_ms) / 1000).clamp(1, MAX_STEP);
        let page = self
            .store
            .redrive_scan(
                job.subscription_id,
                &job.filter,
                job.cursor.as_ref(),
                usize::try_from(want).unwrap_or(1),
                MAX_SCAN,
            )
            .await?;
        let now = now_micros();
        let results = futures::future::try_join_all(page.matched.iter().map(|r| {
            self.store
                .retry_delivery_with(r.id, now, job.filter.include_addons)
        }))
        .await?;
        let (mut queued, mut skipped, mut inactive) = (0, 0, None);
        for r in results {
            match r {
                RetryResult::Queued(_) => queued += 1,
                RetryResult::SubscriptionNotActive(s) => {
                    skipped += 1;
                    inactive = Some(s.map_or_else(|| "gone".to_owned(), |s| s.to_string()));
                }
                _ => skipped += 1,
            }
        }
        let matched = page.matched.len() as u64;
        let (finish, reason) = match inactive {
            Some(s) => (
                Some(JobState::Stopped),
                Some(format!("the subscription is {s}")),
            ),
            None if page.exhausted => (Some(JobState::Completed), None),
            None => (None, None),
        };
        let step = Step {
            job,
            cursor: page.cursor,
            scanned: page.scanned,
            matched,
            queued,
            skipped,
            next_at: now + i64::try_from(matched * 1_000_000 / pace).unwrap_or(i64::MAX),
            finish,
            reason,
        };
        let recorded = self.store.commit_redrive_step(&step, now_micros()).await?;
        self.metrics.redrive_queued.inc_by(queued);
        self.metrics.redrive_skipped.inc_by(skipped);
        if !recorded {
            tracing::info!(subscription_id = %job.subscription_id, job_id = %job.job_id,
                "redrive job cancelled or moved on during a step");
        } else if let Some(state) = finish {
            tracing::info!(subscription_id = %job.subscription_id, job_id = %job.job_id,
                state = state.as_str(), queued = job.queued + queued, "redrive job finished");
        }
        Ok(())
    }
}
