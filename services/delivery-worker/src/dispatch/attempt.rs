//! One delivery attempt whose lease is held, as typed stages:
//!
//! 1. prepare: the subscription must be active, the target must pass the outbound policy, a slot of the
//!    host must come free, its circuit must not be open and a limited subscription's limiter must agree;
//!    else the attempt ends here ([`Concluded`]), otherwise it is a [`PreparedAttempt`];
//! 2. send: exactly one POST of the stored payload bytes with TMI's headers ([`Sent`]);
//! 3. classify: the answer (or the failure to get one) becomes an [`Outcome`] ([`Concluded`]);
//! 4. finish: the outcome goes to the group commit, fenced by the lease, and is counted under its label.
//!
//! The host's slot (and a limited subscription's in-flight slot) travels with the attempt through every
//! stage and is let go only once its outcome is written, so the slots bound attempts until they are over.

use std::time::{Duration, Instant};

use bytes::Bytes;
use delivery_model::delivery::{AttemptLogEntry, DeliveryRecord};
use delivery_model::ids::DeliveryId;
use delivery_model::store::{CircuitSignal, FinishItem, FinishResult};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};
use http::{StatusCode, Uri};

use super::host_slots::{self, Health, HostSlot};
use super::limits::LimitSlot;
use super::outcome::{DELIVERED, Outcome};
use super::{Attempt, Dispatcher, Handled, circuit, header, spans};
use crate::client::{Answer, SendError};
use crate::metrics::since_event;

/// What the record's attempt log keeps of a request.
#[derive(Clone, Copy, Debug)]
struct Trace {
    started_at: Micros,
    duration: Duration,
    status: Option<u16>,
}

impl Trace {
    /// An attempt refused before any request was sent (the target failed the outbound policy).
    fn not_sent() -> Self {
        Self {
            started_at: now_micros(),
            duration: Duration::ZERO,
            status: None,
        }
    }
}

/// An attempt cleared to send: its subscription is active, its target vetted, a slot of its host held and
/// the host's circuit not open.
struct PreparedAttempt {
    uri: Uri,
    /// The destination host, lower-cased: the key of its slots and of its circuit.
    host: String,
    sub: Subscription,
    slot: HostSlot,
    limit: Option<LimitSlot>,
}

/// A request made: its result, and what the record's log and the host's breaker learn from it.
struct Sent {
    result: Result<Answer, SendError>,
    trace: Trace,
    host: String,
    signal: CircuitSignal,
    slot: HostSlot,
    limit: Option<LimitSlot>,
}

/// An attempt whose outcome is decided: ready for its fenced write.
struct Concluded {
    outcome: Outcome,
    /// The destination host; empty when the attempt ended before its target was known.
    host: String,
    /// What this attempt tells the host's breaker.
    signal: CircuitSignal,
    /// The request, for the record's attempt log; `None`: nothing was attempted.
    trace: Option<Trace>,
    /// The host's slot, if one was taken: held until the outcome is written.
    slot: Option<HostSlot>,
    /// The subscription's in-flight slot, if one was taken: given back once the outcome is written.
    limit: Option<LimitSlot>,
}

impl Concluded {
    /// An attempt that ended with nothing to tell the breaker or the attempt log.
    fn early(outcome: Outcome) -> Self {
        Self {
            outcome,
            host: String::new(),
            signal: CircuitSignal::None,
            trace: None,
            slot: None,
            limit: None,
        }
    }
}

/// Where the prepare stage leaves an attempt.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per attempt, moved once; boxing would only add an allocation"
)]
enum Prepared {
    Ready(PreparedAttempt),
    Concluded(Concluded),
}

impl From<Concluded> for Prepared {
    fn from(c: Concluded) -> Self {
        Prepared::Concluded(c)
    }
}

/// The status class that labels `hookline_worker_attempt_duration_seconds`; `error`: no answer.
fn class(status: Option<StatusCode>) -> &'static str {
    match status.map(|s| s.as_u16() / 100) {
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        _ => "error",
    }
}

