//! The event-consumer's per-batch work over the input stream, run by the shared
//! [`GroupReader`](delivery_model::reader::GroupReader).
//!
//! Guarantees:
//! - **Nothing lost.** An entry is acknowledged only by the script that writes its deliveries (or routes its
//!   pre-created delivery), so a crash at any point leaves it pending. The reader re-reads a restarted
//!   replica's own pending entries and takes over those of a replica that never comes back once idle for
//!   `claim_idle_ms`.
//! - **Nothing twice.** Fan-out derives delivery ids from (entry id, subscription id), so reprocessing an
//!   entry finds its records and creates none.
//! - **No poison entries.** A malformed entry is acknowledged, logged and counted, never retried.
//! - **Self-healing.** A group lost with Redis's data (`NOGROUP`) is recreated by the reader without a restart.
//!
//! Tracing: every entry gets its own span (`event.fan_out`, or `event.route` for an add-on invocation), a
//! child of the trace context the entry carries (`traceparent`/`tracestate` fields) rather than one batch
//! span with links: an entry's fan-out is the next hop of that one event, and the deliveries it creates
//! store the span's context, so their attempts continue the same trace. Entries of one batch share script
//! calls; each entry's span lasts until its batch is written. An entry without a context starts a trace.

use std::time::{Duration, Instant};

use delivery_model::event::{ADDON_INVOKED, MalformedEvent, StreamEvent};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::EVENTS_GROUP;
use delivery_model::lane::Lane;
use delivery_model::reader::{Batch, BatchHandler, GroupSpec, Handled, ReaderEvent};
use delivery_model::store::{Fanned, FanoutEntry, Store, StreamEntry, entry_time_ms};
use delivery_model::subscription::Subscription;
use delivery_model::time::now_micros;
use delivery_model::trace::TraceContext;
use futures::StreamExt;
use service_common::config::{Settings, consumer_name};

use crate::candidates::{CandidateCache, Candidates, Matched};
use crate::metrics::Metrics;

/// Script calls in flight at once within a batch (fred pipelines them on its connections).
const CONCURRENCY: usize = 16;
/// Entries fanned out per script call: amortises a script's fixed cost while keeping each call short.
const FANOUT_CHUNK: usize = 32;

/// The consumer's reading spec: the input stream in the `webhook-consumers` group. Stalled entries are
/// looked for every half `claim_idle_ms` (at least every 100 ms).
pub fn group_spec(settings: &Settings, store: &Store) -> GroupSpec {
    let c = &settings.consumer;
    let claim_idle = Duration::from_millis(c.claim_idle_ms);
    GroupSpec {
        streams: vec![store.keys().events_stream().to_owned()],
        group: EVENTS_GROUP,
        start_id: c.group_start_id.clone(),
        consumer: consumer_name(&c.consumer_name, "event-consumer"),
        batch_size: c.batch_size,
        block: Duration::from_millis(c.block_ms),
        claim_idle,
        claim_every: (claim_idle / 2).max(Duration::from_millis(100)),
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

/// A resource-change event to fan out.
struct PlannedFanout<'a> {
    entry_id: &'a str,
    event_type: &'a str,
    envelope: String,
    /// The subscriptions it matched.
    subs: Vec<SubscriptionId>,
    /// The FIFO lane of each of `subs` (empty when none is ordered).
    lanes: Vec<Option<Lane>>,
    /// The trace context its deliveries continue.
    trace: Option<TraceContext>,
}

/// The work one batch asks for, sorted by kind.
#[derive(Default)]
struct Plan<'a> {
    /// Entries to acknowledge and skip.
    malformed: Vec<String>,
    /// Add-on invocations: (entry id, pre-created delivery).
    routes: Vec<(&'a str, DeliveryId)>,
    /// Resource-change events.
    fanouts: Vec<PlannedFanout<'a>>,
    /// One span per routed or fanned-out entry, ended when the batch is done (dropped with the plan).
    spans: Vec<tracing::Span>,
}

/// Makes `span` (an entry's, not entered yet) a child of the entry's own trace context; returns the context
/// the entry's deliveries continue.
fn continue_entry(span: &tracing::Span, e: &StreamEvent) -> Option<TraceContext> {
    service_common::trace::set_parent(span, e.trace.as_ref());
    service_common::trace::continuation(span, e.trace.as_ref())
}

/// What became of a batch's fan-outs.
struct FannedOut<'a> {
    /// `false` when some entries failed and stay pending.
    ok: bool,
    /// Entries whose chunk was matched at an older match generation: nothing written, to match again.
    stale: Vec<&'a str>,
}

