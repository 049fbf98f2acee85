//! The core pipeline, scenario by scenario (TMI's integration checklist, §9 of the contract).

use std::time::Duration;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::SubscriptionId;
use delivery_model::subscription::SubscriptionStatus;
use serde_json::{Value, json};
use test_support::receiver::{ChallengeMode, Receiver, Response};
use test_support::wait;

use crate::harness::{On, Stack, WAIT};

const TM: &str = "0f6c0000-0000-4000-8000-000000000001";
const OTHER_TM: &str = "0f6c0000-0000-4000-8000-000000000002";

#[tokio::test]
async fn challenge_success_activates_the_subscription() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let created = stack
        .create_subscription(&rx.url(), &["threat_model.created"], None)
        .await;
    assert_eq!(created["status"], "pending_verification");
    let id: SubscriptionId = created["id"].as_str().unwrap().parse().unwrap();
    stack.wait_status(id, SubscriptionStatus::Active).await;

    let challenges = rx.challenges();
    assert_eq!(challenges.len(), 1, "one challenge suffices");
    let c = &challenges[0];
    assert_eq!(c.method, "POST");
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert_eq!(c.header("user-agent"), Some("TMI-Webhook/1.0"));
    assert_eq!(c.subscription_id(), Some(id.to_string().as_str()));
    assert_eq!(
        c.header("x-webhook-signature"),
        None,
        "challenges are not signed"
    );
    assert_eq!(c.header("x-webhook-delivery-id"), None);
    let body = c.json().unwrap();
    assert_eq!(body["type"], "webhook.challenge");
    assert_eq!(body["challenge"].as_str().map(str::len), Some(64));
    // Keys in TMI's order, exact bytes.
    assert!(
        c.body_str().starts_with(r#"{"challenge":""#),
        "{}",
        c.body_str()
    );
}

#[tokio::test]
async fn challenge_failure_leads_to_pending_delete_after_three_attempts() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    rx.set_challenge_mode(ChallengeMode::Wrong);
    let created = stack
        .create_subscription(&rx.url(), &["threat_model.created"], None)
        .await;
    let id: SubscriptionId = created["id"].as_str().unwrap().parse().unwrap();
    stack
        .wait_status(id, SubscriptionStatus::PendingDelete)
        .await;
    assert_eq!(
        rx.challenges().len(),
        3,
        "exactly three challenges, then give up"
    );
    let sub = stack.subscription(id).await.unwrap();
    assert_eq!(sub.challenges_sent, 3);
    // An unverified subscription receives no deliveries.
    stack
        .publish("threat_model.created", Some(TM), json!({"name": "x"}))
        .await;
    wait::never(
        "a delivery to an unverified subscription",
        Duration::from_secs(1),
        || async { !rx.deliveries().is_empty() },
    )
    .await;
}

#[tokio::test]
async fn event_is_delivered_signed_with_tmi_headers_and_the_unified_envelope() {
    event_is_delivered_signed_with_tmi_headers_and_the_unified_envelope_on(On::Single).await;
}

#[tokio::test]
async fn event_is_delivered_signed_with_tmi_headers_and_the_unified_envelope_on_a_cluster() {
    event_is_delivered_signed_with_tmi_headers_and_the_unified_envelope_on(On::Cluster).await;
}

