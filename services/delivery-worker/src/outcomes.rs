//! Group commit of attempt outcomes.
//!
//! Every attempt ends with a fenced write of its outcome ([`Store::finish_attempts`]). Writing them one
//! script call each made that call the largest cost of a delivery, for Redis and for this process alike. So
//! attempts hand their outcome to [`Outcomes`] and wait: one writer task takes everything that finished
//! while the previous write was in flight and writes it in one script. Under light load a batch holds one
//! outcome and adds no delay; under heavy load batches grow and the per-delivery cost falls.
//!
//! An attempt still learns its own result (written, superseded, fenced) before it lets go of its slot, and
//! a failed write leaves each of its entries pending exactly as a failed single write did.
//!
//! On a Redis Cluster a script may only touch one shard's keys, so a gathered batch is written as one
//! script per shard it spans, the calls in flight together.
//!
//! The written outcomes also feed the console's delivery statistics (`Store::record_stats`). They are
//! gathered here and added to Redis once a second rather than per batch: at a moderate rate a batch holds
//! one outcome, and per-batch counters would add a Redis call to every delivery. The counters are best
//! effort either way; a process that dies loses at most its last second of them.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use delivery_model::keys::Shard;
use delivery_model::stats::OutcomeSample;
use delivery_model::store::{CircuitPolicy, FinishItem, FinishResult, Store};
use delivery_model::time::now_micros;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most outcomes one script call writes.
const MAX_BATCH: usize = 256;
/// Writes in flight at once: while one batch is written the next one gathers, and a slow reply from Redis
/// does not stop every attempt from finishing.
const WRITERS: usize = 2;
/// How often the gathered statistics are added to Redis.
const STATS_EVERY: Duration = Duration::from_secs(1);

type Reply = oneshot::Sender<delivery_model::Result<FinishResult>>;
/// Outcome samples waiting for the next statistics flush.
type Samples = Mutex<Vec<OutcomeSample>>;

/// Hands outcomes to the writer task. Cheap to share. The channel needs no bound of its own: every sender is
/// an attempt holding one of the worker's slots until its answer comes, so at most `max_in_flight` wait.
pub struct Outcomes {
    tx: mpsc::UnboundedSender<(FinishItem, Reply)>,
}

impl Outcomes {
    /// Starts the writer task (it ends when the last `Outcomes` handle is dropped) and the statistics
    /// flusher (it ends after the writer, with a last flush).
    pub fn start(store: Store, policy: CircuitPolicy) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let samples = Arc::new(Samples::default());
        tokio::spawn(flush_stats(store.clone(), Arc::downgrade(&samples)));
        tokio::spawn(writer(store, Arc::new(policy), samples, rx));
        Self { tx }
    }

    /// Writes one attempt's outcome, fenced by its lease token, with whatever other outcomes are waiting.
    ///
    /// # Errors
    /// Redis failure: nothing of this batch was written; the entry stays pending.
    pub async fn write(&self, item: FinishItem) -> delivery_model::Result<FinishResult> {
        let (reply, answer) = oneshot::channel();
        let closed = || delivery_model::Error::Script("outcome writer stopped".into());
        self.tx.send((item, reply)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn writer(
    store: Store,
    policy: Arc<CircuitPolicy>,
    samples: Arc<Samples>,
    mut rx: mpsc::UnboundedReceiver<(FinishItem, Reply)>,
) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    while let Some(first) = rx.recv().await {
        // Wait for a free writer before gathering: what arrives meanwhile joins this batch.
        let Ok(permit) = writers.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (store, policy, samples) = (store.clone(), policy.clone(), samples.clone());
        tokio::spawn(async move {
            let now = now_micros();
            let calls = by_shard(&store, batch)
                .into_iter()
                .map(|jobs| write_shard(&store, &policy, &samples, jobs, now));
            futures::future::join_all(calls).await;
            drop(permit);
        });
    }
    // Every handle is gone (the worker is stopping): once the last writes are done, flush their counts.
    if writers.acquire_many(WRITERS as u32).await.is_ok() {
        record_stats(&store, &samples).await;
    }
}

/// The batch's jobs grouped by their delivery's shard (one group on one node), each group in batch order.
fn by_shard(store: &Store, batch: Vec<(FinishItem, Reply)>) -> Vec<Vec<(FinishItem, Reply)>> {
    let keys = store.keys();
    let mut groups: Vec<(Shard, Vec<(FinishItem, Reply)>)> = Vec::new();
    for job in batch {
        let shard = keys.shard_of(job.0.id);
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, jobs)) => jobs.push(job),
            None => groups.push((shard, vec![job])),
        }
    }
    groups.into_iter().map(|(_, jobs)| jobs).collect()
}

/// Writes one shard's outcomes, answers each waiting attempt, and gathers what the statistics count.
async fn write_shard(
    store: &Store,
    policy: &CircuitPolicy,
    samples: &Samples,
    jobs: Vec<(FinishItem, Reply)>,
    now: delivery_model::time::Micros,
) {
    let (items, replies): (Vec<FinishItem>, Vec<Reply>) = jobs.into_iter().unzip();
    match store.finish_attempts(&items, policy, now).await {
        Ok(results) => {
            samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(
                    items
                        .iter()
                        .zip(&results)
                        .filter_map(|(i, r)| i.stats_sample(*r)),
                );
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.for_waiter()));
            }
        }
    }
}

/// Adds the gathered samples to Redis every [`STATS_EVERY`] until the writer is gone (it flushes the
/// rest itself).
async fn flush_stats(store: Store, samples: Weak<Samples>) {
    let mut tick = tokio::time::interval(STATS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(samples) = samples.upgrade() else {
            return;
        };
        record_stats(&store, &samples).await;
    }
}

/// Adds what `samples` holds to Redis and empties it.
async fn record_stats(store: &Store, samples: &Samples) {
    let batch = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    if batch.is_empty() {
        return;
    }
    if let Err(e) = store.record_stats(&batch, now_micros() / 1_000_000).await {
        tracing::warn!(error = %e, outcomes = batch.len(),
            "delivery statistics not recorded (the console's charts miss these outcomes)");
    }
}
