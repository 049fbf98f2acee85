//! Redrive jobs (issue #18): a subscription's failed deliveries queued again at a set pace by a job whose
//! state lives in Redis, so that any replica of any service can stop and start without losing it.
//!
//! - [`Store::start_redrive`], [`Store::cancel_redrive`], [`Store::get_redrive`]: the job's hash and the set
//!   of running jobs (control slot), one job per subscription, checked atomically with the subscription.
//! - [`Store::redrive_scan`]: the next failed deliveries a job's filters match, after its cursor (the last
//!   delivery it passed, by created ms and id: the failed index's own order). Read-only.
//! - [`Store::commit_redrive_step`]: the step's counters and new cursor, a compare-and-set on the cursor the
//!   step started from. The deliveries themselves are queued by [`Store::retry_delivery_with`], itself a
//!   compare-and-set (`failed` → `pending`), so a step repeated after a crash never queues one twice.
//! - The runner's lease (`acquire_redrive_lease` and friends), so one replica advances the jobs.

use std::time::Duration;

use fred::prelude::*;
use fred::types::Value;

use super::attempts::flat;
use super::delivery_queries::DeliveryFilter;
use super::{Store, scripts};
use crate::delivery::{DeliveryRecord, DeliveryStatus};
use crate::error::{Error, Result};
use crate::ids::SubscriptionId;
use crate::redrive::{Cursor, FINISHED_RETENTION_SECS, JobState, RedriveFilter, RedriveJob};
use crate::subscription::SubscriptionStatus;
use crate::time::Micros;

/// Failed deliveries read per query of [`Store::redrive_scan`].
const SCAN_PAGE: u64 = 100;

/// Result of [`Store::start_redrive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartResult {
    Started,
    /// A job of this subscription is running (as it is now): nothing changed.
    Busy(Box<RedriveJob>),
    /// The subscription is gone (`None`) or not active: nothing changed.
    SubscriptionNotActive(Option<SubscriptionStatus>),
}

/// Result of [`Store::cancel_redrive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelResult {
    /// Cancelled; the job as it is now.
    Cancelled(Box<RedriveJob>),
    /// The job had already finished (as it is): nothing changed.
    Finished(Box<RedriveJob>),
    /// No job (never one, or a finished one expired).
    Missing,
}

/// What [`Store::redrive_scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Matching failed deliveries, in walk order.
    pub matched: Vec<DeliveryRecord>,
    /// Failed deliveries looked at (matching or not).
    pub scanned: u64,
    /// Where the walk stands: the last delivery looked at (`None` when none was).
    pub cursor: Option<Cursor>,
    /// The walk reached the end of the failed index (in the creation range).
    pub exhausted: bool,
}

/// One step of a job, for [`Store::commit_redrive_step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<'a> {
    pub job: &'a RedriveJob,
    /// Where the walk stands after the step (`None`: it did not move).
    pub cursor: Option<Cursor>,
    pub scanned: u64,
    pub matched: u64,
    pub queued: u64,
    pub skipped: u64,
    /// When the next step is due (µs).
    pub next_at: Micros,
    /// The job ends with this state (`None`: it keeps running).
    pub finish: Option<JobState>,
    pub reason: Option<String>,
}

fn job_of(v: Option<Value>) -> Result<RedriveJob> {
    RedriveJob::from_hash(&v.map(flat).unwrap_or_default())
}

