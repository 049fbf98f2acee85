//! The web console (issue #20) in a real browser: `browser/console_check.py` drives headless Chromium
//! (Selenium, Debian's `chromium` and `chromium-driver`, set up by `scripts/browser-tools.sh`) against this
//! stack and a loopback receiver. One browser session covers sign-in, create → active, a failed delivery and
//! its attempt log, retry → delivered, the overview, a narrow screen and a non-admin's view; it fails on any
//! browser console error or failed request. This side checks what the receiver and Redis saw.
//!
//! Screenshots land in `target/console-screenshots/` (`docs/console.png`, the README's, is a copy of
//! `subscriptions-health.png`).

use serde_json::json;
use test_support::python::{browser_python, repo_root, run_script};
use test_support::receiver::{Receiver, Response};

use crate::harness::{Stack, admin, user};

/// Attempts a delivery gets (`worker.max_attempts`): each of the first delivery's fails.
const MAX_ATTEMPTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    // The circuit breaker would hold the retry back for a minute after five failures in a row.
    let stack = Stack::start_with(&[("HOOKLINE__WORKER__CIRCUIT_FAILURE_THRESHOLD", "100")]).await;
    let rx = Receiver::start().await;
    for _ in 0..MAX_ATTEMPTS {
        rx.push_response(Response::status(500));
    }
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
            "screenshots": screenshots,
        }),
    )
    .await;

    // What the browser saw is what happened: five refused attempts, then the retry delivered.
    let delivery = out["delivery"]
        .as_str()
        .expect("the script names the delivery");
    let record = stack.delivery(delivery).await;
    assert_eq!(
        record.status,
        delivery_model::delivery::DeliveryStatus::Delivered
    );
    let got = rx.count_by_delivery_id();
    assert_eq!(got.get(delivery), Some(&(MAX_ATTEMPTS + 1)), "{got:?}");
    for shot in out["screenshots"].as_array().expect("screenshots") {
        let path = shot.as_str().unwrap();
        assert!(std::fs::metadata(path).unwrap().len() > 1000, "{path}");
    }
}
