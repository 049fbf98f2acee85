//! What the gateway shows to whom (issue #16, smaller leaks): internal addresses in `last_error`.

use delivery_model::delivery::DeliveryRecord;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::signing;
use delivery_model::time::now_micros;
use hyper::StatusCode;

use crate::harness::{TestApp, subscription_body};

const REFUSAL: &str =
    "destination refused: hooks.example.com resolves to 10.20.30.40, a private address";

/// A receiver's HMAC read (and an owner's token read) of a delivery refused by the SSRF guard does not show
/// the internal address the host resolved to; an administrator's read does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_error_hides_internal_addresses_from_non_admins() {
    let app = TestApp::start().await;
    let created = app.create_subscription(subscription_body()).await;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let sub: SubscriptionId = created["id"].as_str().expect("id").parse().expect("uuid");
    let mut record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        sub,
        "threat_model.created",
        "{}",
        now_micros(),
    );
    record.last_error = Some(REFUSAL.into());
    assert!(
        app.store
            .create_and_enqueue_delivery(&record)
            .await
            .expect("create")
    );
    let path = format!("/webhook-deliveries/{}", record.id);
    let signature = signing::sign(&secret, record.id.to_string().as_bytes());
    let receiver = app
        .get(&path)
        .header("x-webhook-signature", &signature)
        .send()
        .await;
    assert_eq!(receiver.status, StatusCode::OK, "{}", receiver.text());
    let shown = receiver.json()["last_error"]
        .as_str()
        .expect("last_error")
        .to_owned();
    assert!(!shown.contains("10.20.30.40"), "{shown}");
    assert_eq!(
        shown,
        "destination refused: hooks.example.com resolves to [address hidden], a private address"
    );
    let admin = app.get(&path).admin().send().await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text());
    assert_eq!(admin.json()["last_error"], REFUSAL);
}
