//! Bad input on `POST /admin/webhooks/subscriptions` and list queries: always a 4xx with TMI's error body,
//! and nothing stored.

use hyper::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, subscription_body};

const PATH: &str = "/admin/webhooks/subscriptions";

async fn assert_nothing_stored(app: &TestApp) {
    let list = app.get(PATH).admin().send().await.json();
    assert_eq!(list["total"], 0, "{list}");
}

async fn create_with_url(app: &TestApp, url: &str) -> crate::harness::Resp {
    let mut body = subscription_body();
    body["url"] = json!(url);
    app.post(PATH).admin().json(&body).send().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_policy_rejections_use_tmi_errors() {
    let app = TestApp::start_with(|s| {
        s.subscriptions.deny_regexes = vec![r"^hooks\.blocked\.example$".into()]
    })
    .await;
    for (url, error) in [
        (
            "not-a-valid-url",
            "invalid webhook URL: URL must start with https:// (found: not-a-va)",
        ),
        (
            "http://example.com/hook",
            "invalid webhook URL: URL must start with https:// (found: http://e)",
        ),
        (
            "https://localhost/hook",
            "invalid webhook URL: URL blocked: blocked by security policy (pattern: localhost)",
        ),
        (
            "https://10.1.2.3/hook",
            "invalid webhook URL: URL blocked: blocked by security policy (pattern: 10.*)",
        ),
        (
            "https://Metadata.Google.Internal/x",
            "invalid webhook URL: URL blocked: blocked by security policy (pattern: metadata.google.internal)",
        ),
        (
            "https://hooks.blocked.example/x",
            r"invalid webhook URL: URL blocked: blocked by security policy (pattern: ^hooks\.blocked\.example$)",
        ),
        (
            "https://bad_host.example.com/x",
            "invalid webhook URL: invalid hostname: invalid label 'bad_host': label contains invalid character: '_' (only alphanumeric and hyphen allowed)",
        ),
    ] {
        let res = create_with_url(&app, url).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{url}: {}", res.text());
        assert_eq!(res.error(), (error.to_owned(), String::new()), "{url}");
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_targets_only_when_allowed() {
    let app = TestApp::start_with(|s| s.outbound.allow_http_targets = true).await;
    let res = create_with_url(&app, "http://receiver.example:8080/hook").await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let res = create_with_url(&app, "ftp://receiver.example/hook").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.error()
            .0
            .starts_with("invalid webhook URL: URL must start with https:// or http://")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations_are_400() {
    let app = TestApp::start().await;
    let cases = [
        (
            json!({"name": "n", "url": "https://example.com/hook", "events": []}),
            "invalid_input",
        ),
        (
            json!({"name": "", "url": "https://example.com/hook", "events": ["a"]}),
            "invalid_input",
        ),
        (
            json!({"name": "n", "url": "https://example.com/hook", "events": ["a"], "extra": 1}),
            "invalid_input",
        ),
        (
            json!({"name": 5, "url": "https://example.com/hook", "events": ["a"]}),
            "invalid_input",
        ),
        (
            json!({"url": "https://example.com/hook", "events": ["a"]}),
            "invalid_input",
        ),
        (
            json!({"name": "n", "url": "https://example.com/hook", "events": "a"}),
            "invalid_input",
        ),
        (
            json!({"name": "n", "url": "https://example.com/hook", "events": ["a"], "secret": "short"}),
            "invalid_input",
        ),
        (
            json!({"name": "n", "url": "https:/", "events": ["a"]}),
            "invalid_input",
        ),
        (
            json!({"name": "n\u{7}", "url": "https://example.com/hook", "events": ["a"]}),
            "invalid_id",
        ),
        (
            json!({"name": "n", "url": "https://example.com/hook", "events": ["a"], "threat_model_id": "tm-1"}),
            "invalid_id",
        ),
    ];
    for (body, code) in cases {
        let res = app.post(PATH).admin().json(&body).send().await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            res.text()
        );
        let (error, description) = res.error();
        assert_eq!(error, code, "{body}");
        assert!(!description.is_empty(), "{body}");
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_format_errors() {
    let app = TestApp::start_with(|s| s.api.max_body_bytes = 1024).await;

    let res = app
        .post(PATH)
        .admin()
        .raw("application/json", r#"{"name": "n", "#)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error().0, "invalid_input");

    let res = app
        .post(PATH)
        .admin()
        .raw(
            "application/json",
            format!("{} trailing", subscription_body()),
        )
        .send()
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    let res = app
        .post(PATH)
        .admin()
        .raw("text/plain", subscription_body().to_string())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(res.error().0, "unsupported_media_type");

    let res = app
        .post(PATH)
        .admin()
        .untyped(subscription_body().to_string())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error().0, "invalid_request");

    let res = app
        .post(PATH)
        .admin()
        .raw(
            "application/json; charset=utf-8",
            subscription_body().to_string(),
        )
        .send()
        .await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "parameters on the media type are fine"
    );

    let mut big = subscription_body();
    big["name"] = json!("x".repeat(2000));
    let res = app.post(PATH).admin().json(&big).send().await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.error().0, "payload_too_large");

    let res = app.post(PATH).admin().send().await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "a body is required");
    let list = app.get(PATH).admin().send().await.json();
    assert_eq!(
        list["total"], 1,
        "only the well-formed request created anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_400() {
    let app = TestApp::start().await;
    for q in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "offset=-1",
        "offset=1000000001",
        "limit=1&limit=2",
    ] {
        for path in [PATH, "/admin/webhooks/deliveries"] {
            let res = app.get(&format!("{path}?{q}")).admin().send().await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}?{q}");
            assert_eq!(res.error().0, "invalid_input", "{path}?{q}");
        }
    }
    let res = app
        .get(&format!("{PATH}?threat_model_id=nope"))
        .admin()
        .send()
        .await;
    assert_eq!(
        res.error(),
        (
            "invalid_id".to_owned(),
            "Invalid UUID format for parameter: threat_model_id".to_owned()
        )
    );
    let res = app
        .get(&format!("{PATH}?limit=100&offset=0&unknown=1"))
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "unknown parameters are ignored");
}