impl Store {
    /// Starts `job` unless its subscription already has a running one or is not active (one atomic step).
    ///
    /// # Errors
    /// Redis failure (nothing was written) or a corrupt stored job.
    pub async fn start_redrive(&self, job: &RedriveJob) -> Result<StartResult> {
        let k = self.keys();
        let sub = job.subscription_id;
        let mut args = vec![sub.to_string()];
        for (f, v) in job.to_fields()? {
            args.push(f.to_owned());
            args.push(v);
        }
        let reply: Vec<Value> = scripts::REDRIVE_START
            .run(
                self.pool(),
                vec![k.redrive_job(sub), k.redrive_active(), k.subscription(sub)],
                args,
            )
            .await?;
        let mut reply = reply.into_iter();
        match reply.next().and_then(|v| v.as_string()).as_deref() {
            Some("started") => Ok(StartResult::Started),
            Some("busy") => Ok(StartResult::Busy(Box::new(job_of(reply.next())?))),
            Some("subscription") => {
                let status = reply.next().and_then(|v| v.as_string()).unwrap_or_default();
                Ok(StartResult::SubscriptionNotActive(if status.is_empty() {
                    None
                } else {
                    Some(status.parse()?)
                }))
            }
            other => Err(Error::Script(format!("redrive_start: {other:?}"))),
        }
    }

    /// The subscription's job (running, or finished within the retention), if any.
    ///
    /// # Errors
    /// Redis failure or a corrupt stored job.
    pub async fn get_redrive(&self, subscription: SubscriptionId) -> Result<Option<RedriveJob>> {
        self.read_hash(self.keys().redrive_job(subscription), RedriveJob::from_hash)
            .await
    }

    /// Cancels the subscription's running job.
    ///
    /// # Errors
    /// Redis failure (nothing was written) or a corrupt stored job.
    pub async fn cancel_redrive(
        &self,
        subscription: SubscriptionId,
        now: Micros,
    ) -> Result<CancelResult> {
        let k = self.keys();
        let reply: Vec<Value> = scripts::REDRIVE_CANCEL
            .run(
                self.pool(),
                vec![k.redrive_job(subscription), k.redrive_active()],
                vec![
                    subscription.to_string(),
                    now.to_string(),
                    FINISHED_RETENTION_SECS.to_string(),
                ],
            )
            .await?;
        let mut reply = reply.into_iter();
        match reply.next().and_then(|v| v.as_string()).as_deref() {
            Some("cancelled") => Ok(CancelResult::Cancelled(Box::new(job_of(reply.next())?))),
            Some("finished") => Ok(CancelResult::Finished(Box::new(job_of(reply.next())?))),
            Some("missing") => Ok(CancelResult::Missing),
            other => Err(Error::Script(format!("redrive_cancel: {other:?}"))),
        }
    }

