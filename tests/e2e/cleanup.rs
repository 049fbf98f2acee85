//! The cleanup binary next to the real pipeline (issue #5): stale `in_progress` deliveries fail, progress keeps
//! them alive, expired deliveries leave every index, idle and broken subscriptions go, streams are trimmed only
//! below what every group acknowledged, two replicas never do the same work twice, and `--once` is a CronJob's
//! single cycle.

use delivery_model::keys::Shard;
use std::collections::HashMap;
use std::time::Duration;

use delivery_model::addon::Addon;
use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
use delivery_model::keys::EVENTS_GROUP;
use delivery_model::store::addons::CreateAddon;
use delivery_model::store::{Store, StoreOptions};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use fred::types::Value;
use serde_json::json;
use test_support::receiver::{self, Receiver};
use test_support::service::{Service, ServiceBin};
use test_support::{http, wait};

use crate::harness::{Stack, WAIT, run_to_exit};

const DAY: i64 = 86_400_000_000;

/// Cleanup settings for these tests: a cycle every 200 ms, stale after one second.
const FAST: &[(&str, &str)] = &[
    ("HOOKLINE__CLEANUP__INTERVAL_MS", "200"),
    ("HOOKLINE__CLEANUP__ERROR_PAUSE_MS", "200"),
    ("HOOKLINE__CLEANUP__STALE_AFTER_SECS", "1"),
    ("HOOKLINE__CLEANUP__INDEX_PASS_INTERVAL_SECS", "1"),
];

async fn start_cleanup(stack: &Stack, extra: &[(&str, &str)]) -> Service {
    let mut settings = FAST.to_vec();
    settings.extend_from_slice(extra);
    stack.replica(ServiceBin::Cleanup, &settings).await
}