impl Dispatcher {
    /// Runs an attempt's stages, from its lease to the written outcome, inside the attempt's span
    /// (`spans::attempt`).
    ///
    /// # Errors
    /// Redis failure (checking the circuit, or writing the outcome): the entry stays pending.
    pub(super) async fn attempt_delivery(
        &self,
        attempt: Attempt,
    ) -> delivery_model::Result<Handled> {
        let Attempt {
            entry_id,
            token,
            now,
            read_at,
            leased,
        } = attempt;
        let record = leased.record;
        let concluded = match self.prepare(record.id, leased.subscription).await? {
            Prepared::Ready(mut prepared) => {
                if !self.renew_if_waited(&record, &token, now).await? {
                    if let Some(limit) = prepared.limit.take() {
                        self.release(limit).await;
                    }
                    self.metrics.deliveries.with_label_values(&["fenced"]).inc();
                    tracing::warn!("lease lost while waiting for the host's slot; not sent");
                    return Ok(Handled::LeftPending);
                }
                self.metrics
                    .send_wait
                    .observe(read_at.elapsed().as_secs_f64());
                let sent = self.send(&record, prepared, now).await;
                self.classify_sent(&record, sent)
            }
            Prepared::Concluded(c) => c,
        };
        self.finish(entry_id, token, &record, concluded).await
    }

    /// Renews the lease taken at `leased_at` if the attempt has since spent long enough (waiting for its
    /// host's slot) that the request could outlive it, and another worker could take the delivery over and
    /// POST it a second time. `false`: the lease is no longer ours; the attempt must not send.
    ///
    /// # Errors
    /// Redis failure: nothing is sent; the entry stays pending.
    async fn renew_if_waited(
        &self,
        record: &DeliveryRecord,
        token: &str,
        leased_at: Micros,
    ) -> delivery_model::Result<bool> {
        let now = now_micros();
        if now - leased_at <= super::micros(self.cfg.renew_after) {
            return Ok(true);
        }
        let until = now + super::micros(self.cfg.lease);
        self.store.renew_lease(record.id, token, until).await
    }

    /// Checks everything that may stop an attempt of delivery `id` before its request, in order: the
    /// subscription, the target, a slot of the host (the attempt is deferred without one), the host's
    /// circuit, and a limited subscription's limiter (deferred when over a limit).
    ///
    /// # Errors
    /// Redis failure checking the circuit or the limiter.
    async fn prepare(
        &self,
        id: DeliveryId,
        subscription: Option<Subscription>,
    ) -> delivery_model::Result<Prepared> {
        let sub = match subscription {
            None => {
                let error = "subscription not found".into();
                return Ok(Concluded::early(Outcome::Abandoned { error }).into());
            }
            Some(s) if s.status != SubscriptionStatus::Active => {
                let error = match s.disabled_reason {
                    Some(reason) => reason.delivery_error().to_owned(),
                    None => format!("subscription is not active (status {})", s.status),
                };
                return Ok(Concluded::early(Outcome::Abandoned { error }).into());
            }
            Some(s) => s,
        };
        let uri = match self.client.vet(&sub.url) {
            Ok(u) => u,
            Err(e) => {
                let trace = Some(Trace::not_sent());
                let refused = Concluded::early(self.refused(&e));
                return Ok(Concluded { trace, ..refused }.into());
            }
        };
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let Some(slot) = self.hosts.acquire(&host, self.cfg.host_wait).await else {
            self.metrics.deferrals.with_label_values(&["host"]).inc();
            let at = host_slots::deferred_until();
            let deferred = Concluded::early(Outcome::Deferred { at });
            return Ok(Concluded { host, ..deferred }.into());
        };
        if let Some(until) = self.circuit_open_until(&host).await? {
            let open = Concluded::early(Outcome::CircuitOpen { until });
            let slot = Some(slot);
            return Ok(Concluded { host, slot, ..open }.into());
        }
        // Only a limited subscription asks the limiter: unlimited ones pay nothing for the feature.
        let limit = if sub.is_limited() {
            match self.limit(&sub, id).await? {
                Ok(limit) => limit,
                Err(deferred) => {
                    let slot = Some(slot);
                    let deferred = Concluded::early(deferred);
                    return Ok(Concluded {
                        host,
                        slot,
                        ..deferred
                    }
                    .into());
                }
            }
        } else {
            None
        };
        Ok(Prepared::Ready(PreparedAttempt {
            uri,
            host,
            sub,
            slot,
            limit,
        }))
    }

