//! `/admin/webhooks/subscriptions[/{webhook_id}[/test]]`

use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::Shard;
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{now_micros, parse_rfc3339};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADMIN_ID, TestApp, subscription_body};

const TM: &str = "660e8400-e29b-41d4-a716-446655440001";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

fn is_hex64(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

async fn queue_messages(app: &TestApp) -> Vec<QueueMessage> {
    app.stream_entries(&app.store.keys().queue_stream(Shard::ZERO))
        .await
        .into_iter()
        .map(|(_, f)| QueueMessage::decode(&f[MESSAGE_FIELD]).expect("queue message"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_201_with_secret_and_enqueues_the_challenge() {
    let app = TestApp::start().await;
    let body = app.create_subscription(subscription_body()).await;

    let id: SubscriptionId = body["id"].as_str().expect("id").parse().expect("uuid id");
    assert_eq!(id.0.get_version_num(), 4);
    assert_eq!(body["owner_id"], ADMIN_ID);
    assert_eq!(body["name"], "Test hook");
    assert_eq!(body["url"], "https://example.com/hook");
    assert_eq!(body["events"], json!(["threat_model.created"]));
    assert_eq!(body["status"], "pending_verification");
    assert_eq!(body["challenges_sent"], 0);
    assert_eq!(body["publication_failures"], 0);
    assert!(is_hex64(&body["secret"]), "generated secret: {body}");
    assert!(parse_rfc3339(body["created_at"].as_str().expect("created_at")).is_some());
    assert_eq!(body["created_at"], body["modified_at"]);
    assert!(
        body.get("threat_model_id").is_none() && body.get("last_successful_use").is_none(),
        "{body}"
    );

    let stored = app
        .store
        .get_subscription(id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.secret.as_deref(), body["secret"].as_str());
    assert!(
        is_hex64(&json!(stored.challenge)),
        "challenge token: {:?}",
        stored.challenge
    );
    assert_eq!(stored.status, SubscriptionStatus::PendingVerification);
    assert_eq!(
        queue_messages(&app).await,
        vec![QueueMessage::ChallengeV1 {
            subscription_id: id,
            trace: None,
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_keeps_a_supplied_secret_and_threat_model() {
    let app = TestApp::start().await;
    let mut body = subscription_body();
    body["secret"] = json!("my-own-secret-0123");
    body["threat_model_id"] = json!(TM.to_uppercase());
    let created = app.create_subscription(body).await;
    assert_eq!(created["secret"], "my-own-secret-0123");
    assert_eq!(created["threat_model_id"], TM, "normalised to lower case");

    let mut body = subscription_body();
    body["threat_model_id"] = json!("");
    let created = app.create_subscription(body).await;
    assert!(
        created.get("threat_model_id").is_none(),
        "empty threat model means all: {created}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_the_subscription_without_its_secret() {
    let app = TestApp::start().await;
    let created = app.create_subscription(subscription_body()).await;
    let id = created["id"].as_str().expect("id");
    let res = app
        .get(&format!("/admin/webhooks/subscriptions/{id}"))
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let got = res.json();
    assert!(got.get("secret").is_none(), "{got}");
    let mut expected = created.clone();
    expected.as_object_mut().expect("object").remove("secret");
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_newest_first_with_filtered_total() {
    let app = TestApp::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = subscription_body();
        body["name"] = json!(format!("hook {i}"));
        if i % 2 == 1 {
            body["threat_model_id"] = json!(TM);
        }
        ids.push(
            app.create_subscription(body).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
        // Creation times are millisecond scores: keep the order unambiguous.
        let before = now_micros();
        test_support::wait::until("clock moved", std::time::Duration::from_secs(1), || async {
            (now_micros() > before + 2_000).then_some(())
        })
        .await;
    }

    let res = app
        .get("/admin/webhooks/subscriptions")
        .admin()
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let all = res.json();
    assert_eq!(all["total"], 5);
    assert_eq!(all["limit"], 20);
    assert_eq!(all["offset"], 0);
    let listed: Vec<&str> = all["subscriptions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert!(
        all["subscriptions"]
            .as_array()
            .expect("array")
            .iter()
            .all(|s| s.get("secret").is_none())
    );

    let page = app
        .get("/admin/webhooks/subscriptions?limit=2&offset=1")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(page["total"], 5);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 1);
    let listed: Vec<&str> = page["subscriptions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, vec![ids[3].as_str(), ids[2].as_str()]);

    let tail = app
        .get("/admin/webhooks/subscriptions?offset=4")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(tail["subscriptions"].as_array().expect("array").len(), 1);

    let filtered = app
        .get(&format!(
            "/admin/webhooks/subscriptions?threat_model_id={TM}"
        ))
        .admin()
        .send()
        .await
        .json();
    assert_eq!(
        filtered["total"], 2,
        "total of the filtered set, not of all: {filtered}"
    );
    let listed: Vec<&str> = filtered["subscriptions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, vec![ids[3].as_str(), ids[1].as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_answers_204_then_404() {
    let app = TestApp::start().await;
    let id = app.create_subscription(subscription_body()).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/admin/webhooks/subscriptions/{id}");

    let res = app.delete(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.body.is_empty());

    let res = app.get(&path).admin().send().await;
    res.assert_error(StatusCode::NOT_FOUND, "subscription not found", "");
    assert_eq!(
        app.delete(&path).admin().send().await.status,
        StatusCode::NOT_FOUND
    );
    let list = app
        .get("/admin/webhooks/subscriptions")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(list["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nil_uuid_is_404_and_bad_uuid_is_400() {
    let app = TestApp::start().await;
    for (method, suffix) in [
        (hyper::Method::GET, ""),
        (hyper::Method::DELETE, ""),
        (hyper::Method::POST, "/test"),
    ] {
        let res = app
            .request(
                method.clone(),
                &format!("/admin/webhooks/subscriptions/{NIL}{suffix}"),
            )
            .admin()
            .send()
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {suffix}");
        assert_eq!(res.error().0, "subscription not found");

        let res = app
            .request(
                method.clone(),
                &format!("/admin/webhooks/subscriptions/not-a-uuid{suffix}"),
            )
            .admin()
            .send()
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{method} {suffix}");
        assert_eq!(
            res.error(),
            (
                "invalid_id".to_owned(),
                "Invalid UUID format for parameter: webhook_id".to_owned()
            )
        );
    }
}

fn pinned_subscription() -> Subscription {
    let now = now_micros();
    Subscription {
        secret: Some("pinned-secret-0123456789".into()),
        operator_pinned: true,
        ..Subscription::new(
            "00000000-0000-0000-0000-000000000001",
            "Operator Audit Alert Sink",
            "https://alerts.internal.example/sink",
            vec!["system_audit.admin_write".into()],
            SubscriptionStatus::Active,
            now,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_pinned_subscriptions_are_redacted_and_read_only() {
    let app = TestApp::start().await;
    let sub = pinned_subscription();
    assert!(app.store.create_subscription(&sub).await.expect("create"));
    let path = format!("/admin/webhooks/subscriptions/{}", sub.id);

    let got = app.get(&path).admin().send().await.json();
    assert_eq!(got["url"], "(operator-pinned)");
    assert!(got.get("secret").is_none());

    for res in [
        app.delete(&path).admin().send().await,
        app.post(&format!("{path}/test")).admin().send().await,
    ] {
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert!(
            res.error()
                .0
                .starts_with("operator-pinned subscription is managed by server configuration")
        );
    }
    assert!(
        app.store
            .get_subscription(sub.id)
            .await
            .expect("read")
            .is_some(),
        "still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_endpoint_queues_a_pending_delivery() {
    let app = TestApp::start().await;
    let sub = app.create_subscription(subscription_body()).await;
    let sub_id: SubscriptionId = sub["id"].as_str().expect("id").parse().expect("uuid");
    let path = format!("/admin/webhooks/subscriptions/{sub_id}/test");

    let res = app.post(&path).admin().send().await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let body = res.json();
    assert_eq!(body["status"], "pending");
    assert_eq!(
        body["message"],
        "Test delivery created and queued for sending"
    );
    let delivery_id: DeliveryId = body["delivery_id"]
        .as_str()
        .expect("delivery_id")
        .parse()
        .expect("uuid");
    assert_eq!(delivery_id.0.get_version_num(), 7);

    let record = app
        .store
        .get_delivery(delivery_id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(record.subscription_id, sub_id);
    assert_eq!(record.status.as_str(), "pending");
    assert_eq!(
        record.event_type, "threat_model.created",
        "the subscription's first event"
    );
    assert_eq!(record.attempts, 0);
    let payload: Value = serde_json::from_str(&record.payload).expect("payload JSON");
    assert_eq!(payload["event_type"], "threat_model.created");
    assert_eq!(payload["object_type"], "webhook_test");
    assert_eq!(payload["object_id"], sub_id.to_string());
    assert_eq!(
        payload["data"],
        json!({"message": "This is a test webhook delivery", "subscription_id": sub_id.to_string()})
    );
    assert!(parse_rfc3339(payload["timestamp"].as_str().expect("timestamp")).is_some());
    assert!(
        record
            .payload
            .starts_with(r#"{"event_type":"threat_model.created","timestamp":"#),
        "envelope key order: {}",
        record.payload
    );
    assert!(
        queue_messages(&app)
            .await
            .contains(&QueueMessage::DeliveryV1 { delivery_id })
    );

    let res = app
        .post(&path)
        .admin()
        .json(&json!({"event_type": "diagram.updated"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    let id: DeliveryId = res.json()["delivery_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    assert_eq!(
        app.store
            .get_delivery(id)
            .await
            .expect("read")
            .expect("stored")
            .event_type,
        "diagram.updated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_endpoint_defaults_and_refusals() {
    let app = TestApp::start().await;
    let mut body = subscription_body();
    body["events"] = json!(["*"]);
    let sub = app.create_subscription(body).await;
    let path = format!(
        "/admin/webhooks/subscriptions/{}/test",
        sub["id"].as_str().expect("id")
    );

    let res = app.post(&path).admin().send().await;
    let id: DeliveryId = res.json()["delivery_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    assert_eq!(
        app.store
            .get_delivery(id)
            .await
            .expect("read")
            .expect("stored")
            .event_type,
        "webhook.test"
    );

    for bad in [
        json!({"event_type": "addon.invoked"}),
        json!({"event_type": "no.such"}),
        json!({"event_type": "x", "y": 1}),
    ] {
        let res = app.post(&path).admin().json(&bad).send().await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.error().0, "invalid_input");
    }
    let list = app
        .get("/admin/webhooks/deliveries")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(list["total"], 1, "refused tests created nothing");
}
