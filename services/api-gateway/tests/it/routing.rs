//! Unknown paths, wrong methods and request ids.

use hyper::{Method, StatusCode};

use crate::harness::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_json_404() {
    let app = TestApp::start().await;
    for path in [
        "/nope",
        "/admin/webhooks",
        "/admin/webhooks/subscriptions/a/b/c",
    ] {
        let res = app.get(path).admin().send().await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(res.error().0, "not_found", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_with_allow() {
    let app = TestApp::start().await;
    let id = "550e8400-e29b-41d4-a716-446655440000";
    for (method, path, allow) in [
        (
            Method::PUT,
            "/admin/webhooks/subscriptions".to_owned(),
            "GET, POST",
        ),
        (
            Method::PATCH,
            format!("/admin/webhooks/subscriptions/{id}"),
            "GET, DELETE",
        ),
        (
            Method::GET,
            format!("/admin/webhooks/subscriptions/{id}/test"),
            "POST",
        ),
        (
            Method::DELETE,
            "/admin/webhooks/deliveries".to_owned(),
            "GET",
        ),
        (Method::GET, "/events".to_owned(), "POST"),
        (Method::POST, "/healthz".to_owned(), "GET"),
    ] {
        let res = app.request(method.clone(), &path).admin().send().await;
        assert_eq!(
            res.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(res.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(res.error().0, "method_not_allowed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_echoed_or_generated() {
    let app = TestApp::start().await;
    let res = app
        .get("/healthz")
        .header("x-request-id", "client-chosen-id-42")
        .send()
        .await;
    assert_eq!(res.header("x-request-id"), Some("client-chosen-id-42"));

    let res = app
        .get("/nope")
        .header("x-request-id", "on-errors-too")
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("x-request-id"), Some("on-errors-too"));

    let res = app.get("/admin/webhooks/subscriptions").send().await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let a = uuid::Uuid::parse_str(res.header("x-request-id").expect("generated")).expect("uuid");
    assert_eq!(a.get_version_num(), 4);
    let b = app.get("/healthz").send().await;
    assert_ne!(
        b.header("x-request-id"),
        Some(a.to_string().as_str()),
        "a fresh id per request"
    );
}
