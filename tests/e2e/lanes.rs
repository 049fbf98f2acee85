//! FIFO lanes end to end (issue #18): an ordered subscription created through the API gets every key's
//! events in order across two consumers, two workers, random receiver failures and a worker killed with
//! SIGKILL mid-run,
//! while an unordered subscription keeps flowing; a lane that blocks on failure waits for the
//! administrator's skip.

use std::collections::BTreeMap;
use std::time::Duration;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::event::StreamEvent;
use delivery_model::ids::SubscriptionId;
use delivery_model::subscription::SubscriptionStatus;
use serde_json::{Value, json};
use test_support::receiver::{Receiver, Response};
use test_support::service::ServiceBin;
use test_support::wait;

use crate::harness::{On, Stack};

const EVENT: &str = "threat_model.updated";

/// Ten attempts 50 ms apart: with one answer in five a 500, a delivery fails every attempt with
/// probability 0.2^10 ≈ 10⁻⁷, so the run's 1,000 deliveries all end delivered. The host's circuit breaker
/// and endpoint health stay out of it (a run of 500s would otherwise open the circuit): this test is about
/// order; `worker.rs` tests the breaker.
const SETTINGS: [(&str, &str); 5] = [
    ("HOOKLINE__WORKER__RETRY_SCHEDULE_MS", "50"),
    ("HOOKLINE__WORKER__MAX_ATTEMPTS", "10"),
    ("HOOKLINE__WORKER__CIRCUIT_FAILURE_THRESHOLD", "100000"),
    ("HOOKLINE__WORKER__DISABLE_AFTER_FAILURES", "0"),
    ("HOOKLINE__WORKER__BLOCK_MS", "100"),
];