/// A raw client for reading Redis state the store has no method for.
async fn raw(stack: &Stack) -> Client {
    let client = Builder::from_config(Config::from_url(&stack.redis().url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

fn items(action: &str) -> String {
    format!("hookline_cleanup_items_total{{action=\"{action}\"}}")
}

/// Publishes `n` events to an async receiver's subscription and waits until all `n` deliveries are
/// `in_progress` (the worker got a 2xx with `X-TMI-Callback: async`). Returns the subscription, its secret
/// and the records.
async fn in_progress_deliveries(
    stack: &Stack,
    rx: &Receiver,
    n: usize,
) -> (SubscriptionId, String, Vec<DeliveryRecord>) {
    rx.set_async(true);
    let (sub, secret) = stack
        .verified_subscription(rx, &["threat_model.updated"], None)
        .await;
    for i in 0..n {
        stack
            .publish("threat_model.updated", None, json!({"i": i}))
            .await;
    }
    let records = wait::until("every delivery in_progress", WAIT, || async {
        let all = stack.deliveries_of(sub).await;
        (all.len() == n && all.iter().all(|d| d.status == DeliveryStatus::InProgress))
            .then_some(all)
    })
    .await;
    (sub, secret, records)
}

/// A receiver's signed progress callback, `POST /webhook-deliveries/{id}/status`; returns the HTTP status.
async fn progress(stack: &Stack, secret: &str, id: DeliveryId, percent: u8) -> u16 {
    let body =
        json!({"status": "in_progress", "status_percent": percent, "status_message": "working"})
            .to_string();
    let signature = receiver::signature(secret, body.as_bytes());
    let url = stack
        .api
        .api_url(&format!("/webhook-deliveries/{id}/status"));
    let headers = [
        ("content-type", "application/json"),
        ("x-webhook-signature", signature.as_str()),
    ];
    let (status, _, _) = http::request("POST", &url, &headers, body).await;
    status
}

#[tokio::test]
async fn a_silent_async_delivery_fails_soon_after_the_stale_limit() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (sub, _, records) = in_progress_deliveries(&stack, &rx, 1).await;
    let d = &records[0];
    assert_eq!(
        stack.subscription(sub).await.unwrap().publication_failures,
        0
    );

    let cleanup = start_cleanup(&stack, &[]).await;
    let failed = stack
        .wait_delivery(&d.id.to_string(), "the silent delivery fails", |r| {
            r.status == DeliveryStatus::Failed
        })
        .await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some("no status callback for 1 second")
    );
    let late_by = failed.last_activity_at - d.last_activity_at - 1_000_000;
    assert!(
        late_by < 3_000_000,
        "failed {late_by} µs after crossing the limit"
    );
    assert_eq!(
        stack.subscription(sub).await.unwrap().publication_failures,
        1
    );

    let k = stack.store.keys();
    let redis = raw(&stack).await;
    let id = d.id.to_string();
    let activity: Option<f64> = redis
        .zscore(k.deliveries_activity(Shard::ZERO), &id)
        .await
        .unwrap();
    assert_eq!(activity, None, "left the activity index");
    let failed_index: Option<f64> = redis
        .zscore(
            k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Failed),
            &id,
        )
        .await
        .unwrap();
    assert!(failed_index.is_some(), "moved to the failed index");
    let ttl: i64 = redis.ttl(k.delivery(d.id)).await.unwrap();
    assert!(ttl > 4 * 3600, "terminal TTL (7 days), got {ttl}");
    let (status, body) = stack
        .api("GET", &format!("/admin/webhooks/deliveries/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "failed");

    wait::until("the metric counts it", WAIT, || async {
        (cleanup.metric(&items("stale_failed")).await == 1.0).then_some(())
    })
    .await;
    // Set when the cycle ends, which can be after the item above was counted.
    wait::until("a completed cycle", WAIT, || async {
        (cleanup
            .metric("hookline_cleanup_last_success_timestamp_seconds")
            .await
            > 0.0)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn progress_callbacks_keep_an_async_delivery_alive() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (_, secret, records) = in_progress_deliveries(&stack, &rx, 1).await;
    let d = records[0].clone();
    let _cleanup = start_cleanup(&stack, &[]).await;

    // The receiver reports progress every 250 ms (a quarter of the stale limit) for three seconds, while the
    // delivery is watched.
    let reporting = async {
        let mut every = tokio::time::interval(Duration::from_millis(250));
        let mut answers = Vec::new();
        for percent in 1..=12u8 {
            every.tick().await;
            answers.push(progress(&stack, &secret, d.id, percent).await);
        }
        answers
    };
    let watching = wait::never(
        "a delivery with fresh progress is failed",
        Duration::from_secs(3),
        || async { stack.delivery(&d.id.to_string()).await.status == DeliveryStatus::Failed },
    );
    let (answers, ()) = tokio::join!(reporting, watching);
    assert!(
        answers.iter().all(|s| *s == 200),
        "every callback accepted: {answers:?}"
    );
    // Silence: now it goes, and a late callback finds it terminal.
    let failed = stack
        .wait_delivery(
            &d.id.to_string(),
            "the delivery fails once progress stops",
            |r| r.status == DeliveryStatus::Failed,
        )
        .await;
    assert_eq!(failed.status_percent, 12, "it had reported progress");
    assert_eq!(
        progress(&stack, &secret, d.id, 50).await,
        409,
        "terminal now"
    );
}

/// A store whose records live one second, to create records of every kind that expire soon.
async fn short_lived_store(stack: &Stack) -> Store {
    Store::connect(&StoreOptions {
        pool_size: 1,
        active_ttl: Duration::from_secs(1),
        terminal_ttl: Duration::from_secs(1),
        ..StoreOptions::new(stack.redis().url())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn expired_deliveries_leave_every_index() {
    // Every service writes records that live two seconds (the shortest active TTL the configuration
    // accepts: the stale limit, the retry steps and the circuit windows must fit inside it).
    let stack = Stack::start_with(&[
        ("HOOKLINE__DELIVERY__ACTIVE_TTL_SECS", "2"),
        ("HOOKLINE__DELIVERY__TERMINAL_TTL_SECS", "1"),
        ("HOOKLINE__CLEANUP__STALE_AFTER_SECS", "1"),
        ("HOOKLINE__WORKER__RETRY_SCHEDULE_MS", "1000"),
        ("HOOKLINE__WORKER__CIRCUIT_OPEN_MS", "1000"),
    ])
    .await;
    let k = stack.store.keys().clone();
    let redis = raw(&stack).await;
    let rx = Receiver::start().await;
    let async_rx = Receiver::start().await;
    async_rx.set_async(true);
    // Delivered records of a known and an unknown event type, an in_progress one, a test delivery of a
    // subscription deleted afterwards, and an addon delivery.
    let (wildcard, _) = stack.verified_subscription(&rx, &["*"], None).await;
    let (slow, _) = stack
        .verified_subscription(&async_rx, &["threat_model.updated"], None)
        .await;
    let (deleted, _) = stack
        .verified_subscription(&rx, &["diagram.created"], None)
        .await;
    stack.publish("threat_model.created", None, json!({})).await;
    stack.publish("team.created", None, json!({})).await;
    stack.publish("threat_model.updated", None, json!({})).await;
    let (status, body) = stack
        .api(
            "POST",
            &format!("/admin/webhooks/subscriptions/{deleted}/test"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let addon = AddonId::new_v4();
    let mut invoked = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        wildcard,
        "addon.invoked",
        "{}",
        now_micros(),
    );
    invoked.addon_id = Some(addon);
    let short = short_lived_store(&stack).await;
    assert!(short.create_and_enqueue_delivery(&invoked).await.unwrap());
    rx.wait_for_deliveries(5, WAIT).await;
    async_rx.wait_for_deliveries(1, WAIT).await;
    let (status, _) = stack
        .api(
            "DELETE",
            &format!("/admin/webhooks/subscriptions/{deleted}"),
            None,
        )
        .await;
    assert_eq!(status, 204);

    let indexes = [
        k.deliveries_all(Shard::ZERO),
        k.deliveries_by_subscription(Shard::ZERO, wildcard),
        k.deliveries_by_subscription(Shard::ZERO, slow),
        k.deliveries_by_subscription(Shard::ZERO, deleted),
        k.deliveries_by_event(Shard::ZERO, "threat_model.created"),
        k.deliveries_by_event(Shard::ZERO, "team.created"),
        k.deliveries_by_event(Shard::ZERO, "threat_model.updated"),
        k.deliveries_by_event(Shard::ZERO, "diagram.created"),
        k.deliveries_by_event(Shard::ZERO, "addon.invoked"),
        k.deliveries_by_addon(Shard::ZERO, addon),
        k.deliveries_activity(Shard::ZERO),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Pending),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::InProgress),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Delivered),
        k.deliveries_by_status(Shard::ZERO, DeliveryStatus::Failed),
    ];
    let members = |key: String| {
        let redis = redis.clone();
        async move {
            let v: Vec<String> = redis
                .zrange(key, 0, -1, None, false, None, false)
                .await
                .unwrap();
            v
        }
    };
    // The records expire; their index entries stay.
    let ghosts = wait::until("every record expired", WAIT, || async {
        let ids = members(k.deliveries_all(Shard::ZERO)).await;
        for id in &ids {
            let exists: i64 = redis.exists(k.delivery(id.parse().unwrap())).await.unwrap();
            if exists == 1 {
                return None;
            }
        }
        Some(ids)
    })
    .await;
    // Three events to the wildcard subscription, one to the async one, a test delivery, an addon delivery.
    assert_eq!(ghosts.len(), 6, "{ghosts:?}");

    // A record that lives on, sharing indexes with the expired ones, must stay listed. It is created
    // terminal, so the worker acknowledges its queue entry without writing (and without the short TTL).
    let mut live = DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        wildcard,
        "team.created",
        "{}",
        now_micros(),
    );
    live.status = DeliveryStatus::Delivered;
    let lasting = Store::connect(&StoreOptions {
        pool_size: 1,
        active_ttl: Duration::from_secs(3600),
        terminal_ttl: Duration::from_secs(3600),
        ..StoreOptions::new(stack.redis().url())
    })
    .await
    .unwrap();
    assert!(lasting.create_and_enqueue_delivery(&live).await.unwrap());

    let cleanup = start_cleanup(&stack, &[]).await;
    wait::until("no index lists an expired delivery", WAIT, || async {
        for index in &indexes {
            if members(index.clone())
                .await
                .iter()
                .any(|m| ghosts.contains(m))
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    let all = members(k.deliveries_all(Shard::ZERO)).await;
    assert_eq!(all, [live.id.to_string()], "only the live record is left");
    assert_eq!(
        members(k.deliveries_by_event(Shard::ZERO, "team.created")).await,
        [live.id.to_string()]
    );
    let (_, page) = stack.api("GET", "/admin/webhooks/deliveries", None).await;
    assert_eq!(page["total"], 1, "no ghosts in the admin list");
    // Counters move after the script that did the work answers: wait for them rather than race them.
    wait::until("the pruning counted", WAIT, || async {
        (cleanup.metric(&items("index_pruned")).await >= ghosts.len() as f64 * 4.0).then_some(())
    })
    .await;
}

/// An active subscription stored directly, `age` old, with the given use history.
async fn old_subscription(
    stack: &Stack,
    age: i64,
    last_success: Option<i64>,
    failures: u32,
) -> SubscriptionId {
    let now = now_micros();
    let sub = Subscription {
        secret: Some("old-secret-0123456789".into()),
        challenges_sent: 1,
        last_successful_use: last_success.map(|ago| now - ago),
        publication_failures: failures,
        ..Subscription::new(
            "admin-1",
            "old",
            "https://receiver.example.com/hook",
            vec!["threat_model.created".into()],
            SubscriptionStatus::Active,
            now - age,
        )
    };
    assert!(stack.store.create_subscription(&sub).await.unwrap());
    sub.id
}

#[tokio::test]
async fn idle_and_broken_subscriptions_go_pending_delete_and_then_away_with_their_addons() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (healthy, _) = stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    let idle = old_subscription(&stack, 91 * DAY, None, 0).await;
    let broken = old_subscription(&stack, 30 * DAY, Some(8 * DAY), 10).await;
    let addon = Addon {
        id: AddonId::new_v4(),
        created_at: now_micros(),
        name: "scanner".into(),
        webhook_id: idle,
        description: None,
        icon: None,
        objects: Vec::new(),
        threat_model_id: None,
        parameters: Vec::new(),
    };
    assert_eq!(
        stack.store.create_addon(&addon).await.unwrap(),
        CreateAddon::Created
    );

    // A grace period makes pending_delete observable before the deletion.
    let cleanup = start_cleanup(&stack, &[("HOOKLINE__CLEANUP__DELETE_GRACE_SECS", "3")]).await;
    stack
        .wait_status(idle, SubscriptionStatus::PendingDelete)
        .await;
    stack
        .wait_status(broken, SubscriptionStatus::PendingDelete)
        .await;
    let (status, body) = stack
        .api(
            "GET",
            &format!("/admin/webhooks/subscriptions/{idle}"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("pending_delete"))
    );

    for id in [idle, broken] {
        wait::until(&format!("subscription {id} is deleted"), WAIT, || async {
            stack.subscription(id).await.is_none().then_some(())
        })
        .await;
        let (status, _) = stack
            .api("GET", &format!("/admin/webhooks/subscriptions/{id}"), None)
            .await;
        assert_eq!(status, 404);
    }
    assert!(
        stack.store.get_addon(addon.id).await.unwrap().is_none(),
        "its add-on went with it"
    );
    assert_eq!(
        stack.subscription(healthy).await.unwrap().status,
        SubscriptionStatus::Active
    );
    // Counters move after the script that did the work answers: wait for them rather than race them.
    wait::until("the lifecycle counted", WAIT, || async {
        (cleanup.metric(&items("subscription_deleted")).await == 2.0).then_some(())
    })
    .await;
    assert_eq!(cleanup.metric(&items("idle_pending_delete")).await, 1.0);
    assert_eq!(cleanup.metric(&items("broken_pending_delete")).await, 1.0);
    // The healthy subscription still receives events.
    stack.publish("threat_model.created", None, json!({})).await;
    rx.wait_for_deliveries(1, WAIT).await;
}

#[tokio::test]
async fn two_cleanup_processes_fail_each_stale_delivery_exactly_once() {
    const N: usize = 8;
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (sub, _, records) = in_progress_deliveries(&stack, &rx, N).await;
    assert_eq!(
        stack.subscription(sub).await.unwrap().publication_failures,
        0
    );

    let fast = [
        ("HOOKLINE__CLEANUP__INTERVAL_MS", "50"),
        ("HOOKLINE__CLEANUP__CHUNK_SIZE", "2"),
    ];
    let a = start_cleanup(&stack, &fast).await;
    let b = start_cleanup(&stack, &fast).await;
    for d in &records {
        stack
            .wait_delivery(&d.id.to_string(), "every stale delivery fails", |r| {
                r.status == DeliveryStatus::Failed
            })
            .await;
    }
    let total = || async {
        a.metric(&items("stale_failed")).await + b.metric(&items("stale_failed")).await
    };
    wait::until("both processes' metrics add up to N", WAIT, || async {
        (total().await == N as f64).then_some(())
    })
    .await;
    wait::never(
        "a delivery failed twice",
        Duration::from_secs(1),
        || async { total().await > N as f64 },
    )
    .await;
    assert_eq!(
        stack.subscription(sub).await.unwrap().publication_failures,
        N as u32,
        "one failure each"
    );
    for svc in [&a, &b] {
        assert!(
            svc.metric("hookline_cleanup_cycles_total{outcome=\"completed\"}")
                .await
                >= 1.0,
            "both processes ran cycles"
        );
    }
}

/// Runs `cleanup --once` with the stack's settings plus `extra`; returns its exit code and output.
async fn run_once(stack: &Stack, extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut env: HashMap<String, String> = stack.env.iter().cloned().collect();
    for (k, v) in FAST.iter().chain(extra) {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let env: Vec<(String, String)> = env.into_iter().collect();
    run_to_exit(ServiceBin::Cleanup, &["--once"], &env).await
}

#[tokio::test]
async fn once_runs_one_cycle_and_exits_zero() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let (sub, _, records) = in_progress_deliveries(&stack, &rx, 1).await;
    let d = &records[0];
    wait::until(
        "the delivery has been silent past the limit",
        WAIT,
        || async { (now_micros() - d.last_activity_at > 1_200_000).then_some(()) },
    )
    .await;

    let (code, logs) = run_once(&stack, &[]).await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("cleanup cycle completed"), "{logs}");
    assert_eq!(
        stack.delivery(&d.id.to_string()).await.status,
        DeliveryStatus::Failed
    );
    assert_eq!(
        stack.subscription(sub).await.unwrap().publication_failures,
        1
    );
    let held: Option<String> = raw(&stack)
        .await
        .get(stack.store.keys().cleanup_lease())
        .await
        .unwrap();
    assert_eq!(held, None, "the lease is released on exit");

    // A run that cannot work exits non-zero.
    let (code, logs) = run_once(&stack, &[("HOOKLINE__REDIS__URL", "redis://127.0.0.1:1")]).await;
    assert_ne!(code, Some(0), "{logs}");
}

#[tokio::test]
async fn streams_are_trimmed_only_below_what_every_group_acknowledged() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;
    let redis = raw(&stack).await;
    let stream = stack.store.keys().events_stream().to_owned();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            stack
                .publish("threat_model.created", None, json!({"i": i}))
                .await,
        );
    }
    rx.wait_for_deliveries(5, WAIT).await;
    // Another consumer of TMI's stream has read two entries and acknowledged only the first.
    let _: Value = redis
        .xgroup_create(&stream, "audit", "0", false)
        .await
        .unwrap();
    let _: Value = redis
        .xreadgroup("audit", "a1", Some(2), None, false, &stream, ">")
        .await
        .unwrap();
    let _: i64 = redis.xack(&stream, "audit", ids[0].clone()).await.unwrap();

    let cleanup = start_cleanup(&stack, &[]).await;
    let entries = || async {
        let v: Vec<(String, HashMap<String, String>)> =
            redis.xrange_values(&stream, "-", "+", None).await.unwrap();
        v.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    wait::until("the acknowledged head is trimmed", WAIT, || async {
        (entries().await.len() == 4).then_some(())
    })
    .await;
    wait::never(
        "a pending or unread entry is trimmed",
        Duration::from_secs(1),
        || async { entries().await != ids[1..] },
    )
    .await;
    // The audit consumer catches up: everything but the newest entry (the floor) goes.
    let _: Value = redis
        .xreadgroup("audit", "a1", Some(10), None, false, &stream, ">")
        .await
        .unwrap();
    let _: i64 = redis
        .xack(&stream, "audit", ids[1..].to_vec())
        .await
        .unwrap();
    wait::until("the rest is trimmed", WAIT, || async {
        (entries().await == ids[4..]).then_some(())
    })
    .await;
    // The counter moves after the trim script answers: wait for it rather than race it.
    wait::until("the trim counted", WAIT, || async {
        (cleanup.metric(&items("stream_trimmed")).await == 4.0).then_some(())
    })
    .await;
    wait::never(
        "more than the four trimmed entries counted",
        Duration::from_millis(500),
        || async { cleanup.metric(&items("stream_trimmed")).await > 4.0 },
    )
    .await;
    let pending: Value = redis.xpending(&stream, EVENTS_GROUP, ()).await.unwrap();
    assert_eq!(
        pending.into_array().first().and_then(Value::as_u64),
        Some(0),
        "the pipeline lost nothing"
    );
}

#[tokio::test]
async fn sigterm_ends_the_loop_cleanly_and_releases_the_lease() {
    let stack = Stack::start().await;
    let mut cleanup = start_cleanup(&stack, &[]).await;
    for path in ["/healthz", "/readyz"] {
        let (status, _, _) = http::request("GET", &cleanup.ops_url(path), &[], "").await;
        assert_eq!(status, 200, "{path}");
    }
    wait::until("a cycle has completed", WAIT, || async {
        (cleanup
            .metric("hookline_cleanup_cycles_total{outcome=\"completed\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    let status = cleanup.terminate().await;
    assert_eq!(status.code(), Some(0), "{}", cleanup.logs().join("\n"));
    let held: Option<String> = raw(&stack)
        .await
        .get(stack.store.keys().cleanup_lease())
        .await
        .unwrap();
    assert_eq!(held, None);
    assert!(cleanup.logs().iter().any(|l| l.contains("stopped")));
}
