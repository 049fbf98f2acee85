//! Receivers' status callbacks and delivery reads end to end (issue #3): signed progress to the final
//! outcome, refusals that leave the record as it was, the early-`completed` race, the dual-auth read and the
//! admin list's filters.

use delivery_model::keys::Shard;
use std::time::Duration;

use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{format_micros, now_micros};
use fred::prelude::*;
use serde_json::{Value, json};
use test_support::receiver::{Receiver, Response, signature};
use test_support::wait;

use crate::harness::{On, Stack, WAIT, parse_id, user};

const TM: &str = "0f6c0000-0000-4000-8000-000000000001";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

fn invoke_body() -> String {
    format!(r#"{{"threat_model_id":"{TM}","data":{{"k":"v"}}}}"#)
}

/// An add-on on `sub`, invoked once by `who`; returns the delivery id.
async fn invoked(stack: &Stack, sub: SubscriptionId, who: &str) -> String {
    let addon = stack
        .create_addon(json!({"name": "A", "webhook_id": sub}))
        .await;
    let a = stack
        .invoke(
            &user(who),
            addon["id"].as_str().expect("id"),
            &invoke_body(),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["delivery_id"]
        .as_str()
        .expect("delivery_id")
        .to_owned()
}

async fn admin_view(stack: &Stack, id: &str) -> Value {
    let (status, v) = stack
        .api("GET", &format!("/admin/webhooks/deliveries/{id}"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn async_receiver_reports_progress_then_completes() {
    async_receiver_reports_progress_then_completes_on(On::Single).await;
}

#[tokio::test]
async fn async_receiver_reports_progress_then_completes_on_a_cluster() {
    async_receiver_reports_progress_then_completes_on(On::Cluster).await;
}

async fn async_receiver_reports_progress_then_completes_on(on: On) {
    let stack = Stack::start_for(on, &[]).await;
    let rx = Receiver::start().await;
    rx.set_async(true);
    let (sub, secret) = stack
        .verified_subscription(&rx, &["addon.invoked"], None)
        .await;
    let d = invoked(&stack, sub, "alice").await;
    stack
        .wait_delivery(&d, "2xx + X-TMI-Callback: async", |r| {
            r.status == DeliveryStatus::InProgress
        })
        .await;
    let redis = stack.redis_client().await;
    let k = stack.keys();
    let _: i64 = redis
        .hset(k.subscription(sub), ("timeout_count", "3"))
        .await
        .expect("hset");
    let activity = |redis: &Client| {
        let redis = redis.clone();
        let d = d.clone();
        let key = k.deliveries_activity(k.shard_of(parse_id(&d)));
        async move {
            redis
                .zscore::<Option<f64>, _, _>(key, d)
                .await
                .expect("zscore")
        }
    };
    let first = activity(&redis)
        .await
        .expect("in_progress deliveries are tracked for cleanup");
    assert!(
        (first - now_micros() as f64).abs() < 60e6,
        "scored in microseconds: {first}"
    );

    let a = stack
        .callback(
            &d,
            &secret,
            r#"{"status":"in_progress","status_percent":25,"status_message":"Step 1 complete"}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (
            a.body["id"].clone(),
            a.body["status"].clone(),
            a.body["status_percent"].clone()
        ),
        (json!(d), json!("in_progress"), json!(25))
    );
    let keys: Vec<&String> = a.body.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        ["id", "status", "status_percent", "status_updated_at"]
    );
    let v = admin_view(&stack, &d).await;
    assert_eq!(
        (
            v["status"].clone(),
            v["status_percent"].clone(),
            v["status_message"].clone()
        ),
        (json!("in_progress"), json!(25), json!("Step 1 complete"))
    );
    let second = activity(&redis).await.expect("still tracked");
    assert!(second > first, "last activity moved: {first} -> {second}");
    let a = stack
        .callback(
            &d,
            &secret,
            r#"{"status":"in_progress","status_percent":75}"#,
        )
        .await;
    assert_eq!(a.status, 200);
    let v = admin_view(&stack, &d).await;
    assert_eq!(
        (v["status_percent"].clone(), v["status_message"].clone()),
        (json!(75), json!("Step 1 complete"))
    );

    // Refusals leave the record alone.
    let forged = stack
        .callback(&d, "not-the-secret-0123456789", r#"{"status":"completed"}"#)
        .await;
    assert_eq!(forged.status, 401);
    assert_eq!(
        forged.body,
        json!({"error": "unauthorized", "error_description": "Invalid webhook signature"})
    );
    assert!(
        forged
            .header("www-authenticate")
            .is_some_and(|h| h.contains("Invalid webhook signature"))
    );
    let unsigned = stack
        .send(
            None,
            "POST",
            &format!("/webhook-deliveries/{d}/status"),
            &[],
            r#"{"status":"completed"}"#,
        )
        .await;
    assert_eq!(
        (unsigned.status, unsigned.body["error_description"].clone()),
        (401, json!("Missing webhook signature"))
    );
    let blank = stack
        .send(
            None,
            "POST",
            &format!("/webhook-deliveries/{d}/status"),
            &[("x-webhook-signature", "")],
            r#"{"status":"completed"}"#,
        )
        .await;
    assert_eq!(
        (blank.status, blank.body["error_description"].clone()),
        (401, json!("Missing webhook signature"))
    );
    // A signature over other bytes than those sent is no signature.
    let sig = signature(&secret, br#"{"status":"completed"}"#);
    let tampered = stack
        .send(
            None,
            "POST",
            &format!("/webhook-deliveries/{d}/status"),
            &[("x-webhook-signature", &sig)],
            r#"{"status":"completed" }"#,
        )
        .await;
    assert_eq!(tampered.status, 401);
    for bad in [
        r#"{"status":"done"}"#,
        r#"{"status":"completed","status_percent":101}"#,
        r#"{"status":"completed","extra":1}"#,
    ] {
        assert_eq!(stack.callback(&d, &secret, bad).await.status, 400, "{bad}");
    }
    let r = stack.delivery(&d).await;
    assert_eq!(
        (r.status, r.status_percent),
        (DeliveryStatus::InProgress, 75)
    );

    let done = stack
        .callback(&d, &secret, r#"{"status":"completed"}"#)
        .await;
    assert_eq!(done.status, 200);
    assert_eq!(
        (
            done.body["status"].clone(),
            done.body["status_percent"].clone()
        ),
        (json!("delivered"), json!(100))
    );
    let r = stack.delivery(&d).await;
    assert_eq!(
        (r.status, r.status_percent),
        (DeliveryStatus::Delivered, 100)
    );
    assert!(r.delivered_at.is_some());
    // The completion is the delivery's end: the gateway observes it in the SLO histogram (progress
    // callbacks did not), under the worker's name, so the SLO's sums see it.
    let metrics = format!("http://{}/metrics", stack.api.ops_addr());
    let (status, _, text) = test_support::http::request("GET", &metrics, &[], "").await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.lines()
            .any(|l| l == "hookline_worker_event_to_delivered_seconds_count 1"),
        "{text}"
    );
    assert_eq!(
        activity(&redis).await,
        None,
        "a terminal delivery leaves the activity set"
    );
    let in_delivered: Option<f64> = redis
        .zscore(
            k.deliveries_by_status(k.shard_of(parse_id(&d)), DeliveryStatus::Delivered),
            &d,
        )
        .await
        .expect("zscore");
    let in_progress: Option<f64> = redis
        .zscore(
            k.deliveries_by_status(k.shard_of(parse_id(&d)), DeliveryStatus::InProgress),
            &d,
        )
        .await
        .expect("zscore");
    assert_eq!(
        (in_delivered.map(|s| s as i64), in_progress),
        (Some(r.created_at / 1000), None)
    );
    let ttl: i64 = redis.ttl(k.delivery(parse_id(&d))).await.expect("ttl");
    assert!(ttl > 4 * 3600, "terminal TTL: {ttl}");
    // Completed resets the subscription's timeout count (on a cluster through the fold, a second later).
    wait::until("the timeout count is reset", WAIT, || async {
        let timeouts: String = redis
            .hget(k.subscription(sub), "timeout_count")
            .await
            .expect("hget");
        (timeouts == "0").then_some(())
    })
    .await;

    let late = stack.callback(&d, &secret, r#"{"status":"failed"}"#).await;
    assert_eq!(late.status, 409);
    assert_eq!(
        late.body,
        json!({"error": "conflict", "error_description": "Cannot update delivery that is already delivered or failed"})
    );
    assert_eq!(stack.delivery(&d).await.status, DeliveryStatus::Delivered);
    let unknown = stack
        .callback(NIL, &secret, r#"{"status":"completed"}"#)
        .await;
    // Unknown id: the same 401 as a wrong signature, so an id's existence is not revealed (issue #16).
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.body["error_description"],
        "Invalid webhook signature"
    );
    assert_eq!(
        stack
            .callback("nope", &secret, r#"{"status":"completed"}"#)
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn completed_before_the_async_answer_stays_delivered() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    // The receiver calls back `completed` while its 2xx + async answer is still held back.
    rx.push_response(
        Response::status(200)
            .header("X-TMI-Callback", "async")
            .delay(Duration::from_millis(1500)),
    );
    let (sub, secret) = stack
        .verified_subscription(&rx, &["addon.invoked"], None)
        .await;
    let d = invoked(&stack, sub, "alice").await;
    rx.wait_for_deliveries(1, WAIT).await;
    assert_eq!(
        stack.delivery(&d).await.status,
        DeliveryStatus::Pending,
        "the worker is still waiting"
    );
    let done = stack
        .callback(
            &d,
            &secret,
            r#"{"status":"completed","status_message":"done early"}"#,
        )
        .await;
    assert_eq!(
        done.status, 200,
        "a callback on a pending delivery is allowed: {}",
        done.body
    );
    // The worker's own write comes after; it counts the attempt and keeps the callback's outcome.
    let r = stack
        .wait_delivery(&d, "the worker recorded its attempt", |r| r.attempts == 1)
        .await;
    assert_eq!(
        (r.status, r.status_percent, r.status_message.as_str()),
        (DeliveryStatus::Delivered, 100, "done early")
    );
    let redis = stack.redis_client().await;
    let tracked: Option<f64> = redis
        .zscore(stack.keys().deliveries_activity(Shard::ZERO), &d)
        .await
        .expect("zscore");
    assert_eq!(tracked, None, "never left in progress for cleanup to fail");
    assert_eq!(rx.deliveries().len(), 1);
}

#[tokio::test]
async fn delivery_read_by_signature_or_by_admin_owner_and_invoker_tokens() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    // A subscription owned by an ordinary user (only the store can make one: the API's creator is an admin).
    let secret = "owner-secret-0123456789";
    let now = now_micros();
    let sub = Subscription {
        secret: Some(secret.into()),
        ..Subscription::new(
            "owner-7",
            "owned",
            rx.url(),
            vec!["addon.invoked".into()],
            SubscriptionStatus::Active,
            now,
        )
    };
    assert!(
        stack
            .store
            .create_subscription(&sub)
            .await
            .expect("store subscription")
    );
    let d = invoked(&stack, sub.id, "inv-1").await;
    stack
        .wait_delivery(&d, "delivered", |r| r.status == DeliveryStatus::Delivered)
        .await;
    let path = format!("/webhook-deliveries/{d}");

    let get = |token: Option<String>, headers: Vec<(&'static str, String)>, path: String| {
        let stack = &stack;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            stack.send(token.as_deref(), "GET", &path, &h, "").await
        }
    };
    let sig = signature(secret, d.as_bytes());
    let by_hmac = get(
        None,
        vec![("x-webhook-signature", sig.clone())],
        path.clone(),
    )
    .await;
    assert_eq!(by_hmac.status, 200, "{}", by_hmac.body);
    assert_eq!(
        by_hmac.body,
        admin_view(&stack, &d).await,
        "the admin read's shape"
    );
    assert_eq!(by_hmac.body["invoked_by"]["email"], "inv-1@example.com");
    // The message is the id exactly as written in the path.
    let upper = d.to_uppercase();
    let upper_path = format!("/webhook-deliveries/{upper}");
    assert_eq!(
        get(
            None,
            vec![("x-webhook-signature", signature(secret, upper.as_bytes()))],
            upper_path.clone()
        )
        .await
        .status,
        200
    );
    assert_eq!(
        get(None, vec![("x-webhook-signature", sig.clone())], upper_path)
            .await
            .status,
        401
    );
    let wrong = get(
        None,
        vec![(
            "x-webhook-signature",
            signature("wrong-secret-0123456789", d.as_bytes()),
        )],
        path.clone(),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.body["error_description"].clone()),
        (401, json!("Invalid webhook signature"))
    );
    // The signature decides whenever it is present, whatever token comes with it.
    assert_eq!(
        get(
            Some(user("stranger")),
            vec![("x-webhook-signature", sig)],
            path.clone()
        )
        .await
        .status,
        200
    );

    for (who, token) in [
        ("admin", crate::harness::admin()),
        ("subscription owner", user("owner-7")),
        ("invoker", user("inv-1")),
    ] {
        let a = get(Some(token), vec![], path.clone()).await;
        assert_eq!(a.status, 200, "{who}: {}", a.body);
        assert_eq!(a.body["id"], d.as_str());
    }
    let stranger = get(Some(user("stranger")), vec![], path.clone()).await;
    assert_eq!(stranger.status, 403);
    assert_eq!(
        stranger.body,
        json!({"error": "forbidden", "error_description": "Access denied"})
    );
    let anonymous = get(None, vec![], path.clone()).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("www-authenticate").is_some());
    assert_eq!(
        get(
            Some(crate::harness::admin()),
            vec![],
            format!("/webhook-deliveries/{NIL}")
        )
        .await
        .status,
        404
    );
    assert_eq!(
        get(
            Some(crate::harness::admin()),
            vec![],
            "/webhook-deliveries/nope".into()
        )
        .await
        .status,
        400
    );

    // A subscription without a secret cannot authenticate anyone by signature: reads and callbacks refused.
    let mut open = sub.clone();
    open.id = SubscriptionId::new_v4();
    open.secret = None;
    assert!(
        stack
            .store
            .create_subscription(&open)
            .await
            .expect("store subscription")
    );
    let record = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        open.id,
        "webhook.test",
        "{}",
        now_micros(),
    );
    assert!(
        stack
            .store
            .create_and_enqueue_delivery(&record)
            .await
            .expect("store delivery")
    );
    let id = record.id.to_string();
    let read = get(
        None,
        vec![("x-webhook-signature", signature("", id.as_bytes()))],
        format!("/webhook-deliveries/{id}"),
    )
    .await;
    assert_eq!(
        (read.status, read.body["error_description"].clone()),
        (401, json!("Webhook secret not configured"))
    );
    let cb = stack.callback(&id, "", r#"{"status":"completed"}"#).await;
    assert_eq!(
        (cb.status, cb.body["error_description"].clone()),
        (401, json!("Webhook secret not configured"))
    );
}

#[tokio::test]
async fn admin_list_filters_paginate_from_the_indexes_with_honest_totals() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (s1, _) = stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    let (s2, _) = stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    stack
        .publish("threat_model.created", Some(TM), json!({"name": "x"}))
        .await;
    rx.wait_for_deliveries(2, WAIT).await;
    let before = now_micros();
    wait::until("clock moved", Duration::from_secs(1), || async {
        (now_micros() > before + 5_000).then_some(())
    })
    .await;
    let mid = format_micros(now_micros());
    let addon = stack
        .create_addon(json!({"name": "A", "webhook_id": s1}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut invoked = Vec::new();
    for who in ["u1", "u2", "u3"] {
        let a = stack.invoke(&user(who), &addon, &invoke_body()).await;
        assert_eq!(a.status, 202);
        invoked.push(a.body["delivery_id"].as_str().expect("id").to_owned());
    }
    rx.wait_for_deliveries(5, WAIT).await;
    for d in &invoked {
        stack
            .wait_delivery(d, "delivered", |r| r.status == DeliveryStatus::Delivered)
            .await;
    }

    let list = |q: String| {
        let stack = &stack;
        async move {
            let (status, v) = stack
                .api("GET", &format!("/admin/webhooks/deliveries{q}"), None)
                .await;
            assert_eq!(status, 200, "{q}: {v}");
            let ids: Vec<String> = v["deliveries"]
                .as_array()
                .expect("deliveries")
                .iter()
                .map(|d| d["id"].as_str().expect("id").to_owned())
                .collect();
            (ids, v["total"].as_u64().expect("total"), v)
        }
    };
    let (all, total, v) = list(String::new()).await;
    assert_eq!(
        (all.len(), total, v["limit"].clone(), v["offset"].clone()),
        (5, 5, json!(20), json!(0))
    );
    let created: Vec<&str> = v["deliveries"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["created_at"].as_str().expect("created_at"))
        .collect();
    assert!(
        created
            .windows(2)
            .all(|w| delivery_model::time::parse_rfc3339(w[0])
                <= delivery_model::time::parse_rfc3339(w[1])),
        "oldest first: {created:?}"
    );
    assert_eq!(all[2..], invoked[..]);
    assert_eq!(list(format!("?subscription_id={s1}")).await.1, 4);
    let (ids, total, _) = list("?event_type=addon.invoked".into()).await;
    assert_eq!((ids, total), (invoked.clone(), 3));
    let (ids, total, _) = list("?event_type=addon.invoked&limit=2".into()).await;
    assert_eq!((ids, total), (invoked[..2].to_vec(), 3));
    let (ids, total, _) = list("?event_type=addon.invoked&limit=2&offset=2".into()).await;
    assert_eq!((ids, total), (invoked[2..].to_vec(), 3));
    let (ids, total, _) = list("?event_type=addon.invoked&offset=3".into()).await;
    assert_eq!((ids.len(), total), (0, 3));
    assert_eq!(
        list(format!("?addon_id={addon}&status=delivered")).await.1,
        3
    );
    assert_eq!(list(format!("?addon_id={addon}&status=pending")).await.1, 0);
    assert_eq!(
        list(format!("?subscription_id={s2}&event_type=addon.invoked"))
            .await
            .1,
        0
    );
    assert_eq!(
        list(format!(
            "?subscription_id={s1}&event_type=threat_model.created"
        ))
        .await
        .1,
        1
    );
    let (ids, total, _) = list(format!("?created_after={mid}")).await;
    assert_eq!((ids, total), (invoked.clone(), 3));
    assert_eq!(list(format!("?created_before={mid}")).await.1, 2);
    assert_eq!(
        list(format!(
            "?subscription_id={s1}&created_after={mid}&status=delivered"
        ))
        .await
        .1,
        3
    );
    for bad in [
        "?status=done",
        "?created_after=yesterday",
        "?addon_id=nope",
        "?limit=101",
    ] {
        assert_eq!(
            stack
                .api("GET", &format!("/admin/webhooks/deliveries{bad}"), None)
                .await
                .0,
            400,
            "{bad}"
        );
    }
    assert_eq!(
        stack
            .api_as(&user("u1"), "GET", "/admin/webhooks/deliveries", None)
            .await
            .0,
        403
    );

    // A record that expired while still indexed: not shown, not counted, and unindexed on the way.
    let redis = stack.redis_client().await;
    let k = stack.keys();
    let _: i64 = redis
        .del(k.delivery(parse_id(&invoked[0])))
        .await
        .expect("del");
    let (ids, total, _) = list("?event_type=addon.invoked".into()).await;
    assert_eq!((ids, total), (invoked[1..].to_vec(), 2));
    let left: Option<f64> = redis
        .zscore(
            k.deliveries_by_event(Shard::ZERO, "addon.invoked"),
            &invoked[0],
        )
        .await
        .expect("zscore");
    assert_eq!(left, None);
    let (ids, total, _) = list(format!("?addon_id={addon}&status=delivered")).await;
    assert_eq!((ids, total), (invoked[1..].to_vec(), 2));
    for pattern in [
        k.delivery_query_tmp(Shard::ZERO, "*"),
        k.addon_query_tmp("*"),
    ] {
        let tmp: Vec<String> = redis
            .custom(fred::cmd!("KEYS"), vec![pattern])
            .await
            .expect("keys");
        assert!(tmp.is_empty(), "temporary keys left: {tmp:?}");
    }
}
