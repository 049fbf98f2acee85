//! Quotas end to end (issue #6), against the real binaries: the subscription count and per-minute window on
//! creates (TMI's 429s, `Retry-After`, only successful creates counted), the admin quota endpoints and their
//! bounds, overrides taking effect on the next create, and an add-on quota override applied to invoke.

use fred::prelude::*;
use serde_json::{Value, json};
use test_support::auth;
use test_support::receiver::Receiver;

use crate::harness::{SECRET, Stack, user};

/// An administrator whose owner id is a UUID: quota overrides are keyed by TMI's internal user UUIDs.
const OWNER: &str = "5b0c0000-0000-4000-8000-0000000000a1";
/// An invoker with a UUID id.
const INVOKER: &str = "5b0c0000-0000-4000-8000-0000000000b2";
const TM: &str = "0f6c0000-0000-4000-8000-000000000001";

fn owner() -> String {
    auth::admin_token(SECRET, OWNER)
}

/// A subscription body for the loopback receiver `rx` (the stack's worker sends its challenge there only).
fn hook(rx: &Receiver, n: usize) -> Value {
    json!({"name": format!("q{n}"), "url": rx.url(), "events": ["threat_model.created"]})
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn header_num(a: &crate::harness::Answer, name: &str) -> i64 {
    a.header(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn create(stack: &Stack, body: &str) -> crate::harness::Answer {
    stack
        .send(
            Some(&owner()),
            "POST",
            "/admin/webhooks/subscriptions",
            &[],
            body,
        )
        .await
}

#[tokio::test]
async fn subscription_count_limit_and_overrides() {
    let stack = Stack::start_with(&[("HOOKLINE__QUOTAS__MAX_SUBSCRIPTIONS", "2")]).await;
    let rx = Receiver::start().await;
    for n in 0..2 {
        let a = create(&stack, &hook(&rx, n).to_string()).await;
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(header_num(&a, "x-ratelimit-limit"), 10);
    }
    let refused = create(&stack, &hook(&rx, 2).to_string()).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.body,
        json!({"error": "rate_limit_exceeded", "error_description": "subscription limit exceeded: 2/2 (limit: 2)"})
    );
    assert_eq!(refused.header("retry-after"), Some("60"));
    assert_eq!(header_num(&refused, "x-ratelimit-remaining"), 8);
    assert_eq!(
        stack
            .store
            .count_subscriptions_by_owner(OWNER)
            .await
            .expect("count"),
        2
    );

    // GET without an override answers the configured defaults.
    let path = format!("/admin/quotas/webhooks/{OWNER}");
    let (status, q) = stack.api("GET", &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(q["max_subscriptions"], 2);
    assert_eq!(q["created_at"], "0001-01-01T00:00:00Z");

    // Out of bounds: 400, nothing stored.
    for bad in [
        json!({"max_subscriptions": 101, "max_events_per_minute": 12, "max_subscription_requests_per_minute": 10, "max_subscription_requests_per_day": 20}),
        json!({"max_subscriptions": 3, "max_events_per_minute": 0, "max_subscription_requests_per_minute": 10, "max_subscription_requests_per_day": 20}),
        json!({"max_subscriptions": 3, "max_events_per_minute": 12, "max_subscription_requests_per_minute": 101, "max_subscription_requests_per_day": 20}),
        json!({"max_subscriptions": 3, "max_events_per_minute": 12, "max_subscription_requests_per_minute": 10, "max_subscription_requests_per_day": 10001}),
    ] {
        let (status, body) = stack.api("PUT", &path, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_input");
    }
    let (_, list) = stack.api("GET", "/admin/quotas/webhooks", None).await;
    assert_eq!(list["total"], 0);

    // Raising the limit lets the next create through …
    let raise = json!({"max_subscriptions": 3, "max_events_per_minute": 12,
                       "max_subscription_requests_per_minute": 10, "max_subscription_requests_per_day": 20});
    let (status, q) = stack.api("PUT", &path, Some(raise.clone())).await;
    assert_eq!(status, 201, "{q}");
    assert_eq!(q["owner_id"], OWNER);
    assert_eq!(create(&stack, &hook(&rx, 3).to_string()).await.status, 201);
    assert_eq!(create(&stack, &hook(&rx, 4).to_string()).await.status, 429);
    // … lowering it refuses at once (an update answers 200) …
    let mut lower = raise.clone();
    lower["max_subscriptions"] = json!(1);
    let (status, _) = stack.api("PUT", &path, Some(lower)).await;
    assert_eq!(status, 200);
    let refused = create(&stack, &hook(&rx, 5).to_string()).await;
    assert_eq!(
        refused.body["error_description"],
        "subscription limit exceeded: 3/1 (limit: 1)"
    );
    let (_, list) = stack.api("GET", "/admin/quotas/webhooks", None).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["quotas"][0]["max_subscriptions"], 1);
    assert_eq!(list["defaults"]["max_subscriptions"], 2);
    // … and deleting it reverts to the defaults.
    assert_eq!(stack.api("DELETE", &path, None).await.0, 204);
    assert_eq!(stack.api("DELETE", &path, None).await.0, 404);
    assert_eq!(
        stack.api("GET", &path, None).await.1["max_subscriptions"],
        2
    );
}

#[tokio::test]
async fn per_minute_window_counts_successful_creates_only() {
    let stack = Stack::start_with(&[(
        "HOOKLINE__QUOTAS__MAX_SUBSCRIPTION_REQUESTS_PER_MINUTE",
        "2",
    )])
    .await;
    let rx = Receiver::start().await;
    // Rejected creates — bad bodies, a refused URL — come first and use nothing up (TMI counts them).
    for bad in [
        json!({"name": "x", "url": rx.url(), "events": []}).to_string(),
        json!({"name": "x", "url": rx.url(), "events": ["*"], "extra": 1}).to_string(),
        r#"{"name": "x", "#.to_owned(),
        json!({"name": "x", "url": "ftp://files.example.com/h", "events": ["*"]}).to_string(),
    ] {
        let a = create(&stack, &bad).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }
    let first = create(&stack, &hook(&rx, 0).to_string()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(header_num(&first, "x-ratelimit-remaining"), 1);
    let second = create(&stack, &hook(&rx, 1).to_string()).await;
    assert_eq!(second.status, 201);
    assert_eq!(header_num(&second, "x-ratelimit-remaining"), 0);
    let now = now_secs();
    let reset = header_num(&second, "x-ratelimit-reset");
    assert!((now..=now + 60).contains(&reset), "reset {reset}");

    let refused = create(&stack, &hook(&rx, 2).to_string()).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.body,
        json!({"error": "rate_limit_exceeded",
               "error_description": "subscription request rate limit exceeded: 2 requests per minute (limit: 2/minute)"})
    );
    let retry = header_num(&refused, "retry-after");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // TMI's key names, so TMI's test harness can clear them.
    let redis = stack.redis_client().await;
    let minute: u64 = redis
        .zcard(stack.keys().subscription_rate_minute(OWNER))
        .await
        .expect("zcard");
    assert_eq!(minute, 2, "two successful creates, nothing else");
}

#[tokio::test]
async fn addon_quota_override_applies_to_invoke() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    rx.set_async(true);
    let (sub, _) = stack
        .verified_subscription(&rx, &["addon.invoked"], None)
        .await;
    let mut addons = Vec::new();
    for n in 0..4 {
        let a = stack
            .create_addon(json!({"name": format!("Q{n}"), "webhook_id": sub.to_string()}))
            .await;
        addons.push(a["id"].as_str().expect("id").to_owned());
    }
    let path = format!("/admin/quotas/addons/{INVOKER}");
    let (status, q) = stack
        .api(
            "PUT",
            &path,
            Some(json!({"max_active_invocations": 10, "max_invocations_per_hour": 1})),
        )
        .await;
    assert_eq!(status, 201, "{q}");
    let (status, _) = stack
        .api(
            "PUT",
            &path,
            Some(json!({"max_active_invocations": 11, "max_invocations_per_hour": 1})),
        )
        .await;
    assert_eq!(status, 400, "11 active is over TMI's bound");

    let invoker = user(INVOKER);
    let body =
        format!(r#"{{"threat_model_id":"{TM}","object_type":"threat_model","object_id":"{TM}"}}"#);
    let ok = stack.invoke(&invoker, &addons[0], &body).await;
    assert_eq!(ok.status, 202, "{}", ok.body);
    let hourly = stack.invoke(&invoker, &addons[1], &body).await;
    assert_eq!(
        hourly.status, 429,
        "the override's 1 per hour: {}",
        hourly.body
    );
    assert!(
        hourly.body["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Hourly invocation limit exceeded: 1/1.")),
        "{}",
        hourly.body
    );
    assert!(hourly.header("retry-after").is_some());
    // Another invoker still has the [addons] defaults.
    assert_eq!(
        stack
            .invoke(&user("someone-else"), &addons[1], &body)
            .await
            .status,
        202
    );

    // Raising the override lets the next invocation through; deleting it reverts to the defaults (10/hour).
    let (status, _) = stack
        .api(
            "PUT",
            &path,
            Some(json!({"max_active_invocations": 10, "max_invocations_per_hour": 2})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stack.invoke(&invoker, &addons[2], &body).await.status, 202);
    assert_eq!(stack.invoke(&invoker, &addons[3], &body).await.status, 429);
    assert_eq!(stack.api("DELETE", &path, None).await.0, 204);
    assert_eq!(stack.invoke(&invoker, &addons[3], &body).await.status, 202);
}
