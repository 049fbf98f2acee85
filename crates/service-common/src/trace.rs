//! Trace context across the hops: from an incoming request or a stored [`TraceContext`] to a span's parent,
//! and from a span back to the [`TraceContext`] the next hop continues.
//!
//! The services never talk to each other directly; the context travels as two text values (`traceparent`,
//! `tracestate`) in stream entries, challenge messages and delivery records (`delivery_model::trace`). Here
//! W3C's propagator turns them into OpenTelemetry contexts and back. When trace export is off there is no
//! OpenTelemetry layer: spans have no context of their own, and [`continuation`] hands the incoming context
//! on unchanged, so a hop that exports nothing does not break the trace of the hops that do.
//!
//! Span conventions: the OpenTelemetry name of a span is its `otel.name` field at creation (else the span's
//! name; [`rename`] once it is known later), its kind `otel.kind` (`server` for API requests, `consumer` for
//! stream work, `client` for outbound requests).

use std::collections::HashMap;

use delivery_model::trace::{TRACEPARENT, TRACESTATE, TraceContext};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The trace context a request's headers carry (`traceparent`, `tracestate`), if well-formed.
pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<TraceContext> {
    TraceContext::parse(header(TRACEPARENT), header(TRACESTATE))
}

/// Makes `parent` the parent of `span`, which must not have been entered yet. Nothing happens without a
/// parent or without trace export.
pub fn set_parent(span: &Span, parent: Option<&TraceContext>) {
    if let Some(cx) = parent.map(otel_context) {
        // Err: no OpenTelemetry layer (export off), or the span was entered already; neither is worth a log.
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to `other` (a related trace that is not its parent).
pub fn add_link(span: &Span, other: Option<&TraceContext>) {
    if let Some(cx) = other.map(otel_context) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// Renames `span` in its export (an API request's span once its route is known). A recorded `otel.name`
/// field only names a span that has not started yet.
pub fn rename(span: &Span, name: String) {
    span.context().span().update_name(name);
}

/// The context of `span`, for the next hop to continue; `None` without trace export.
pub fn context_of(span: &Span) -> Option<TraceContext> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    TraceContext::from_fields(&carrier)
}

/// What the next hop continues: `span`'s context, or without trace export the `incoming` one unchanged.
pub fn continuation(span: &Span, incoming: Option<&TraceContext>) -> Option<TraceContext> {
    context_of(span).or_else(|| incoming.cloned())
}

/// The trace and span id of the active span, as logs show them; `None` outside a span or without export.
pub fn current_ids() -> Option<(String, String)> {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

fn otel_context(t: &TraceContext) -> opentelemetry::Context {
    let carrier: HashMap<String, String> = t
        .to_fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    TraceContextPropagator::new().extract(&carrier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_export_the_incoming_context_travels_on() {
        let incoming = TraceContext::parse(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None,
        );
        let span = tracing::info_span!("hop");
        set_parent(&span, incoming.as_ref());
        assert_eq!(context_of(&span), None);
        assert_eq!(continuation(&span, incoming.as_ref()), incoming);
        assert_eq!(current_ids(), None);
    }
}
