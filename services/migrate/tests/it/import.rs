//! A full import: dry run, run, what the API serves, a pending delivery delivered, a re-run that changes
//! nothing.

use std::collections::HashMap;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::queue::QueueMessage;
use delivery_model::subscription::SubscriptionStatus;
use fred::prelude::*;
use serde_json::Value;
use test_support::receiver::Receiver;
use test_support::service::{Service, ServiceBin};
use test_support::{auth, http, wait};

use crate::harness::*;

async fn get(api: &Service, path: &str) -> (u16, Value) {
    let bearer = format!("Bearer {}", auth::admin_token(SECRET, "admin-1"));
    let (status, _, body) = http::request(
        "GET",
        &api.api_url(path),
        &[("authorization", bearer.as_str())],
        String::new(),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Everything in Redis, key by key, with each key's type and content (TTLs aside), to compare two states.
async fn snapshot(w: &World) -> HashMap<String, String> {
    let keys: Vec<String> = w
        .redis_client
        .custom(fred::cmd!("KEYS"), vec!["*"])
        .await
        .unwrap();
    let mut snap = HashMap::new();
    for k in keys {
        let kind: String = w.redis_client.r#type(&k).await.unwrap();
        let value = match kind.as_str() {
            "hash" => {
                let mut h: Vec<(String, String)> = w
                    .redis_client
                    .hgetall::<HashMap<String, String>, _>(&k)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect();
                h.sort();
                format!("{h:?}")
            }
            "set" => {
                let mut m: Vec<String> = w.redis_client.smembers(&k).await.unwrap();
                m.sort();
                format!("{m:?}")
            }
            "zset" => {
                let m: Vec<(String, f64)> = w
                    .redis_client
                    .zrange(&k, 0, -1, None, false, None, true)
                    .await
                    .unwrap();
                format!("{m:?}")
            }
            "stream" => {
                let n: u64 = w.redis_client.xlen(&k).await.unwrap();
                format!("stream of {n}")
            }
            other => other.to_owned(),
        };
        snap.insert(k, format!("{kind}: {value}"));
    }
    snap
}

#[tokio::test]
async fn imports_tmi_tables_serves_and_delivers_them_and_reruns_change_nothing() {
    let w = World::start().await;
    let rx = Receiver::start().await;
    fill(&w.pg, &rx.url());

    // Dry run: counts per table, nothing written.
    let (code, out) = w.migrate(&["--dry-run"]).await;
    assert_eq!(code, 2, "invalid rows make a non-zero exit:\n{out}");
    assert!(out.contains("dry run: nothing was written"), "{out}");
    assert_eq!(
        World::line(&out, "webhook_subscriptions"),
        "webhook_subscriptions: would import 3, skipped (exists) 0, skipped (too old) 0, invalid 3"
    );
    assert_eq!(
        World::line(&out, "webhook_deliveries"),
        "webhook_deliveries: would import 4, skipped (exists) 0, skipped (too old) 1, invalid 3"
    );
    assert_eq!(w.dbsize().await, 0, "a dry run writes nothing");

    // The import.
    let (code, out) = w.migrate(&[]).await;
    assert_eq!(code, 2, "{out}");
    for (table, line) in [
        (
            "webhook_subscriptions",
            "imported 3, skipped (exists) 0, skipped (too old) 0, invalid 3",
        ),
        (
            "addons",
            "imported 1, skipped (exists) 0, skipped (too old) 0, invalid 1",
        ),
        (
            "webhook_quotas",
            "imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
        ),
        (
            "addon_invocation_quotas",
            "imported 1, skipped (exists) 0, skipped (too old) 0, invalid 0",
        ),
        (
            "webhook_url_deny_list",
            "imported 2, skipped (exists) 0, skipped (too old) 0, invalid 1",
        ),
        (
            "webhook_deliveries",
            "imported 4, skipped (exists) 0, skipped (too old) 1, invalid 3",
        ),
    ] {
        assert_eq!(
            World::line(&out, table),
            format!("{table}: {line}"),
            "{out}"
        );
    }
    // Every bad row is named with its table, id and reason.
    for needle in [
        format!("webhook_subscriptions id={SUB_BAD_EVENTS}: events:"),
        format!("webhook_subscriptions id={SUB_BAD_STATUS}: unknown status \"paused\""),
        format!("webhook_subscriptions id={SUB_BAD_ID}: id \"{SUB_BAD_ID}\" is not a UUID"),
        format!("addons id={ADDON_ORPHAN}: webhook_id {SUB_MISSING} names no subscription"),
        "webhook_url_deny_list id=d0000000-0000-4000-8000-000000000003: unknown pattern_type \"wildcard\""
            .to_owned(),
        format!("webhook_deliveries id={DELIVERY_BAD_STATUS}: unknown status \"in_flight\""),
        format!("webhook_deliveries id={DELIVERY_NO_SUB}: subscription_id {SUB_MISSING} names no subscription"),
        format!("webhook_deliveries id={DELIVERY_BAD_ID}: id \"{DELIVERY_BAD_ID}\" is not a UUID"),
    ] {
        assert!(out.contains(&needle), "missing {needle:?} in:\n{out}");
    }

    // Records as TMI had them.
    let active = w
        .store
        .get_subscription(SUB_ACTIVE.parse().unwrap())
        .await
        .unwrap()
        .expect("active subscription imported");
    assert_eq!(active.status, SubscriptionStatus::Active);
    assert_eq!(active.secret.as_deref(), Some(SUB_SECRET));
    assert_eq!(active.publication_failures, 2);
    assert_eq!(active.challenges_sent, 1);
    assert_eq!(active.owner_id, OWNER);
    let candidates = w.store.match_candidates("diagram.updated").await.unwrap();
    assert_eq!(
        candidates
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>(),
        [SUB_ACTIVE],
        "an active subscription is matched at once"
    );
    let pinned = w
        .store
        .get_subscription(SUB_PINNED.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(pinned.operator_pinned);
    assert_eq!(pinned.status, SubscriptionStatus::Inactive);
    let deny = w.store.url_deny_list().await.unwrap();
    assert_eq!(
        deny.iter().map(|d| d.pattern.as_str()).collect::<Vec<_>>(),
        ["*.internal.example.com", "^10\\."]
    );
    let quota = w.store.get_webhook_quota(OWNER).await.unwrap().unwrap();
    assert_eq!(quota.max_subscriptions, 5);
    let quota = w.store.get_addon_quota(OWNER).await.unwrap().unwrap();
    assert_eq!(
        (quota.max_active_invocations, quota.max_invocations_per_hour),
        (2, 20)
    );

    // The future retry is on the schedule at its time; terminal records keep the TTL they had left.
    let scheduled: Vec<(String, f64)> = w
        .redis_client
        .zrange("hookline:scheduled", 0, -1, None, false, None, true)
        .await
        .unwrap();
    let later = QueueMessage::DeliveryV1 {
        delivery_id: DELIVERY_LATER.parse().unwrap(),
    }
    .encode();
    let now_ms = delivery_model::time::now_micros() as f64 / 1000.0;
    assert!(
        scheduled
            .iter()
            .any(|(m, at)| *m == later && (*at - (now_ms + 3_600_000.0)).abs() < 120_000.0),
        "{scheduled:?}"
    );
    let ttl: i64 = w
        .redis_client
        .ttl(format!("webhook:delivery:{DELIVERY_DONE}"))
        .await
        .unwrap();
    assert!(
        (5 * 86_400 - 300..=5 * 86_400).contains(&ttl),
        "delivered 2 days ago: 5 days left, got {ttl} s"
    );
    assert_eq!(
        w.store
            .get_delivery(DELIVERY_OLD.parse().unwrap())
            .await
            .unwrap(),
        None,
        "older than 7 days: skipped"
    );

    // The api-gateway serves them.
    let api = Service::start(ServiceBin::ApiGateway, &w.env()).await;
    let (status, body) = get(&api, &format!("/admin/webhooks/subscriptions/{SUB_ACTIVE}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(
        body["events"],
        serde_json::json!(["threat_model.created", "diagram.updated"])
    );
    let (status, body) = get(&api, &format!("/addons/{ADDON}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["webhook_id"], SUB_ACTIVE);
    assert_eq!(body["parameters"][0]["name"], "mode");
    let (status, body) = get(
        &api,
        &format!("/admin/webhooks/deliveries/{DELIVERY_FAILED}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["attempts"], 5);

    // The worker delivers the due one (signed, TMI's exact JSON text) and sends the pending subscription's
    // challenge.
    let worker = Service::start(ServiceBin::DeliveryWorker, &w.env()).await;
    let delivered = rx.wait_for_deliveries(1, WAIT).await;
    assert_eq!(delivered[0].delivery_id(), Some(DELIVERY_DUE));
    let expected_body: String = w.pg.psql(&format!(
        "SELECT payload::text FROM webhook_deliveries WHERE id = '{DELIVERY_DUE}'"
    ));
    assert_eq!(delivered[0].body_str(), expected_body);
    assert!(delivered[0].verify_signature(SUB_SECRET));
    let challenges = rx.wait_for_challenges(1, WAIT).await;
    assert_eq!(challenges[0].subscription_id(), Some(SUB_PENDING));
    wait::until("the due delivery is delivered", WAIT, || async {
        let r = w
            .store
            .get_delivery(DELIVERY_DUE.parse().unwrap())
            .await
            .unwrap()?;
        (r.status == DeliveryStatus::Delivered).then_some(())
    })
    .await;
    wait::until("the pending subscription is verified", WAIT, || async {
        let s = w
            .store
            .get_subscription(SUB_PENDING.parse().unwrap())
            .await
            .unwrap()?;
        (s.status == SubscriptionStatus::Active).then_some(())
    })
    .await;
    drop(worker);
    drop(api);

    // A second run imports nothing and changes nothing.
    let before = snapshot(&w).await;
    let (code, out) = w.migrate(&[]).await;
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        World::line(&out, "webhook_subscriptions"),
        "webhook_subscriptions: imported 0, skipped (exists) 3, skipped (too old) 0, invalid 3"
    );
    assert_eq!(
        World::line(&out, "webhook_deliveries"),
        "webhook_deliveries: imported 0, skipped (exists) 4, skipped (too old) 1, invalid 3"
    );
    assert_eq!(
        World::line(&out, "webhook_quotas"),
        "webhook_quotas: imported 0, skipped (exists) 1, skipped (too old) 0, invalid 0"
    );
    assert_eq!(snapshot(&w).await, before, "a re-run writes nothing");
}