/// A decoded entry: its id and event, or why it is malformed.
type Decoded = (String, Result<StreamEvent, MalformedEvent>);

/// The consumer's batch handler: match, fan out, route add-on invocations, acknowledge.
pub struct Consumer {
    store: Store,
    candidates: CandidateCache,
    require_owner_match: bool,
    metrics: Metrics,
}

impl BatchHandler for Consumer {
    /// A batch is finished before the next read, so there is always room for a full one.
    type Room = ();

    async fn reserve(&self, max: u64) -> Option<((), u64)> {
        Some(((), max))
    }

    async fn handle(&self, batch: Batch<'_>, (): ()) -> Handled {
        if self.process_batch(batch.entries).await {
            Handled::Done
        } else {
            Handled::Retry
        }
    }

    fn observe(&self, event: ReaderEvent<'_>) {
        match event {
            ReaderEvent::Reclaimed { count, .. } => self.metrics.reclaimed.inc_by(count as u64),
            ReaderEvent::GroupRecreated { .. } => self.metrics.group_recreated.inc(),
            ReaderEvent::RedisError { .. } => self.metrics.redis_errors.inc(),
        }
    }
}

impl Consumer {
    pub fn new(store: Store, settings: &Settings, metrics: Metrics) -> Self {
        Self {
            store,
            candidates: CandidateCache::default(),
            require_owner_match: settings.consumer.require_owner_match,
            metrics,
        }
    }

    /// Processes one batch. Returns `false` when some entries could not be written (they stay pending).
    async fn process_batch(&self, entries: Vec<StreamEntry>) -> bool {
        let started = Instant::now();
        let decoded: Vec<Decoded> = entries
            .into_iter()
            .map(|e| (e.id, StreamEvent::decode(&e.fields)))
            .collect();
        let Some(matched) = self.candidates(&decoded).await else {
            return false;
        };
        let plan = self.plan(decoded.iter(), &matched.candidates);
        let mut ok = self.ack_malformed(&plan.malformed).await;
        ok &= self.route(plan.routes).await;
        let fanned = self.fan_out(&plan.fanouts, matched.generation).await;
        ok &= fanned.ok;
        let mut ordered = plan.fanouts.iter().any(|f| !f.lanes.is_empty());
        if !fanned.stale.is_empty() {
            // A subscription changed after the candidates were read (the cache's generation moved): those
            // entries wrote nothing and are matched again against a fresh read. Once: if it moves again they
            // stay pending and come back with the next read of pending entries.
            self.candidates.invalidate();
            let again: Vec<&Decoded> = decoded
                .iter()
                .filter(|(id, _)| fanned.stale.contains(&id.as_str()))
                .collect();
            let Some(matched) = self.candidates(&decoded).await else {
                return false;
            };
            let plan = self.plan(again, &matched.candidates);
            let retried = self.fan_out(&plan.fanouts, matched.generation).await;
            ok &= retried.ok && retried.stale.is_empty();
            ordered |= plan.fanouts.iter().any(|f| !f.lanes.is_empty());
        }
        self.raise_lane_watermark(ordered).await;
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        ok
    }

