//! Replay protection (issue #17) with the real binaries: a subscription that requires timestamped
//! callbacks and HMAC reads accepts a fresh signed request once, and refuses with 401 and TMI's body a
//! replay, a stale or future timestamp, and TMI's untimestamped form; `tmi` deliveries may carry
//! `X-Webhook-Timestamp` with a second signature while TMI's own stays as it was. A `standard` receiver
//! signs with the official `standardwebhooks` library.

use delivery_model::ids::SubscriptionId;
use delivery_model::signing;
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;
use serde_json::{Value, json};
use test_support::python::run_verifier;
use test_support::receiver::{Receiver, signature};

use crate::harness::{Answer, Stack, WAIT};

const EVENT: &str = "threat_model.created";
const SIGNER: &str = "tests/e2e/verifiers/standard_sign.py";
const PROGRESS: &str = r#"{"status":"in_progress","status_percent":20}"#;

fn now_secs() -> i64 {
    now_micros().div_euclid(1_000_000)
}

/// A verified subscription created with `extra`, whose receiver answers `async`; one delivery sent to it.
async fn setup(
    stack: &Stack,
    rx: &Receiver,
    extra: Value,
) -> (String, String, test_support::receiver::RecordedRequest) {
    rx.set_async(true);
    let mut body = json!({"name": "replay", "url": rx.url(), "events": [EVENT]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, created) = stack
        .api("POST", "/admin/webhooks/subscriptions", Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["timestamped_callbacks"], true, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    stack
        .wait_status(
            id.parse::<SubscriptionId>().unwrap(),
            SubscriptionStatus::Active,
        )
        .await;
    stack.publish(EVENT, None, json!({"n": 1})).await;
    let d = rx.wait_for_deliveries(1, WAIT).await.remove(0);
    (id, created["secret"].as_str().unwrap().to_owned(), d)
}

/// A `tmi` timestamped request: `X-Webhook-Timestamp: ts` and the HMAC of `ts.message`.
fn tmi_headers(secret: &str, ts: i64, message: &[u8]) -> Vec<(String, String)> {
    let sig = signing::sign(secret, &signing::timestamped(ts, message));
    vec![
        ("x-webhook-timestamp".into(), ts.to_string()),
        ("x-webhook-signature".into(), sig),
    ]
}

async fn callback(stack: &Stack, d: &str, headers: &[(String, String)]) -> Answer {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    stack
        .send(
            None,
            "POST",
            &format!("/webhook-deliveries/{d}/status"),
            &h,
            PROGRESS,
        )
        .await
}

async fn read(stack: &Stack, d: &str, headers: &[(String, String)]) -> Answer {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    stack
        .send(None, "GET", &format!("/webhook-deliveries/{d}"), &h, "")
        .await
}

fn refused(a: &Answer, why: &str) {
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.body["error"].is_string(), "{}", a.body);
    assert!(
        a.body["error_description"].as_str().unwrap().contains(why),
        "want {why:?}: {}",
        a.body
    );
}

#[tokio::test]
async fn tmi_timestamped_requests_are_accepted_once_inside_the_window() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let extra = json!({"timestamped_callbacks": true, "timestamp_header": true});
    let (_, secret, delivery) = setup(&stack, &rx, extra).await;
    // The delivery: TMI's signature untouched, plus the timestamp and a signature covering it.
    assert!(delivery.verify_signature(&secret));
    let ts: i64 = delivery
        .header("x-webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((now_secs() - ts).abs() < 60);
    assert_eq!(
        delivery.header("x-webhook-signature-timestamped"),
        Some(signing::sign(&secret, &signing::timestamped(ts, &delivery.body)).as_str())
    );
    let d = delivery.delivery_id().unwrap().to_owned();

    // TMI's untimestamped form is no longer enough.
    let plain = vec![(
        "x-webhook-signature".to_owned(),
        signature(&secret, PROGRESS.as_bytes()),
    )];
    refused(
        &callback(&stack, &d, &plain).await,
        "Missing webhook timestamp",
    );
    let fresh = tmi_headers(&secret, now_secs(), PROGRESS.as_bytes());
    assert_eq!(callback(&stack, &d, &fresh).await.status, 200);
    refused(&callback(&stack, &d, &fresh).await, "already used");
    for skew in [-400, 400] {
        let off = tmi_headers(&secret, now_secs() + skew, PROGRESS.as_bytes());
        refused(&callback(&stack, &d, &off).await, "tolerance window");
    }
    let wrong = tmi_headers("another-secret-0123456789", now_secs(), PROGRESS.as_bytes());
    refused(
        &callback(&stack, &d, &wrong).await,
        "Invalid webhook signature",
    );

    // HMAC reads: the same rules, the message being the id.
    let plain = vec![(
        "x-webhook-signature".to_owned(),
        signature(&secret, d.as_bytes()),
    )];
    refused(&read(&stack, &d, &plain).await, "Missing webhook timestamp");
    let fresh = tmi_headers(&secret, now_secs() - 1, d.as_bytes());
    let ok = read(&stack, &d, &fresh).await;
    assert_eq!(
        (ok.status, &ok.body["status"]),
        (200, &json!("in_progress")),
        "{}",
        ok.body
    );
    refused(&read(&stack, &d, &fresh).await, "already used");
}

#[tokio::test]
async fn standard_receivers_sign_callbacks_with_the_library() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let extra = json!({"timestamped_callbacks": true, "signature_scheme": "standard"});
    let (_, secret, delivery) = setup(&stack, &rx, extra).await;
    let d = delivery.delivery_id().unwrap().to_owned();
    let sign = |msg: &str| json!({"secret": secret, "msg_id": d, "body": msg});
    let as_headers = |v: Value| -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    };
    let signed = as_headers(run_verifier(SIGNER, &sign(PROGRESS)).await);
    assert_eq!(callback(&stack, &d, &signed).await.status, 200);
    refused(&callback(&stack, &d, &signed).await, "already used");
    // The id binds the signature to its delivery.
    let mut other_id = signed.clone();
    other_id[0].1 = uuid::Uuid::new_v4().to_string();
    refused(
        &callback(&stack, &d, &other_id).await,
        "Invalid webhook signature",
    );

    let signed_read = as_headers(run_verifier(SIGNER, &sign(&d)).await);
    assert_eq!(read(&stack, &d, &signed_read).await.status, 200);
    refused(&read(&stack, &d, &signed_read).await, "already used");
}

#[tokio::test]
async fn timestamp_header_is_for_tmi_only() {
    let stack = Stack::start().await;
    let body = json!({"name": "x", "url": "http://127.0.0.1:9/h", "events": [EVENT],
        "signature_scheme": "standard", "timestamp_header": true});
    let (status, err) = stack
        .api("POST", "/admin/webhooks/subscriptions", Some(body))
        .await;
    assert_eq!(
        (status, &err["error"]),
        (400, &json!("invalid_input")),
        "{err}"
    );
}
