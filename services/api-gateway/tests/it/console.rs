//! `/console/…` (the web console's files) and the aggregated statistics it draws from:
//! `/admin/webhooks/stats` and `/admin/webhooks/subscriptions/{id}/stats`.

use delivery_model::ids::SubscriptionId;
use delivery_model::stats::{Counted, OutcomeSample};
use delivery_model::time::now_micros;
use hyper::StatusCode;

use crate::harness::{TestApp, subscription_body, user_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_are_served_with_a_strict_policy() {
    let app = TestApp::start().await;
    let page = app.get("/console/").send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.text()
            .contains(r#"<script type="module" src="app.js">"#)
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe")
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let js = app.get("/console/app.js").send().await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(js.header("content-security-policy"), Some(csp));
    app.get("/console/nope.js").send().await.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "No such file in the console",
    );
    assert_eq!(
        app.post("/console/").send().await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // Without the slash the page's relative URLs would resolve against `/`: redirected.
    let bare = app.get("/console").send().await;
    assert_eq!(bare.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.header("location"), Some("/console/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_answer_counts_percentiles_and_the_circuit() {
    let app = TestApp::start().await;
    let created = app.create_subscription(subscription_body()).await;
    let id: SubscriptionId = created["id"].as_str().expect("id").parse().expect("uuid");
    let now = now_micros() / 1_000_000;
    let sample = |counted, duration_ms| OutcomeSample {
        subscription: id,
        counted,
        duration_ms,
    };
    app.store
        .record_stats(
            &[
                sample(Counted::Delivered, Some(20)),
                sample(Counted::Retried, Some(20)),
                sample(Counted::Failed, None),
            ],
            now,
        )
        .await
        .expect("record");

    let res = app
        .get("/admin/webhooks/stats?minutes=5")
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    let minutes = body["minutes"].as_array().expect("minutes");
    assert_eq!(minutes.len(), 5);
    // The minute may have turned since the write: the counts are in one of the last two.
    let t = &body["totals"];
    assert_eq!(
        (
            t["delivered"].as_u64(),
            t["failed"].as_u64(),
            t["retried"].as_u64(),
            t["attempts"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(2))
    );
    // Both attempts fall in the (10, 25] ms bucket: the median is interpolated halfway.
    assert_eq!(t["latency_ms"]["p50"].as_f64(), Some(17.5), "{t}");
    assert!(
        minutes[0].get("latency_ms").is_none(),
        "no attempts, no percentiles"
    );

    let res = app
        .get(&format!("/admin/webhooks/subscriptions/{id}/stats"))
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    let hours = body["hours"].as_array().expect("hours");
    assert_eq!(hours.len(), 24);
    let sum = |f: &str| {
        hours
            .iter()
            .map(|h| h[f].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!((sum("delivered"), sum("failed")), (1, 1));
    assert_eq!(body["circuit"]["state"], "closed");
    assert_eq!(body["circuit"]["host"], "example.com");

    for bad in ["minutes=0", "minutes=121", "minutes=x"] {
        app.get(&format!("/admin/webhooks/stats?{bad}"))
            .admin()
            .send()
            .await
            .assert_error(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "Invalid value for query parameter minutes: must be an integer between 1 and 120",
            );
    }
    let unknown = SubscriptionId::new_v4();
    let res = app
        .get(&format!("/admin/webhooks/subscriptions/{unknown}/stats"))
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // Administrators only, like every /admin route.
    let res = app
        .get("/admin/webhooks/stats")
        .bearer(&user_token())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}