async fn event_is_delivered_signed_with_tmi_headers_and_the_unified_envelope_on(on: On) {
    let stack = Stack::start_for(on, &[]).await;
    let rx = Receiver::start().await;
    let (id, secret) = stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    stack
        .publish(
            "threat_model.created",
            Some(TM),
            json!({"name": "Payments TM", "description": null}),
        )
        .await;

    let got = rx.wait_for_deliveries(1, WAIT).await;
    let d = &got[0];
    assert_eq!(d.method, "POST");
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert_eq!(d.header("user-agent"), Some("TMI-Webhook/1.0"));
    assert_eq!(d.event(), Some("threat_model.created"));
    assert_eq!(d.subscription_id(), Some(id.to_string().as_str()));
    assert!(d.verify_signature(&secret), "signature over the exact body");
    assert!(!d.verify_signature("some-other-secret-value"));
    assert_eq!(
        d.body_str(),
        format!(
            r#"{{"event_type":"threat_model.created","threat_model_id":"{TM}","timestamp":"2026-04-01T12:00:00.123456789Z","object_type":"threat_model","object_id":"{TM}","data":{{"description":null,"name":"Payments TM"}}}}"#
        )
    );
    let delivery_id = d.delivery_id().unwrap().to_owned();
    let parsed: uuid::Uuid = delivery_id.parse().unwrap();
    assert_eq!(parsed.get_version_num(), 7, "delivery ids are UUIDv7");
    let rec = stack
        .wait_delivery(&delivery_id, "delivered", |r| {
            r.status == DeliveryStatus::Delivered
        })
        .await;
    assert_eq!(rec.attempts, 1, "a first-try success counts one attempt");
    assert!(rec.delivered_at.is_some());
    assert_eq!(rec.subscription_id, id);
    // Admins read it back through the API.
    let (status, body) = stack
        .api(
            "GET",
            &format!("/admin/webhooks/deliveries/{delivery_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["payload"]["data"]["name"], "Payments TM");
    // Exactly one POST.
    wait::never("a second POST", Duration::from_millis(500), || async {
        rx.deliveries().len() > 1
    })
    .await;
}

#[tokio::test]
async fn wildcard_threat_model_filter_and_non_matching_subscriptions() {
    let stack = Stack::start().await;
    let wildcard = Receiver::start().await;
    let filtered = Receiver::start().await;
    let other_event = Receiver::start().await;
    stack.verified_subscription(&wildcard, &["*"], None).await;
    stack
        .verified_subscription(&filtered, &["threat_model.updated"], Some(TM))
        .await;
    stack
        .verified_subscription(&other_event, &["diagram.created"], None)
        .await;

    stack
        .publish("threat_model.created", Some(TM), json!({"name": "a"}))
        .await;
    stack
        .publish("threat_model.updated", Some(TM), json!({"name": "b"}))
        .await;
    stack
        .publish("threat_model.updated", Some(OTHER_TM), json!({"name": "c"}))
        .await;

    let all = wildcard.wait_for_deliveries(3, WAIT).await;
    let mut events: Vec<_> = all.iter().map(|r| r.event().unwrap().to_owned()).collect();
    events.sort();
    assert_eq!(
        events,
        [
            "threat_model.created",
            "threat_model.updated",
            "threat_model.updated"
        ]
    );
    let only = filtered.wait_for_deliveries(1, WAIT).await;
    assert_eq!(only[0].json().unwrap()["threat_model_id"], TM);
    wait::never(
        "more deliveries than matched",
        Duration::from_secs(1),
        || async { filtered.deliveries().len() > 1 || !other_event.deliveries().is_empty() },
    )
    .await;
}

#[tokio::test]
async fn server_error_then_success_is_retried_once() {
    server_error_then_success_is_retried_once_on(On::Single).await;
}

#[tokio::test]
async fn server_error_then_success_is_retried_once_on_a_cluster() {
    server_error_then_success_is_retried_once_on(On::Cluster).await;
}

async fn server_error_then_success_is_retried_once_on(on: On) {
    let stack = Stack::start_for(on, &[]).await;
    let rx = Receiver::start().await;
    rx.push_response(Response::status(500).body("boom"));
    stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    stack
        .publish("threat_model.created", Some(TM), json!({"name": "x"}))
        .await;
    let got = rx.wait_for_deliveries(2, WAIT).await;
    assert_eq!(
        got[0].delivery_id(),
        got[1].delivery_id(),
        "the retry is the same delivery"
    );
    assert_eq!(got[0].body, got[1].body, "same bytes on every attempt");
    let id = got[0].delivery_id().unwrap().to_owned();
    let rec = stack
        .wait_delivery(&id, "delivered after a retry", |r| {
            r.status == DeliveryStatus::Delivered
        })
        .await;
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.last_error.as_deref(), Some("HTTP 500: boom"));
    wait::never("a third POST", Duration::from_millis(700), || async {
        rx.deliveries().len() > 2
    })
    .await;
}

#[tokio::test]
async fn failed_after_the_last_attempt_and_sent_again_by_an_admin() {
    failed_after_the_last_attempt_and_sent_again_by_an_admin_on(On::Single).await;
}

#[tokio::test]
async fn failed_after_the_last_attempt_and_sent_again_by_an_admin_on_a_cluster() {
    failed_after_the_last_attempt_and_sent_again_by_an_admin_on(On::Cluster).await;
}

async fn failed_after_the_last_attempt_and_sent_again_by_an_admin_on(on: On) {
    let stack = Stack::start_for(on, &[("HOOKLINE__WORKER__MAX_ATTEMPTS", "3")]).await;
    let rx = Receiver::start().await;
    rx.set_default_status(503);
    let (sub_id, _) = stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    stack
        .publish("threat_model.created", Some(TM), json!({"name": "x"}))
        .await;
    let got = rx.wait_for_deliveries(3, WAIT).await;
    let id = got[0].delivery_id().unwrap().to_owned();
    let rec = stack
        .wait_delivery(&id, "failed", |r| r.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(rec.attempts, 3);
    assert!(
        rec.last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("HTTP 503"),
        "{:?}",
        rec.last_error
    );
    assert_eq!(rec.next_retry_at, None);
    wait::never("a fourth POST", Duration::from_secs(1), || async {
        rx.deliveries().len() > 3
    })
    .await;
    let sub = stack.subscription(sub_id).await.unwrap();
    assert_eq!(sub.publication_failures, 1);
    let (status, log) = stack
        .api(
            "GET",
            &format!("/admin/webhooks/deliveries/{id}/attempts"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let outcomes = |log: &Value| -> Vec<(u64, String, u64)> {
        log["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["attempt"].as_u64().unwrap(),
                    a["outcome"].as_str().unwrap().to_owned(),
                    a["status_code"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(
        outcomes(&log),
        vec![
            (1, "retry".to_owned(), 503),
            (2, "retry".to_owned(), 503),
            (3, "failed".to_owned(), 503)
        ]
    );

    // The receiver is back: an administrator sends the failed delivery again, same id, same bytes.
    rx.set_default_status(200);
    let (status, body) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/deliveries/{id}/retry"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["attempts"].as_u64()),
        (Some("pending"), Some(0))
    );
    let all = rx.wait_for_deliveries(4, WAIT).await;
    assert_eq!(all[3].delivery_id(), Some(id.as_str()));
    assert_eq!(
        all[3].body, all[0].body,
        "the same envelope as the first attempt"
    );
    let rec = stack
        .wait_delivery(&id, "delivered after the retry", |r| {
            r.status == DeliveryStatus::Delivered
        })
        .await;
    assert_eq!(rec.attempts, 1, "a fresh retry budget");
    let (_, log) = stack
        .api(
            "GET",
            &format!("/admin/webhooks/deliveries/{id}/attempts"),
            None,
        )
        .await;
    assert_eq!(
        outcomes(&log).last(),
        Some(&(1, "delivered".to_owned(), 200)),
        "the log goes on after the retry: {log}"
    );
    assert_eq!(outcomes(&log).len(), 4);
    let (status, _) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/deliveries/{id}/retry"),
            None,
        )
        .await;
    assert_eq!(status, 409, "a delivered delivery is not sent again");
    let (status, body) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/subscriptions/{sub_id}/retry-failed"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["queued"], 0,
        "nothing of the subscription is failed now"
    );
    wait::never("a fifth POST", Duration::from_millis(700), || async {
        rx.deliveries().len() > 4
    })
    .await;
}

#[tokio::test]
async fn async_receiver_leaves_the_delivery_in_progress() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    rx.set_async(true);
    stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    stack
        .publish("threat_model.created", Some(TM), json!({"name": "x"}))
        .await;
    let got = rx.wait_for_deliveries(1, WAIT).await;
    let id = got[0].delivery_id().unwrap().to_owned();
    let rec = stack
        .wait_delivery(&id, "in_progress", |r| {
            r.status == DeliveryStatus::InProgress
        })
        .await;
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.delivered_at, None);
}

#[tokio::test]
async fn test_endpoint_and_post_events_go_through_the_same_worker() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, secret) = stack
        .verified_subscription(&rx, &["diagram.updated"], None)
        .await;

    let (status, body) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/subscriptions/{id}/test"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let test_id = body["delivery_id"].as_str().unwrap().to_owned();
    let got = rx.wait_for_deliveries(1, WAIT).await;
    assert_eq!(got[0].delivery_id(), Some(test_id.as_str()));
    assert_eq!(got[0].event(), Some("diagram.updated"));
    assert!(got[0].verify_signature(&secret));

    let (status, body) = stack
        .api(
            "POST",
            "/events",
            Some(json!({"event_type": "diagram.updated", "threat_model_id": TM, "object_id": TM, "object_type": "diagram", "data": {"k": 1}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let got = rx.wait_for_deliveries(2, WAIT).await;
    assert_eq!(got[1].json().unwrap()["data"]["k"], 1);

    // Issue #16 item 7: the gateway's metrics are on its ops listener, not on the public API port.
    let (status, _, metrics) =
        test_support::http::request("GET", &stack.api.ops_url("/metrics"), &[], "").await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&metrics);
    assert!(
        text.contains(
            r#"hookline_api_requests_total{method="POST",route="/events",status="2xx"} 1"#
        ),
        "{text}"
    );
    let (status, _, _) =
        test_support::http::request("GET", &stack.api.api_url("/metrics"), &[], "").await;
    assert_eq!(status, 404, "no /metrics on the API port by default");
}
