//! The input rules, route by route (issue #6): every route that takes a JSON body refuses an oversized body
//! (413), a wrong `Content-Type` (415), malformed JSON and unknown fields (400); every route with an id in its
//! path refuses a non-UUID (400 `invalid_id`); every bearer route answers 401 with `WWW-Authenticate`; every
//! 4xx is TMI's error body and every response carries `X-Request-ID`.

use hyper::{Method, StatusCode};

use crate::harness::{Resp, TestApp, admin_token};

const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

/// Routes that take a JSON body: (method, path, a valid-looking body, whether unknown fields are refused).
fn body_routes() -> Vec<(Method, String, &'static str, bool)> {
    vec![
        (
            Method::POST,
            "/admin/webhooks/subscriptions".into(),
            r#"{"name":"n","url":"https://example.com/hook","events":["*"]}"#,
            true,
        ),
        (
            Method::POST,
            format!("/admin/webhooks/subscriptions/{ID}/test"),
            r#"{"event_type":"threat_model.created"}"#,
            true,
        ),
        (
            Method::POST,
            "/addons".into(),
            r#"{"name":"a","webhook_id":"550e8400-e29b-41d4-a716-446655440000"}"#,
            true,
        ),
        (
            Method::POST,
            format!("/addons/{ID}/invoke"),
            r#"{"threat_model_id":"550e8400-e29b-41d4-a716-446655440000"}"#,
            true,
        ),
        (
            Method::POST,
            "/events".into(),
            r#"{"event_type":"threat_model.created","data":{}}"#,
            true,
        ),
        (
            Method::POST,
            format!("/webhook-deliveries/{ID}/status"),
            r#"{"status":"completed"}"#,
            true,
        ),
        (
            Method::PUT,
            format!("/admin/quotas/webhooks/{ID}"),
            r#"{"max_subscriptions":1,"max_events_per_minute":1,"max_subscription_requests_per_minute":1,"max_subscription_requests_per_day":1}"#,
            true,
        ),
        (
            Method::PUT,
            format!("/admin/quotas/addons/{ID}"),
            r#"{"max_active_invocations":1,"max_invocations_per_hour":1}"#,
            true,
        ),
    ]
}

/// Routes with an id in the path: (method, path with `{}` for the id, the parameter's name).
const ID_ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/admin/webhooks/subscriptions/{}", "webhook_id"),
    ("DELETE", "/admin/webhooks/subscriptions/{}", "webhook_id"),
    (
        "POST",
        "/admin/webhooks/subscriptions/{}/test",
        "webhook_id",
    ),
    ("GET", "/admin/webhooks/deliveries/{}", "delivery_id"),
    ("GET", "/addons/{}", "id"),
    ("DELETE", "/addons/{}", "id"),
    ("POST", "/addons/{}/invoke", "id"),
    ("GET", "/webhook-deliveries/{}", "delivery_id"),
    ("POST", "/webhook-deliveries/{}/status", "delivery_id"),
    ("GET", "/admin/quotas/webhooks/{}", "user_id"),
    ("PUT", "/admin/quotas/webhooks/{}", "user_id"),
    ("DELETE", "/admin/quotas/webhooks/{}", "user_id"),
    ("GET", "/admin/quotas/addons/{}", "user_id"),
    ("PUT", "/admin/quotas/addons/{}", "user_id"),
    ("DELETE", "/admin/quotas/addons/{}", "user_id"),
];

/// Bearer-only routes (the HMAC callback is not one).
const BEARER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/webhooks/subscriptions"),
    ("POST", "/admin/webhooks/subscriptions"),
    ("GET", "/admin/webhooks/deliveries"),
    ("GET", "/addons"),
    ("POST", "/addons"),
    ("POST", "/events"),
    ("GET", "/admin/quotas/webhooks"),
    ("GET", "/admin/quotas/addons"),
    (
        "GET",
        "/admin/quotas/webhooks/550e8400-e29b-41d4-a716-446655440000",
    ),
    (
        "PUT",
        "/admin/quotas/addons/550e8400-e29b-41d4-a716-446655440000",
    ),
];

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).expect("method")
}

