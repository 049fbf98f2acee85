//! FIFO lanes (issue #18): `ordering`, `ordering_key` and `lane_on_failure` at create (shown only when
//! ordered), and `POST /admin/webhooks/subscriptions/{webhook_id}/lanes/skip`.

use delivery_model::delivery::DeliveryStatus;
use delivery_model::event::StreamEvent;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{EVENTS_GROUP, Shard};
use delivery_model::lane::Lane;
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::store::FanoutEntry;
use delivery_model::subscription::SubscriptionStatus;
use delivery_model::time::now_micros;
use fred::prelude::*;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestApp, subscription_body, user_token};

const EVENT: &str = "threat_model.created";

/// [`subscription_body`] with `fields` added.
fn body_with(fields: &Value) -> Value {
    let mut body = subscription_body();
    for (k, v) in fields.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

fn skip_path(id: impl std::fmt::Display) -> String {
    format!("/admin/webhooks/subscriptions/{id}/lanes/skip")
}

/// Creates a subscription with `fields` through the API and makes it active, as a verified one is.
async fn active(app: &TestApp, fields: Value) -> SubscriptionId {
    let created = app.create_subscription(body_with(&fields)).await;
    let id: SubscriptionId = created["id"].as_str().expect("id").parse().expect("uuid");
    assert!(
        app.store
            .set_subscription_status(
                id,
                SubscriptionStatus::PendingVerification,
                SubscriptionStatus::Active,
                now_micros(),
                true,
            )
            .await
            .expect("status")
    );
    id
}

/// An event about object `object` (the ordering key the tests use).
fn event_of(object: &str) -> StreamEvent {
    StreamEvent {
        event_type: EVENT.to_owned(),
        threat_model_id: None,
        object_id: Some(object.to_owned()),
        object_type: Some("threat_model".to_owned()),
        owner_id: None,
        timestamp: None,
        payload: format!(r#"{{"object_id":"{object}"}}"#),
        delivery_id: None,
        trace: None,
    }
}

/// Publishes one event per object in `objects` and reads them as a consumer (pending in the group until
/// fan-out acknowledges them); returns the events and their entry ids.
async fn publish(app: &TestApp, objects: &[&str]) -> Vec<(StreamEvent, String)> {
    let store = &app.store;
    store.ensure_events_group("0").await.expect("group");
    let mut published = Vec::new();
    for o in objects {
        let e = event_of(o);
        let id = store.publish_event(&e).await.expect("publish");
        published.push((e, id));
    }
    let reader = store.reader().await.expect("reader");
    reader
        .read_group(store.keys().events_stream(), EVENTS_GROUP, "c", 1000, 100)
        .await
        .expect("read");
    reader.quit().await;
    published
}

/// Fans out `entries` to `sub` in one batch, as the event-consumer does (then raises the lane watermark, as
/// it does on a cluster); returns the delivery ids in entry order.
async fn fan_out(
    app: &TestApp,
    sub: SubscriptionId,
    entries: &[(StreamEvent, String)],
) -> Vec<DeliveryId> {
    let store = &app.store;
    let ordering = store
        .get_subscription(sub)
        .await
        .expect("read")
        .expect("subscription")
        .ordering
        .expect("ordered");
    let subs = [sub];
    let lanes: Vec<[Option<Lane>; 1]> = entries
        .iter()
        .map(|(e, _)| [Some(ordering.lane_of(sub, e))])
        .collect();
    let batch: Vec<FanoutEntry<'_>> = entries
        .iter()
        .zip(&lanes)
        .map(|((_, id), lane)| FanoutEntry {
            entry_id: id,
            event_type: EVENT,
            envelope: r#"{"event_type":"threat_model.created","data":{}}"#,
            subscriptions: &subs,
            lanes: lane,
            trace: None,
        })
        .collect();
    store
        .fanout_batch(&batch, now_micros())
        .await
        .expect("fan-out");
    store.raise_lane_watermark().await.expect("watermark");
    entries
        .iter()
        .zip(&lanes)
        .map(|((_, id), [lane])| store.fanout_id(id, sub, lane.as_ref()))
        .collect()
}

async fn status(app: &TestApp, id: DeliveryId) -> DeliveryStatus {
    app.store
        .get_delivery(id)
        .await
        .expect("read")
        .expect("record")
        .status
}

/// The delivery messages on the queue (challenges left out).
async fn queued(app: &TestApp) -> Vec<DeliveryId> {
    app.stream_entries(&app.store.keys().queue_stream(Shard::ZERO))
        .await
        .into_iter()
        .filter_map(|(_, f)| match QueueMessage::decode(f.get(MESSAGE_FIELD)?) {
            Ok(QueueMessage::DeliveryV1 { delivery_id }) => Some(delivery_id),
            _ => None,
        })
        .collect()
}

/// Marks delivery `id` failed for good, as the worker's last attempt would.
async fn fail(app: &TestApp, id: DeliveryId) {
    let _: i64 = app
        .redis
        .hset(app.store.keys().delivery(id), ("status", "failed"))
        .await
        .expect("hset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_is_chosen_at_create_and_shown_only_when_ordered() {
    let app = TestApp::start().await;
    let mut cases = vec![
        (json!({}), json!({})),
        (json!({"ordering": "none"}), json!({})),
        (
            json!({"ordering": "subscription"}),
            json!({"ordering": "subscription", "lane_on_failure": "skip"}),
        ),
        (
            json!({"ordering": "subscription", "lane_on_failure": "block"}),
            json!({"ordering": "subscription", "lane_on_failure": "block"}),
        ),
    ];
    for (i, key) in ["threat_model_id", "object_id", "object_type", "owner_id"]
        .into_iter()
        .enumerate()
    {
        let on_failure = if i % 2 == 0 { "skip" } else { "block" };
        let mut input = json!({"ordering": "key", "ordering_key": key});
        if i < 2 {
            // Spelled out for the first two; the default (skip) for the others.
            input["lane_on_failure"] = json!(on_failure);
        }
        let on_failure = if i < 2 { on_failure } else { "skip" };
        cases.push((
            input,
            json!({"ordering": "key", "ordering_key": key, "lane_on_failure": on_failure}),
        ));
    }
    for (input, shown) in cases {
        let created = app.create_subscription(body_with(&input)).await;
        let got = app
            .get(&format!(
                "/admin/webhooks/subscriptions/{}",
                created["id"].as_str().expect("id")
            ))
            .admin()
            .send()
            .await
            .json();
        for view in [&created, &got] {
            for field in ["ordering", "ordering_key", "lane_on_failure"] {
                assert_eq!(
                    view.get(field),
                    shown.get(field),
                    "{input} → {field}: {view}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_fields_refuse_unknown_values_and_combinations_that_mean_nothing() {
    let app = TestApp::start().await;
    for (fields, description) in [
        (
            json!({"ordering": "fifo"}),
            "Error at \"/ordering\": value \"fifo\" is not one of the allowed values (none, subscription, key)",
        ),
        (
            json!({"ordering": "key\u{1}"}),
            "Error at \"/ordering\": value \"key \" is not one of the allowed values (none, subscription, key)",
        ),
        (
            json!({"ordering": "key"}),
            "Error at \"/ordering_key\": required when ordering is key",
        ),
        (
            json!({"ordering": "key", "ordering_key": "name"}),
            "Error at \"/ordering_key\": value \"name\" is not one of the allowed values (threat_model_id, object_id, object_type, owner_id)",
        ),
        (
            json!({"ordering_key": "object_id"}),
            "Error at \"/ordering_key\": only allowed when ordering is key",
        ),
        (
            json!({"ordering": "none", "ordering_key": "object_id"}),
            "Error at \"/ordering_key\": only allowed when ordering is key",
        ),
        (
            json!({"ordering": "subscription", "ordering_key": "object_id"}),
            "Error at \"/ordering_key\": only allowed when ordering is key",
        ),
        (
            json!({"lane_on_failure": "skip"}),
            "Error at \"/lane_on_failure\": only allowed when ordering is subscription or key",
        ),
        (
            json!({"ordering": "none", "lane_on_failure": "block"}),
            "Error at \"/lane_on_failure\": only allowed when ordering is subscription or key",
        ),
        (
            json!({"ordering": "subscription", "lane_on_failure": "wait"}),
            "Error at \"/lane_on_failure\": value \"wait\" is not one of the allowed values (skip, block)",
        ),
        (
            json!({"ordering": "key", "ordering_key": "object_id", "lane_on_failure": "Block"}),
            "Error at \"/lane_on_failure\": value \"Block\" is not one of the allowed values (skip, block)",
        ),
    ] {
        let res = app
            .post("/admin/webhooks/subscriptions")
            .admin()
            .json(&body_with(&fields))
            .send()
            .await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_input", description);
    }
    for malformed in [json!({"ordering": 1}), json!({"lane_on_failure": true})] {
        let res = app
            .post("/admin/webhooks/subscriptions")
            .admin()
            .json(&body_with(&malformed))
            .send()
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{malformed}");
        assert_eq!(res.error().0, "invalid_input", "{malformed}");
    }
    let list = app
        .get("/admin/webhooks/subscriptions")
        .admin()
        .send()
        .await
        .json();
    assert_eq!(list["total"], 0, "refused creates create nothing: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_moves_a_blocked_lane_past_its_failed_head() {
    let app = TestApp::start().await;
    let id = active(
        &app,
        json!({"ordering": "key", "ordering_key": "object_id", "lane_on_failure": "block"}),
    )
    .await;
    let path = skip_path(id);
    let skip = |key: &str| app.post(&path).admin().json(&json!({ "key": key })).send();
    let not_failed = |head: DeliveryId| {
        format!(
            "The lane's head, delivery {head}, is pending: only a failed head of a lane that blocks on failure can be skipped"
        )
    };

    // Nothing in the lane yet.
    skip("obj-1").await.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "The lane holds no delivery; nothing to skip",
    );

    // The first event is not fanned out yet: the lane of the second waits for it, nothing is out.
    let entries = publish(&app, &["obj-0", "obj-1", "obj-2", "obj-1", "obj-1"]).await;
    let ids = fan_out(&app, id, &entries[1..]).await;
    assert!(queued(&app).await.is_empty());
    skip("obj-1").await.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "The lane's first delivery is not sent yet (it waits until every earlier event is fanned out): only a failed head of a lane that blocks on failure can be skipped",
    );
    // Once it is, each lane sends its first delivery.
    fan_out(&app, id, &entries[..1]).await;
    let (d, other) = ([ids[0], ids[2], ids[3]], ids[1]);
    let q = queued(&app).await;
    assert!(
        q.contains(&d[0]) && q.contains(&other) && !q.contains(&d[1]) && !q.contains(&d[2]),
        "only each lane's first delivery goes out: {q:?}"
    );

    // The head is still pending: nothing to skip.
    skip("obj-1")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", &not_failed(d[0]));

    // It fails for good: the lane blocks until an administrator skips it.
    fail(&app, d[0]).await;
    let res = app
        .post(&path)
        .bearer(&user_token())
        .json(&json!({"key": "obj-1"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = skip("obj-1").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        res.json(),
        json!({"skipped_delivery_id": d[0].to_string(), "subscription_id": id.to_string(), "key": "obj-1"})
    );
    let q = queued(&app).await;
    assert!(
        q.contains(&d[1]) && !q.contains(&d[2]),
        "the next one is queued, and only it: {q:?}"
    );
    assert_eq!(
        status(&app, d[0]).await,
        DeliveryStatus::Failed,
        "a skipped head stays failed"
    );
    assert_eq!(status(&app, d[1]).await, DeliveryStatus::Pending);
    assert_eq!(
        status(&app, other).await,
        DeliveryStatus::Pending,
        "other lanes are untouched"
    );

    // The new head is pending: a second skip changes nothing.
    skip("obj-1")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", &not_failed(d[1]));
    assert!(!queued(&app).await.contains(&d[2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_refuses_unknown_and_unordered_subscriptions_and_keys_that_name_no_lane() {
    let app = TestApp::start().await;

    // Routing and access.
    let unknown = skip_path(SubscriptionId::new_v4());
    app.post(&unknown).admin().send().await.assert_error(
        StatusCode::NOT_FOUND,
        "subscription not found",
        "",
    );
    app.post(&skip_path("nope"))
        .admin()
        .send()
        .await
        .assert_error(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "Invalid UUID format for parameter: webhook_id",
        );
    let res = app.get(&unknown).admin().send().await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.header("allow"), Some("POST"));
    assert_eq!(
        app.post(&unknown).send().await.status,
        StatusCode::UNAUTHORIZED
    );

    // An unordered subscription has no lanes.
    let plain = app.create_subscription(subscription_body()).await;
    let res = app
        .post(&skip_path(plain["id"].as_str().expect("id")))
        .admin()
        .json(&json!({"key": "x"}))
        .send()
        .await;
    res.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        "The subscription is not ordered; it has no lanes",
    );

    // One lane per subscription: no key, or a null one.
    let single = app
        .create_subscription(body_with(
            &json!({"ordering": "subscription", "lane_on_failure": "block"}),
        ))
        .await;
    let path = skip_path(single["id"].as_str().expect("id"));
    let res = app
        .post(&path)
        .admin()
        .json(&json!({"key": "x"}))
        .send()
        .await;
    res.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_input",
        "Error at \"/key\": the subscription is ordered per subscription and has a single lane; leave key out",
    );
    for empty in [
        app.post(&path).admin().send().await,
        app.post(&path).admin().json(&json!({})).send().await,
        app.post(&path)
            .admin()
            .json(&json!({"key": null}))
            .send()
            .await,
    ] {
        empty.assert_error(
            StatusCode::CONFLICT,
            "conflict",
            "The lane holds no delivery; nothing to skip",
        );
    }

    // One lane per key value: the key is required, a string of at most 1000 characters.
    let keyed = app
        .create_subscription(body_with(
            &json!({"ordering": "key", "ordering_key": "threat_model_id", "lane_on_failure": "block"}),
        ))
        .await;
    let path = skip_path(keyed["id"].as_str().expect("id"));
    let required = "Error at \"/key\": required: the subscription is ordered by threat_model_id; give the value of the lane to skip";
    app.post(&path).admin().send().await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_input",
        required,
    );
    app.post(&path)
        .admin()
        .json(&json!({"key": null}))
        .send()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_input", required);
    app.post(&path)
        .admin()
        .json(&json!({"key": "x".repeat(1001)}))
        .send()
        .await
        .assert_error(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "Error at \"/key\": maximum string length is 1000",
        );
    for malformed in [json!({"key": 5}), json!({"lane": "x"}), json!("x")] {
        let res = app.post(&path).admin().json(&malformed).send().await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{malformed}");
        assert_eq!(res.error().0, "invalid_input", "{malformed}");
    }
    // The empty value is a lane too (events without the field).
    app.post(&path)
        .admin()
        .json(&json!({"key": ""}))
        .send()
        .await
        .assert_error(
            StatusCode::CONFLICT,
            "conflict",
            "The lane holds no delivery; nothing to skip",
        );
}
