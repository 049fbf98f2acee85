//! The worker's loops.
//!
//! - **Reader**: waits for a free slot, then reads at most as many queue entries as there are free slots
//!   (the queue is read only as fast as work can start), and spawns one task per entry holding its slot.
//!   Periodically it also takes over entries idle longer than an attempt's lease (their worker died), and at
//!   start it re-reads its own pending entries.
//! - **Scheduler**: moves due retries from the schedule to the queue. Every replica runs it; the move is
//!   atomic, so there is no leader to elect.
//! - **Sampler**: refreshes queue gauges.
//!
//! On shutdown the reader stops reading, in-flight attempts get the grace period to finish, and whatever is
//! still running then is handed back: its entries stay pending and another worker takes them over once
//! their lease has expired.

use std::sync::Arc;
use std::time::Duration;

use delivery_model::keys::QUEUE_GROUP;
use delivery_model::store::{Store, StreamEntry, StreamReader};
use service_common::config::{Settings, consumer_name};
use service_common::shutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::{Dispatcher, Work};
use crate::metrics::Metrics;

const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// How long past `block_ms` a queue read may run once shutdown has begun.
const READ_SETTLE: Duration = Duration::from_secs(1);
const PROMOTE_BATCH: u32 = 1000;

/// The loops' settings.
pub struct WorkerConfig {
    pub name: String,
    pub max_in_flight: usize,
    pub batch_size: u64,
    pub block_ms: u64,
    pub scheduler_interval: Duration,
    /// Entries idle this long are taken over: an attempt's lease plus a second.
    pub claim_idle: Duration,
    pub grace: Duration,
}

impl WorkerConfig {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            name: consumer_name(&s.worker.consumer_name, "delivery-worker"),
            max_in_flight: s.worker.max_in_flight,
            batch_size: s.worker.batch_size,
            block_ms: s.worker.block_ms,
            scheduler_interval: Duration::from_millis(s.worker.scheduler_interval_ms),
            claim_idle: s.worker.lease(&s.outbound) + Duration::from_secs(1),
            grace: s.shutdown.grace_period(),
        }
    }
}

/// Runs every loop until `token` is cancelled, then drains.
pub async fn run(
    store: Store,
    dispatcher: Arc<Dispatcher>,
    cfg: WorkerConfig,
    metrics: Metrics,
    token: CancellationToken,
) {
    let background = CancellationToken::new();
    let scheduler = tokio::spawn(scheduler(
        store.clone(),
        cfg.scheduler_interval,
        metrics.clone(),
        background.clone(),
    ));
    let sampler = tokio::spawn(sampler(store.clone(), metrics.clone(), background.clone()));
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight));

    tracing::info!(consumer = %cfg.name, max_in_flight = cfg.max_in_flight, "delivering");
    while !token.is_cancelled() {
        let reader = match token.run_until_cancelled(store.reader()).await {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                metrics.redis_errors.inc();
                tracing::warn!(error = %e, "cannot open a read connection; retrying");
                shutdown::sleep(&token, ERROR_PAUSE).await;
                continue;
            }
        };
        read_session(
            &store,
            &reader,
            &dispatcher,
            &cfg,
            &metrics,
            &slots,
            &tracker,
            &token,
        )
        .await;
        reader.quit().await;
    }

    tracker.close();
    let in_flight = tracker.len();
    if in_flight > 0 {
        tracing::info!(
            in_flight,
            grace_secs = cfg.grace.as_secs(),
            "finishing in-flight attempts"
        );
    }
    if tokio::time::timeout(cfg.grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = tracker.len(),
            "grace period over; handing back unfinished attempts (their entries are reclaimed after the lease)"
        );
    }
    background.cancel();
    let _ = scheduler.await;
    let _ = sampler.await;
}

