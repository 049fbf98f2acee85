//! Half-open connections: Redis stops answering without closing anything (a blackholing proxy between the
//! services and Redis). Every service notices within `redis.command_timeout_ms`, the worker takes no new
//! lease, nothing acknowledged is lost, and every service recovers by itself once the path returns.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::proxy::Proxy;
use test_support::receiver::Receiver;
use test_support::redis::RedisServer;
use test_support::service::{Service, ServiceBin};
use test_support::{http, wait};

use crate::harness::Stack;

const EVENT: &str = "threat_model.updated";
/// `redis.command_timeout_ms` of the services in this test.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
/// Room for the probe's own round trip and polling on a shared, loaded machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// `/readyz` status of `url`, or 0 when the service answers nothing within twice the bound.
async fn readyz(url: &str) -> u16 {
    match tokio::time::timeout(2 * COMMAND_TIMEOUT, http::try_request("GET", url, &[], "")).await {
        Ok(Ok((status, _, _))) => status,
        _ => 0,
    }
}

/// Every service's `/readyz` status, probed concurrently.
async fn all_ready(urls: &[String; 4]) -> Vec<u16> {
    let (a, b, c, d) = tokio::join!(
        readyz(&urls[0]),
        readyz(&urls[1]),
        readyz(&urls[2]),
        readyz(&urls[3])
    );
    vec![a, b, c, d]
}

/// The `i` of every delivered event that was acknowledged (each `data.i` names one published event; the
/// refused one, `-1`, is left out: at least once allows it through after all).
fn delivered(rx: &Receiver) -> Vec<i64> {
    rx.deliveries()
        .iter()
        .filter_map(|r| r.json().and_then(|j| j["data"]["i"].as_i64()))
        .filter(|i| *i >= 0)
        .collect()
}

/// The pipeline services and cleanup, reaching Redis only through a proxy, with a short command timeout.
struct Behind {
    proxy: Proxy,
    stack: Stack,
    cleanup: Service,
    /// Every service's `/readyz`: api-gateway, event-consumer, delivery-worker, cleanup.
    urls: [String; 4],
}

async fn start_behind_proxy() -> Behind {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port()).await;
    let timeout_ms = COMMAND_TIMEOUT.as_millis().to_string();
    let stack = Stack::start_via(
        redis,
        &proxy.redis_url(),
        &[
            ("HOOKLINE__REDIS__COMMAND_TIMEOUT_MS", &timeout_ms),
            // Few slots and a slow receiver, so that the queue holds work the worker has not leased yet
            // when Redis goes silent.
            ("HOOKLINE__WORKER__MAX_IN_FLIGHT", "4"),
            ("HOOKLINE__WORKER__MAX_IN_FLIGHT_PER_HOST", "2"),
        ],
    )
    .await;
    let cleanup = stack.replica(ServiceBin::Cleanup, &[]).await;
    let urls = [
        stack.api.api_url("/readyz"),
        format!("http://{}/readyz", stack.consumer.ops_addr()),
        format!("http://{}/readyz", stack.worker.ops_addr()),
        format!("http://{}/readyz", cleanup.ops_addr()),
    ];
    Behind {
        proxy,
        stack,
        cleanup,
        urls,
    }
}

/// Publishes events `0..n` carrying `data.i`: even ones through `POST /events` (acknowledged by the API),
/// odd ones appended straight to Redis.
async fn publish_events(stack: &Stack, n: i64) {
    for i in 0..n {
        if i % 2 == 0 {
            let body = json!({"event_type": EVENT, "object_id": format!("obj-{i}"), "object_type": "threat_model", "data": {"i": i}});
            let (status, answer) = stack.api("POST", "/events", Some(body)).await;
            assert_eq!(status, 202, "{answer}");
        } else {
            stack.publish(EVENT, None, json!({"i": i})).await;
        }
    }
}

