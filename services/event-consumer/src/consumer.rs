//! The read loop over the input stream and the processing of each batch.
//!
//! Guarantees:
//! - **Nothing lost.** An entry is acknowledged only by the script that writes its deliveries (or routes its
//!   pre-created delivery), so a crash at any point leaves it pending. A restarted replica (same consumer
//!   name) first re-reads its own pending entries; entries of a replica that never comes back are taken over
//!   by `XAUTOCLAIM` once idle for `claim_idle_ms`.
//! - **Nothing twice.** Fan-out derives delivery ids from (entry id, subscription id), so reprocessing an
//!   entry finds its records and creates none.
//! - **No poison entries.** A malformed entry is acknowledged, logged and counted, never retried.
//! - **Self-healing.** A group lost with Redis's data (`NOGROUP`) is recreated without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use delivery_model::event::{ADDON_INVOKED, MalformedEvent, StreamEvent};
use delivery_model::keys::EVENTS_GROUP;
use delivery_model::store::{Store, StreamEntry, StreamReader};
use delivery_model::subscription::Subscription;
use delivery_model::time::now_micros;
use futures::StreamExt;
use service_common::config::{Settings, consumer_name};
use service_common::shutdown;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Entries processed at once within a batch (each is one script call; fred pipelines them).
const CONCURRENCY: usize = 64;
/// Pause after a Redis error before trying again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// The consumer's settings.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub name: String,
    pub group_start_id: String,
    pub batch_size: u64,
    pub block_ms: u64,
    pub claim_idle: Duration,
    pub require_owner_match: bool,
}

impl ConsumerConfig {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            name: consumer_name(&s.consumer.consumer_name, "event-consumer"),
            group_start_id: s.consumer.group_start_id.clone(),
            batch_size: s.consumer.batch_size,
            block_ms: s.consumer.block_ms,
            claim_idle: Duration::from_millis(s.consumer.claim_idle_ms),
            require_owner_match: s.consumer.require_owner_match,
        }
    }
}

/// What became of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Processed {
    FannedOut(u64),
    NoMatch,
    Routed,
    RouteSkipped,
    Malformed,
}

impl Processed {
    fn label(self) -> &'static str {
        match self {
            Processed::FannedOut(_) => "fanned_out",
            Processed::NoMatch => "no_match",
            Processed::Routed => "routed",
            Processed::RouteSkipped => "route_skipped",
            Processed::Malformed => "malformed",
        }
    }
}

/// One consumer in the input stream's group.
pub struct Consumer {
    store: Store,
    cfg: ConsumerConfig,
    metrics: Metrics,
}

impl Consumer {
    pub fn new(store: Store, cfg: ConsumerConfig, metrics: Metrics) -> Self {
        Self {
            store,
            cfg,
            metrics,
        }
    }

    fn stream(&self) -> &str {
        self.store.keys().events_stream()
    }