/// Creates a subscription through the API with `ordering` fields merged into the body, and waits until the
/// receiver has verified it.
async fn create(stack: &Stack, rx: &Receiver, ordering: Value) -> SubscriptionId {
    let mut body = json!({"name": "lanes", "url": rx.url(), "events": [EVENT]});
    if let (Some(b), Some(o)) = (body.as_object_mut(), ordering.as_object()) {
        b.extend(o.clone());
    }
    let (status, created) = stack
        .api("POST", "/admin/webhooks/subscriptions", Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    for (k, v) in ordering.as_object().unwrap() {
        assert_eq!(&created[k], v, "the answer shows {k}");
    }
    let id: SubscriptionId = created["id"].as_str().unwrap().parse().unwrap();
    stack.wait_status(id, SubscriptionStatus::Active).await;
    id
}

/// Publishes event `seq` of object `key` as TMI's emitter does.
async fn publish(stack: &Stack, key: &str, seq: usize) {
    let payload = json!({"event_type": EVENT, "object_id": key, "data": {"seq": seq}});
    let event = StreamEvent {
        event_type: EVENT.into(),
        threat_model_id: None,
        object_id: Some(key.to_owned()),
        object_type: Some("threat_model".into()),
        owner_id: None,
        timestamp: None,
        payload: payload.to_string(),
        delivery_id: None,
        trace: None,
    };
    stack.store.publish_event(&event).await.unwrap();
}

/// The (key, seq) of every delivery `rx` received, in arrival order.
fn arrivals(rx: &Receiver) -> Vec<(String, u64)> {
    rx.deliveries()
        .iter()
        .map(|r| {
            let v = r.json().unwrap();
            (
                v["object_id"].as_str().unwrap().to_owned(),
                v["data"]["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A deterministic stream of receiver answers: one in five a 500 (a small LCG, so a failure reproduces).
fn random_failures(n: usize) -> impl Iterator<Item = u16> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n).map(move |_| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if (x >> 33).is_multiple_of(5) {
            500
        } else {
            200
        }
    })
}

#[tokio::test]
async fn keys_arrive_in_order_through_random_failures_two_workers_and_a_killed_worker() {
    keys_arrive_in_order_on(On::Single).await;
}

/// On a cluster the lanes live in 12 shards and the consumers raise the watermark after acknowledging.
#[tokio::test]
async fn keys_arrive_in_order_on_a_cluster() {
    keys_arrive_in_order_on(On::Cluster).await;
}

async fn keys_arrive_in_order_on(on: On) {
    const KEYS: usize = 10;
    const PER_KEY: usize = 100;
    let stack = Stack::start_for(on, &SETTINGS).await;
    let mut second = stack.replica(ServiceBin::DeliveryWorker, &SETTINGS).await;
    // Two consumers too: entries of one key fanned out by both, in any order, still line up.
    let consumer = stack.replica(ServiceBin::EventConsumer, &SETTINGS).await;
    let (ordered_rx, plain_rx) = (Receiver::start().await, Receiver::start().await);
    let ordered = create(
        &stack,
        &ordered_rx,
        json!({"ordering": "key", "ordering_key": "object_id"}),
    )
    .await;
    let _plain = create(&stack, &plain_rx, json!({})).await;
    for status in random_failures(4 * KEYS * PER_KEY) {
        ordered_rx.push_response(Response::status(status));
    }

    // Round-robin over the keys, so every lane has work all along.
    for seq in 0..PER_KEY {
        for k in 0..KEYS {
            publish(&stack, &format!("key-{k}"), seq).await;
        }
    }
    wait::until(
        "a third of the ordered deliveries before the kill",
        Duration::from_secs(60),
        || async { (ordered_rx.deliveries().len() >= KEYS * PER_KEY / 3).then_some(()) },
    )
    .await;
    assert!(second.kill9().is_some(), "the second worker was running");

    let records = wait::until(
        "every ordered delivery delivered",
        Duration::from_secs(120),
        || async {
            let records = stack.deliveries_of(ordered).await;
            (records.len() == KEYS * PER_KEY
                && records
                    .iter()
                    .all(|r| r.status == DeliveryStatus::Delivered))
            .then_some(records)
        },
    )
    .await;
    assert_eq!(records.len(), KEYS * PER_KEY);

    // In order per key: a key's events arrive by increasing seq. A repeat of the same seq is the killed
    // worker's attempt sent again or a retry after a 500, never a later event overtaking it.
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, seq) in arrivals(&ordered_rx) {
        by_key.entry(key).or_default().push(seq);
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, seqs) in &by_key {
        assert!(
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "{key} out of order: {seqs:?}"
        );
        let mut distinct = seqs.clone();
        distinct.dedup();
        assert_eq!(
            distinct,
            (0..PER_KEY as u64).collect::<Vec<_>>(),
            "{key} got every event"
        );
    }
    let retried = ordered_rx.deliveries().len() - KEYS * PER_KEY;
    assert!(
        retried > 0,
        "the receiver's 500s made some deliveries go again"
    );
    // Most of a key's events joined its lane behind an earlier one: the consumers counted lane deferrals
    // (at most one per ordered delivery; an entry fanned out twice counts once, the second creates nothing).
    let sample = r#"hookline_consumer_deferrals_total{reason="lane"}"#;
    let lane_deferrals = stack.consumer.metric(sample).await + consumer.metric(sample).await;
    assert!(
        lane_deferrals > 0.0 && lane_deferrals <= (KEYS * PER_KEY) as f64,
        "{lane_deferrals} lane deferrals"
    );

    // The unordered subscription got every event too (the killed worker's attempts in flight may have
    // gone twice).
    let plain = plain_rx
        .wait_for_deliveries(KEYS * PER_KEY, Duration::from_secs(30))
        .await;
    let distinct: std::collections::BTreeSet<(String, u64)> =
        arrivals(&plain_rx).into_iter().collect();
    assert_eq!(distinct.len(), KEYS * PER_KEY, "{} requests", plain.len());
}

#[tokio::test]
async fn a_lane_that_blocks_on_failure_waits_for_the_administrators_skip() {
    let stack = Stack::start_with(&[
        ("HOOKLINE__WORKER__RETRY_SCHEDULE_MS", "50"),
        ("HOOKLINE__WORKER__MAX_ATTEMPTS", "2"),
    ])
    .await;
    let rx = Receiver::start().await;
    let sub = create(
        &stack,
        &rx,
        json!({"ordering": "subscription", "lane_on_failure": "block"}),
    )
    .await;
    // The first event fails both its attempts; the lane then holds the other two.
    rx.push_response(Response::status(500));
    rx.push_response(Response::status(500));
    for seq in 0..3 {
        publish(&stack, "only", seq).await;
    }
    let first = wait::until("the head failed", Duration::from_secs(15), || async {
        let records = stack.deliveries_of(sub).await;
        records
            .iter()
            .find(|r| r.status == DeliveryStatus::Failed)
            .map(|r| r.id)
    })
    .await;
    wait::never(
        "the blocked lane sends its next delivery",
        Duration::from_millis(500),
        || async { rx.deliveries().len() > 2 },
    )
    .await;

    let path = format!("/admin/webhooks/subscriptions/{sub}/lanes/skip");
    let (status, body) = stack.api("POST", &path, Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["skipped_delivery_id"], json!(first.to_string()));
    let got = rx.wait_for_deliveries(4, Duration::from_secs(15)).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|r| r.json().unwrap()["data"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![0, 0, 1, 2]);
    // Nothing left to skip.
    let (status, body) = stack.api("POST", &path, Some(json!({}))).await;
    assert_eq!(status, 409, "{body}");
}
