//! One trace across the hops (issue #19): the real binaries export their spans over OTLP/gRPC to a loopback
//! receiver, which decodes them with the `opentelemetry-proto` types. A delivery that fails once and then
//! succeeds shows up as one trace: the caller's span → the gateway's request span → the consumer's fan-out →
//! two attempt spans (outcomes `retry`, then `delivered`); the receiver gets the attempt's `traceparent`
//! (`outbound.send_traceparent`), and the gateway's log line carries the trace id. An entry appended
//! straight to `tmi:events` with a `traceparent` field is continued the same way, and an async receiver's
//! status callback joins its delivery's trace.

use std::time::Duration;

use delivery_model::trace::TraceContext;
use serde_json::json;
use test_support::auth;
use test_support::otlp::{OtlpReceiver, ReceivedSpan};
use test_support::receiver::{Receiver, Response};

use crate::harness::{SECRET, Stack, WAIT};

const EVENT: &str = "threat_model.created";
/// Spans leave a process in batches every 100 ms here (`telemetry.export_interval_ms`).
const EXPORT_WAIT: Duration = Duration::from_secs(20);

/// A stack exporting its spans to `otlp` quickly, sending `traceparent` to receivers.
async fn traced_stack(otlp: &OtlpReceiver) -> Stack {
    let endpoint = otlp.endpoint();
    Stack::start_with(&[
        ("HOOKLINE__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("HOOKLINE__TELEMETRY__EXPORT_INTERVAL_MS", "100"),
        ("HOOKLINE__OUTBOUND__SEND_TRACEPARENT", "true"),
    ])
    .await
}

/// The one span of `trace_id` named `name` from `service`, if it arrived.
fn span<'a>(
    spans: &'a [ReceivedSpan],
    service: &str,
    name: &str,
    trace_id: &str,
) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.service == service && s.name == name && s.trace_id == trace_id)
}

