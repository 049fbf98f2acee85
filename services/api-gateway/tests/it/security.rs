//! Issue #16: revoked tokens (TMI's `blacklist:token:<sha256>` key) and add-on delegation tokens.

use std::time::Duration;

use fred::interfaces::KeysInterface as _;
use hyper::{Method, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::harness::{TestApp, admin_token, token};

/// One route of each family: admin subscriptions and deliveries, quotas, add-ons, events, and the JWT mode
/// of `/webhook-deliveries/{id}` (an unknown id: 404 when authenticated, so a 401 proves the check).
fn route_families() -> Vec<(Method, String)> {
    let unknown = uuid::Uuid::new_v4();
    vec![
        (Method::GET, "/admin/webhooks/subscriptions".into()),
        (Method::GET, "/admin/webhooks/deliveries".into()),
        (Method::GET, "/admin/quotas/webhooks".into()),
        (Method::GET, "/addons".into()),
        (Method::POST, "/events".into()),
        (Method::GET, format!("/webhook-deliveries/{unknown}")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_401_on_every_route_family() {
    let app = TestApp::start().await;
    let revoked = admin_token();
    let event =
        json!({"event_type": "threat_model.created", "threat_model_id": uuid::Uuid::new_v4()});
    let mut before = Vec::new();
    for (method, path) in route_families() {
        let res = app
            .request(method.clone(), &path)
            .bearer(&revoked)
            .json(&event)
            .send()
            .await;
        before.push((path, res.status));
    }
    assert!(
        before.iter().all(|(_, s)| *s != StatusCode::UNAUTHORIZED),
        "the token works before it is revoked: {before:?}"
    );

    // What TMI writes on logout: the key named after the hex SHA-256 of the raw token (with a TTL).
    let key = app.store.keys().revoked_token(&revoked);
    assert!(
        key.starts_with("blacklist:token:"),
        "TMI's unprefixed key: {key}"
    );
    let () = app
        .redis
        .set(
            &key,
            "1",
            Some(fred::types::Expiration::EX(600)),
            None,
            false,
        )
        .await
        .expect("revoke");

    for (method, path) in route_families() {
        let res = app
            .request(method.clone(), &path)
            .bearer(&revoked)
            .json(&event)
            .send()
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            res.text()
        );
        assert_eq!(res.error().0, "unauthorized");
        assert!(
            res.header("www-authenticate")
                .is_some_and(|h| h.contains("token revoked")),
            "{method} {path}"
        );
    }
    // Another admin token (another `iat`/`jti`-free claim set: another `sub`) is unaffected.
    let other = token(
        Algorithm::HS256,
        &json!({"sub": "admin-2", "tmi_is_administrator": true,
                "exp": chrono::Utc::now().timestamp() + 600}),
    );
    assert_eq!(
        app.get("/admin/webhooks/subscriptions")
            .bearer(&other)
            .send()
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_check_fails_closed_when_redis_is_gone() {
    let mut app = TestApp::start_with(|s| s.redis.command_timeout_ms = 300).await;
    app.redis_server.kill();
    // An invalid body: without the check the handler would answer 400 without touching Redis.
    let res =
        test_support::wait::until("auth refuses with 503", Duration::from_secs(20), || async {
            let res = app.post("/events").admin().json(&json!({})).send().await;
            (res.status != StatusCode::BAD_REQUEST).then_some(res)
        })
        .await;
    res.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "Authentication service temporarily unavailable - please retry",
    );
    assert_eq!(res.header("retry-after"), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_token_is_never_an_admin() {
    let app = TestApp::start_with(|s| s.auth.admin_group = "ops-admins".into()).await;
    let exp = chrono::Utc::now().timestamp() + 60;
    // The invoker's own token: an admin through the configured group.
    let invoker = token(
        Algorithm::HS256,
        &json!({"sub": "u-1", "email": "u@example.com", "groups": ["ops-admins"], "exp": exp}),
    );
    let path = "/admin/webhooks/subscriptions";
    assert_eq!(
        app.get(path).bearer(&invoker).send().await.status,
        StatusCode::OK
    );
    // The token the worker sends to an add-on, as a worker that let the configured group through (or a
    // claim set a `delegation_key = jwt_secret` holder mints) would: groups and admin flag included.
    let delegated = token(
        Algorithm::HS256,
        &json!({"sub": "u-1", "email": "u@example.com",
                "name": "[Addon Delegation: a] U", "groups": ["ops-admins"],
                "tmi_is_administrator": true, "tmi_is_security_reviewer": false, "auth_time": 0,
                "delegation": {"addon_id": uuid::Uuid::new_v4(), "delivery_id": uuid::Uuid::new_v4(),
                               "threat_model_id": null},
                "iss": "http://localhost:8080", "aud": ["http://localhost:8080"],
                "exp": exp, "iat": exp - 60, "nbf": exp - 60}),
    );
    for (method, path) in [
        (Method::GET, path),
        (Method::GET, "/admin/webhooks/deliveries"),
        (Method::GET, "/admin/quotas/addons"),
    ] {
        app.request(method, path)
            .bearer(&delegated)
            .send()
            .await
            .assert_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Delegation tokens cannot perform administrative operations",
            );
    }
    // It still acts for its invoker where any user may.
    assert_eq!(
        app.get("/addons").bearer(&delegated).send().await.status,
        StatusCode::OK
    );
}
