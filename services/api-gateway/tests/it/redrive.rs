//! `/admin/webhooks/subscriptions/{webhook_id}/redrive` (paced redrive, issue #18): the dry run, one job per
//! subscription, progress and cancel. The runner that advances jobs is tested in the cleanup service.

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::store::import::LegacyPlacement;
use delivery_model::subscription::{RateLimit, Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use hyper::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, user_token};

async fn failed(app: &TestApp, sub: SubscriptionId, event: &str) -> DeliveryId {
    let mut r = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        sub,
        event,
        format!(r#"{{"event_type":"{event}","data":{{}}}}"#),
        now_micros() - 60_000_000,
    );
    r.status = DeliveryStatus::Failed;
    r.attempts = 5;
    r.last_error = Some("HTTP 500: no".into());
    let ttl = std::time::Duration::from_secs(3600);
    app.store
        .import_delivery(&r, LegacyPlacement::Keep { ttl }, now_micros())
        .await
        .expect("delivery");
    r.id
}

async fn queue_len(app: &TestApp) -> u64 {
    let mut n = 0;
    for s in app.store.keys().worker_streams() {
        let len: u64 = app.redis.xlen(s).await.expect("xlen");
        n += len;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_one_job_per_subscription_progress_and_cancel() {
    let app = TestApp::start().await;
    let sub = Subscription {
        rate_limit: Some(RateLimit {
            per_second: 7,
            burst: 7,
        }),
        ..Subscription::new(
            "owner-1",
            "redrive",
            "https://receiver.example/hook",
            vec!["*".into()],
            SubscriptionStatus::Active,
            now_micros() - 600_000_000,
        )
    };
    app.store.import_subscription(&sub).await.expect("sub");
    let mut created = Vec::new();
    for _ in 0..12 {
        created.push(failed(&app, sub.id, "threat_model.created").await);
    }
    for _ in 0..5 {
        failed(&app, sub.id, "threat_model.deleted").await;
    }
    let path = format!("/admin/webhooks/subscriptions/{}/redrive", sub.id);

    // Admins only; bad input is a 400 with TMI's body.
    let res = app.post(&path).bearer(&user_token()).send().await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    for bad in [
        json!({"pace": 0}),
        json!({"pace": 10001}),
        json!({"status_codes": [99]}),
        json!({"error_classes": ["bogus"]}),
        json!({"created_after": "yesterday"}),
        json!({"event_types": [""]}),
        json!({"dry": true}),
    ] {
        let res = app.post(&path).admin().json(&bad).send().await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.text());
        res.error();
    }

    // A dry run counts and samples, and writes nothing.
    let res = app
        .post(&path)
        .admin()
        .json(&json!({"dry_run": true, "event_types": ["threat_model.created"], "error_classes": ["http_5xx", "none"]}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    assert_eq!(body["matched"], 12, "{body}");
    assert_eq!(body["complete"], true);
    assert_eq!(body["pace"], 7, "the subscription's rate limit");
    assert_eq!(body["sample"].as_array().map(Vec::len), Some(10));
    assert_eq!(body["sample"][0]["id"], created[0].to_string());
    assert_eq!(queue_len(&app).await, 0);
    let r = app.store.get_delivery(created[0]).await.expect("read");
    assert_eq!(r.map(|r| r.status), Some(DeliveryStatus::Failed));
    let res = app.get(&path).admin().send().await;
    res.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "No redrive job for this subscription",
    );

    // A job; a second one is refused while it runs (no runner in this test: it stays running).
    let res = app
        .post(&path)
        .admin()
        .json(&json!({"event_types": ["threat_model.created"], "pace": 20}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let job = res.json();
    assert_eq!(job["state"], "running");
    assert_eq!(job["pace"], 20);
    assert_eq!(
        job["filter"]["event_types"],
        json!(["threat_model.created"])
    );
    let res = app.post(&path).admin().send().await;
    res.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        &format!(
            "A redrive job of this subscription is running (job {}); cancel it or wait for it to finish",
            job["job_id"].as_str().expect("job id")
        ),
    );
    let got = app.get(&path).admin().send().await.json();
    assert_eq!(got["job_id"], job["job_id"]);
    assert_eq!(got["queued"], 0);

    // Cancelled: shown as such, a second cancel is a conflict, and a new job may start.
    let res = app.delete(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["state"], "cancelled");
    assert!(res.json()["finished_at"].is_string());
    let res = app.delete(&path).admin().send().await;
    res.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "The redrive job is cancelled; nothing to cancel",
    );
    let res = app.post(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(res.json()["pace"], 7);

    let res = app
        .post(&format!(
            "/admin/webhooks/subscriptions/{}/redrive",
            SubscriptionId::new_v4()
        ))
        .admin()
        .send()
        .await;
    res.assert_error(StatusCode::NOT_FOUND, "subscription not found", "");
}
