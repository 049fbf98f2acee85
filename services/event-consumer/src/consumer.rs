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
use delivery_model::ids::SubscriptionId;
use delivery_model::keys::EVENTS_GROUP;
use delivery_model::store::{FanoutEntry, Store, StreamEntry, StreamReader};
use delivery_model::subscription::Subscription;
use delivery_model::time::now_micros;
use futures::StreamExt;
use service_common::config::{Settings, consumer_name};
use service_common::shutdown;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Script calls in flight at once within a batch (fred pipelines them on its connections).
const CONCURRENCY: usize = 16;
/// Entries fanned out per script call: amortises a script's fixed cost while keeping each call short.
const FANOUT_CHUNK: usize = 32;
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
    FannedOut,
    NoMatch,
    Routed,
    RouteSkipped,
    Malformed,
}

impl Processed {
    fn label(self) -> &'static str {
        match self {
            Processed::FannedOut => "fanned_out",
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

        let mut ok = true;
        let mut malformed = Vec::new();
        let mut routes = Vec::new();
        // (entry id, event type, envelope, matched subscriptions)
        let mut fanouts: Vec<(&str, &str, String, Vec<SubscriptionId>)> = Vec::new();
        for (id, event) in &decoded {
            match event {
                Err(reason) => {
                    tracing::warn!(entry.id = %id, reason = %reason, "malformed input entry acknowledged and skipped");
                    malformed.push(id.clone());
                }
                Ok(e) if e.event_type == ADDON_INVOKED => match e.delivery_id {
                    Some(d) => routes.push((id.as_str(), d)),
                    None => {
                        // TMI's own addon.invoked entries carry no delivery id (TMI's worker polls for the
                        // record); only Hookline's invoke endpoint creates addon deliveries.
                        tracing::warn!(entry.id = %id, "addon.invoked entry without delivery_id skipped");
                        malformed.push(id.clone());
                    }
                },
                Ok(e) => {
                    let subs: Vec<SubscriptionId> = candidates
                        .get(e.event_type.as_str())
                        .into_iter()
                        .flatten()
                        .filter(|s| {
                            s.matches(
                                &e.event_type,
                                e.threat_model_id.as_deref(),
                                e.owner_id.as_deref(),
                                self.cfg.require_owner_match,
                            )
                        })
                        .map(|s| s.id)
                        .collect();
                    let envelope = if subs.is_empty() {
                        String::new()
                    } else {
                        match e.envelope() {
                            Ok(env) => env,
                            Err(err) => {
                                tracing::warn!(entry.id = %id, error = %err, "payload cannot be enveloped; skipped");
                                malformed.push(id.clone());
                                continue;
                            }
                        }
                    };
                    fanouts.push((id.as_str(), e.event_type.as_str(), envelope, subs));
                }
            }
        }

        if !malformed.is_empty() {
            match self.store.ack_events(&malformed).await {
                Ok(()) => self
                    .metrics
                    .events
                    .with_label_values(&[Processed::Malformed.label()])
                    .inc_by(malformed.len() as u64),
                Err(e) => {
                    ok = false;
                    self.metrics.redis_errors.inc();
                    tracing::warn!(error = %e, "acknowledging malformed entries failed; they stay pending");
                }
            }
        }

        let route_results: Vec<Result<bool, delivery_model::Error>> = futures::stream::iter(routes)
            .map(|(entry, delivery)| self.store.route_existing(entry, delivery))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for r in route_results {
            match r {
                Ok(routed) => {
                    let p = if routed {
                        Processed::Routed
                    } else {
                        Processed::RouteSkipped
                    };
                    self.metrics.events.with_label_values(&[p.label()]).inc();
                }
                Err(e) => {
                    ok = false;
                    self.metrics.redis_errors.inc();
                    tracing::warn!(error = %e, "routing an addon invocation failed; it stays pending");
                }
            }
        }

        let now = now_micros();
        let chunks: Vec<Vec<FanoutEntry<'_>>> = fanouts
            .chunks(FANOUT_CHUNK)
            .map(|c| {
                c.iter()
                    .map(|(entry_id, event_type, envelope, subs)| FanoutEntry {
                        entry_id,
                        event_type,
                        envelope,
                        subscriptions: subs,
                    })
                    .collect()
            })
            .collect();
        let results: Vec<(usize, usize, Result<u64, delivery_model::Error>)> =
            futures::stream::iter(chunks.iter())
                .map(|chunk| async move {
                    let matched = chunk.iter().filter(|e| !e.subscriptions.is_empty()).count();
                    (
                        chunk.len(),
                        matched,
                        self.store.fanout_batch(chunk, now).await,
                    )
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        for (entries, matched, r) in results {
            match r {
                Ok(created) => {
                    self.metrics.deliveries_created.inc_by(created);
                    self.metrics
                        .events
                        .with_label_values(&[Processed::FannedOut.label()])
                        .inc_by(matched as u64);
                    self.metrics
                        .events
                        .with_label_values(&[Processed::NoMatch.label()])
                        .inc_by((entries - matched) as u64);
                }
                Err(e) => {
                    ok = false;
                    self.metrics.redis_errors.inc();
                    tracing::warn!(error = %e, entries, "fan-out failed; the entries stay pending");
                }
            }
        }
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        ok
    }
}
