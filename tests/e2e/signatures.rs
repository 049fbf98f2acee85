//! Signature schemes end to end (issue #17): real deliveries from the real worker, verified on the
//! receiver's side by the libraries receivers use (scripts/receiver-tools.sh installs them), never by
//! Hookline's own code.

use delivery_model::ids::SubscriptionId;
use delivery_model::signing::standard;
use delivery_model::subscription::SubscriptionStatus;
use serde_json::{Value, json};
use test_support::python::run_verifier;
use test_support::receiver::{Receiver, RecordedRequest};

use crate::harness::{Stack, WAIT};

const EVENT: &str = "threat_model.created";
const STANDARD_VERIFIER: &str = "tests/e2e/verifiers/standard_webhooks.py";
const ED25519_VERIFIER: &str = "tests/e2e/verifiers/ed25519.py";

/// Creates a subscription with `extra` fields in the body and waits until it is verified; returns the
/// 201 body.
async fn subscribe(stack: &Stack, rx: &Receiver, extra: Value) -> Value {
    let mut body = json!({"name": "sig", "url": rx.url(), "events": [EVENT]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, created) = stack
        .api("POST", "/admin/webhooks/subscriptions", Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    let id: SubscriptionId = created["id"].as_str().unwrap().parse().unwrap();
    stack.wait_status(id, SubscriptionStatus::Active).await;
    created
}

fn headers_of(req: &RecordedRequest) -> Value {
    req.headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test]
async fn standard_deliveries_verify_with_the_official_library() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let created = subscribe(&stack, &rx, json!({"signature_scheme": "standard"})).await;
    assert_eq!(created["signature_scheme"], "standard", "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(standard::secret_key(&secret).is_some(), "{secret}");
    // Reads show the scheme, never the secret.
    let id = created["id"].as_str().unwrap();
    let (status, read) = stack
        .api("GET", &format!("/admin/webhooks/subscriptions/{id}"), None)
        .await;
    assert_eq!(
        (status, &read["signature_scheme"]),
        (200, &json!("standard"))
    );
    assert!(read.get("secret").is_none(), "{read}");
    // The admin reads the Ed25519 public key; the signing key is never shown.
    let public_key = read["public_key"].as_str().unwrap().to_owned();
    assert_eq!(created["public_key"], read["public_key"]);
    assert!(
        public_key.starts_with(standard::PUBLIC_KEY_PREFIX),
        "{read}"
    );
    assert!(
        !read.to_string().contains(standard::SIGNING_KEY_PREFIX),
        "{read}"
    );

    stack
        .publish(EVENT, None, json!({"name": "Payments"}))
        .await;
    let got = rx.wait_for_deliveries(1, WAIT).await;
    let d = &got[0];
    assert_eq!(
        d.header("webhook-id"),
        d.delivery_id(),
        "webhook-id is the delivery id"
    );
    assert!(
        d.header("x-webhook-signature").is_none(),
        "one scheme per subscription"
    );

    let other = standard::generate_secret().unwrap();
    let verdict = run_verifier(
        STANDARD_VERIFIER,
        &json!({"secret": secret, "wrong_secret": other, "headers": headers_of(d), "body": d.body_str()}),
    )
    .await;
    assert_eq!(verdict["valid"], "ok", "{verdict}");
    for case in ["wrong_secret", "body_changed"] {
        assert!(
            verdict[case]
                .as_str()
                .unwrap()
                .contains("No matching signature"),
            "{case}: {verdict}"
        );
    }
    assert!(
        verdict["stale"].as_str().unwrap().contains("too old"),
        "{verdict}"
    );

    // The `v1a,` entry, with an Ed25519 implementation that is not ring.
    let other_key = standard::public_key(&standard::generate_signing_key().unwrap()).unwrap();
    let verdict = run_verifier(
        ED25519_VERIFIER,
        &json!({"public_key": public_key, "other_public_key": other_key, "headers": headers_of(d), "body": d.body_str()}),
    )
    .await;
    assert_eq!(verdict["valid"], "ok", "{verdict}");
    for case in ["wrong_key", "body_changed", "id_changed"] {
        assert_eq!(verdict[case], "fail: InvalidSignature", "{case}: {verdict}");
    }
}

#[tokio::test]
async fn tmi_is_the_default_and_unchanged() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let created = subscribe(&stack, &rx, json!({})).await;
    assert_eq!(created["signature_scheme"], "tmi", "{created}");
    assert!(created.get("public_key").is_none(), "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    stack.publish(EVENT, None, json!({"n": 1})).await;
    let got = rx.wait_for_deliveries(1, WAIT).await;
    assert!(got[0].verify_signature(&secret));
    for absent in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert!(got[0].header(absent).is_none(), "{absent}");
    }
}

#[tokio::test]
async fn bad_scheme_input_gets_tmi_errors() {
    let stack = Stack::start().await;
    let base = json!({"name": "x", "url": "http://127.0.0.1:9/h", "events": [EVENT]});
    for (extra, needle) in [
        (json!({"signature_scheme": "svix"}), "/signature_scheme"),
        (
            json!({"signature_scheme": "standard", "secret": "0123456789abcdef0123"}),
            "whsec_",
        ),
        (
            json!({"signature_scheme": "standard", "secret": "whsec_c2hvcnQtc2hvcnQ="}),
            "whsec_",
        ),
    ] {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, err) = stack
            .api("POST", "/admin/webhooks/subscriptions", Some(body))
            .await;
        assert_eq!(
            (status, &err["error"]),
            (400, &json!("invalid_input")),
            "{err}"
        );
        assert!(
            err["error_description"].as_str().unwrap().contains(needle),
            "{err}"
        );
    }
}