    /// The subscriptions whose job is running.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn running_redrives(&self) -> Result<Vec<SubscriptionId>> {
        let ids: Vec<String> = self.pool().smembers(self.keys().redrive_active()).await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Walks the subscription's failed deliveries after `after`, oldest first, until `want` match `filter`,
    /// `max_scan` were looked at, or the failed index (in the creation range) ends. Changes nothing.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn redrive_scan(
        &self,
        subscription: SubscriptionId,
        filter: &RedriveFilter,
        after: Option<&Cursor>,
        want: usize,
        max_scan: u64,
    ) -> Result<ScanPage> {
        let mut out = ScanPage {
            cursor: after.cloned(),
            ..ScanPage::default()
        };
        // The query starts at the cursor's score; entries at that score up to the cursor are passed over
        // by comparison (and counted in `offset`), so equal scores never stall the walk.
        let from = match (after, filter.created_from_ms) {
            (Some(c), Some(f)) => Some(c.score_ms.max(f)),
            (Some(c), None) => Some(c.score_ms),
            (None, f) => f,
        };
        let query = DeliveryFilter {
            subscription: Some(subscription),
            status: Some(DeliveryStatus::Failed),
            // One event type narrows the index intersection; several are checked per record.
            event_type: match filter.event_types.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            },
            created_from_ms: from,
            created_to_ms: filter.created_to_ms,
            ..DeliveryFilter::default()
        };
        let mut offset = 0;
        loop {
            let page = self.query_deliveries(&query, offset, SCAN_PAGE).await?;
            let full = page.items.len() as u64 == SCAN_PAGE;
            for r in page.items {
                offset += 1;
                let pos = Cursor {
                    score_ms: r.created_at.div_euclid(1000),
                    id: r.id.to_string(),
                };
                if let Some(c) = after
                    && (pos.score_ms, pos.id.as_str()) <= (c.score_ms, c.id.as_str())
                {
                    continue;
                }
                out.scanned += 1;
                out.cursor = Some(pos);
                if filter.matches_record(&r) && self.last_attempt_matches(&r, filter).await? {
                    out.matched.push(r);
                }
                if out.matched.len() >= want || out.scanned >= max_scan {
                    return Ok(out);
                }
            }
            if !full {
                out.exhausted = true;
                return Ok(out);
            }
        }
    }

    /// Whether `record`'s last attempt passes the filter (read only when the filter looks at it).
    async fn last_attempt_matches(
        &self,
        record: &DeliveryRecord,
        filter: &RedriveFilter,
    ) -> Result<bool> {
        if !filter.needs_attempts() {
            return Ok(true);
        }
        let log = self
            .get_delivery_with_attempts(record.id)
            .await?
            .map(|(_, log)| log)
            .unwrap_or_default();
        Ok(filter.matches_attempt(log.last()))
    }

    /// Records `step` if the job is still running from the cursor the step started at. Returns whether it
    /// did (`false`: cancelled meanwhile, or another runner moved it).
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn commit_redrive_step(&self, step: &Step<'_>, now: Micros) -> Result<bool> {
        let k = self.keys();
        let job = step.job;
        let sub = job.subscription_id;
        let (score, id) = step
            .cursor
            .as_ref()
            .map_or((String::new(), String::new()), |c| {
                (c.score_ms.to_string(), c.id.clone())
            });
        let done: i64 = scripts::REDRIVE_STEP
            .run(
                self.pool(),
                vec![k.redrive_job(sub), k.redrive_active()],
                vec![
                    sub.to_string(),
                    job.job_id.to_string(),
                    job.cursor
                        .as_ref()
                        .map(|c| c.id.clone())
                        .unwrap_or_default(),
                    score,
                    id,
                    step.scanned.to_string(),
                    step.matched.to_string(),
                    step.queued.to_string(),
                    step.skipped.to_string(),
                    step.next_at.to_string(),
                    step.finish
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                    now.to_string(),
                    FINISHED_RETENTION_SECS.to_string(),
                    step.reason.clone().unwrap_or_default(),
                ],
            )
            .await?;
        Ok(done == 1)
    }

    // ---- the runner's lease ------------------------------------------------------------------------------
    // The same token-checked scripts as cleanup's lease, on the redrive lease key (no state to save: the
    // jobs carry their own).

    /// Takes the redrive runner's lease for `ttl` if nobody holds it. Returns whether it is now ours.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn acquire_redrive_lease(&self, token: &str, ttl: Duration) -> Result<bool> {
        self.acquire_lease(self.keys().redrive_lease(), token, ttl)
            .await
    }

    /// Renews the lease if `token` still holds it. Returns whether it did.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn renew_redrive_lease(&self, token: &str, ttl: Duration) -> Result<bool> {
        let k = self.keys();
        let renewed: i64 = scripts::CLEANUP_LEASE_COMMIT
            .run(
                self.pool(),
                // The state hash is not written without fields; any control key keeps the script slot-safe.
                vec![k.redrive_lease(), k.redrive_active()],
                vec![token.to_owned(), ttl.as_millis().max(1).to_string()],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Releases the lease if `token` holds it. Returns whether it did.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn release_redrive_lease(&self, token: &str) -> Result<bool> {
        let released: i64 = scripts::CLEANUP_LEASE_RELEASE
            .run(
                self.pool(),
                vec![self.keys().redrive_lease()],
                vec![token.to_owned()],
            )
            .await?;
        Ok(released == 1)
    }
}
