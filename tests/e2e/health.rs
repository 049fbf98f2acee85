//! Endpoint health (issue #18) with the real binaries: a receiver answering `410 Gone` gets its
//! subscription disabled (shown by the admin get, every answer checked against the OpenAPI document), and
//! once it is back an administrator enables it and re-queues the delivery the 410 failed.

use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::SubscriptionId;
use delivery_model::subscription::SubscriptionStatus;
use serde_json::json;
use test_support::receiver::Receiver;

use crate::harness::{Stack, WAIT};

const EVENT: &str = "threat_model.created";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_subscription_until_an_admin_enables_it() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    rx.set_default_status(410);
    let body = json!({"name": "gone", "url": rx.url(), "events": [EVENT]});
    let (status, created) = stack
        .api("POST", "/admin/webhooks/subscriptions", Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let sub: SubscriptionId = id.parse().unwrap();
    stack.wait_status(sub, SubscriptionStatus::Active).await;

    stack.publish(EVENT, None, json!({"n": 1})).await;
    let got = rx.wait_for_deliveries(1, WAIT).await;
    let delivery = got[0].delivery_id().unwrap().to_owned();
    stack.wait_status(sub, SubscriptionStatus::Inactive).await;
    let failed = stack
        .wait_delivery(&delivery, "the delivery failed", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
    assert_eq!(failed.attempts, 1, "a 410 is not retried");
    let (status, view) = stack
        .api("GET", &format!("/admin/webhooks/subscriptions/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "inactive");
    assert_eq!(view["disabled_reason"], "gone");

    rx.set_default_status(200);
    let (status, enabled) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/subscriptions/{id}/enable"),
            Some(json!({"requeue_failed": true})),
        )
        .await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["requeued"], 1);
    assert_eq!(enabled["subscription"]["status"], "active");
    stack
        .wait_delivery(&delivery, "the re-queued delivery is delivered", |d| {
            d.status == DeliveryStatus::Delivered
        })
        .await;
    assert_eq!(
        rx.count_by_delivery_id()[&delivery],
        2,
        "sent again, same id"
    );
}
