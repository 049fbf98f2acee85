//! `POST /events`

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, admin_token, user_token, user_token_with};

const TM: &str = "0f6c0000-0000-4000-8000-000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_tmi_entry_to_the_input_stream() {
    let app = TestApp::start().await;
    let body = json!({
        "event_type": "threat_model.updated",
        "threat_model_id": TM,
        "object_id": TM,
        "object_type": "threat_model",
        "owner_id": "5b1e0000-0000-4000-8000-000000000002",
        "timestamp": "2026-04-01T12:00:00.123456789Z",
        "data": {"name": "Payments TM", "description": "Updated"}
    });
    let res = app
        .post("/events")
        .bearer(&admin_token())
        .json(&body)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let id = res.json()["id"].as_str().expect("entry id").to_owned();

    let entries = app.stream_entries(app.store.keys().events_stream()).await;
    assert_eq!(entries.len(), 1);
    let (entry_id, fields) = &entries[0];
    assert_eq!(entry_id, &id);
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "event_type",
            "object_id",
            "object_type",
            "owner_id",
            "payload",
            "threat_model_id",
            "timestamp"
        ]
    );
    assert_eq!(fields["event_type"], "threat_model.updated");
    assert_eq!(fields["threat_model_id"], TM);
    assert_eq!(fields["object_id"], TM);
    assert_eq!(fields["object_type"], "threat_model");
    assert_eq!(fields["owner_id"], "5b1e0000-0000-4000-8000-000000000002");
    assert_eq!(
        fields["timestamp"], "2026-04-01T12:00:00Z",
        "second precision"
    );
    assert_eq!(
        fields["payload"],
        format!(
            r#"{{"event_type":"threat_model.updated","threat_model_id":"{TM}","object_id":"{TM}","object_type":"threat_model","owner_id":"5b1e0000-0000-4000-8000-000000000002","timestamp":"2026-04-01T12:00:00.123456789Z","data":{{"description":"Updated","name":"Payments TM"}}}}"#
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_event_gets_defaults() {
    let app = TestApp::start().await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let res = app
        .post("/events")
        .bearer(&admin_token())
        .json(&json!({"event_type": "team.created"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    let entries = app.stream_entries(app.store.keys().events_stream()).await;
    let fields = &entries[0].1;
    assert_eq!(fields["threat_model_id"], "");
    assert_eq!(fields["owner_id"], "");
    let payload: Value = serde_json::from_str(&fields["payload"]).expect("payload");
    assert!(
        payload.get("threat_model_id").is_none() && payload.get("data").is_none(),
        "{payload}"
    );
    let ts =
        chrono::DateTime::parse_from_rfc3339(payload["timestamp"].as_str().expect("timestamp"))
            .expect("rfc3339");
    assert!(
        ts >= before && ts <= chrono::Utc::now(),
        "defaults to now: {ts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_admin_or_the_events_scope() {
    let app = TestApp::start().await;
    let body = json!({"event_type": "team.created"});
    let res = app
        .post("/events")
        .bearer(&user_token())
        .json(&body)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.error().0, "forbidden");
    let producer = user_token_with(json!({"scope": "openid hookline:events:write"}));
    assert_eq!(
        app.post("/events")
            .bearer(&producer)
            .json(&body)
            .send()
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.stream_entries(app.store.keys().events_stream())
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_audit_events_need_an_admin() {
    let app = TestApp::start().await;
    let body = json!({"event_type": "system_audit.admin_write"});
    let producer = user_token_with(json!({"scope": "openid hookline:events:write"}));
    let res = app
        .post("/events")
        .bearer(&producer)
        .json(&body)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    assert_eq!(res.error().0, "forbidden");
    assert!(
        app.stream_entries(app.store.keys().events_stream())
            .await
            .is_empty(),
        "nothing appended"
    );
    let res = app
        .post("/events")
        .bearer(&admin_token())
        .json(&body)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_refused_and_not_appended() {
    let app = TestApp::start().await;
    for bad in [
        json!({"event_type": "addon.invoked"}),
        json!({"event_type": ""}),
        json!({"object_id": "x"}),
        json!({"event_type": "team.created", "extra": true}),
        json!({"event_type": "team.created", "data": "text"}),
        json!({"event_type": "team.created", "timestamp": "01/04/2026"}),
        json!({"event_type": "team\ncreated"}),
    ] {
        let res = app
            .post("/events")
            .bearer(&admin_token())
            .json(&bad)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.text());
    }
    let res = app
        .post("/events")
        .bearer(&admin_token())
        .raw("text/plain", "event_type=x")
        .send()
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        app.stream_entries(app.store.keys().events_stream())
            .await
            .is_empty()
    );
}
