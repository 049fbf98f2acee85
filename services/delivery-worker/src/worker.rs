//! The worker's loops.
//!
//! - **Reader**: the shared [`GroupReader`] over the queue, with [`Slots`] as its handler: it waits for a
//!   free slot, then reads at most as many queue entries as there are free slots (the queue is read only as
//!   fast as work can start), and spawns one task per entry holding its slot. The reader also re-reads this
//!   worker's own pending entries at start and takes over entries idle longer than an attempt's lease
//!   (their worker died).
//! - **Scheduler**: moves due retries from the schedule to the queue. Every replica runs it; the move is
//!   atomic, so there is no leader to elect.
//! - **Sampler**: refreshes the queue gauges every 5 s: length, pending, the age of the oldest entry not
//!   acknowledged (the lag signal the stuck-queue alert reads), the schedule's size.
//!
//! On shutdown the reader stops reading, in-flight attempts get the grace period to finish, and whatever is
//! still running then is handed back: its entries stay pending and another worker takes them over once
//! their lease has expired.

use std::sync::Arc;
use std::time::Duration;

use delivery_model::keys::QUEUE_GROUP;
use delivery_model::reader::{Batch, BatchHandler, GroupReader, GroupSpec, Handled, ReaderEvent};
use delivery_model::store::{HealthPolicy, Store, StreamEntry};
use delivery_model::subscription::SubscriptionStatus;
use service_common::config::{Settings, consumer_name};
use service_common::shutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::{Dispatcher, Work};
use crate::metrics::Metrics;

const PROMOTE_BATCH: u32 = 1000;
/// How often a worker folds the subscription counter effects of a cluster's shards (docs/cluster.md §4.3:
/// the counters lag the outcomes by about this much).
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// The worker's reading spec: the queue in the `delivery-workers` group. Entries are taken over once idle
/// for an attempt's lease plus a second (their worker died), looked for every quarter of that (at least
/// every 500 ms).
pub fn group_spec(settings: &Settings, store: &Store) -> GroupSpec {
    let w = &settings.worker;
    let claim_idle = w.lease(&settings.outbound) + Duration::from_secs(1);
    GroupSpec {
        streams: store.keys().worker_streams(),
        group: QUEUE_GROUP,
        // The queue only ever holds live work, so a new group starts at its beginning.
        start_id: "0".to_owned(),
        consumer: consumer_name(&w.consumer_name, "delivery-worker"),
        batch_size: w.batch_size,
        block: Duration::from_millis(w.block_ms),
        claim_idle,
        claim_every: (claim_idle / 4).max(Duration::from_millis(500)),
    }
}

/// The loops' settings beyond the reading spec.
pub struct WorkerConfig {
    pub max_in_flight: usize,
    pub scheduler_interval: Duration,
    pub grace: Duration,
}

impl WorkerConfig {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            max_in_flight: s.worker.max_in_flight,
            scheduler_interval: Duration::from_millis(s.worker.scheduler_interval_ms),
            grace: s.shutdown.grace_period(),
        }
    }
}

/// The reader's handler: a fixed number of slots, one per attempt in flight.
struct Slots {
    slots: Arc<Semaphore>,
    dispatcher: Arc<Dispatcher>,
    tracker: TaskTracker,
    metrics: Metrics,
}

impl BatchHandler for Slots {
    /// One slot per entry read, moved into the task that handles it.
    type Room = Vec<OwnedSemaphorePermit>;

    /// Waits for one free slot, then takes as many more as are free, up to `max`.
    async fn reserve(&self, max: u64) -> Option<(Self::Room, u64)> {
        let first = self.slots.clone().acquire_owned().await.ok()?;
        let mut permits = vec![first];
        while (permits.len() as u64) < max {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let count = permits.len() as u64;
        Some((permits, count))
    }

    async fn handle(&self, batch: Batch<'_>, permits: Self::Room) -> Handled {
        spawn_all(
            batch.stream,
            batch.entries,
            permits,
            &self.dispatcher,
            &self.tracker,
        );
        Handled::Done
    }

    fn observe(&self, event: ReaderEvent<'_>) {
        match event {
            ReaderEvent::Reclaimed { count, .. } => self.metrics.reclaimed.inc_by(count as u64),
            ReaderEvent::GroupRecreated { .. } => self.metrics.group_recreated.inc(),
            ReaderEvent::RedisError { .. } => self.metrics.redis_errors.inc(),
        }
    }
}

/// Runs every loop until `token` is cancelled, then drains.
pub async fn run(
    reader: GroupReader,
    store: Store,
    dispatcher: Arc<Dispatcher>,
    cfg: WorkerConfig,
    metrics: Metrics,
    token: CancellationToken,
) {
    let background = CancellationToken::new();
    let scheduler = tokio::spawn(scheduler(
        store.clone(),
        dispatcher.health(),
        cfg.scheduler_interval,
        metrics.clone(),
        background.clone(),
    ));
    let sampler = tokio::spawn(sampler(store, metrics.clone(), background.clone()));
    let slots = Slots {
        slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
        dispatcher,
        tracker: TaskTracker::new(),
        metrics,
    };

    tracing::info!(max_in_flight = cfg.max_in_flight, "delivering");
    reader.run(&slots, &token).await;

    let tracker = slots.tracker;
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

/// Starts a read batch: challenges (and undecodable entries) one task each; deliveries as one task that takes
/// all their leases in one Redis call and then starts one task per attempt that may go. Each task holds
/// one of the batch's slots; a slot whose entry needs no attempt is freed at once.
fn spawn_all(
    stream: &str,
    entries: Vec<StreamEntry>,
    mut permits: Vec<OwnedSemaphorePermit>,
    dispatcher: &Arc<Dispatcher>,
    tracker: &TaskTracker,
) {
    let read_at = std::time::Instant::now();
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
                let stream = stream.to_owned();
                tracker.spawn(async move {
                    d.dispatch(&stream, entry).await;
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
        let attempts = d.begin_batch(deliveries, read_at).await;
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

async fn scheduler(
    store: Store,
    health: HealthPolicy,
    every: Duration,
    metrics: Metrics,
    token: CancellationToken,
) {
    let mut last_fold = std::time::Instant::now();
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
        // On a cluster, the subscription counters follow the outcomes through each shard's stream
        // (nothing to do on one node).
        if last_fold.elapsed() >= FOLD_EVERY {
            last_fold = std::time::Instant::now();
            match store.fold_outcomes(&health).await {
                Ok(folded) => {
                    for (sub, reason) in folded.disabled {
                        crate::dispatch::on_disabled(&store, &metrics, sub, reason);
                    }
                }
                Err(e) => {
                    metrics.redis_errors.inc();
                    tracing::warn!(error = %e, "folding subscription counters failed");
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
        if let Ok(backlog) = store.queue_backlog().await {
            let now_ms = u64::try_from(delivery_model::time::now_micros() / 1000).unwrap_or(0);
            metrics
                .queue_oldest_age
                .set(backlog.oldest_age_secs(now_ms));
        }
        if let Ok(n) = store.scheduled_len().await {
            metrics.scheduled.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Ok(n) = store
            .count_subscriptions_by_status(SubscriptionStatus::Inactive)
            .await
        {
            metrics
                .subscriptions_inactive
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if !shutdown::sleep(&token, Duration::from_secs(5)).await {
            return;
        }
    }
}