#[expect(
    clippy::too_many_arguments,
    reason = "the loop's collaborators, passed explicitly"
)]
async fn read_session(
    store: &Store,
    reader: &StreamReader,
    dispatcher: &Arc<Dispatcher>,
    cfg: &WorkerConfig,
    metrics: &Metrics,
    slots: &Arc<Semaphore>,
    tracker: &TaskTracker,
    token: &CancellationToken,
) {
    let queue = store.keys().queue_stream();
    let claim_idle_ms = u64::try_from(cfg.claim_idle.as_millis()).unwrap_or(u64::MAX);
    let claim_every = (cfg.claim_idle / 4).max(Duration::from_millis(500));
    let mut last_claim: Option<tokio::time::Instant> = None;
    let mut own_pending_done = false;
    while !token.is_cancelled() {
        // Wait for one free slot, then take as many more as are free, up to a batch.
        let Some(first) = token
            .run_until_cancelled(slots.clone().acquire_owned())
            .await
        else {
            return;
        };
        let Ok(first) = first else { return };
        let mut permits: Vec<OwnedSemaphorePermit> = vec![first];
        while (permits.len() as u64) < cfg.batch_size {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let count = permits.len() as u64;
        let read = if !own_pending_done {
            let r = reader
                .read_own_pending(&queue, QUEUE_GROUP, &cfg.name, count)
                .await;
            if matches!(&r, Ok(v) if v.is_empty()) {
                own_pending_done = true;
            }
            r
        } else if last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
            last_claim = Some(tokio::time::Instant::now());
            let r = reader
                .claim_stale(&queue, QUEUE_GROUP, &cfg.name, claim_idle_ms, count)
                .await;
            if let Ok(v) = &r
                && !v.is_empty()
            {
                metrics.reclaimed.inc_by(v.len() as u64);
                tracing::info!(count = v.len(), "took over entries of a stalled worker");
            }
            r
        } else {
            // Not abandoned at once on shutdown: a healthy read returns within block_ms, and the entries it
            // returns are dispatched rather than left pending under this consumer's name. A read still
            // unanswered READ_SETTLE after that is abandoned (Redis is unreachable): whatever it took stays
            // pending and is reclaimed by another worker after the lease, as after a crash.
            let read = reader.read_group(&queue, QUEUE_GROUP, &cfg.name, count, cfg.block_ms);
            let settle = Duration::from_millis(cfg.block_ms) + READ_SETTLE;
            tokio::select! {
                r = read => r,
                () = async {
                    token.cancelled().await;
                    tokio::time::sleep(settle).await;
                } => return,
            }
        };
        match read {
            Ok(entries) => spawn_all(entries, permits, dispatcher, tracker),
            Err(e) if e.is_nogroup() => {
                metrics.group_recreated.inc();
                tracing::warn!(
                    "queue consumer group is missing (Redis lost its data?); recreating it"
                );
                if let Err(e) = store.ensure_queue_group().await {
                    metrics.redis_errors.inc();
                    tracing::warn!(error = %e, "cannot recreate the queue consumer group");
                    shutdown::sleep(token, ERROR_PAUSE).await;
                }
            }
            Err(e) => {
                metrics.redis_errors.inc();
                tracing::warn!(error = %e, "reading the queue failed; retrying");
                drop(permits);
                shutdown::sleep(token, ERROR_PAUSE).await;
                if !e.is_retryable() {
                    return;
                }
            }
        }
    }
}

/// Starts a read batch: challenges (and undecodable entries) one task each; deliveries as one task that takes
/// all their leases in one Redis call and then starts one task per attempt that may go. Each task holds
/// one of the batch's slots; a slot whose entry needs no attempt is freed at once.
fn spawn_all(
    entries: Vec<StreamEntry>,
    mut permits: Vec<OwnedSemaphorePermit>,
    dispatcher: &Arc<Dispatcher>,
    tracker: &TaskTracker,
) {
    let mut deliveries = Vec::new();
    let mut delivery_permits = Vec::new();
    for entry in entries {
        let Some(permit) = permits.pop() else { break };
        match Dispatcher::classify(entry) {
            Work::Delivery { entry_id, id } => {
                deliveries.push((entry_id, id));
                delivery_permits.push(permit);
            }
            Work::Other(entry) => {
                let d = dispatcher.clone();
                tracker.spawn(async move {
                    d.dispatch(entry).await;
                    drop(permit);
                });
            }
        }
    }
    if deliveries.is_empty() {
        return;
    }
    let d = dispatcher.clone();
    let t = tracker.clone();
    tracker.spawn(async move {
        let attempts = d.begin_batch(deliveries).await;
        for (attempt, permit) in attempts.into_iter().zip(delivery_permits) {
            let Some(attempt) = attempt else { continue };
            let d = d.clone();
            t.spawn(async move {
                d.attempt(attempt).await;
                drop(permit);
            });
        }
    });
}

async fn scheduler(store: Store, every: Duration, metrics: Metrics, token: CancellationToken) {
    while shutdown::sleep(&token, every).await {
        loop {
            let now_ms = delivery_model::time::now_micros() / 1000;
            match store.promote_due(now_ms, PROMOTE_BATCH).await {
                Ok(n) => {
                    metrics.promoted.inc_by(n);
                    if n < u64::from(PROMOTE_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    metrics.redis_errors.inc();
                    tracing::warn!(error = %e, "moving due retries to the queue failed");
                    break;
                }
            }
        }
    }
}

async fn sampler(store: Store, metrics: Metrics, token: CancellationToken) {
    loop {
        if let Ok((len, pending)) = store.queue_depth().await {
            metrics
                .queue_length
                .set(i64::try_from(len).unwrap_or(i64::MAX));
            metrics
                .queue_pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        if let Ok(n) = store.scheduled_len().await {
            metrics.scheduled.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if !shutdown::sleep(&token, Duration::from_secs(5)).await {
            return;
        }
    }
}
