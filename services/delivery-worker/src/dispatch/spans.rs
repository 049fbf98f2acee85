//! The worker's spans, each continuing the trace its work carries, and the outbound `traceparent`.
//!
//! - `delivery.attempt`: one per attempt (retries included), a child of the context stored in the delivery
//!   record (the consumer's fan-out, or the API request that created the record). Retries are separate
//!   attempt spans of the same parent, so a trace shows every try side by side. Its `delivery.outcome` is
//!   the attempt's label in `hookline_worker_deliveries_total` (`delivered`, `retry`, `failed`, …).
//! - `subscription.challenge`: one per challenge sent, a child of the subscription's creation request (the
//!   context its challenge message carries, and every later challenge of it).
//!
//! With `outbound.send_traceparent` on, an attempt's request carries the attempt span's `traceparent` (and
//! `tracestate`), so the receiver's own spans become its children.

use delivery_model::delivery::DeliveryRecord;
use delivery_model::ids::SubscriptionId;
use delivery_model::trace::{TRACEPARENT, TRACESTATE, TraceContext};
use http::{HeaderName, HeaderValue};
use tracing::Span;

use super::header::Headers;

/// The span of one attempt of `record`'s delivery, a child of the record's trace. Not entered yet.
pub(super) fn attempt(record: &DeliveryRecord) -> Span {
    let span = tracing::info_span!(
        "delivery.attempt",
        otel.kind = "client",
        delivery.id = %record.id,
        subscription.id = %record.subscription_id,
        event.r#type = %record.event_type,
        delivery.attempt = record.attempts.saturating_add(1),
        delivery.outcome = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    service_common::trace::set_parent(&span, record.trace.as_ref());
    span
}

/// Records an attempt's outcome label and the receiver's status (when it answered) on the current span.
pub(super) fn record_outcome(label: &str, status: Option<u16>) {
    let span = Span::current();
    span.record("delivery.outcome", label);
    if let Some(s) = status {
        span.record("http.response.status_code", s);
    }
}

/// The span of one challenge of subscription `id`, a child of `trace`. Not entered yet.
pub(super) fn challenge(id: SubscriptionId, trace: Option<&TraceContext>) -> Span {
    let span = tracing::info_span!(
        "subscription.challenge",
        otel.kind = "client",
        subscription.id = %id,
        challenge.result = tracing::field::Empty,
    );
    service_common::trace::set_parent(&span, trace);
    span
}

/// Adds the current span's `traceparent` (and `tracestate`) to an outgoing request's headers; without
/// trace export, the context the work carried (`incoming`) instead.
pub(super) fn propagate(headers: &mut Headers, incoming: Option<&TraceContext>) {
    let Some(t) = service_common::trace::continuation(&Span::current(), incoming) else {
        return;
    };
    for (name, value) in t.to_fields() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            let name = match name {
                TRACEPARENT => HeaderName::from_static(TRACEPARENT),
                TRACESTATE => HeaderName::from_static(TRACESTATE),
                _ => continue,
            };
            headers.push((name, v));
        }
    }
}