    /// Sends the one POST of this attempt and records what it tells the metrics and this worker's view of
    /// the host's circuit.
    async fn send(&self, record: &DeliveryRecord, p: PreparedAttempt, now: Micros) -> Sent {
        let delegation_token = self
            .delegation
            .as_ref()
            .and_then(|d| d.mint(record, now / 1_000_000));
        let mut headers = header::delivery(
            &self.cfg.user_agent,
            record,
            &p.sub,
            delegation_token.as_deref(),
            now,
        );
        if self.cfg.send_traceparent {
            spans::propagate(&mut headers, record.trace.as_ref());
        }

        self.metrics.in_flight.inc();
        let started_at = now_micros();
        let started = Instant::now();
        let result = self
            .client
            .post(
                p.uri,
                headers,
                Bytes::from(record.payload.clone()),
                self.client.limits(),
            )
            .await;
        self.metrics.in_flight.dec();
        let status = result.as_ref().ok().map(|a| a.status);
        let trace = Trace {
            started_at,
            duration: started.elapsed(),
            status: status.map(|s| s.as_u16()),
        };
        self.metrics
            .attempt_duration
            .with_label_values(&[class(status)])
            .observe(trace.duration.as_secs_f64());
        if record.attempts == 0 {
            let now = now_micros();
            let lag = (now - record.created_at).max(0);
            self.metrics.first_attempt_lag.observe(lag as f64 / 1e6);
            self.metrics
                .event_to_first_attempt
                .observe(since_event(record.id, now / 1000));
        }
        if !matches!(result, Err(SendError::Refused(_))) {
            p.slot.observe(Health::of(trace.status, trace.duration));
        }
        let signal = circuit::signal(&result);
        self.learn(&p.host, signal);
        Sent {
            result,
            trace,
            host: p.host,
            signal,
            slot: p.slot,
            limit: p.limit,
        }
    }

    /// Decides a sent attempt's outcome from its answer, or from why it got none.
    fn classify_sent(&self, record: &DeliveryRecord, sent: Sent) -> Concluded {
        let outcome = match &sent.result {
            Err(e @ SendError::Refused(_)) => self.refused(e),
            Ok(a) => Outcome::of_answer(&self.cfg, record.attempts, a),
            Err(e) => {
                let error = format!("request failed: {e}");
                Outcome::failure(&self.cfg, record.attempts, error, None)
            }
        };
        Concluded {
            outcome,
            host: sent.host,
            signal: sent.signal,
            trace: Some(sent.trace),
            slot: Some(sent.slot),
            limit: sent.limit,
        }
    }

    /// A target the outbound policy refuses (or that is no valid URL): counted and logged here, and failed
    /// for good, since retrying will not help.
    fn refused(&self, e: &SendError) -> Outcome {
        self.metrics.ssrf_refusals.inc();
        tracing::warn!(error = %e, "delivery target refused by the outbound policy");
        Outcome::Refused {
            error: e.to_string(),
        }
    }

    /// Hands the outcome to the group commit (fenced by the lease `token`, acknowledging `entry_id` in the
    /// same write) and counts it under its label, or under what the write found instead.
    ///
    /// # Errors
    /// Redis failure: nothing was written; the entry stays pending.
    async fn finish(
        &self,
        entry_id: String,
        token: String,
        record: &DeliveryRecord,
        c: Concluded,
    ) -> delivery_model::Result<Handled> {
        let label = c.outcome.label();
        let status = c.trace.and_then(|t| t.status);
        let outcome = c.outcome.stored();
        let log = c.trace.map(|t| AttemptLogEntry {
            attempt: record.attempts.saturating_add(1),
            started_at: t.started_at,
            duration_ms: u64::try_from(t.duration.as_millis()).unwrap_or(u64::MAX),
            outcome: outcome.name().to_owned(),
            status_code: t.status,
            error: outcome.error().map(str::to_owned),
        });
        let item = FinishItem {
            id: record.id,
            subscription_id: record.subscription_id,
            token,
            entry_id,
            outcome,
            host: c.host,
            signal: c.signal,
            log,
        };
        let writing = Instant::now();
        let written = self.outcomes.write(item).await;
        // Written or not, the request is over: its in-flight slot goes back (a failed write leaves the entry
        // pending for another attempt, which asks the limiter again).
        if let Some(limit) = c.limit {
            self.release(limit).await;
        }
        let written = written?;
        self.metrics
            .outcome_write
            .observe(writing.elapsed().as_secs_f64());
        let label = match written {
            FinishResult::Written => label,
            FinishResult::Disabled(reason) => {
                self.disabled(record.subscription_id, reason);
                label
            }
            FinishResult::Superseded => "superseded",
            FinishResult::Fenced => "fenced",
        };
        self.metrics.deliveries.with_label_values(&[label]).inc();
        spans::record_outcome(label, status);
        if label == DELIVERED {
            self.metrics
                .event_to_delivered
                .observe(since_event(record.id, now_micros() / 1000));
        }
        // The attempt is over: its host may take another.
        drop(c.slot);
        Ok(if written == FinishResult::Fenced {
            Handled::LeftPending
        } else {
            Handled::Acked
        })
    }
}
