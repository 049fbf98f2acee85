//! The cleanup service: keeps delivery state honest and Redis bounded.
//!
//! - [`cycle`]: one cycle — stale `in_progress` deliveries fail, idle and broken subscriptions go to
//!   `pending_delete` and then away, expired deliveries leave the indexes, acknowledged stream entries are
//!   trimmed — each step in bounded chunks, under the lease.
//! - [`lease`]: the Redis lease that lets one replica at a time run a cycle.
//! - [`redrive`]: the runner of redrive jobs (issue #18), beside the cycles under a lease of its own.
//! - [`lifecycle`]: TMI's idle/broken/deletion rules as pure decisions.
//! - [`state`]: where the walks stand between cycles (kept in Redis, so any replica resumes them).
//! - [`config`]: the `[cleanup]` settings, typed.
//! - [`metrics`]: this service's Prometheus metrics and their label values ([`Action`](metrics::Action),
//!   [`CycleEnd`](metrics::CycleEnd)).
//! - [`error`]: why a cycle failed.
//!
//! [`run`] (the entry every service shares) loops until shutdown with [`cycles`], pacing itself like svix's
//! `expired_message_cleaner`: when a cycle stopped with work left it starts the next at once, when it caught
//! up it idles for `[cleanup] interval_ms`, after an error it naps for `[cleanup] error_pause_ms`.
//! [`run_once`] runs a single cycle to completion with [`once`], for `cleanup --once` (a Kubernetes
//! CronJob).

pub mod config;
pub mod cycle;
pub mod error;
pub mod lease;
pub mod lifecycle;
pub mod metrics;
pub mod redrive;
pub mod state;

use std::time::{Duration, Instant};

use delivery_model::store::Store;
use service_common::config::Settings;
use service_common::ops::{self, ReadyCheck};
use service_common::service::Context;
use service_common::shutdown;
use tokio_util::sync::CancellationToken;

use crate::config::{CleanupConfig, risky_settings};
use crate::cycle::{Budget, Cleaner, CycleOutcome, CycleReport};
use crate::metrics::Metrics;
use crate::redrive::{RedriveConfig, Runner};

/// The service's name in logs and metrics.
pub const SERVICE: &str = "cleanup";

/// `/readyz`: Redis answers (cleanup reads no consumer group).
pub fn readiness(_settings: &Settings, store: &Store) -> ReadyCheck {
    ops::redis_ready(store.clone())
}

/// The service's loops: runs [`cycles`] and the redrive [`Runner`] until the context's `shutdown` is cancelled.
///
/// # Errors
/// Metrics registered twice in the context's registry.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let (cfg, metrics) = prepare(&ctx)?;
    let runner = Runner::new(
        ctx.store.clone(),
        RedriveConfig::from_cleanup(&cfg),
        metrics.clone(),
    );
    tokio::join!(
        cycles(cfg, ctx.store, metrics, ctx.shutdown.clone()),
        runner.run(ctx.shutdown)
    );
    Ok(())
}

/// `cleanup --once`: one cycle with [`once`], its outcome logged.
///
/// # Errors
/// The cycle failed or was interrupted before it completed (a CronJob then reports a failed run).
pub async fn run_once(ctx: Context) -> anyhow::Result<()> {
    let (cfg, metrics) = prepare(&ctx)?;
    match once(cfg, ctx.store, metrics, ctx.shutdown).await {
        Ok(OnceOutcome::Completed(report)) => {
            tracing::info!(
                duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
                "cleanup cycle completed"
            );
            Ok(())
        }
        Ok(OnceOutcome::LeaseHeldElsewhere) => {
            tracing::info!(
                "another cleanup replica kept the lease throughout; it is doing the work"
            );
            Ok(())
        }
        Ok(OnceOutcome::Interrupted) => {
            Err(anyhow::anyhow!("interrupted before the cycle completed"))
        }
        Err(e) => Err(anyhow::Error::new(e).context("cleanup cycle failed")),
    }
}

/// What both modes start with: warnings about risky settings, the typed config, the metrics.
fn prepare(ctx: &Context) -> anyhow::Result<(CleanupConfig, Metrics)> {
    for warning in risky_settings(&ctx.settings) {
        tracing::warn!("{warning}");
    }
    let metrics = Metrics::register(&ctx.registry)?;
    Ok((CleanupConfig::from_settings(&ctx.settings), metrics))
}