/// TMI's error body with the expected status, and the request id header.
fn expect_error(res: &Resp, status: StatusCode, code: &str, what: &str) {
    assert_eq!(res.status, status, "{what}: {}", res.text());
    assert_eq!(res.error().0, code, "{what}");
    assert!(res.header("x-request-id").is_some(), "{what}: X-Request-ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_route_applies_the_body_rules() {
    let app = TestApp::start_with(|s| s.api.max_body_bytes = 1024).await;
    let token = admin_token();
    for (m, path, valid, strict) in body_routes() {
        let what = format!("{m} {path}");
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2048));
        let res = app
            .request(m.clone(), &path)
            .bearer(&token)
            .raw("application/json", big)
            .send()
            .await;
        expect_error(
            &res,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &what,
        );

        let res = app
            .request(m.clone(), &path)
            .bearer(&token)
            .raw("text/plain", valid)
            .send()
            .await;
        expect_error(
            &res,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &what,
        );

        let res = app
            .request(m.clone(), &path)
            .bearer(&token)
            .raw("application/json", &valid[..valid.len() - 1])
            .send()
            .await;
        expect_error(&res, StatusCode::BAD_REQUEST, "invalid_input", &what);

        if strict {
            let unknown = format!(r#"{},"surprise":1}}"#, &valid[..valid.len() - 1]);
            let res = app
                .request(m.clone(), &path)
                .bearer(&token)
                .raw("application/json", unknown)
                .send()
                .await;
            expect_error(&res, StatusCode::BAD_REQUEST, "invalid_input", &what);
        }
    }
    // Nothing above was stored.
    let list = app
        .get("/admin/webhooks/subscriptions")
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(list["total"], 0);
    assert_eq!(
        app.store
            .list_webhook_quotas(0, 10)
            .await
            .expect("list")
            .total,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_route_refuses_non_uuids() {
    let app = TestApp::start().await;
    let token = admin_token();
    for (m, path, param) in ID_ROUTES {
        for bad in ["not-a-uuid", "550e8400e29b41d4a716446655440000", "1"] {
            let url = path.replace("{}", bad);
            let mut req = app.request(method(m), &url).bearer(&token);
            if matches!(*m, "POST" | "PUT") {
                req = req.raw("application/json", "{}");
            }
            let res = req.send().await;
            let what = format!("{m} {url}");
            expect_error(&res, StatusCode::BAD_REQUEST, "invalid_id", &what);
            assert_eq!(
                res.error().1,
                format!("Invalid UUID format for parameter: {param}"),
                "{what}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bearer_route_answers_401_with_www_authenticate() {
    let app = TestApp::start().await;
    for (m, path) in BEARER_ROUTES {
        for auth in [None, Some("Bearer nope"), Some("Basic YTpi")] {
            let mut req = app.request(method(m), path);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let res = req.header("x-request-id", "rid-123").send().await;
            let what = format!("{m} {path} with {auth:?}");
            expect_error(&res, StatusCode::UNAUTHORIZED, "unauthorized", &what);
            assert!(
                res.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer realm=\"tmi\"")),
                "{what}: WWW-Authenticate"
            );
            assert_eq!(res.header("x-request-id"), Some("rid-123"), "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_refusals_carry_retry_after_and_the_request_id() {
    let app = TestApp::start_with(|s| s.quotas.max_subscriptions = 1).await;
    let body = crate::harness::subscription_body();
    app.create_subscription(body.clone()).await;
    let res = app
        .post("/admin/webhooks/subscriptions")
        .admin()
        .header("x-request-id", "quota-1")
        .json(&body)
        .send()
        .await;
    expect_error(
        &res,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        "second create",
    );
    assert_eq!(res.header("retry-after"), Some("60"));
    assert_eq!(res.header("x-request-id"), Some("quota-1"));
}
