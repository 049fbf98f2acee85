//! Secret rotation without downtime (issue #17), with the real binaries and a receiver that switches
//! secrets mid-stream: before the rotation every delivery verifies with the old secret; during the grace
//! period with the old **and** the new one (so the receiver's switch can come at any moment); callbacks and
//! HMAC reads accept either; after a rotation without grace only the newest secret works. `standard`
//! deliveries are verified with the official `standardwebhooks` library.

use delivery_model::ids::SubscriptionId;
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::{now_micros, parse_rfc3339};
use fred::prelude::*;
use serde_json::{Value, json};
use test_support::python::run_verifier;
use test_support::receiver::{Receiver, RecordedRequest, signature};

use crate::harness::{Stack, WAIT};

const EVENT: &str = "threat_model.created";
const MATRIX_VERIFIER: &str = "tests/e2e/verifiers/standard_matrix.py";
const PREVIOUS_HEADER: &str = "x-webhook-signature-previous";
const DAY_MICROS: i64 = 24 * 3600 * 1_000_000;

/// A verified subscription in `scheme` whose receiver answers `async` (so callbacks can be sent).
async fn setup(stack: &Stack, rx: &Receiver, scheme: &str) -> (String, String) {
    rx.set_async(true);
    let body =
        json!({"name": "rot", "url": rx.url(), "events": [EVENT], "signature_scheme": scheme});
    let (status, created) = stack
        .api("POST", "/admin/webhooks/subscriptions", Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    stack
        .wait_status(
            id.parse::<SubscriptionId>().unwrap(),
            SubscriptionStatus::Active,
        )
        .await;
    (id, created["secret"].as_str().unwrap().to_owned())
}

/// Publishes `n` events and returns the deliveries received for them.
async fn deliveries(stack: &Stack, rx: &Receiver, n: usize) -> Vec<RecordedRequest> {
    let before = rx.deliveries().len();
    for i in 0..n {
        stack.publish(EVENT, None, json!({"i": i})).await;
    }
    rx.wait_for_deliveries(before + n, WAIT).await[before..].to_vec()
}

async fn rotate(stack: &Stack, id: &str, body: Option<Value>) -> Value {
    let (status, rotated) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/subscriptions/{id}/rotate-secret"),
            body,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    rotated
}

/// HMAC read of delivery `d` signed with `secret`: the status.
async fn hmac_read(stack: &Stack, d: &str, secret: &str) -> u16 {
    let sig = signature(secret, d.as_bytes());
    stack
        .send(
            None,
            "GET",
            &format!("/webhook-deliveries/{d}"),
            &[("x-webhook-signature", &sig)],
            "",
        )
        .await
        .status
}

async fn progress_callback(stack: &Stack, d: &str, secret: &str) -> u16 {
    stack
        .callback(d, secret, r#"{"status":"in_progress","status_percent":10}"#)
        .await
        .status
}

/// The rotation's answer and the admin read: a new secret once, the grace end, never a secret on reads.
async fn check_rotation_views(stack: &Stack, id: &str, old: &str, rotated: &Value) -> String {
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let until = parse_rfc3339(rotated["previous_secret_expires_at"].as_str().unwrap()).unwrap();
    let expected = now_micros() + DAY_MICROS;
    assert!(
        (expected - 60_000_000..=expected).contains(&until),
        "{rotated}"
    );
    let (_, read) = stack
        .api("GET", &format!("/admin/webhooks/subscriptions/{id}"), None)
        .await;
    assert_eq!(
        read["previous_secret_expires_at"],
        rotated["previous_secret_expires_at"]
    );
    assert!(read.get("secret").is_none(), "{read}");
    assert!(!read.to_string().contains(old) && !read.to_string().contains(&new));
    new
}

/// Callbacks and HMAC reads during the grace period (either secret), then after a rotation without grace
/// (only the newest). Returns the newest secret.
async fn check_callbacks(stack: &Stack, id: &str, d: &str, old: &str, new: &str) -> String {
    for s in [old, new] {
        assert_eq!(hmac_read(stack, d, s).await, 200);
        assert_eq!(progress_callback(stack, d, s).await, 200);
    }
    let newest = rotate(stack, id, Some(json!({"grace_period_seconds": 0}))).await;
    assert!(
        newest.get("previous_secret_expires_at").is_none(),
        "{newest}"
    );
    let newest = newest["secret"].as_str().unwrap().to_owned();
    for s in [old, new] {
        assert_eq!(hmac_read(stack, d, s).await, 401);
        assert_eq!(progress_callback(stack, d, s).await, 401);
    }
    assert_eq!(hmac_read(stack, d, &newest).await, 200);
    assert_eq!(progress_callback(stack, d, &newest).await, 200);
    newest
}

#[tokio::test]
async fn tmi_rotation_keeps_every_delivery_verifiable() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, old) = setup(&stack, &rx, "tmi").await;
    for d in deliveries(&stack, &rx, 3).await {
        assert!(d.verify_signature(&old) && d.header(PREVIOUS_HEADER).is_none());
    }
    let rotated = rotate(&stack, &id, None).await;
    let new = check_rotation_views(&stack, &id, &old, &rotated).await;
    // Mid-stream: a receiver still on the old secret checks the previous signature, one that has switched
    // checks TMI's header as always.
    let during = deliveries(&stack, &rx, 3).await;
    for d in &during {
        assert!(
            d.verify_signature(&new),
            "X-Webhook-Signature is on the new secret"
        );
        assert_eq!(
            d.header(PREVIOUS_HEADER),
            Some(signature(&old, &d.body).as_str())
        );
    }
    let d = during[0].delivery_id().unwrap().to_owned();
    let newest = check_callbacks(&stack, &id, &d, &old, &new).await;
    for d in deliveries(&stack, &rx, 2).await {
        assert!(d.verify_signature(&newest) && d.header(PREVIOUS_HEADER).is_none());
    }
}

