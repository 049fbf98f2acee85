//! Add-ons end to end (issue #3): CRUD and validation, invocation through the real consumer and worker to a
//! real receiver, the per-invoker limits, the delete rules and the delegation token.

use std::time::Duration;

use delivery_model::delivery::DeliveryStatus;
use fred::prelude::*;
use serde_json::{Value, json};
use test_support::receiver::Receiver;
use test_support::{auth, wait};

use crate::harness::{On, SECRET, Stack, WAIT, parse_id, user, verified_jwt_claims};

const TM: &str = "0f6c0000-0000-4000-8000-000000000001";
const OTHER_TM: &str = "0f6c0000-0000-4000-8000-000000000002";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Waits until the clock has moved a few milliseconds, so records created next sort after those before.
async fn tick() {
    let before = delivery_model::time::now_micros();
    wait::until("clock moved", Duration::from_secs(1), || async {
        (delivery_model::time::now_micros() > before + 3_000).then_some(())
    })
    .await;
}

fn invoke_body(data: &str) -> String {
    format!(
        r#"{{"threat_model_id":"{TM}","object_type":"threat_model","object_id":"{TM}","data":{data}}}"#
    )
}

#[tokio::test]
async fn addon_crud_validation_and_listing() {
    let stack = Stack::start().await;
    // Stored directly: nothing is invoked here, so nothing is ever sent to it.
    let sub = stack
        .active_subscription("https://example.com/hook", &["addon.invoked"])
        .await
        .to_string();
    let params = json!([
        {"name": "mode", "type": "enum", "enum_values": ["fast", "deep"], "required": true, "default_value": "fast"},
        {"name": "depth", "type": "number", "number_min": 1, "number_max": 2.5, "description": "How deep"},
    ]);
    let a1 = stack
        .create_addon(json!({
            "name": "Scanner", "webhook_id": sub, "description": "Scans threat models",
            "icon": "material-symbols:security", "objects": ["threat_model", "diagram"], "parameters": params,
        }))
        .await;
    assert_eq!(a1["name"], "Scanner");
    assert_eq!(a1["webhook_id"], sub.as_str());
    assert_eq!(a1["objects"], json!(["threat_model", "diagram"]));
    assert_eq!(a1["parameters"], params, "declarations echo back as given");
    assert!(a1.get("threat_model_id").is_none(), "{a1}");
    assert!(a1["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    tick().await;
    let a2 = stack
        .create_addon(json!({"name": "Scoped", "webhook_id": sub, "threat_model_id": TM}))
        .await;
    assert!(
        a2.get("objects").is_none() && a2.get("parameters").is_none() && a2.get("icon").is_none()
    );
    tick().await;
    let a3 = stack
        .create_addon(json!({"name": "Other", "webhook_id": sub, "threat_model_id": OTHER_TM}))
        .await;

    // Any authenticated user reads; newest first; TMI's default limit 50.
    let reader = user("reader");
    let (status, list) = stack.api_as(&reader, "GET", "/addons", None).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list, "addons"), [id(&a3), id(&a2), id(&a1)]);
    assert_eq!(
        (
            list["total"].clone(),
            list["limit"].clone(),
            list["offset"].clone()
        ),
        (json!(3), json!(50), json!(0))
    );
    let (_, page) = stack
        .api_as(&reader, "GET", "/addons?limit=2&offset=1", None)
        .await;
    assert_eq!(ids(&page, "addons"), [id(&a2), id(&a1)]);
    assert_eq!(
        (page["total"].clone(), page["limit"].clone()),
        (json!(3), json!(2))
    );
    // The threat-model filter also returns add-ons without a threat model.
    let (_, scoped) = stack
        .api_as(
            &reader,
            "GET",
            &format!("/addons?threat_model_id={TM}"),
            None,
        )
        .await;
    assert_eq!(ids(&scoped, "addons"), [id(&a2), id(&a1)]);
    assert_eq!(scoped["total"], 2);
    for bad in ["limit=0", "limit=101", "offset=-1", "threat_model_id=nope"] {
        let (status, _) = stack
            .api_as(&reader, "GET", &format!("/addons?{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, got) = stack
        .api_as(&reader, "GET", &format!("/addons/{}", id(&a1)), None)
        .await;
    assert_eq!((status, got), (200, a1.clone()));
    let (status, body) = stack
        .api_as(&reader, "GET", &format!("/addons/{NIL}"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": "not_found", "error_description": "Add-on not found"})
    );
    let (status, body) = stack
        .api_as(&reader, "GET", "/addons/not-a-uuid", None)
        .await;
    assert_eq!((status, body["error"].clone()), (400, json!("invalid_id")));
    let anonymous = stack.send(None, "GET", "/addons", &[], "").await;
    assert_eq!(anonymous.status, 401);

    // Creating is for administrators, and the subscription must exist.
    let (status, _) = stack
        .api_as(
            &reader,
            "POST",
            "/addons",
            Some(json!({"name": "x", "webhook_id": sub})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = stack
        .api(
            "POST",
            "/addons",
            Some(json!({"name": "x", "webhook_id": NIL})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": "not_found", "error_description": "Webhook subscription not found"})
    );
    for (bad, expect) in [
        (
            json!({"name": "x", "webhook_id": sub, "icon": "https://example.com/i.svg"}),
            "Icon must be",
        ),
        (
            json!({"name": "x", "webhook_id": sub, "objects": ["widget"]}),
            "Invalid object types: widget",
        ),
        (
            json!({"name": "", "webhook_id": sub}),
            "Add-on name is required",
        ),
        (
            json!({"name": "<script>x</script>", "webhook_id": sub}),
            "unsafe content",
        ),
        (
            json!({"name": "x", "webhook_id": sub, "parameters": [{"name": "m", "type": "enum"}]}),
            "must have enum_values",
        ),
        (
            json!({"name": "x", "webhook_id": sub, "parameters": [{"name": "s", "type": "string", "string_validation_regex": "(["}]}),
            "not a valid regular expression",
        ),
        (
            json!({"name": "x", "webhook_id": sub, "parameters": [{"name": "a", "type": "boolean"}, {"name": "A", "type": "boolean"}]}),
            "Duplicate parameter name",
        ),
        (
            json!({"name": "x", "webhook_id": sub, "url": "https://example.com"}),
            "unknown field",
        ),
        (
            json!({"name": "x", "webhook_id": sub, "parameters": [{"name": "a", "type": "date"}]}),
            "unknown variant",
        ),
    ] {
        let (status, body) = stack.api("POST", "/addons", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_input", "{bad}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(expect)),
            "{bad}: {body}"
        );
    }

    // Deleting is for administrators; afterwards the add-on is gone everywhere.
    let path = format!("/addons/{}", id(&a3));
    assert_eq!(stack.api_as(&reader, "DELETE", &path, None).await.0, 403);
    assert_eq!(stack.api("DELETE", &path, None).await.0, 204);
    assert_eq!(stack.api("GET", &path, None).await.0, 404);
    assert_eq!(stack.api("DELETE", &path, None).await.0, 404);
    let (_, list) = stack
        .api("GET", &format!("/addons?threat_model_id={OTHER_TM}"), None)
        .await;
    // Only the unscoped one is left for that threat model.
    assert_eq!(ids(&list, "addons"), [id(&a1)]);

    // TMI's pre-unification invocation endpoints are gone.
    for path in [
        "/invocations",
        &format!("/invocations/{NIL}"),
        &format!("/addons/{}/invocations", id(&a1)),
    ] {
        assert_eq!(stack.api("GET", path, None).await.0, 404, "{path}");
    }
}

#[tokio::test]
async fn invocation_is_delivered_signed_with_the_data_bytes_as_sent() {
    invocation_is_delivered_signed_with_the_data_bytes_as_sent_on(On::Single).await;
}

#[tokio::test]
async fn invocation_is_delivered_signed_with_the_data_bytes_as_sent_on_a_cluster() {
    invocation_is_delivered_signed_with_the_data_bytes_as_sent_on(On::Cluster).await;
}

async fn invocation_is_delivered_signed_with_the_data_bytes_as_sent_on(on: On) {
    let stack = Stack::start_for(on, &[]).await;
    let rx = Receiver::start().await;
    // The subscription does not list addon.invoked: add-on deliveries ignore the events list.
    let (sub, secret) = stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    let addon = id(&stack
        .create_addon(json!({"name": "Scanner", "webhook_id": sub, "objects": ["threat_model"]}))
        .await);
    // Spacing, key order, a trailing zero and a decomposed é: TMI would re-serialise, lower-case the enum-like
    // `Status` and NFC-normalise; Hookline passes it on untouched.
    let data =
        "{\"Mode\" : \"Fast\",\n  \"Status\": \"Completed\", \"n\": 1.50, \"s\": \"e\u{301}\"}";
    let answer = stack
        .invoke(&user("alice"), &addon, &invoke_body(data))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let delivery = answer.body["delivery_id"]
        .as_str()
        .expect("delivery_id")
        .to_owned();
    assert_eq!(answer.body["status"], "pending");
    let keys: Vec<&String> = answer.body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["created_at", "delivery_id", "status"]);

    let got = rx.wait_for_deliveries(1, WAIT).await;
    let req = &got[0];
    assert_eq!(req.event(), Some("addon.invoked"));
    assert_eq!(req.delivery_id(), Some(delivery.as_str()));
    assert_eq!(req.subscription_id(), Some(sub.to_string().as_str()));
    assert!(
        req.verify_signature(&secret),
        "signed with the subscription secret"
    );
    assert_eq!(
        req.header("x-tmi-delegation-token"),
        None,
        "no delegation key configured"
    );
    let body = req.body_str();
    assert!(
        body.starts_with(&format!(
            r#"{{"event_type":"addon.invoked","threat_model_id":"{TM}","timestamp":""#
        )),
        "{body}"
    );
    assert!(
        body.ends_with(&format!(
            r#","object_type":"threat_model","object_id":"{TM}","data":{{"addon_id":"{addon}","user_data":{data}}}}}"#
        )),
        "user_data must be the request's bytes: {body}"
    );

    let record = stack
        .wait_delivery(&delivery, "invocation delivered", |d| {
            d.status == DeliveryStatus::Delivered
        })
        .await;
    assert_eq!(record.event_type, "addon.invoked");
    assert_eq!(record.subscription_id, sub);
    assert_eq!(record.addon_id.map(|a| a.to_string()), Some(addon.clone()));
    let invoker = record.invoked_by.expect("invoker");
    assert_eq!(
        (
            invoker.uuid.as_str(),
            invoker.email.as_str(),
            invoker.name.as_str()
        ),
        ("alice", "alice@example.com", "User alice")
    );
    let (status, view) = stack
        .api(
            "GET",
            &format!("/admin/webhooks/deliveries/{delivery}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(view["addon_id"], addon.as_str());
    assert_eq!(view["invoked_by"]["email"], "alice@example.com");
    assert_eq!(view["payload"]["data"]["user_data"]["s"], "e\u{301}");
    // The consumer routed the pre-created record: exactly one record, one request.
    assert_eq!(stack.deliveries_of(sub).await.len(), 1);
    assert_eq!(rx.deliveries().len(), 1);
}

#[tokio::test]
async fn invocation_refusals() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (sub, _) = stack
        .verified_subscription(&rx, &["addon.invoked"], None)
        .await;
    let addon = id(&stack
        .create_addon(json!({
            "name": "Scanner", "webhook_id": sub, "objects": ["threat_model"],
            "parameters": [{"name": "mode", "type": "enum", "enum_values": ["fast", "deep"], "required": true}],
        }))
        .await);
    let alice = user("alice");
    let ok = invoke_body(r#"{"mode":"fast"}"#);

    let none = stack
        .send(None, "POST", &format!("/addons/{addon}/invoke"), &[], &ok)
        .await;
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let no_email = auth::token(SECRET, json!({"sub": "mallory", "exp": 4_102_444_800u64}));
    assert_eq!(stack.invoke(&no_email, &addon, &ok).await.status, 401);
    let unknown = stack.invoke(&alice, NIL, &ok).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body,
        json!({"error": "not_found", "error_description": "Add-on not found"})
    );
    assert_eq!(stack.invoke(&alice, "nope", &ok).await.status, 400);
    let cases = [
        (
            r#"{"object_type":"threat_model","data":{"mode":"fast"}}"#.to_owned(),
            "threat_model_id",
        ),
        (
            format!(r#"{{"threat_model_id":"{TM}","extra":1}}"#),
            "unknown field",
        ),
        (
            format!(r#"{{"threat_model_id":"{TM}","object_type":"widget"}}"#),
            "allowed values",
        ),
        (
            format!(
                r#"{{"threat_model_id":"{TM}","object_type":"diagram","data":{{"mode":"fast"}}}}"#
            ),
            "Object type not supported by this add-on",
        ),
        (
            invoke_body(&format!(
                r#"{{"mode":"fast","blob":"{}"}}"#,
                "x".repeat(2048)
            )),
            "Payload exceeds maximum size of 1024 bytes",
        ),
        (invoke_body("{}"), "Required parameter 'mode' is missing"),
        (
            invoke_body(r#"{"mode":"slow"}"#),
            "value 'slow' is not in allowed values",
        ),
        (invoke_body("[1]"), "must be an object"),
    ];
    for (body, expect) in &cases {
        let a = stack.invoke(&alice, &addon, body).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert!(
            a.body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(expect)),
            "{body}: {}",
            a.body
        );
    }

    let first = stack.invoke(&alice, &addon, &ok).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = stack.invoke(&alice, &addon, &ok).await;
    assert_eq!(again.status, 429);
    assert_eq!(
        again.body,
        json!({"error": "duplicate_invocation", "error_description": "You just invoked this add-on. Please wait a few seconds before invoking again."})
    );
    assert_eq!(
        again.header("retry-after"),
        Some("5"),
        "come back after the duplicate window"
    );
    // Duplicates are per user.
    assert_eq!(stack.invoke(&user("bob"), &addon, &ok).await.status, 202);
    // Nothing refused left a record behind.
    assert_eq!(stack.deliveries_of(sub).await.len(), 2);
}

#[tokio::test]
async fn active_and_hourly_limits_per_invoker() {
    let stack = Stack::start_with(&[
        ("HOOKLINE__ADDONS__MAX_ACTIVE_INVOCATIONS", "2"),
        ("HOOKLINE__ADDONS__MAX_INVOCATIONS_PER_HOUR", "3"),
    ])
    .await;
    let rx = Receiver::start().await;
    rx.set_async(true);
    let (sub, secret) = stack
        .verified_subscription(&rx, &["addon.invoked"], None)
        .await;
    let mut addons = Vec::new();
    for n in 0..4 {
        addons.push(id(&stack
            .create_addon(json!({"name": format!("A{n}"), "webhook_id": sub}))
            .await));
    }
    let carol = user("carol");
    let body = invoke_body(r#"{"k":1}"#);
    let invoke = |i: usize| {
        let stack = &stack;
        let carol = &carol;
        let body = &body;
        let addon = addons[i].clone();
        async move { stack.invoke(carol, &addon, body).await }
    };
    let d1 = invoke(0).await;
    assert_eq!(d1.status, 202);
    assert_eq!(invoke(0).await.status, 429, "a duplicate");
    let d2 = invoke(1).await;
    assert_eq!(d2.status, 202, "the duplicate did not use up quota");
    let (d1, d2) = (
        d1.body["delivery_id"].as_str().expect("id").to_owned(),
        d2.body["delivery_id"].as_str().expect("id").to_owned(),
    );
    for d in [&d1, &d2] {
        stack
            .wait_delivery(d, "async receiver keeps it in progress", |r| {
                r.status == DeliveryStatus::InProgress
            })
            .await;
    }

    let blocked = invoke(2).await;
    assert_eq!(blocked.status, 429);
    assert_eq!(blocked.body["error"], "rate_limit_exceeded");
    assert_eq!(
        blocked.body["error_description"],
        "Active invocation limit reached: 2/2 concurrent invocations."
    );
    let ctx = &blocked.body["details"]["context"];
    assert_eq!(
        (ctx["limit"].clone(), ctx["current"].clone()),
        (json!(2), json!(2))
    );
    let retry: u64 = blocked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((880..=900).contains(&retry), "{retry}");
    assert_eq!(ctx["retry_after"], retry);
    let mut blocking: Vec<&str> = ctx["blocking_invocations"]
        .as_array()
        .expect("blocking")
        .iter()
        .map(|b| b["delivery_id"].as_str().expect("id"))
        .collect();
    blocking.sort_unstable();
    let mut expected = vec![d1.as_str(), d2.as_str()];
    expected.sort_unstable();
    assert_eq!(blocking, expected);
    let b0 = &ctx["blocking_invocations"][0];
    assert_eq!(b0["status"], "in_progress");
    assert!(addons.iter().any(|a| b0["addon_id"] == a.as_str()));
    assert!(b0["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(
        blocked.body["details"]["suggestion"]
            .as_str()
            .is_some_and(|s| s.contains("Wait for an existing invocation"))
    );
    // Limits are per invoker.
    assert_eq!(
        stack.invoke(&user("dave"), &addons[2], &body).await.status,
        202
    );

    // A finished invocation stops counting.
    let done = stack
        .callback(&d1, &secret, r#"{"status":"completed"}"#)
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let d3 = invoke(2).await;
    assert_eq!(d3.status, 202, "third of three per hour: {}", d3.body);
    assert_eq!(
        stack
            .callback(&d2, &secret, r#"{"status":"failed"}"#)
            .await
            .status,
        200
    );

    // Fourth in the hour: refused, although only one is active.
    let hourly = invoke(3).await;
    assert_eq!(hourly.status, 429, "{}", hourly.body);
    let retry: u64 = hourly
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((3590..=3600).contains(&retry), "{retry}");
    assert_eq!(
        hourly.body["error_description"],
        format!("Hourly invocation limit exceeded: 3/3. Retry after {retry} seconds.")
    );
    assert_eq!(
        hourly.body["details"]["context"],
        json!({"retry_after": retry, "limit": 3, "current": 3})
    );

    // TMI's keys, so TMI's tooling can clear them; the refused calls wrote none of them.
    let redis = stack.redis_client().await;
    let k = stack.keys();
    let members: Vec<String> = redis
        .zrange(k.addon_hourly("carol"), 0, -1, None, false, None, false)
        .await
        .expect("zrange");
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members.iter().all(|m| m
            .split_once(':')
            .is_some_and(|(s, n)| s.len() == 10 && n.len() >= 19)),
        "{members:?}"
    );
    let ttl: i64 = redis.ttl(k.addon_hourly("carol")).await.expect("ttl");
    assert!((3600..=3660).contains(&ttl), "{ttl}");
    let dedup_ttl: i64 = redis
        .ttl(k.addon_dedup(parse_id(&addons[2]), "carol"))
        .await
        .expect("ttl");
    assert!((1..=5).contains(&dedup_ttl), "{dedup_ttl}");
    assert!(
        !redis
            .exists::<bool, _>(k.addon_dedup(parse_id(&addons[3]), "carol"))
            .await
            .expect("exists")
    );
    // Only the invocation still in progress remains in the active set (the others were pruned).
    let active: Vec<String> = redis
        .zrange(k.addon_active("carol"), 0, -1, None, false, None, false)
        .await
        .expect("zrange");
    assert_eq!(active, [d3.body["delivery_id"].as_str().expect("id")]);
}

#[tokio::test]
async fn concurrent_invocations_cannot_overrun_the_active_limit() {
    let stack = Stack::start_with(&[("HOOKLINE__ADDONS__MAX_ACTIVE_INVOCATIONS", "1")]).await;
    let rx = Receiver::start().await;
    rx.set_async(true);
    let (sub, _) = stack
        .verified_subscription(&rx, &["addon.invoked"], None)
        .await;
    let mut addons = Vec::new();
    for n in 0..5 {
        addons.push(id(&stack
            .create_addon(json!({"name": format!("A{n}"), "webhook_id": sub}))
            .await));
    }
    let frank = user("frank");
    let body = invoke_body("{}");
    let go = |i: usize| stack.invoke(&frank, &addons[i], &body);
    // Five at once: the check and the record are one script, so exactly one passes.
    let (a, b, c, d, e) = tokio::join!(go(0), go(1), go(2), go(3), go(4));
    let mut statuses = [a.status, b.status, c.status, d.status, e.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 429, 429, 429, 429]);
    assert_eq!(stack.deliveries_of(sub).await.len(), 1);
}

#[tokio::test]
async fn active_invocations_block_delete_and_a_subscription_delete_takes_its_addons() {
    active_invocations_block_delete_and_a_subscription_delete_takes_its_addons_on(On::Single).await;
}

#[tokio::test]
async fn active_invocations_block_delete_and_a_subscription_delete_takes_its_addons_on_a_cluster() {
    active_invocations_block_delete_and_a_subscription_delete_takes_its_addons_on(On::Cluster)
        .await;
}

async fn active_invocations_block_delete_and_a_subscription_delete_takes_its_addons_on(on: On) {
    let stack = Stack::start_for(on, &[]).await;
    let rx = Receiver::start().await;
    rx.set_async(true);
    let (sub, secret) = stack
        .verified_subscription(&rx, &["addon.invoked"], None)
        .await;
    let a1 = id(&stack
        .create_addon(json!({"name": "A1", "webhook_id": sub}))
        .await);
    let a2 = id(&stack
        .create_addon(json!({"name": "A2", "webhook_id": sub, "threat_model_id": TM}))
        .await);
    let inv = stack.invoke(&user("erin"), &a1, &invoke_body("{}")).await;
    assert_eq!(inv.status, 202);
    let d = inv.body["delivery_id"].as_str().expect("id").to_owned();
    stack
        .wait_delivery(&d, "in progress", |r| {
            r.status == DeliveryStatus::InProgress
        })
        .await;

    let (status, body) = stack.api("DELETE", &format!("/addons/{a1}"), None).await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"error": "conflict", "error_description": "Cannot delete add-on with active invocations. Please wait for invocations to complete."})
    );
    assert_eq!(
        stack
            .callback(&d, &secret, r#"{"status":"failed"}"#)
            .await
            .status,
        200
    );
    assert_eq!(
        stack.api("DELETE", &format!("/addons/{a1}"), None).await.0,
        204
    );
    assert_eq!(
        stack.api("GET", &format!("/addons/{a1}"), None).await.0,
        404
    );

    // TMI's cascade: the subscription's add-ons go with it, in the same step.
    assert_eq!(
        stack.api("GET", &format!("/addons/{a2}"), None).await.0,
        200
    );
    let (status, _) = stack
        .api(
            "DELETE",
            &format!("/admin/webhooks/subscriptions/{sub}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        stack.api("GET", &format!("/addons/{a2}"), None).await.0,
        404
    );
    let (_, list) = stack
        .api("GET", &format!("/addons?threat_model_id={TM}"), None)
        .await;
    assert_eq!(list["total"], 0);
    let redis = stack.redis_client().await;
    let k = stack.keys();
    for key in [
        k.addons_by_subscription(sub),
        k.addons_by_threat_model(TM),
        k.addons_all(),
        k.addon(parse_id(&a2)),
    ] {
        assert!(
            !redis.exists::<bool, _>(&key).await.expect("exists"),
            "{key} left behind"
        );
    }
}

#[tokio::test]
async fn delegation_token_when_configured() {
    const KEY: &str = "e2e-delegation-key-0123456789abcdef";
    let stack = Stack::start_with(&[
        ("HOOKLINE__WORKER__DELEGATION_KEY", KEY),
        ("HOOKLINE__WORKER__DELEGATION_ISSUER", "http://tmi.test"),
    ])
    .await;
    let rx = Receiver::start().await;
    let (sub, _) = stack
        .verified_subscription(&rx, &["addon.invoked"], None)
        .await;
    let addon = id(&stack
        .create_addon(json!({"name": "Scanner", "webhook_id": sub}))
        .await);
    // The invoker's provider, groups and reviewer flag travel into the delegation token; administrator
    // rights never do.
    let now = delivery_model::time::now_micros() / 1_000_000;
    let alice = test_support::auth::token(
        SECRET,
        json!({
            "sub": "alice", "email": "alice@example.com", "name": "User alice", "idp": "github",
            "groups": ["eng", "administrators", "reviewers"], "tmi_is_security_reviewer": true,
            "iat": now, "exp": now + 3600,
        }),
    );
    let inv = stack
        .invoke(&alice, &addon, &invoke_body(r#"{"k":"v"}"#))
        .await;
    assert_eq!(inv.status, 202);
    let delivery = inv.body["delivery_id"].as_str().expect("id");
    let got = rx.wait_for_deliveries(1, WAIT).await;
    let token = got[0]
        .header("x-tmi-delegation-token")
        .expect("delegation token");
    assert!(
        verified_jwt_claims(token, "another-key").is_none(),
        "signed with the configured key only"
    );
    let claims =
        verified_jwt_claims(token, KEY).expect("HS256 token signed with the delegation key");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(
        claims["name"],
        format!("[Addon Delegation: {addon}] User alice")
    );
    assert_eq!(claims["tmi_is_administrator"], false);
    assert_eq!(claims["idp"], "github");
    assert_eq!(claims["groups"], json!(["eng", "reviewers"]));
    assert_eq!(claims["tmi_is_security_reviewer"], true);
    assert_eq!(claims["auth_time"], 0);
    assert_eq!(
        claims["delegation"],
        json!({"addon_id": addon, "delivery_id": delivery, "threat_model_id": TM})
    );
    assert_eq!(
        (claims["iss"].clone(), claims["aud"].clone()),
        (json!("http://tmi.test"), json!(["http://tmi.test"]))
    );
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - iat, 60);
    assert_eq!(claims["nbf"], iat);
    assert!(
        claims["jti"]
            .as_str()
            .is_some_and(|j| j.parse::<uuid::Uuid>().is_ok())
    );

    // Only add-on deliveries carry one.
    let (status, _) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/subscriptions/{sub}/test"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let got = rx.wait_for_deliveries(2, WAIT).await;
    assert_eq!(got[1].header("x-tmi-delegation-token"), None);
}