    /// Candidate subscriptions of the batch's event types ([`CandidateCache`]). `None` when Redis failed (the
    /// batch stays pending).
    async fn candidates<'a>(&self, decoded: &'a [Decoded]) -> Option<Matched<'a>> {
        let mut types: Vec<&str> = decoded
            .iter()
            .filter_map(|(_, e)| e.as_ref().ok())
            .filter(|e| e.event_type != ADDON_INVOKED)
            .map(|e| e.event_type.as_str())
            .collect();
        types.sort_unstable();
        types.dedup();
        if types.is_empty() {
            return Some(Matched {
                candidates: Candidates::new(),
                generation: 0,
            });
        }
        match self.candidates.get(&self.store, &types).await {
            Ok(c) => Some(c),
            Err((t, e)) => {
                self.metrics.redis_errors.inc();
                tracing::warn!(error = %e, event.r#type = t, "reading subscriptions failed");
                None
            }
        }
    }

    /// Sorts the batch into malformed entries, add-on routes and fan-outs.
    fn plan<'a>(
        &self,
        decoded: impl IntoIterator<Item = &'a Decoded>,
        candidates: &Candidates<'_>,
    ) -> Plan<'a> {
        let mut plan = Plan::default();
        for (id, event) in decoded {
            match event {
                Err(reason) => {
                    tracing::warn!(entry.id = %id, reason = %reason, "malformed input entry acknowledged and skipped");
                    plan.malformed.push(id.clone());
                }
                Ok(e) if e.event_type == ADDON_INVOKED => match e.delivery_id {
                    Some(d) => {
                        let span = tracing::info_span!("event.route", otel.kind = "consumer", stream.entry = %id, delivery.id = %d);
                        continue_entry(&span, e);
                        plan.spans.push(span);
                        plan.routes.push((id.as_str(), d));
                    }
                    None => {
                        // TMI's own addon.invoked entries carry no delivery id (TMI's worker polls for the
                        // record); only Hookline's invoke endpoint creates addon deliveries.
                        tracing::warn!(entry.id = %id, "addon.invoked entry without delivery_id skipped");
                        plan.malformed.push(id.clone());
                    }
                },
                Ok(e) => {
                    let matched: Vec<&Subscription> = candidates
                        .get(e.event_type.as_str())
                        .into_iter()
                        .flat_map(|c| c.iter())
                        .filter(|s| {
                            s.matches(
                                &e.event_type,
                                e.threat_model_id.as_deref(),
                                e.owner_id.as_deref(),
                                self.require_owner_match,
                            )
                        })
                        .collect();
                    let subs: Vec<SubscriptionId> = matched.iter().map(|s| s.id).collect();
                    let lanes: Vec<Option<Lane>> = if matched.iter().any(|s| s.ordering.is_some()) {
                        matched
                            .iter()
                            .map(|s| s.ordering.map(|o| o.lane_of(s.id, e)))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let envelope = if subs.is_empty() {
                        String::new()
                    } else {
                        match e.envelope() {
                            Ok(env) => env,
                            Err(err) => {
                                tracing::warn!(entry.id = %id, error = %err, "payload cannot be enveloped; skipped");
                                plan.malformed.push(id.clone());
                                continue;
                            }
                        }
                    };
                    let span = tracing::info_span!("event.fan_out", otel.kind = "consumer", stream.entry = %id, event.r#type = %e.event_type, subscriptions = subs.len());
                    let trace = continue_entry(&span, e);
                    plan.spans.push(span);
                    plan.fanouts.push(PlannedFanout {
                        entry_id: id.as_str(),
                        event_type: e.event_type.as_str(),
                        envelope,
                        subs,
                        lanes,
                        trace,
                    });
                }
            }
        }
        plan
    }

    /// Raises the FIFO lanes' input watermark (`Store::raise_lane_watermark`) after a batch that fed a lane,
    /// unless the fan-out script did it already (the sampler's tick covers every other acknowledgement). A
    /// failure is logged and counted: the entries are acknowledged, and the next call raises it.
    async fn raise_lane_watermark(&self, ordered: bool) {
        if !ordered || self.store.fanout_raises_lane_watermark() {
            return;
        }
        if let Err(e) = self.store.raise_lane_watermark().await {
            self.metrics.redis_errors.inc();
            tracing::warn!(error = %e, "raising the lane watermark failed; the next batch retries");
        }
    }

    /// Acknowledges malformed entries. Returns `false` when they stay pending.
    async fn ack_malformed(&self, malformed: &[String]) -> bool {
        if malformed.is_empty() {
            return true;
        }
        match self.store.ack_events(malformed).await {
            Ok(()) => {
                self.metrics
                    .events
                    .with_label_values(&[Processed::Malformed.label()])
                    .inc_by(malformed.len() as u64);
                true
            }
            Err(e) => {
                self.metrics.redis_errors.inc();
                tracing::warn!(error = %e, "acknowledging malformed entries failed; they stay pending");
                false
            }
        }
    }

    /// Routes add-on invocations to their pre-created deliveries. Returns `false` when some stay pending.
    async fn route(&self, routes: Vec<(&str, DeliveryId)>) -> bool {
        // The calls are built before they are streamed: a closure in the stream would make this future's
        // `Send` bound unprovable (rust-lang/rust#102211).
        let calls: Vec<_> = routes
            .into_iter()
            .map(|(entry, delivery)| self.store.route_existing(entry, delivery))
            .collect();
        let results: Vec<Result<bool, delivery_model::Error>> = futures::stream::iter(calls)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut ok = true;
        for r in results {
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
        ok
    }

    /// Writes the deliveries of resource-change events and acknowledges them, in chunks of scripts, each
    /// checked against the match generation the events were matched at. A failed chunk's entries stay
    /// pending; a stale chunk's wrote nothing and are named for matching again.
    async fn fan_out<'a>(&self, fanouts: &[PlannedFanout<'a>], generation: i64) -> FannedOut<'a> {
        let now = now_micros();
        let chunks: Vec<Vec<FanoutEntry<'_>>> = fanouts
            .chunks(FANOUT_CHUNK)
            .map(|c| {
                c.iter()
                    .map(|f| FanoutEntry {
                        entry_id: f.entry_id,
                        event_type: f.event_type,
                        envelope: &f.envelope,
                        subscriptions: &f.subs,
                        lanes: &f.lanes,
                        trace: f.trace.as_ref(),
                    })
                    .collect()
            })
            .collect();
        let calls: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(n, chunk)| {
                let matched = chunk.iter().filter(|e| !e.subscriptions.is_empty()).count();
                let call = self
                    .store
                    .fanout_batch_matched(chunk, now, Some(generation));
                let event_lag = &self.metrics.event_lag;
                async move {
                    let result = call.await;
                    if result.is_ok() {
                        observe_lag(event_lag, chunk.iter().map(|e| e.entry_id));
                    }
                    (n, chunk.len(), matched, result)
                }
            })
            .collect();
        let results: Vec<(usize, usize, usize, Result<Fanned, delivery_model::Error>)> =
            futures::stream::iter(calls)
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut out = FannedOut {
            ok: true,
            stale: Vec::new(),
        };
        for (n, entries, matched, r) in results {
            match r {
                Ok(fanned) => {
                    self.metrics.deliveries_created.inc_by(fanned.created);
                    if fanned.lane_waiting > 0 {
                        self.metrics
                            .deferrals
                            .with_label_values(&["lane"])
                            .inc_by(fanned.lane_waiting);
                    }
                    self.metrics
                        .events
                        .with_label_values(&[Processed::FannedOut.label()])
                        .inc_by(matched as u64);
                    self.metrics
                        .events
                        .with_label_values(&[Processed::NoMatch.label()])
                        .inc_by((entries - matched) as u64);
                }
                Err(delivery_model::Error::StaleMatch) => {
                    tracing::debug!(
                        entries,
                        "subscriptions changed since matching; matching again"
                    );
                    let chunk = fanouts.chunks(FANOUT_CHUNK).nth(n).unwrap_or_default();
                    out.stale.extend(chunk.iter().map(|f| f.entry_id));
                }
                Err(e) => {
                    out.ok = false;
                    self.metrics.redis_errors.inc();
                    tracing::warn!(error = %e, entries, "fan-out failed; the entries stay pending");
                }
            }
        }
        out
    }
}

/// Observes, for each entry id, the time since Redis appended the entry (`hookline_consumer_event_lag_seconds`).
fn observe_lag<'a>(histogram: &prometheus::Histogram, ids: impl Iterator<Item = &'a str>) {
    let now_ms = now_micros() / 1000;
    for ms in ids.filter_map(entry_time_ms) {
        histogram.observe((now_ms - ms).max(0) as f64 / 1e3);
    }
}
