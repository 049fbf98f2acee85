//! The loss budget at the API (issue #14): with `redis.wait_replicas = 1`, acknowledged writes answer 2xx
//! only once a real replica has them, and 503 with `Retry-After` and TMI's error body when it does not
//! confirm; `Idempotency-Key` makes retries of `POST /events` and invoke create nothing twice.

use fred::prelude::*;
use hyper::StatusCode;
use serde_json::{Value, json};
use test_support::replica::ReplicaServer;

use crate::harness::{TestApp, admin_token, user_token};

const TM: &str = "0f6c0000-0000-4000-8000-000000000001";

fn event_body() -> Value {
    json!({"event_type": "threat_model.updated", "threat_model_id": TM, "object_id": TM,
        "object_type": "threat_model"})
}

/// A gateway waiting for one replica (1 s at most), and that replica.
async fn waiting_app() -> (TestApp, ReplicaServer) {
    let app = TestApp::start_with(|s| {
        s.redis.wait_replicas = 1;
        s.redis.wait_timeout_ms = 1000;
    })
    .await;
    let replica = ReplicaServer::start(&app.redis_server);
    (app, replica)
}

async fn publish(app: &TestApp, key: Option<&str>, body: &Value) -> crate::harness::Resp {
    let mut req = app.post("/events").bearer(&admin_token()).json(body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    req.send().await
}

async fn events_len(app: &TestApp) -> usize {
    app.stream_entries(app.store.keys().events_stream())
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_replica_up_acknowledged_writes_are_on_it() {
    let (app, replica) = waiting_app().await;
    let on_replica = Client::new(
        Config::from_url(&replica.url()).expect("url"),
        None,
        None,
        None,
    );
    on_replica.init().await.expect("replica client");

    let res = publish(&app, None, &event_body()).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let id = res.json()["id"].as_str().expect("id").to_owned();
    let got: Vec<(String, Vec<(String, String)>)> = on_replica
        .xrange(app.store.keys().events_stream(), &id, &id, None)
        .await
        .expect("xrange");
    assert_eq!(got.len(), 1, "acknowledged entry not on the replica");

    let sub = app
        .create_subscription(
            json!({"name": "s", "url": "https://example.com/hook", "events": ["*"]}),
        )
        .await;
    let sub_id = sub["id"].as_str().expect("id");
    let exists: i64 = on_replica
        .exists(app.store.keys().subscription(sub_id.parse().expect("uuid")))
        .await
        .expect("exists");
    assert_eq!(exists, 1, "created subscription not on the replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_replica_down_writes_answer_503_and_a_keyed_retry_creates_one_event() {
    let (app, mut replica) = waiting_app().await;
    replica.kill();

    let res = publish(&app, Some("retry-me-1"), &event_body()).await;
    res.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "The write was not yet confirmed by enough Redis replicas - please retry; send an Idempotency-Key to avoid a duplicate",
    );
    assert_eq!(res.header("retry-after"), Some("2"));
    // The write is on the primary; what the caller did not get is the guarantee.
    assert_eq!(events_len(&app).await, 1);
    // Other acknowledged writes answer the same way.
    let res = app
        .post("/admin/webhooks/subscriptions")
        .bearer(&admin_token())
        .json(&json!({"name": "s", "url": "https://example.com/hook", "events": ["*"]}))
        .send()
        .await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    assert_eq!(res.header("retry-after"), Some("2"));

    // Still down: the retry is not confirmed either, and creates nothing.
    let res = publish(&app, Some("retry-me-1"), &event_body()).await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        res.text()
    );
    assert_eq!(events_len(&app).await, 1);

    // A replica is back: the retry gets the first answer, and the stream still holds one entry.
    let _replica = ReplicaServer::start(&app.redis_server);
    let res = publish(&app, Some("retry-me-1"), &event_body()).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(res.header("idempotent-replayed"), Some("true"));
    let entries = app.stream_entries(app.store.keys().events_stream()).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(res.json()["id"], json!(entries[0].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_events_replay_per_caller_and_refuse_another_body() {
    let app = TestApp::start().await;
    let first = publish(&app, Some("k-1"), &event_body()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = publish(&app, Some("k-1"), &event_body()).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    assert_eq!(events_len(&app).await, 1);

    let mut other = event_body();
    other["object_id"] = json!("another");
    publish(&app, Some("k-1"), &other).await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "This Idempotency-Key was used with a different request (body or target)",
    );
    // Without a key, every call appends.
    assert_eq!(
        publish(&app, None, &event_body()).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(events_len(&app).await, 2);

    for bad in ["", &"x".repeat(256), "caf\u{e9}"] {
        let res = app
            .post("/events")
            .bearer(&admin_token())
            .json(&event_body())
            .header("idempotency-key", bad)
            .send()
            .await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}: {}",
            res.text()
        );
        assert_eq!(res.error().0, "invalid_input");
    }
    assert_eq!(events_len(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_invoke_retry_creates_one_invocation() {
    let app = TestApp::start().await;
    let sub = app
        .create_subscription(
            json!({"name": "s", "url": "https://example.com/hook", "events": ["*"]}),
        )
        .await;
    let res = app
        .post("/addons")
        .bearer(&admin_token())
        .json(&json!({"name": "scan", "webhook_id": sub["id"]}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let addon = res.json()["id"].as_str().expect("id").to_owned();
    let invoke = |key: &'static str, tm: &'static str| {
        app.post(&format!("/addons/{addon}/invoke"))
            .bearer(&user_token())
            .json(&json!({"threat_model_id": tm}))
            .header("idempotency-key", key)
            .send()
    };
    let first = invoke("inv-1", TM).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
    // Within TMI's 5-s duplicate window a repeat without the key would be a 429; with it, the first answer.
    let again = invoke("inv-1", TM).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["delivery_id"], first.json()["delivery_id"]);
    let invoked = app
        .stream_entries(app.store.keys().events_stream())
        .await
        .into_iter()
        .filter(|(_, f)| f.get("event_type").map(String::as_str) == Some("addon.invoked"))
        .count();
    assert_eq!(invoked, 1);
    let other = invoke("inv-1", "0f6c0000-0000-4000-8000-000000000002").await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.text()
    );
}
