//! Per-owner quotas (issue #6): the store's override API, the admin endpoints `/admin/quotas/…`, and the
//! quota on subscription creates (count, per-minute and per-day windows of successful creates, TMI's 429s).

use fred::prelude::*;
use hyper::{Method, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use delivery_model::quota::{AddonQuota, WebhookQuota};

use crate::harness::{TestApp, subscription_body, token};

/// An administrator whose owner id is a UUID (quota overrides are keyed by TMI's internal user UUIDs).
const OWNER: &str = "7a1e8400-e29b-41d4-a716-446655440099";

fn owner_token(owner: &str) -> String {
    token(
        Algorithm::HS256,
        &json!({"sub": owner, "tmi_is_administrator": true, "exp": chrono::Utc::now().timestamp() + 600}),
    )
}

fn webhook_quota(owner: &str, created_at: i64) -> WebhookQuota {
    WebhookQuota {
        owner_id: owner.to_owned(),
        max_subscriptions: 5,
        max_events_per_minute: 12,
        max_subscription_requests_per_minute: 3,
        max_subscription_requests_per_day: 40,
        created_at,
        modified_at: created_at + 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_overrides_are_indexed_upserts() {
    let app = TestApp::start().await;
    let s = &app.store;
    assert_eq!(s.get_webhook_quota("a").await.expect("get"), None);
    for (i, owner) in ["a", "b", "c"].into_iter().enumerate() {
        let at = 1_775_044_800_000_000 + i64::try_from(i).expect("i") * 1_000_000;
        s.put_webhook_quota(&webhook_quota(owner, at))
            .await
            .expect("put");
    }
    // An upsert replaces the row and keeps one index entry.
    let mut b = webhook_quota("b", 1_775_044_801_000_000);
    b.max_subscriptions = 99;
    s.put_webhook_quota(&b).await.expect("put again");
    assert_eq!(s.get_webhook_quota("b").await.expect("get"), Some(b));
    let page = s.list_webhook_quotas(0, 2).await.expect("list");
    assert_eq!(page.total, 3);
    let owners: Vec<&str> = page.items.iter().map(|q| q.owner_id.as_str()).collect();
    assert_eq!(owners, ["c", "b"], "newest first");
    assert_eq!(
        s.list_webhook_quotas(2, 10).await.expect("list").items[0].owner_id,
        "a"
    );
    assert!(s.delete_webhook_quota("a").await.expect("delete"));
    assert!(!s.delete_webhook_quota("a").await.expect("delete again"));
    assert_eq!(s.list_webhook_quotas(0, 0).await.expect("list").total, 2);

    let a = AddonQuota {
        owner_id: "x".into(),
        max_active_invocations: 1,
        max_invocations_per_hour: 1000,
        created_at: 5,
        modified_at: 6,
    };
    s.put_addon_quota(&a).await.expect("put addon");
    assert_eq!(s.get_addon_quota("x").await.expect("get"), Some(a));
    assert_eq!(s.list_addon_quotas(0, 10).await.expect("list").total, 1);
    assert!(s.delete_addon_quota("x").await.expect("delete"));
    assert_eq!(s.get_addon_quota("x").await.expect("get"), None);
    assert_eq!(s.list_addon_quotas(0, 10).await.expect("list").total, 0);
}

async fn put(app: &TestApp, path: &str, body: &Value) -> crate::harness::Resp {
    app.request(Method::PUT, path)
        .admin()
        .json(body)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_quota_admin_endpoints() {
    let app = TestApp::start_with(|s| s.quotas.max_subscriptions = 7).await;
    let path = format!("/admin/quotas/webhooks/{OWNER}");

    // No override: the defaults, with Go's zero time as TMI answers them.
    let res = app.get(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.json(),
        json!({"owner_id": OWNER, "max_subscriptions": 7, "max_events_per_minute": 12,
               "max_subscription_requests_per_minute": 10, "max_subscription_requests_per_day": 20,
               "created_at": "0001-01-01T00:00:00Z", "modified_at": "0001-01-01T00:00:00Z"})
    );

    let body = json!({"max_subscriptions": 100, "max_events_per_minute": 1,
                      "max_subscription_requests_per_minute": 100, "max_subscription_requests_per_day": 10000});
    let created = put(&app, &path, &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let created = created.json();
    assert_eq!(created["max_subscriptions"], 100);
    assert_eq!(created["created_at"], created["modified_at"]);
    let mut lower = body.clone();
    lower["max_subscriptions"] = json!(1);
    let updated = put(&app, &path, &lower).await;
    assert_eq!(updated.status, StatusCode::OK);
    let updated = updated.json();
    assert_eq!(updated["max_subscriptions"], 1);
    assert_eq!(
        updated["created_at"], created["created_at"],
        "created_at kept"
    );
    assert_eq!(app.get(&path).admin().send().await.json(), updated);

    // Bounds and body rules: 400, nothing changed.
    for (field, value, sentence) in [
        (
            "max_subscriptions",
            json!(0),
            "max_subscriptions must be at least 1 (got 0)",
        ),
        (
            "max_subscriptions",
            json!(101),
            "max_subscriptions exceeds maximum allowed value of 100 (got 101)",
        ),
        (
            "max_events_per_minute",
            json!(1001),
            "max_events_per_minute exceeds maximum allowed value of 1000 (got 1001)",
        ),
        (
            "max_subscription_requests_per_minute",
            json!(101),
            "max_subscription_requests_per_minute exceeds maximum allowed value of 100 (got 101)",
        ),
        (
            "max_subscription_requests_per_day",
            json!(10001),
            "max_subscription_requests_per_day exceeds maximum allowed value of 10000 (got 10001)",
        ),
        (
            "max_subscription_requests_per_day",
            json!(-5),
            "max_subscription_requests_per_day must be at least 1 (got -5)",
        ),
    ] {
        let mut b = body.clone();
        b[field] = value;
        let res = put(&app, &path, &b).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(res.error(), ("invalid_input".into(), sentence.into()));
    }
    for bad in [
        json!({"max_subscriptions": 5}),
        json!({"max_subscriptions": 1.5, "max_events_per_minute": 1,
               "max_subscription_requests_per_minute": 1, "max_subscription_requests_per_day": 1}),
        json!({"max_subscriptions": 5, "max_events_per_minute": 1, "extra": 1,
               "max_subscription_requests_per_minute": 1, "max_subscription_requests_per_day": 1}),
    ] {
        let res = put(&app, &path, &bad).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.error().0, "invalid_input");
    }
    assert_eq!(app.get(&path).admin().send().await.json(), updated);

    let res = app
        .get("/admin/quotas/webhooks/not-a-uuid")
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        res.error(),
        (
            "invalid_id".into(),
            "Invalid UUID format for parameter: user_id".into()
        )
    );

    // The list shows overrides only, with the defaults.
    let other = "7a1e8400-e29b-41d4-a716-446655440098";
    assert_eq!(
        put(&app, &format!("/admin/quotas/webhooks/{other}"), &body)
            .await
            .status,
        StatusCode::CREATED
    );
    let list = app
        .get("/admin/quotas/webhooks?limit=1")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(list["total"], 2);
    assert_eq!(list["limit"], 1);
    assert_eq!(list["offset"], 0);
    assert_eq!(list["quotas"][0]["owner_id"], other, "newest first");
    assert_eq!(list["defaults"]["max_subscriptions"], 7);
    assert_eq!(
        app.get("/admin/quotas/webhooks?limit=1001")
            .admin()
            .send()
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Delete: 204, then 404 with TMI's sentence; the owner is back on the defaults.
    assert_eq!(
        app.delete(&path).admin().send().await.status,
        StatusCode::NO_CONTENT
    );
    let res = app.delete(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.error(), ("quota not found".into(), String::new()));
    assert_eq!(
        app.get(&path).admin().send().await.json()["max_subscriptions"],
        7
    );

    // Admin only.
    let res = app.get(&path).send().await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.header("www-authenticate").is_some());
    let res = app
        .get(&path)
        .bearer(&crate::harness::user_token())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addon_quota_admin_endpoints() {
    let app = TestApp::start_with(|s| s.addons.max_active_invocations = 2).await;
    let path = format!("/admin/quotas/addons/{OWNER}");
    let res = app.get(&path).admin().send().await;
    assert_eq!(
        res.json(),
        json!({"owner_id": OWNER, "max_active_invocations": 2, "max_invocations_per_hour": 10,
               "created_at": "0001-01-01T00:00:00Z", "modified_at": "0001-01-01T00:00:00Z"})
    );
    let body = json!({"max_active_invocations": 10, "max_invocations_per_hour": 1000});
    assert_eq!(put(&app, &path, &body).await.status, StatusCode::CREATED);
    let res = put(&app, &path, &body).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["max_active_invocations"], 10);
    for bad in [
        json!({"max_active_invocations": 11, "max_invocations_per_hour": 1}),
        json!({"max_active_invocations": 0, "max_invocations_per_hour": 1}),
        json!({"max_active_invocations": 1, "max_invocations_per_hour": 1001}),
        json!({"max_active_invocations": 1}),
    ] {
        let res = put(&app, &path, &bad).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.error().0, "invalid_input");
    }
    let list = app.get("/admin/quotas/addons").admin().send().await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["limit"], 50);
    assert_eq!(
        list["defaults"],
        json!({"max_active_invocations": 2, "max_invocations_per_hour": 10})
    );
    assert_eq!(
        app.delete(&path).admin().send().await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&path).admin().send().await.status,
        StatusCode::NOT_FOUND
    );
}

