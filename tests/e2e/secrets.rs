//! Secrets at rest (issue #16 item 4) with the real binaries: the gateway stores the secret sealed, Redis
//! (`HGETALL` on a raw client) never shows it, the worker still signs with it so the receiver verifies,
//! and `hookline-migrate --reencrypt-secrets` moves every record to a rotated key, idempotently.

use std::collections::HashMap;

use delivery_model::ids::SubscriptionId;
use delivery_model::subscription::field;
use fred::prelude::*;
use serde_json::json;
use test_support::receiver::Receiver;
use test_support::service::ServiceBin;
use test_support::wait;

use crate::harness::{Stack, WAIT, merge, run_to_exit};

const EVENT: &str = "threat_model.created";
const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "HxwdHhscGRoXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

#[tokio::test]
async fn secrets_are_sealed_in_redis_deliveries_verify_and_rotation_reseals() {
    let stack = Stack::start_with(&[
        ("HOOKLINE__SECRET_KEYS__CURRENT", "k1"),
        ("HOOKLINE__SECRET_KEYS__KEYS__K1", K1),
    ])
    .await;
    let rx = Receiver::start().await;
    let created = stack.create_subscription(&rx.url(), &[EVENT], None).await;
    let id: SubscriptionId = created["id"].as_str().unwrap().parse().unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let raw = stack.redis_client().await;
    let key = stack.keys().subscription(id);
    // The challenge is answered by the receiver; the raw status shows it (the test's own store has no key).
    wait::until("the subscription is verified", WAIT, || async {
        let status: Option<String> = raw.hget(&key, field::STATUS).await.unwrap();
        (status.as_deref() == Some("active")).then_some(())
    })
    .await;

    let hash: HashMap<String, String> = raw.hgetall(&key).await.unwrap();
    assert!(hash.values().all(|v| !v.contains(&secret)), "{hash:?}");
    assert!(hash[field::SECRET].starts_with("enc:v1:k1:"), "{hash:?}");

    stack.publish(EVENT, None, json!({"sealed": true})).await;
    let got = rx.wait_for_deliveries(1, WAIT).await;
    assert!(
        got[0].verify_signature(&secret),
        "the worker signed with the opened secret"
    );

    // Rotation: k2 seals, k1 still opens; the command reseals, and a rerun has nothing left to do.
    let env = merge(
        stack.env.clone(),
        &[
            ("HOOKLINE__SECRET_KEYS__CURRENT", "k2"),
            ("HOOKLINE__SECRET_KEYS__KEYS__K2", K2),
        ],
    );
    let (code, out) = run_to_exit(ServiceBin::Migrate, &["--reencrypt-secrets"], &env).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("resealed=1"), "{out}");
    let stored: String = raw.hget(&key, field::SECRET).await.unwrap();
    assert!(
        stored.starts_with("enc:v1:k2:") && !stored.contains(&secret),
        "{stored}"
    );
    let (code, out) = run_to_exit(ServiceBin::Migrate, &["--reencrypt-secrets"], &env).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("resealed=0") && out.contains("already_current=1"),
        "{out}"
    );
    assert!(
        !out.contains(&secret) && !out.contains(K1) && !out.contains(K2),
        "{out}"
    );

    // Without keys: today's behaviour, a warning at start, and nothing to re-encrypt with (refused).
    let plain = merge(stack.env.clone(), &[]);
    let plain: Vec<(String, String)> = plain
        .into_iter()
        .filter(|(k, _)| !k.starts_with("HOOKLINE__SECRET_KEYS__"))
        .collect();
    let (code, out) = run_to_exit(ServiceBin::Migrate, &["--reencrypt-secrets"], &plain).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("stored in Redis in plain text"), "{out}");
}
