//! Processes dying and restarting: nothing lost, nothing duplicated.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use test_support::receiver::Receiver;
use test_support::wait;

use crate::harness::Stack;

#[tokio::test]
async fn consumer_killed_mid_stream_loses_nothing_and_duplicates_nothing() {
    let mut stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack
        .verified_subscription(&rx, &["threat_model.updated"], None)
        .await;

    const N: usize = 300;
    let publisher = {
        let store = stack.store.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let payload = json!({"event_type": "threat_model.updated", "object_id": format!("obj-{i}"), "data": {"i": i}});
                let ev = delivery_model::event::StreamEvent {
                    event_type: "threat_model.updated".into(),
                    threat_model_id: None,
                    object_id: Some(format!("obj-{i}")),
                    object_type: Some("threat_model".into()),
                    owner_id: None,
                    timestamp: None,
                    payload: payload.to_string(),
                    delivery_id: None,
                    trace: None,
                };
                store.publish_event(&ev).await.unwrap();
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    // Kill the consumer once part of the stream has been processed, then bring it back (same name).
    wait::until(
        "some deliveries before the kill",
        Duration::from_secs(15),
        || async { (rx.deliveries().len() >= 20).then_some(()) },
    )
    .await;
    stack.consumer.kill9();
    publisher.await.unwrap();
    stack.consumer.restart().await;

    let got = rx.wait_for_deliveries(N, Duration::from_secs(30)).await;
    wait::never(
        "more deliveries than events",
        Duration::from_secs(1),
        || async { rx.deliveries().len() > N },
    )
    .await;
    let objects: HashSet<i64> = got
        .iter()
        .map(|r| r.json().unwrap()["data"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(objects.len(), N, "every event delivered exactly once");
    let ids = rx.count_by_delivery_id();
    assert!(ids.values().all(|&c| c == 1), "no delivery sent twice");
}
