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

use std::sync::Arc;

use delivery_model::keys::Shard;
use delivery_model::store::{CircuitPolicy, FinishItem, FinishResult, Store};
use delivery_model::time::now_micros;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most outcomes one script call writes.
const MAX_BATCH: usize = 256;
/// Writes in flight at once: while one batch is written the next one gathers, and a slow reply from Redis
/// does not stop every attempt from finishing.
const WRITERS: usize = 2;

type Reply = oneshot::Sender<delivery_model::Result<FinishResult>>;

/// Hands outcomes to the writer task. Cheap to share. The channel needs no bound of its own: every sender is
/// an attempt holding one of the worker's slots until its answer comes, so at most `max_in_flight` wait.
pub struct Outcomes {
    tx: mpsc::UnboundedSender<(FinishItem, Reply)>,
}

impl Outcomes {
    /// Starts the writer task (it ends when the last `Outcomes` handle is dropped).
    pub fn start(store: Store, policy: CircuitPolicy) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, Arc::new(policy), rx));
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
        let (store, policy) = (store.clone(), policy.clone());
        tokio::spawn(async move {
            let now = now_micros();
            let calls = by_shard(&store, batch)
                .into_iter()
                .map(|jobs| write_shard(&store, &policy, jobs, now));
            futures::future::join_all(calls).await;
            drop(permit);
        });
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

/// Writes one shard's outcomes and answers each waiting attempt.
async fn write_shard(
    store: &Store,
    policy: &CircuitPolicy,
    jobs: Vec<(FinishItem, Reply)>,
    now: delivery_model::time::Micros,
) {
    let (items, replies): (Vec<FinishItem>, Vec<Reply>) = jobs.into_iter().unzip();
    match store.finish_attempts(&items, policy, now).await {
        Ok(results) => {
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
