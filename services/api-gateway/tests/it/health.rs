//! `/healthz`, `/readyz`, `/metrics` and graceful shutdown.

use std::time::Duration;

use hyper::StatusCode;

use crate::harness::{TestApp, subscription_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_need_no_auth() {
    let app = TestApp::start().await;
    let res = app.get("/healthz").send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["status"], "ok");
    let res = app.get("/readyz").send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_with_retry_after_when_redis_is_gone() {
    let mut app = TestApp::start_with(|s| s.redis.command_timeout_ms = 300).await;
    assert_eq!(app.get("/readyz").send().await.status, StatusCode::OK);
    app.redis_server.kill();
    let res = test_support::wait::until("readyz reports 503", Duration::from_secs(20), || async {
        let res = app.get("/readyz").send().await;
        (res.status == StatusCode::SERVICE_UNAVAILABLE).then_some(res)
    })
    .await;
    assert_eq!(res.header("retry-after"), Some("5"));
    assert_eq!(res.error().0, "service_unavailable");
    assert_eq!(
        app.get("/healthz").send().await.status,
        StatusCode::OK,
        "liveness does not depend on Redis"
    );

    let res = app
        .get("/admin/webhooks/subscriptions")
        .admin()
        .send()
        .await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "store outage is a retryable 503: {}",
        res.text()
    );
    assert!(res.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_pattern() {
    let app = TestApp::start().await;
    let id = app.create_subscription(subscription_body()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        app.get(&format!("/admin/webhooks/subscriptions/{id}"))
            .admin()
            .send()
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/no/such/path").send().await.status,
        StatusCode::NOT_FOUND
    );

    let text = app.metrics();
    for line in [
        r#"hookline_api_requests_total{method="POST",route="/admin/webhooks/subscriptions",status="2xx"} 1"#,
        r#"hookline_api_requests_total{method="GET",route="/admin/webhooks/subscriptions/{webhook_id}",status="2xx"} 1"#,
        r#"hookline_api_requests_total{method="GET",route="unmatched",status="4xx"} 1"#,
        "hookline_api_subscriptions_created_total 1",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(text.contains("hookline_api_request_duration_seconds_bucket"));
    assert!(!text.contains(&id), "no concrete ids in labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_token_stops_the_server() {
    let app = TestApp::start().await;
    assert_eq!(app.get("/healthz").send().await.status, StatusCode::OK);
    let base = app.base.clone();
    assert!(app.shutdown().await.is_ok(), "run ends cleanly");
    let addr = base.trim_start_matches("http://").to_owned();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

/// Issue #16 item 7: `/metrics` is not on the public API port unless asked for; the ops listener has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_the_api_port_unless_configured() {
    let app = TestApp::start().await;
    assert_eq!(app.get("/healthz").send().await.status, StatusCode::OK);
    let res = app.get("/metrics").send().await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    assert_eq!(res.json()["error"], "not_found");
    assert!(!res.text().contains("hookline_api"), "{}", res.text());

    let app = TestApp::start_with(|s| s.api.metrics_on_api_port = true).await;
    let res = app.get("/metrics").send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    assert!(
        res.text().contains("hookline_api_events_published_total 0"),
        "{}",
        res.text()
    );
}
