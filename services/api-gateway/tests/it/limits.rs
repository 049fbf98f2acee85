//! Per-subscription limits (issue #18): set at create, replaced by `PUT …/limits`, validated with TMI's
//! error body.

use hyper::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, subscription_body, user_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_set_at_create_replaced_by_put_and_validated() {
    let app = TestApp::start().await;
    let mut body = subscription_body();
    body["rate_limit"] = json!({"per_second": 50, "burst": 5});
    body["max_in_flight"] = json!(2);
    let created = app.create_subscription(body).await;
    assert_eq!(created["rate_limit"], json!({"per_second": 50, "burst": 5}));
    assert_eq!(created["max_in_flight"], 2);
    let id = created["id"].as_str().expect("id");
    let path = format!("/admin/webhooks/subscriptions/{id}/limits");

    for (bad, description) in [
        (
            json!({"rate_limit": {"per_second": 0}}),
            "Error at \"/rate_limit/per_second\": must be an integer between 1 and 10000",
        ),
        (
            json!({"rate_limit": {"per_second": 5, "burst": 10001}}),
            "Error at \"/rate_limit/burst\": must be an integer between 1 and 10000",
        ),
        (
            json!({"max_in_flight": -3}),
            "Error at \"/max_in_flight\": must be an integer between 1 and 1000",
        ),
    ] {
        let res = app.put(&path).admin().json(&bad).send().await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_input", description);
        let mut create = subscription_body();
        for (k, v) in bad.as_object().expect("object") {
            create[k] = v.clone();
        }
        let res = app
            .post("/admin/webhooks/subscriptions")
            .admin()
            .json(&create)
            .send()
            .await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_input", description);
    }
    for malformed in [
        json!({"rate_limit": {"per_second": "fast"}}),
        json!({"rate_limit": {"burst": 3}}),
        json!({"rate_limits": null}),
    ] {
        let res = app.put(&path).admin().json(&malformed).send().await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{malformed}: {}",
            res.text()
        );
    }
    let res = app
        .put(&path)
        .bearer(&user_token())
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let res = app
        .put(&path)
        .admin()
        .json(&json!({"rate_limit": {"per_second": 7}}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let view = res.json();
    assert_eq!(view["rate_limit"], json!({"per_second": 7, "burst": 1}));
    assert!(view.get("max_in_flight").is_none(), "replaced: {view}");
    let res = app.put(&path).admin().json(&json!({})).send().await;
    assert_eq!(res.status, StatusCode::OK);
    let got = app
        .get(&format!("/admin/webhooks/subscriptions/{id}"))
        .admin()
        .send()
        .await
        .json();
    assert!(got.get("rate_limit").is_none(), "cleared: {got}");

    let res = app
        .put(&format!(
            "/admin/webhooks/subscriptions/{}/limits",
            uuid::Uuid::new_v4()
        ))
        .admin()
        .json(&json!({}))
        .send()
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "subscription not found", "");
}
