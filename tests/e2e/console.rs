//! The web console (issue #20) in a real browser: `browser/console_check.py` drives headless Chromium
//! (Selenium, Debian's `chromium` and `chromium-driver`, set up by `scripts/browser-tools.sh`) against this
//! stack, a cleanup replica (it runs redrive jobs) and two loopback receivers. One browser session covers
//! sign-in, create → active, a failed delivery and its attempt log, retry → delivered, the overview, a narrow
//! screen, the bulk retry of a subscription's failures (preview, start, progress), re-enabling a
//! subscription the worker disabled after a 410, and a non-admin's view; it fails on any browser console
//! error or failed request. This side checks what the receivers and Redis saw.
//!
//! Screenshots land in `target/console-screenshots/` (`docs/console.png`, the README's, is a copy of
//! `subscriptions-health.png`).

use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::SubscriptionId;
use delivery_model::subscription::SubscriptionStatus;
use serde_json::json;
use test_support::python::{browser_python, repo_root, run_script};
use test_support::receiver::{Receiver, Response};
use test_support::service::ServiceBin;

use crate::harness::{Stack, admin, parse_id, user};

/// Attempts a delivery gets (`worker.max_attempts`): each of the first delivery's fails.
const MAX_ATTEMPTS: usize = 5;
/// Deliveries the script makes fail for the bulk retry (`REDRIVE` in the script).
const REDRIVE: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    // The circuit breaker would hold the retry back for a minute after five failures in a row.
    let stack = Stack::start_with(&[("HOOKLINE__WORKER__CIRCUIT_FAILURE_THRESHOLD", "100")]).await;
    // Redrive jobs run in cleanup.
    let _cleanup = stack.replica(ServiceBin::Cleanup, &[]).await;
    let rx = Receiver::start().await;
    // The first delivery fails every attempt and its retry succeeds; then the `REDRIVE` deliveries of the
    // bulk retry fail every attempt, and their redrive (past the script) succeeds.
    for _ in 0..MAX_ATTEMPTS {
        rx.push_response(Response::status(500));
    }
    rx.push_response(Response::status(200));
    for _ in 0..REDRIVE * MAX_ATTEMPTS {
        rx.push_response(Response::status(500));
    }
    // A receiver that asks to stop: its subscription is disabled at the first delivery.
    let gone = Receiver::start().await;
    gone.push_response(Response::status(410));
    let screenshots = repo_root().join("target/console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let python = tokio::task::spawn_blocking(browser_python).await.unwrap();
    let out = run_script(
        python,
        "tests/e2e/browser/console_check.py",
        &json!({
            "base": stack.api.api_url(""),
            "admin": admin(),
            "user": user("console-viewer"),
            "receiver": rx.url(),
            "gone_receiver": gone.url(),
            "screenshots": screenshots,
        }),
    )
    .await;

    // What the browser saw is what happened: five refused attempts, then the retry delivered.
    let delivery = out["delivery"]
        .as_str()
        .expect("the script names the delivery");
    let record = stack.delivery(delivery).await;
    assert_eq!(record.status, DeliveryStatus::Delivered);
    let got = rx.count_by_delivery_id();
    assert_eq!(got.get(delivery), Some(&(MAX_ATTEMPTS + 1)), "{got:?}");

    // The bulk retry queued exactly the failed ones, once each: refused every attempt, then delivered.
    let redriven: Vec<&str> = out["redriven"]
        .as_array()
        .expect("the script names the redriven deliveries")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(redriven.len(), REDRIVE, "{redriven:?}");
    for id in &redriven {
        assert_eq!(stack.delivery(id).await.status, DeliveryStatus::Delivered);
        assert_eq!(got.get(*id), Some(&(MAX_ATTEMPTS + 1)), "{id}: {got:?}");
    }

    // Re-enabled: active, no reason left, and the delivery the 410 failed sent again and delivered.
    let gone_sub: SubscriptionId = parse_id(out["gone_subscription"].as_str().expect("id"));
    let sub = stack.subscription(gone_sub).await.expect("subscription");
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.disabled_reason, None);
    let deliveries = stack.deliveries_of(gone_sub).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, DeliveryStatus::Delivered);
    let id = deliveries[0].id.to_string();
    assert_eq!(gone.count_by_delivery_id().get(&id), Some(&2));
    for shot in out["screenshots"].as_array().expect("screenshots") {
        let path = shot.as_str().unwrap();
        assert!(std::fs::metadata(path).unwrap().len() > 1000, "{path}");
    }
}