#[tokio::test]
async fn blackholed_redis_is_noticed_within_the_command_timeout_and_nothing_is_lost() {
    let Behind {
        proxy,
        stack,
        cleanup,
        urls,
    } = start_behind_proxy().await;
    let rx = Receiver::start().await;
    stack.verified_subscription(&rx, &[EVENT], None).await;
    assert_eq!(all_ready(&urls).await, vec![200; 4], "ready before");

    // Deliveries flowing: events acknowledged by the API and events appended straight to Redis.
    rx.set_delay(Duration::from_millis(150));
    const N: i64 = 40;
    publish_events(&stack, N).await;
    wait::until("deliveries flowing", Duration::from_secs(15), || async {
        (rx.deliveries().len() >= 4).then_some(())
    })
    .await;

    // Redis goes silent. Every service's readiness says so within the command timeout.
    proxy.blackhole();
    let silent_at = Instant::now();
    // Appended while the services cannot see Redis: delivered after the path returns.
    const LATE: i64 = 5;
    for i in N..N + LATE {
        stack.publish(EVENT, None, json!({"i": i})).await;
    }
    wait::until(
        "every /readyz answers 503",
        COMMAND_TIMEOUT + MARGIN,
        || async { (all_ready(&urls).await == vec![503; 4]).then_some(()) },
    )
    .await;
    let noticed = silent_at.elapsed();

    // No new lease: the attempts in flight when Redis went silent may still reach the receiver, nothing
    // after them does (the queue still holds unleased work).
    let rx_ref = &rx;
    let settled = wait::until(
        "in-flight attempts end",
        Duration::from_secs(5),
        || async move {
            let before = rx_ref.deliveries().len();
            tokio::time::sleep(Duration::from_millis(400)).await;
            (rx_ref.deliveries().len() == before).then_some(before)
        },
    )
    .await;
    let before_silence = delivered(&rx).into_iter().collect::<HashSet<_>>().len();
    assert!(
        before_silence < usize::try_from(N).unwrap(),
        "work was left to lease when Redis went silent ({before_silence} of {N} delivered)"
    );
    wait::never(
        "a delivery while Redis is unreachable",
        Duration::from_millis(1500),
        || async { rx.deliveries().len() > settled },
    )
    .await;
    let post = json!({"event_type": EVENT, "object_id": "late", "object_type": "threat_model", "data": {"i": -1}})
    .to_string();
    let admin = crate::harness::admin();
    let refused = tokio::time::timeout(
        2 * COMMAND_TIMEOUT + MARGIN,
        stack.send(Some(&admin), "POST", "/events", &[], &post),
    )
    .await
    .expect("POST /events answers within the command timeout");
    assert_eq!(
        refused.status, 503,
        "not acknowledged while Redis is silent"
    );

    // The path returns, but the connections open during the silence never do (as after a NAT lost its
    // state): each service must replace them by itself.
    let accepted_before = proxy.accepted();
    proxy.restore_new_only();
    let restored_at = Instant::now();
    wait::until(
        "every /readyz answers 200 again",
        Duration::from_secs(20),
        || async { (all_ready(&urls).await == vec![200; 4]).then_some(()) },
    )
    .await;
    let ready_again = restored_at.elapsed();
    assert!(
        proxy.accepted() > accepted_before,
        "services opened new connections"
    );

    // Nothing acknowledged is lost; only attempts in flight at the silence may be sent twice.
    let expected: HashSet<i64> = (0..N + LATE).collect();
    let got = wait::until("every event delivered", Duration::from_secs(20), || async {
        let got: HashSet<i64> = delivered(&rx).into_iter().collect();
        (got == expected).then_some(got)
    })
    .await;
    let caught_up = restored_at.elapsed();
    assert_eq!(got, expected);
    let all = delivered(&rx);
    let twice = all.len() - got.len();
    assert!(
        twice <= 4,
        "{twice} deliveries sent twice (at most the 4 slots)"
    );
    eprintln!(
        "half-open: noticed in {noticed:?}; ready {ready_again:?} and all delivered {caught_up:?} after the \
         path returned; {before_silence} delivered before, {} after; {twice} sent twice",
        got.len() - before_silence
    );
    drop(cleanup);
}
