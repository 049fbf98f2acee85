//! Group commit of attempt outcomes.
//!
//! Every attempt ends with a fenced write of its outcome ([`Store::finish_attempts`]). Writing them one
//! script call each made that call the largest cost of a delivery, for Redis and for this process alike. So
//! attempts hand their outcome to [`Outcomes`] and wait: one writer task takes everything that finished
//! while the previous write was in flight and writes it in one script. Under light load a batch holds one
//! outcome and adds no delay; under heavy load batches grow and the per-delivery cost falls.
//!
//! An attempt still learns its own result (written, superseded, fenced) before it lets go of its slot, and
//! a failed write leaves each of its entries pending exactly as a failed single write did. After a write
//! the batch's outcomes are added to the console's delivery statistics (`Store::record_stats`).

use std::sync::Arc;

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
            let (items, replies): (Vec<FinishItem>, Vec<Reply>) = batch.into_iter().unzip();
            match store.finish_attempts(&items, &policy, now_micros()).await {
                Ok(results) => {
                    let samples: Vec<_> = items
                        .iter()
                        .zip(&results)
                        .filter_map(|(i, r)| i.stats_sample(*r))
                        .collect();
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(r));
                    }
                    // After the replies: the console's counters never hold an attempt up.
                    if let Err(e) = store.record_stats(&samples, now_micros() / 1_000_000).await {
                        tracing::warn!(error = %e, outcomes = samples.len(),
                            "delivery statistics not recorded (the console's charts miss these outcomes)");
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.for_waiter()));
                    }
                }
            }
            drop(permit);
        });
    }
}
