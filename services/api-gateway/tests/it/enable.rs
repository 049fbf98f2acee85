//! `POST /admin/webhooks/subscriptions/{webhook_id}/enable` (endpoint health, issue #18).

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::store::import::LegacyPlacement;
use delivery_model::subscription::{DisabledReason, Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use hyper::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, user_token};

/// A failed delivery of `sub` whose last activity (its failure) was at `failed_at`.
async fn failed_delivery(app: &TestApp, sub: SubscriptionId, failed_at: i64) -> DeliveryId {
    let mut record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        sub,
        "threat_model.created",
        r#"{"event_type":"threat_model.created","data":{}}"#,
        failed_at - 1_000_000,
    );
    record.status = DeliveryStatus::Failed;
    record.attempts = 1;
    record.last_error = Some(DisabledReason::Gone.delivery_error().into());
    record.last_activity_at = failed_at;
    let ttl = std::time::Duration::from_secs(3600);
    app.store
        .import_delivery(&record, LegacyPlacement::Keep { ttl }, now_micros())
        .await
        .expect("delivery");
    record.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_reactivates_a_disabled_subscription_and_requeues_what_the_disable_failed() {
    let app = TestApp::start().await;
    let now = now_micros();
    let disabled_at = now - 10_000_000;
    let sub = Subscription {
        disabled_reason: Some(DisabledReason::Gone),
        disabled_at: Some(disabled_at),
        publication_failures: 3,
        ..Subscription::new(
            "owner-1",
            "gone",
            "https://receiver.example/hook",
            vec!["threat_model.created".into()],
            SubscriptionStatus::Inactive,
            now - 60_000_000,
        )
    };
    app.store.import_subscription(&sub).await.expect("sub");
    let before = failed_delivery(&app, sub.id, disabled_at - 1).await;
    let by_disable = failed_delivery(&app, sub.id, disabled_at).await;
    let path = format!("/admin/webhooks/subscriptions/{}/enable", sub.id);

    // The admin get shows why and since when it is disabled.
    let got = app
        .get(&format!("/admin/webhooks/subscriptions/{}", sub.id))
        .admin()
        .send()
        .await
        .json();
    assert_eq!(got["status"], "inactive");
    assert_eq!(got["disabled_reason"], "gone");
    assert!(got["disabled_at"].is_string(), "{got}");

    let res = app.post(&path).bearer(&user_token()).send().await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    for bad in [json!({"requeue_failed": "yes"}), json!({"requeue": true})] {
        let res = app.post(&path).admin().json(&bad).send().await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.text());
    }
    let still = app.store.get_subscription(sub.id).await.expect("read");
    assert_eq!(
        still.map(|s| s.status),
        Some(SubscriptionStatus::Inactive),
        "refused requests change nothing"
    );

    let res = app
        .post(&path)
        .admin()
        .json(&json!({"requeue_failed": true}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    assert_eq!(body["requeued"], 1, "{body}");
    assert_eq!(body["more"], false);
    assert_eq!(body["subscription"]["status"], "active");
    assert_eq!(body["subscription"]["publication_failures"], 0);
    assert!(
        body["subscription"].get("disabled_reason").is_none(),
        "{body}"
    );
    let store = &app.store;
    let status = |id| async move {
        store
            .get_delivery(id)
            .await
            .expect("read")
            .expect("record")
            .status
    };
    assert_eq!(status(by_disable).await, DeliveryStatus::Pending);
    assert_eq!(
        status(before).await,
        DeliveryStatus::Failed,
        "failed before the disable: kept"
    );
    let matching = app
        .store
        .match_candidates("threat_model.created")
        .await
        .expect("candidates");
    assert_eq!(
        matching.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![sub.id],
        "active again: it matches events"
    );

    // Now active: nothing to enable.
    let res = app.post(&path).admin().send().await;
    res.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "The subscription is active and was not disabled by the delivery-worker; nothing to enable",
    );
    let res = app
        .post(&format!(
            "/admin/webhooks/subscriptions/{}/enable",
            SubscriptionId::new_v4()
        ))
        .admin()
        .send()
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "subscription not found", "");
}