/// The attempt spans of `trace_id` once `n` arrived, ordered by attempt number.
fn attempts(spans: &[ReceivedSpan], trace_id: &str, n: usize) -> Option<Vec<ReceivedSpan>> {
    let mut found: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == "delivery.attempt" && s.trace_id == trace_id)
        .cloned()
        .collect();
    found.sort_by_key(|s| s.attr("delivery.attempt").map(str::to_owned));
    (found.len() >= n).then_some(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_then_succeeding_delivery_is_one_trace_across_the_three_services() {
    let otlp = OtlpReceiver::start().await;
    let stack = traced_stack(&otlp).await;
    let rx = Receiver::start().await;
    let (sub, _) = stack.verified_subscription(&rx, &[EVENT], None).await;
    rx.push_response(Response::status(500));

    // The caller's own span: the request continues it.
    let caller = TraceContext::parse(
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        Some("caller=1"),
    )
    .unwrap();
    let token = auth::admin_token(SECRET, "admin-1");
    let body = json!({"event_type": EVENT, "object_id": "obj-1", "object_type": "threat_model", "data": {"n": 1}});
    let answer = stack
        .send(
            Some(&token),
            "POST",
            "/events",
            &[
                ("traceparent", caller.traceparent.as_str()),
                ("tracestate", "caller=1"),
            ],
            &body.to_string(),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let got = rx.wait_for_deliveries(2, WAIT).await;
    let trace_id = caller.trace_id();

    let spans = otlp
        .wait_for(
            "the request, fan-out and both attempt spans",
            EXPORT_WAIT,
            |s| {
                let request = span(s, "api-gateway", "POST /events", trace_id)?;
                let fan_out = span(s, "event-consumer", "event.fan_out", trace_id)?;
                let attempts = attempts(s, trace_id, 2)?;
                Some((request.clone(), fan_out.clone(), attempts))
            },
        )
        .await;
    let (request, fan_out, attempts) = spans;
    assert_eq!(
        request.parent_span_id,
        caller.span_id(),
        "the request continues the caller's span"
    );
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(request.attr("http.response.status_code"), Some("202"));
    assert_eq!(
        fan_out.parent_span_id, request.span_id,
        "the fan-out is the request's child"
    );
    assert_eq!(fan_out.kind, 5, "a consumer span");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    for (i, (attempt, outcome, status)) in attempts
        .iter()
        .zip([("retry", "500"), ("delivered", "200")])
        .map(|(a, (o, s))| (a, o, s))
        .enumerate()
    {
        assert_eq!(attempt.service, "delivery-worker");
        assert_eq!(
            attempt.parent_span_id, fan_out.span_id,
            "every attempt is the fan-out's child"
        );
        assert_eq!(
            attempt.attr("delivery.attempt"),
            Some((i + 1).to_string().as_str())
        );
        assert_eq!(
            attempt.attr("delivery.outcome"),
            Some(outcome),
            "{attempt:?}"
        );
        assert_eq!(attempt.attr("http.response.status_code"), Some(status));
        assert_eq!(
            attempt.attr("subscription.id"),
            Some(sub.to_string().as_str())
        );
    }
    // The receiver got each attempt's own span as its parent, and the caller's tracestate along.
    for (request, attempt) in got.iter().zip(&attempts) {
        let sent = TraceContext::parse(request.header("traceparent"), request.header("tracestate"))
            .expect("a delivery carries a traceparent");
        assert_eq!(
            (sent.trace_id(), sent.span_id()),
            (trace_id, attempt.span_id.as_str())
        );
        assert_eq!(sent.tracestate.as_deref(), Some("caller=1"));
    }
    // The challenge continued the trace of the request that created the subscription.
    let challenge = otlp
        .wait_for("the challenge span", EXPORT_WAIT, |s| {
            s.iter()
                .find(|c| c.name == "subscription.challenge")
                .cloned()
        })
        .await;
    assert_eq!(challenge.attr("challenge.result"), Some("verified"));
    let create = otlp
        .spans()
        .into_iter()
        .find(|s| s.span_id == challenge.parent_span_id);
    assert_eq!(
        create.map(|s| (s.service, s.name)),
        Some((
            "api-gateway".to_owned(),
            "POST /admin/webhooks/subscriptions".to_owned()
        ))
    );
    // The gateway's access log line for the request carries the trace and the request span.
    let logs = stack.api.logs();
    let line = logs
        .iter()
        .find(|l| l.contains("request served") && l.contains("\"/events\""))
        .expect("the access log line of POST /events");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        (v["trace_id"].as_str(), v["span_id"].as_str()),
        (Some(trace_id), Some(request.span_id.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_appended_with_a_traceparent_field_is_continued_by_fan_out_and_attempt() {
    let otlp = OtlpReceiver::start().await;
    let stack = traced_stack(&otlp).await;
    let rx = Receiver::start().await;
    stack.verified_subscription(&rx, &[EVENT], None).await;

    let producer = TraceContext::parse(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        None,
    );
    stack
        .publish_traced(EVENT, None, json!({"n": 2}), producer.clone())
        .await;
    // An entry without the fields (TMI's own) is processed as before, in a trace of its own.
    stack.publish(EVENT, None, json!({"n": 3})).await;
    rx.wait_for_deliveries(2, WAIT).await;
    let producer = producer.unwrap();
    let trace_id = producer.trace_id();

    let (fan_out, attempt) = otlp
        .wait_for(
            "the fan-out and attempt spans of the traced entry",
            EXPORT_WAIT,
            |s| {
                let fan_out = span(s, "event-consumer", "event.fan_out", trace_id)?;
                let attempt = attempts(s, trace_id, 1)?.remove(0);
                Some((fan_out.clone(), attempt))
            },
        )
        .await;
    assert_eq!(
        fan_out.parent_span_id,
        producer.span_id(),
        "the fan-out continues the producer's span"
    );
    assert_eq!(attempt.parent_span_id, fan_out.span_id);
    assert_eq!(attempt.attr("delivery.outcome"), Some("delivered"));
    // The untraced entry's fan-out started a trace of its own.
    let other = otlp
        .wait_for("the untraced entry's fan-out", EXPORT_WAIT, |s| {
            s.iter()
                .find(|f| f.name == "event.fan_out" && f.trace_id != trace_id)
                .cloned()
        })
        .await;
    assert_eq!(other.parent_span_id, "", "a root span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_receivers_status_callback_joins_the_deliverys_trace() {
    let otlp = OtlpReceiver::start().await;
    let stack = traced_stack(&otlp).await;
    let rx = Receiver::start().await;
    rx.set_async(true);
    let (_, secret) = stack.verified_subscription(&rx, &[EVENT], None).await;
    let producer = TraceContext::parse(
        Some("00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01"),
        None,
    )
    .unwrap();
    stack
        .publish_traced(EVENT, None, json!({"n": 4}), Some(producer.clone()))
        .await;
    let got = rx.wait_for_deliveries(1, WAIT).await;
    let id = got[0].delivery_id().expect("delivery id").to_owned();
    let answer = stack
        .callback(&id, &secret, r#"{"status":"completed"}"#)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let trace_id = producer.trace_id();
    let (fan_out, callback, request) = otlp
        .wait_for("the status callback span", EXPORT_WAIT, |s| {
            let fan_out = span(s, "event-consumer", "event.fan_out", trace_id)?;
            let callback = span(s, "api-gateway", "delivery.status_callback", trace_id)?;
            let request = s.iter().find(|r| {
                r.service == "api-gateway"
                    && r.name == "POST /webhook-deliveries/{delivery_id}/status"
            })?;
            Some((fan_out.clone(), callback.clone(), request.clone()))
        })
        .await;
    assert_eq!(
        callback.parent_span_id, fan_out.span_id,
        "a child of the context its record holds"
    );
    assert_eq!(callback.attr("delivery.id"), Some(id.as_str()));
    assert_eq!(
        callback.links,
        [(request.trace_id.clone(), request.span_id.clone())],
        "linked to the callback request's own span"
    );
}