#[tokio::test]
async fn standard_rotation_keeps_every_delivery_verifiable_with_the_library() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, old) = setup(&stack, &rx, "standard").await;
    let before = deliveries(&stack, &rx, 2).await;
    let rotated = rotate(&stack, &id, Some(json!({"grace_period_seconds": 86400}))).await;
    let new = check_rotation_views(&stack, &id, &old, &rotated).await;
    assert!(new.starts_with("whsec_"), "{rotated}");
    let during = deliveries(&stack, &rx, 3).await;
    let d = during[0].delivery_id().unwrap().to_owned();
    let newest = check_callbacks(&stack, &id, &d, &old, &new).await;
    let after = deliveries(&stack, &rx, 2).await;

    let as_json = |ds: &[RecordedRequest]| -> Vec<Value> {
        ds.iter()
            .map(|d| {
                let headers: serde_json::Map<String, Value> = d
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                json!({"headers": headers, "body": d.body_str()})
            })
            .collect()
    };
    let all: Vec<Value> = [as_json(&before), as_json(&during), as_json(&after)].concat();
    let m = run_verifier(
        MATRIX_VERIFIER,
        &json!({"secrets": [old, new, newest], "deliveries": all}),
    )
    .await;
    let ok = |row: usize, col: usize| m[row][col] == "ok";
    for row in 0..2 {
        assert!(ok(row, 0) && !ok(row, 1) && !ok(row, 2), "before: {m}");
    }
    for row in 2..5 {
        assert!(ok(row, 0) && ok(row, 1) && !ok(row, 2), "during: {m}");
    }
    for row in 5..7 {
        assert!(!ok(row, 0) && !ok(row, 1) && ok(row, 2), "after: {m}");
    }
}

#[tokio::test]
async fn bad_rotations_get_tmi_errors() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (id, _) = setup(&stack, &rx, "tmi").await;
    let path = format!("/admin/webhooks/subscriptions/{id}/rotate-secret");
    for grace in [json!(-1), json!(604_801), json!("1h")] {
        let (status, err) = stack
            .api("POST", &path, Some(json!({"grace_period_seconds": grace})))
            .await;
        assert_eq!(status, 400, "{grace}: {err}");
        assert!(err["error"].is_string() && err["error_description"].is_string());
    }
    // An unsigned subscription (an import from TMI without a secret) has nothing to rotate.
    let unsigned = stack.active_subscription(&rx.url(), &[EVENT]).await;
    stack
        .redis_client()
        .await
        .hdel::<(), _, _>(
            stack.keys().subscription(unsigned),
            delivery_model::subscription::field::SECRET,
        )
        .await
        .unwrap();
    let (status, err) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/subscriptions/{unsigned}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!((status, &err["error"]), (409, &json!("conflict")), "{err}");
    let missing = uuid::Uuid::new_v4();
    let (status, _) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/subscriptions/{missing}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 404);
}
