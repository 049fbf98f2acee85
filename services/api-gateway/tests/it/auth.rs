//! Bearer authentication and the admin requirement.

use hyper::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::harness::{SECRET, TestApp, admin_token, token, user_token, user_token_with};

const PATH: &str = "/admin/webhooks/subscriptions";

fn www_authenticate_reason(res: &crate::harness::Resp) -> String {
    let h = res
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate on {}", res.status));
    let prefix = r#"Bearer realm="tmi", error="invalid_token", error_description=""#;
    assert!(h.starts_with(prefix), "{h}");
    h[prefix.len()..].trim_end_matches('"').to_owned()
}

fn assert_401(res: &crate::harness::Resp) -> String {
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    assert_eq!(
        res.error(),
        (
            "unauthorized".to_owned(),
            "Authentication required".to_owned()
        )
    );
    www_authenticate_reason(res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_malformed_token_is_401_with_www_authenticate() {
    let app = TestApp::start().await;
    assert_eq!(
        assert_401(&app.get(PATH).send().await),
        "missing bearer token"
    );
    assert_eq!(
        assert_401(
            &app.get(PATH)
                .header("authorization", "Basic YTpi")
                .send()
                .await
        ),
        "malformed Authorization header"
    );
    assert_eq!(
        assert_401(&app.get(PATH).bearer("garbage").send().await),
        "invalid token"
    );
    assert_eq!(
        assert_401(
            &app.post("/events")
                .json(&json!({"event_type": "x"}))
                .send()
                .await
        ),
        "missing bearer token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_algorithm_expired_and_tampered_tokens_are_rejected() {
    let app = TestApp::start().await;
    let future = chrono::Utc::now().timestamp() + 600;
    let hs384 = token(
        Algorithm::HS384,
        &json!({"sub": "a", "tmi_is_administrator": true, "exp": future}),
    );
    assert_eq!(
        assert_401(&app.get(PATH).bearer(&hs384).send().await),
        "unexpected signing algorithm"
    );

    let expired = token(
        Algorithm::HS256,
        &json!({"sub": "a", "tmi_is_administrator": true, "exp": future - 1200}),
    );
    assert_eq!(
        assert_401(&app.get(PATH).bearer(&expired).send().await),
        "token expired"
    );

    let early = token(
        Algorithm::HS256,
        &json!({"sub": "a", "tmi_is_administrator": true, "exp": future, "nbf": future - 60}),
    );
    assert_eq!(
        assert_401(&app.get(PATH).bearer(&early).send().await),
        "token not yet valid"
    );

    // An admin token's header and claims with another token's signature.
    let admin = admin_token();
    let user = user_token();
    let (signed, _) = admin.rsplit_once('.').expect("jwt");
    let (_, other_signature) = user.rsplit_once('.').expect("jwt");
    let tampered = format!("{signed}.{other_signature}");
    assert_eq!(
        assert_401(&app.get(PATH).bearer(&tampered).send().await),
        "invalid token signature"
    );

    let other_key =
        jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-entirely").expect("key");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &json!({"sub": "a", "tmi_is_administrator": true, "exp": future}),
        &other_key,
    )
    .expect("encode");
    assert_ne!(SECRET.as_bytes(), b"some-other-secret-entirely");
    assert_eq!(
        assert_401(&app.get(PATH).bearer(&forged).send().await),
        "invalid token signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_get_403_on_admin_routes() {
    let app = TestApp::start().await;
    let user = user_token();
    for res in [
        app.get(PATH).bearer(&user).send().await,
        app.post(PATH)
            .bearer(&user)
            .json(&crate::harness::subscription_body())
            .send()
            .await,
        app.get("/admin/webhooks/deliveries")
            .bearer(&user)
            .send()
            .await,
    ] {
        res.assert_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Administrator access required",
        );
    }
    let not_admin = user_token_with(json!({"tmi_is_administrator": false, "groups": ["users"]}));
    assert_eq!(
        app.get(PATH).bearer(&not_admin).send().await.status,
        StatusCode::FORBIDDEN
    );
    let list = app.get(PATH).bearer(&admin_token()).send().await.json();
    assert_eq!(list["total"], 0, "the refused create stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_by_group_membership() {
    let app = TestApp::start().await;
    let by_group = user_token_with(json!({"groups": ["staff", "administrators"]}));
    let res = app
        .post(PATH)
        .bearer(&by_group)
        .json(&crate::harness::subscription_body())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.json()["owner_id"], "user-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_checked_when_configured() {
    let app = TestApp::start_with(|s| {
        s.auth.jwt_issuer = "https://tmi.example".into();
        s.auth.jwt_audience = "hookline".into();
    })
    .await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = token(
        Algorithm::HS256,
        &json!({"sub": "a", "tmi_is_administrator": true, "exp": exp, "iss": "https://tmi.example", "aud": ["hookline"]}),
    );
    assert_eq!(
        app.get(PATH).bearer(&good).send().await.status,
        StatusCode::OK
    );
    let wrong_iss = token(
        Algorithm::HS256,
        &json!({"sub": "a", "tmi_is_administrator": true, "exp": exp, "iss": "https://evil.example", "aud": "hookline"}),
    );
    assert_eq!(
        assert_401(&app.get(PATH).bearer(&wrong_iss).send().await),
        "invalid token issuer"
    );
    let no_aud = token(
        Algorithm::HS256,
        &json!({"sub": "a", "tmi_is_administrator": true, "exp": exp, "iss": "https://tmi.example"}),
    );
    assert_eq!(
        assert_401(&app.get(PATH).bearer(&no_aud).send().await),
        "token has no aud claim"
    );
}

/// `/webhook-deliveries/{id}[/status]` authenticate before they look the id up: without the secret or a
/// token, an unknown id answers 401, never 404 (which would say whether an id exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivery_routes_do_not_reveal_unknown_ids() {
    let app = TestApp::start().await;
    let unknown = uuid::Uuid::new_v4();
    let status_path = format!("/webhook-deliveries/{unknown}/status");
    let body = json!({"status": "completed"});
    let anonymous = app.post(&status_path).json(&body).send().await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.text()
    );
    let forged = app
        .post(&status_path)
        .header("x-webhook-signature", &format!("sha256={}", "0".repeat(64)))
        .json(&body)
        .send()
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.text());
    assert_eq!(forged.error().1, "Invalid webhook signature");
    let read_path = format!("/webhook-deliveries/{unknown}");
    let signed_read = app
        .get(&read_path)
        .header("x-webhook-signature", &format!("sha256={}", "0".repeat(64)))
        .send()
        .await;
    assert_eq!(
        signed_read.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        signed_read.text()
    );
    assert_eq!(
        app.get(&read_path).send().await.status,
        StatusCode::UNAUTHORIZED
    );
    // An authenticated caller still gets the honest 404.
    assert_eq!(
        app.get(&read_path)
            .bearer(&admin_token())
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