async fn create_as(app: &TestApp, owner: &str, body: &Value) -> crate::harness::Resp {
    app.post("/admin/webhooks/subscriptions")
        .bearer(&owner_token(owner))
        .json(body)
        .send()
        .await
}

fn int_header(res: &crate::harness::Resp, name: &str) -> i64 {
    res.header(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn window_len(app: &TestApp, which: &str, owner: &str) -> u64 {
    let key = format!(
        "{}webhook:ratelimit:sub:{which}:{owner}",
        app.store.keys().prefix()
    );
    app.redis.zcard(key).await.expect("zcard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_count_limit() {
    let app = TestApp::start_with(|s| s.quotas.max_subscriptions = 2).await;
    for i in 0..2 {
        let res = create_as(&app, OWNER, &subscription_body()).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        assert_eq!(int_header(&res, "x-ratelimit-limit"), 10);
        assert_eq!(int_header(&res, "x-ratelimit-remaining"), 9 - i);
    }
    let res = create_as(&app, OWNER, &subscription_body()).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.error(),
        (
            "rate_limit_exceeded".into(),
            "subscription limit exceeded: 2/2 (limit: 2)".into()
        )
    );
    assert_eq!(res.header("retry-after"), Some("60"));
    assert_eq!(int_header(&res, "x-ratelimit-remaining"), 8);
    let reset = int_header(&res, "x-ratelimit-reset");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now..=now + 60).contains(&reset),
        "reset {reset} is within the minute"
    );
    assert_eq!(
        window_len(&app, "minute", OWNER).await,
        2,
        "refusal recorded nothing"
    );
    // Another owner has a quota of their own.
    let other = "7a1e8400-e29b-41d4-a716-446655440097";
    assert_eq!(
        create_as(&app, other, &subscription_body()).await.status,
        StatusCode::CREATED
    );

    // An override raises the limit at once; deleting a subscription frees a slot too.
    let path = format!("/admin/quotas/webhooks/{OWNER}");
    let body = json!({"max_subscriptions": 3, "max_events_per_minute": 12,
                      "max_subscription_requests_per_minute": 10, "max_subscription_requests_per_day": 20});
    assert_eq!(put(&app, &path, &body).await.status, StatusCode::CREATED);
    assert_eq!(
        create_as(&app, OWNER, &subscription_body()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        create_as(&app, OWNER, &subscription_body()).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_window_counts_successful_creates_only() {
    let app = TestApp::start_with(|s| {
        s.quotas.max_subscription_requests_per_minute = 2;
        s.quotas.max_subscriptions = 100;
    })
    .await;
    let mut bad = subscription_body();
    bad["url"] = json!("not a url");
    let mut unknown = subscription_body();
    unknown["nope"] = json!(1);
    // Refused requests before, between and after: none of them uses the window up.
    for body in [&bad, &unknown] {
        assert_eq!(
            create_as(&app, OWNER, body).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        create_as(&app, OWNER, &subscription_body()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        create_as(&app, OWNER, &bad).await.status,
        StatusCode::BAD_REQUEST
    );
    let second = create_as(&app, OWNER, &subscription_body()).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(int_header(&second, "x-ratelimit-remaining"), 0);
    let res = create_as(&app, OWNER, &subscription_body()).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.error(),
        (
            "rate_limit_exceeded".into(),
            "subscription request rate limit exceeded: 2 requests per minute (limit: 2/minute)"
                .into()
        )
    );
    let retry: i64 = int_header(&res, "retry-after");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(window_len(&app, "minute", OWNER).await, 2);
    assert_eq!(window_len(&app, "day", OWNER).await, 2);
    let ttl: i64 = app
        .redis
        .ttl(format!(
            "{}webhook:ratelimit:sub:minute:{OWNER}",
            app.store.keys().prefix()
        ))
        .await
        .expect("ttl");
    assert!((60..=120).contains(&ttl), "minute window TTL {ttl}");
    assert_eq!(
        app.store
            .count_subscriptions_by_owner(OWNER)
            .await
            .expect("count"),
        2
    );

    // Lowering the per-minute limit below what was used refuses at once; raising it lets creates through.
    let path = format!("/admin/quotas/webhooks/{OWNER}");
    let body = json!({"max_subscriptions": 100, "max_events_per_minute": 12,
                      "max_subscription_requests_per_minute": 3, "max_subscription_requests_per_day": 20});
    assert_eq!(put(&app, &path, &body).await.status, StatusCode::CREATED);
    let res = create_as(&app, OWNER, &subscription_body()).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(int_header(&res, "x-ratelimit-limit"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_day_window_names_the_per_day_limit() {
    let app = TestApp::start_with(|s| {
        s.quotas.max_subscription_requests_per_day = 1;
    })
    .await;
    assert_eq!(
        create_as(&app, OWNER, &subscription_body()).await.status,
        StatusCode::CREATED
    );
    let res = create_as(&app, OWNER, &subscription_body()).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    // TMI's sentence ends "(limit: 10/minute)" here (the per-minute value); Hookline names the day's limit.
    assert_eq!(
        res.error().1,
        "subscription request rate limit exceeded: 1 requests per day (limit: 1/day)"
    );
    let retry = int_header(&res, "retry-after");
    assert!(
        (86_000..=86_400).contains(&retry),
        "Retry-After {retry} is about a day"
    );
    assert_eq!(
        window_len(&app, "minute", OWNER).await,
        1,
        "the refusal recorded nothing"
    );
}
