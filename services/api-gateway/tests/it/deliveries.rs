//! `/admin/webhooks/deliveries[/{delivery_id}]`

use delivery_model::delivery::{DeliveryRecord, Invoker};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::time::now_micros;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, subscription_body, user_token};

async fn test_delivery(app: &TestApp, sub: &str) -> String {
    let res = app
        .post(&format!("/admin/webhooks/subscriptions/{sub}/test"))
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    res.json()["delivery_id"].as_str().expect("id").to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list["deliveries"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_oldest_first_and_filtered_by_subscription() {
    let app = TestApp::start().await;
    let a = app.create_subscription(subscription_body()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let b = app.create_subscription(subscription_body()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut of_a = Vec::new();
    for _ in 0..3 {
        of_a.push(test_delivery(&app, &a).await);
        let before = now_micros();
        test_support::wait::until("clock moved", std::time::Duration::from_secs(1), || async {
            (now_micros() > before + 2_000).then_some(())
        })
        .await;
    }
    let of_b = test_delivery(&app, &b).await;

    let list = app
        .get(&format!("/admin/webhooks/deliveries?subscription_id={a}"))
        .admin()
        .send()
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    assert_eq!(list["total"], 3);
    assert_eq!(list["limit"], 20);
    assert_eq!(list["offset"], 0);
    assert_eq!(ids(&list), of_a, "oldest first");

    let page = app
        .get(&format!(
            "/admin/webhooks/deliveries?subscription_id={a}&limit=2&offset=2"
        ))
        .admin()
        .send()
        .await
        .json();
    assert_eq!(page["total"], 3);
    assert_eq!(ids(&page), vec![of_a[2].clone()]);

    let all = app
        .get("/admin/webhooks/deliveries")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(all["total"], 4);
    assert_eq!(ids(&all).last(), Some(&of_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_refuses_unknown_or_malformed_subscription() {
    let app = TestApp::start().await;
    let res = app
        .get(&format!(
            "/admin/webhooks/deliveries?subscription_id={}",
            SubscriptionId::new_v4()
        ))
        .admin()
        .send()
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "subscription not found", "");
    let res = app
        .get("/admin/webhooks/deliveries?subscription_id=xyz")
        .admin()
        .send()
        .await;
    res.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_id",
        "Invalid UUID format for parameter: subscription_id",
    );
    let empty = app
        .get("/admin/webhooks/deliveries")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(
        empty,
        json!({"deliveries": [], "limit": 20, "offset": 0, "total": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_tmi_shape() {
    let app = TestApp::start().await;
    let sub = app.create_subscription(subscription_body()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let id = test_delivery(&app, &sub).await;

    let res = app
        .get(&format!("/admin/webhooks/deliveries/{id}"))
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let d = res.json();
    let mut keys: Vec<&str> = d
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "attempts",
            "created_at",
            "event_type",
            "id",
            "last_activity_at",
            "payload",
            "status",
            "subscription_id"
        ],
        "empty optional fields omitted, no internal fields: {d}"
    );
    assert_eq!(d["id"], id);
    assert_eq!(d["subscription_id"], sub);
    assert_eq!(d["status"], "pending");
    assert_eq!(d["attempts"], 0);
    assert_eq!(d["event_type"], "threat_model.created");
    assert_eq!(
        d["payload"]["object_type"], "webhook_test",
        "payload parsed back into an object"
    );

    let res = app
        .get("/admin/webhooks/deliveries/00000000-0000-0000-0000-000000000000")
        .admin()
        .send()
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "delivery not found", "");
    let res = app
        .get("/admin/webhooks/deliveries/1234")
        .admin()
        .send()
        .await;
    res.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_id",
        "Invalid UUID format for parameter: delivery_id",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addon_fields_progress_and_errors_are_shown() {
    let app = TestApp::start().await;
    let sub = app.create_subscription(subscription_body()).await["id"]
        .as_str()
        .expect("id")
        .parse::<SubscriptionId>()
        .expect("uuid");
    let now = now_micros();
    let mut record =
        DeliveryRecord::new_pending(DeliveryId::new_v7(), sub, "addon.invoked", "not json", now);
    let addon = AddonId::new_v4();
    record.addon_id = Some(addon);
    record.invoked_by = Some(Invoker {
        uuid: "u-1".into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        ..Default::default()
    });
    record.status_percent = 50;
    record.status_message = "Processing...".into();
    record.attempts = 2;
    record.last_error = Some("HTTP 500: boom".into());
    record.next_retry_at = Some(now + 60_000_000);
    assert!(
        app.store
            .create_and_enqueue_delivery(&record)
            .await
            .expect("create")
    );

    let d = app
        .get(&format!("/admin/webhooks/deliveries/{}", record.id))
        .admin()
        .send()
        .await
        .json();
    assert_eq!(d["addon_id"], addon.to_string());
    assert_eq!(
        d["invoked_by"],
        json!({"display_name": "Alice", "email": "alice@example.com", "principal_type": "user", "provider": "unknown", "provider_id": ""})
    );
    assert_eq!(d["status_percent"], 50);
    assert_eq!(d["status_message"], "Processing...");
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_error"], "HTTP 500: boom");
    assert!(
        d["next_retry_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(
        d.get("payload").is_none(),
        "a payload that is not a JSON object is omitted: {d}"
    );
}

/// An active subscription and one of its deliveries in `status`, stored as an import would store them.
async fn stored_delivery(
    app: &TestApp,
    status: delivery_model::delivery::DeliveryStatus,
    sub_status: delivery_model::subscription::SubscriptionStatus,
) -> DeliveryRecord {
    use delivery_model::store::import::LegacyPlacement;
    use delivery_model::subscription::Subscription;

    let now = now_micros();
    let sub = Subscription::new(
        "owner-1",
        "retry",
        "https://receiver.example/hook",
        vec!["threat_model.created".into()],
        sub_status,
        now,
    );
    app.store.import_subscription(&sub).await.expect("sub");
    let mut record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        sub.id,
        "threat_model.created",
        r#"{"event_type":"threat_model.created","data":{}}"#,
        now,
    );
    record.status = status;
    record.attempts = 5;
    record.last_error = Some("HTTP 503: Service Unavailable".into());
    app.store
        .import_delivery(
            &record,
            LegacyPlacement::Keep {
                ttl: std::time::Duration::from_secs(3600),
            },
            now,
        )
        .await
        .expect("delivery");
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_queues_a_failed_delivery_again() {
    use delivery_model::delivery::DeliveryStatus;
    use delivery_model::subscription::SubscriptionStatus;

    let app = TestApp::start().await;
    let record = stored_delivery(&app, DeliveryStatus::Failed, SubscriptionStatus::Active).await;
    let path = format!("/admin/webhooks/deliveries/{}/retry", record.id);

    // Administrators only.
    let res = app.post(&path).bearer(&user_token()).send().await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app.post(&path).send().await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.store
            .get_delivery(record.id)
            .await
            .expect("read")
            .expect("record")
            .status,
        DeliveryStatus::Failed,
        "refused callers change nothing"
    );

    let res = app.post(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let body = res.json();
    assert_eq!(body["id"], record.id.to_string());
    assert_eq!(body["status"], "pending");
    assert_eq!(body["attempts"], 0);
    assert_eq!(body["last_error"], "HTTP 503: Service Unavailable");
    let metrics = app.metrics();
    assert!(
        metrics.contains("hookline_api_deliveries_retried_total 1"),
        "{metrics}"
    );

    // The admin list sees it under its new status.
    let pending = app
        .get("/admin/webhooks/deliveries?status=pending")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(ids(&pending), vec![record.id.to_string()]);
    let failed = app
        .get("/admin/webhooks/deliveries?status=failed")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(failed["total"], 0);

    // Retrying again while it is pending is a conflict.
    let res = app.post(&path).admin().send().await;
    res.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "Only failed deliveries can be retried; this delivery is pending",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_refuses_what_it_cannot_send_again() {
    use delivery_model::delivery::DeliveryStatus;
    use delivery_model::subscription::SubscriptionStatus;

    let app = TestApp::start().await;
    let delivered =
        stored_delivery(&app, DeliveryStatus::Delivered, SubscriptionStatus::Active).await;
    let res = app
        .post(&format!(
            "/admin/webhooks/deliveries/{}/retry",
            delivered.id
        ))
        .admin()
        .send()
        .await;
    res.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "Only failed deliveries can be retried; this delivery is delivered",
    );

    let paused = stored_delivery(
        &app,
        DeliveryStatus::Failed,
        SubscriptionStatus::PendingDelete,
    )
    .await;
    let res = app
        .post(&format!("/admin/webhooks/deliveries/{}/retry", paused.id))
        .admin()
        .send()
        .await;
    res.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "The delivery's subscription is pending_delete; only deliveries of active subscriptions can be retried",
    );

    let res = app
        .post(&format!(
            "/admin/webhooks/deliveries/{}/retry",
            DeliveryId::new_v7()
        ))
        .admin()
        .send()
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "delivery not found", "");
    let res = app
        .post("/admin/webhooks/deliveries/nope/retry")
        .admin()
        .send()
        .await;
    res.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_id",
        "Invalid UUID format for parameter: delivery_id",
    );
    let res = app
        .get(&format!("/admin/webhooks/deliveries/{}/retry", paused.id))
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.header("allow"), Some("POST"));

    for (record, status) in [
        (&delivered, DeliveryStatus::Delivered),
        (&paused, DeliveryStatus::Failed),
    ] {
        let got = app
            .store
            .get_delivery(record.id)
            .await
            .expect("read")
            .expect("record");
        assert_eq!((got.status, got.attempts), (status, 5), "unchanged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_requeues_a_subscriptions_failed_deliveries() {
    use delivery_model::delivery::DeliveryStatus;
    use delivery_model::subscription::SubscriptionStatus;

    let app = TestApp::start().await;
    let first = stored_delivery(&app, DeliveryStatus::Failed, SubscriptionStatus::Active).await;
    let path = format!(
        "/admin/webhooks/subscriptions/{}/retry-failed",
        first.subscription_id
    );

    let res = app.post(&path).bearer(&user_token()).send().await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    for (query, description) in [
        (
            "?limit=0",
            "Invalid value for query parameter limit: must be an integer between 1 and 1000",
        ),
        (
            "?limit=1001",
            "Invalid value for query parameter limit: must be an integer between 1 and 1000",
        ),
        (
            "?created_after=yesterday",
            "Invalid value for query parameter created_after: must be an RFC 3339 date-time",
        ),
    ] {
        let res = app.post(&format!("{path}{query}")).admin().send().await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_input", description);
    }
    assert_eq!(
        app.store
            .get_delivery(first.id)
            .await
            .expect("read")
            .expect("record")
            .status,
        DeliveryStatus::Failed,
        "refused requests change nothing"
    );

    let res = app.post(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(
        res.json(),
        json!({"queued": 1, "skipped": 0, "more": false})
    );
    let metrics = app.metrics();
    assert!(
        metrics.contains("hookline_api_deliveries_retried_total 1"),
        "{metrics}"
    );
    let got = app
        .store
        .get_delivery(first.id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!((got.status, got.attempts), (DeliveryStatus::Pending, 0));
    let res = app.post(&path).admin().send().await;
    assert_eq!(
        res.json(),
        json!({"queued": 0, "skipped": 0, "more": false}),
        "nothing failed is left"
    );

    let paused = stored_delivery(
        &app,
        DeliveryStatus::Failed,
        SubscriptionStatus::PendingDelete,
    )
    .await;
    let res = app
        .post(&format!(
            "/admin/webhooks/subscriptions/{}/retry-failed",
            paused.subscription_id
        ))
        .admin()
        .send()
        .await;
    res.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "The subscription is pending_delete; only deliveries of active subscriptions can be retried",
    );
    let res = app
        .post(&format!(
            "/admin/webhooks/subscriptions/{}/retry-failed",
            SubscriptionId::new_v4()
        ))
        .admin()
        .send()
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "subscription not found", "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_lists_the_log_oldest_first_redacted_for_pinned_subscriptions() {
    use delivery_model::delivery::{AttemptLogEntry, DeliveryStatus, field};
    use delivery_model::subscription::SubscriptionStatus;
    use fred::prelude::*;

    let app = TestApp::start().await;
    let record = stored_delivery(&app, DeliveryStatus::Failed, SubscriptionStatus::Active).await;
    let path = format!("/admin/webhooks/deliveries/{}/attempts", record.id);

    // A record without attempts: an empty list.
    let res = app.get(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), json!({"attempts": []}));

    let lines: Vec<String> = [
        AttemptLogEntry {
            attempt: 1,
            started_at: 1_775_044_800_500_000,
            duration_ms: 5003,
            outcome: "retry".into(),
            status_code: None,
            error: Some("request failed: https://internal.example/x timed out".into()),
        },
        AttemptLogEntry {
            attempt: 2,
            started_at: 1_775_044_865_000_000,
            duration_ms: 38,
            outcome: "failed".into(),
            status_code: Some(410),
            error: Some("HTTP 410: Gone".into()),
        },
    ]
    .iter()
    .map(|e| serde_json::to_string(e).expect("json"))
    .collect();
    let key = app.store.keys().delivery(record.id);
    let _: () = app
        .redis
        .hset(
            &key,
            (field::ATTEMPT_LOG, format!("{}\n", lines.join("\n"))),
        )
        .await
        .expect("hset");

    let res = app.get(&path).admin().send().await;
    assert_eq!(
        res.json(),
        json!({"attempts": [
            {"attempt": 1, "started_at": "2026-04-01T12:00:00.5Z", "duration_ms": 5003, "outcome": "retry",
             "error": "request failed: https://internal.example/x timed out"},
            {"attempt": 2, "started_at": "2026-04-01T12:01:05Z", "duration_ms": 38, "outcome": "failed",
             "status_code": 410, "error": "HTTP 410: Gone"}
        ]})
    );

    // The record itself never shows the log.
    let one = app
        .get(&format!("/admin/webhooks/deliveries/{}", record.id))
        .admin()
        .send()
        .await
        .json();
    assert!(one.get("attempt_log").is_none(), "{one}");

    // An operator-pinned subscription's URLs stay hidden, as in last_error.
    let sub_key = app.store.keys().subscription(record.subscription_id);
    let _: () = app
        .redis
        .hset(
            &sub_key,
            (delivery_model::subscription::field::OPERATOR_PINNED, "1"),
        )
        .await
        .expect("hset");
    let res = app.get(&path).admin().send().await.json();
    assert_eq!(
        res["attempts"][0]["error"],
        "request failed: (operator-pinned) timed out"
    );

    let res = app.get(&path).bearer(&user_token()).send().await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .get(&format!(
            "/admin/webhooks/deliveries/{}/attempts",
            DeliveryId::new_v7()
        ))
        .admin()
        .send()
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "delivery not found", "");
}