    /// Reads and processes until `token` is cancelled.
    pub async fn run(&self, token: CancellationToken) {
        tracing::info!(consumer = %self.cfg.name, stream = self.stream(), "consuming");
        while !token.is_cancelled() {
            let reader = match token.run_until_cancelled(self.store.reader()).await {
                None => break,
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    self.metrics.redis_errors.inc();
                    tracing::warn!(error = %e, "cannot open a read connection; retrying");
                    shutdown::sleep(&token, ERROR_PAUSE).await;
                    continue;
                }
            };
            self.session(&reader, &token).await;
            reader.quit().await;
        }
    }

    /// Reads on one connection until cancelled or the connection fails.
    async fn session(&self, reader: &StreamReader, token: &CancellationToken) {
        let mut own_pending_done = false;
        let claim_every = (self.cfg.claim_idle / 2).max(Duration::from_millis(100));
        let mut last_claim: Option<Instant> = None;
        while !token.is_cancelled() {
            let read = if !own_pending_done {
                let r = reader
                    .read_own_pending(
                        self.stream(),
                        EVENTS_GROUP,
                        &self.cfg.name,
                        self.cfg.batch_size,
                    )
                    .await;
                if matches!(&r, Ok(v) if v.is_empty()) {
                    own_pending_done = true;
                }
                r
            } else if last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
                last_claim = Some(Instant::now());
                let r = reader
                    .claim_stale(
                        self.stream(),
                        EVENTS_GROUP,
                        &self.cfg.name,
                        u64::try_from(self.cfg.claim_idle.as_millis()).unwrap_or(u64::MAX),
                        self.cfg.batch_size,
                    )
                    .await;
                if let Ok(v) = &r {
                    self.metrics.reclaimed.inc_by(v.len() as u64);
                    if !v.is_empty() {
                        tracing::info!(count = v.len(), "took over entries of a stalled consumer");
                    }
                }
                r
            } else {
                let read = reader.read_group(
                    self.stream(),
                    EVENTS_GROUP,
                    &self.cfg.name,
                    self.cfg.batch_size,
                    self.cfg.block_ms,
                );
                match token.run_until_cancelled(read).await {
                    None => return,
                    Some(r) => r,
                }
            };
            match read {
                Ok(entries) if entries.is_empty() => {}
                Ok(entries) => {
                    if !self.process_batch(entries).await {
                        // Some entries stay pending: re-read our own list after a pause.
                        own_pending_done = false;
                        shutdown::sleep(token, ERROR_PAUSE).await;
                    }
                }
                Err(e) if e.is_nogroup() => {
                    self.metrics.group_recreated.inc();
                    tracing::warn!(
                        "consumer group is missing (Redis lost its data?); recreating it"
                    );
                    if let Err(e) = self
                        .store
                        .ensure_events_group(&self.cfg.group_start_id)
                        .await
                    {
                        self.metrics.redis_errors.inc();
                        tracing::warn!(error = %e, "cannot recreate the consumer group");
                        shutdown::sleep(token, ERROR_PAUSE).await;
                    }
                }
                Err(e) => {
                    self.metrics.redis_errors.inc();
                    tracing::warn!(error = %e, "reading the input stream failed; retrying");
                    shutdown::sleep(token, ERROR_PAUSE).await;
                    if !e.is_retryable() {
                        return;
                    }
                }
            }
        }
    }

    /// Processes one batch. Returns `false` when some entries could not be written (they stay pending).
    async fn process_batch(&self, entries: Vec<StreamEntry>) -> bool {
        let started = Instant::now();
        let decoded: Vec<(String, Result<StreamEvent, MalformedEvent>)> = entries
            .into_iter()
            .map(|e| (e.id, StreamEvent::decode(&e.fields)))
            .collect();

        // Candidates once per event type per batch: two small set reads instead of one per entry.
        let mut types: Vec<&str> = decoded
            .iter()
            .filter_map(|(_, e)| e.as_ref().ok())
            .filter(|e| e.event_type != ADDON_INVOKED)
            .map(|e| e.event_type.as_str())
            .collect();
        types.sort_unstable();
        types.dedup();
        let mut candidates: HashMap<&str, Vec<Subscription>> = HashMap::new();
        for t in types {
            match self.store.match_candidates(t).await {
                Ok(subs) => {
                    candidates.insert(t, subs);
                }
                Err(e) => {
                    self.metrics.redis_errors.inc();
                    tracing::warn!(error = %e, event.r#type = t, "reading subscriptions failed");
                    return false;
                }
            }
        }

        let now = now_micros();
        let results: Vec<Result<Processed, delivery_model::Error>> =
            futures::stream::iter(decoded.iter())
                .map(|(id, event)| self.process_one(id, event, &candidates, now))
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut ok = true;
        for r in results {
            match r {
                Ok(p) => {
                    self.metrics.events.with_label_values(&[p.label()]).inc();
                    if let Processed::FannedOut(n) = p {
                        self.metrics.deliveries_created.inc_by(n);
                    }
                }
                Err(e) => {
                    ok = false;
                    self.metrics.redis_errors.inc();
                    tracing::warn!(error = %e, "processing an entry failed; it stays pending");
                }
            }
        }
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        ok
    }

    async fn process_one(
        &self,
        entry_id: &str,
        event: &Result<StreamEvent, MalformedEvent>,
        candidates: &HashMap<&str, Vec<Subscription>>,
        now: i64,
    ) -> Result<Processed, delivery_model::Error> {
        let event = match event {
            Ok(e) => e,
            Err(reason) => {
                tracing::warn!(entry.id = entry_id, reason = %reason, "malformed input entry acknowledged and skipped");
                self.store.ack_events(&[entry_id.to_owned()]).await?;
                return Ok(Processed::Malformed);
            }
        };
        if event.event_type == ADDON_INVOKED {
            return match event.delivery_id {
                Some(id) => Ok(if self.store.route_existing(entry_id, id).await? {
                    Processed::Routed
                } else {
                    Processed::RouteSkipped
                }),
                None => {
                    // TMI's own addon.invoked entries carry no delivery id: TMI's worker polls for the record.
                    // Only Hookline's invoke endpoint creates addon deliveries, so there is nothing to route.
                    tracing::warn!(
                        entry.id = entry_id,
                        "addon.invoked entry without delivery_id skipped"
                    );
                    self.store.ack_events(&[entry_id.to_owned()]).await?;
                    Ok(Processed::Malformed)
                }
            };
        }
        let subs: Vec<_> = candidates
            .get(event.event_type.as_str())
            .into_iter()
            .flatten()
            .filter(|s| {
                s.matches(
                    &event.event_type,
                    event.threat_model_id.as_deref(),
                    event.owner_id.as_deref(),
                    self.cfg.require_owner_match,
                )
            })
            .map(|s| s.id)
            .collect();
        let envelope = if subs.is_empty() {
            String::new()
        } else {
            event.envelope()?
        };
        let created = self
            .store
            .fanout(entry_id, &event.event_type, &envelope, &subs, now)
            .await?;
        tracing::debug!(entry.id = entry_id, event.r#type = %event.event_type, matched = subs.len(), created, "fanned out");
        Ok(if subs.is_empty() {
            Processed::NoMatch
        } else {
            Processed::FannedOut(created)
        })
    }
}