/// How often `--once` retries a lease held by another replica, until one lease TTL has passed.
const LEASE_POLL: Duration = Duration::from_millis(500);

/// When the loop runs its next cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Work is left: at once.
    Now,
    /// Caught up, or another replica is working: after `interval`.
    Idle,
    /// The cycle failed: after `error_pause`.
    Nap,
}

/// The svix `expired_message_cleaner` rule, for one cycle's result.
pub fn pace(result: &error::Result<CycleOutcome>) -> Pace {
    match result {
        Ok(CycleOutcome::Completed(report)) if !report.caught_up => Pace::Now,
        Ok(CycleOutcome::Completed(_) | CycleOutcome::Interrupted(_) | CycleOutcome::LeaseBusy) => {
            Pace::Idle
        }
        Err(_) => Pace::Nap,
    }
}

/// Runs cycles until `token` is cancelled. A cycle in progress stops after the chunk in hand, saves where it
/// stands and releases the lease.
pub async fn cycles(cfg: CleanupConfig, store: Store, metrics: Metrics, token: CancellationToken) {
    tracing::info!(
        replica = %cfg.replica,
        interval_ms = u64::try_from(cfg.interval.as_millis()).unwrap_or(u64::MAX),
        stale_after_secs = cfg.stale_after.as_secs(),
        "cleanup running"
    );
    let budget = Budget::PerStep(cfg.max_chunks_per_step);
    let (interval, error_pause) = (cfg.interval, cfg.error_pause);
    let cleaner = Cleaner::new(store, cfg, metrics);
    while !token.is_cancelled() {
        let result = cleaner.cycle(&token, budget).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "cleanup cycle failed; trying again after a pause");
        }
        let pause = match pace(&result) {
            Pace::Now => continue,
            Pace::Idle => interval,
            Pace::Nap => error_pause,
        };
        if !shutdown::sleep(&token, pause).await {
            break;
        }
    }
}

/// How `cleanup --once` ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnceOutcome {
    /// The cycle ran every step until it caught up.
    Completed(CycleReport),
    /// Another replica kept the lease for a whole lease TTL: it is doing the work.
    LeaseHeldElsewhere,
    /// Shutdown was requested before the cycle finished (its state is saved; the next run resumes).
    Interrupted,
}

/// Runs one cycle with no chunk budget. If another replica holds the lease, waits up to one lease TTL for it
/// (a crashed holder's lease expires within that time).
///
/// # Errors
/// The cycle failed (Redis failure, lost lease).
pub async fn once(
    cfg: CleanupConfig,
    store: Store,
    metrics: Metrics,
    token: CancellationToken,
) -> error::Result<OnceOutcome> {
    let deadline = Instant::now() + cfg.lease_ttl;
    let cleaner = Cleaner::new(store, cfg, metrics);
    loop {
        match cleaner.cycle(&token, Budget::Unlimited).await? {
            CycleOutcome::Completed(report) => return Ok(OnceOutcome::Completed(report)),
            CycleOutcome::Interrupted(_) => return Ok(OnceOutcome::Interrupted),
            CycleOutcome::LeaseBusy if Instant::now() >= deadline => {
                return Ok(OnceOutcome::LeaseHeldElsewhere);
            }
            CycleOutcome::LeaseBusy => {
                tracing::info!("another replica holds the cleanup lease; waiting for it");
                if !shutdown::sleep(&token, LEASE_POLL).await {
                    return Ok(OnceOutcome::Interrupted);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(caught_up: bool) -> error::Result<CycleOutcome> {
        Ok(CycleOutcome::Completed(CycleReport {
            caught_up,
            ..CycleReport::default()
        }))
    }

    #[test]
    fn paces_like_svix_expired_message_cleaner() {
        assert_eq!(
            pace(&completed(false)),
            Pace::Now,
            "work left: go again at once"
        );
        assert_eq!(pace(&completed(true)), Pace::Idle, "caught up: idle");
        assert_eq!(
            pace(&Ok(CycleOutcome::LeaseBusy)),
            Pace::Idle,
            "another replica works"
        );
        assert_eq!(
            pace(&Err(error::Error::LeaseLost)),
            Pace::Nap,
            "error: a short nap"
        );
    }
}
