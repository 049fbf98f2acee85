//! The delivery-worker under hostile targets, failing receivers, many replicas and lost processes (#4).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use delivery_model::delivery::DeliveryStatus;
use delivery_model::subscription::SubscriptionStatus;
use serde_json::json;
use test_support::receiver::{Receiver, Response};
use test_support::service::ServiceBin;
use test_support::wait;

use crate::harness::{Stack, WAIT};

const EVENT: &str = "threat_model.updated";

/// Every loopback-range spelling the guard must refuse when loopback is not allowlisted.
#[tokio::test]
async fn ssrf_guard_refuses_loopback_in_every_spelling() {
    // Ten subscriptions stored directly plus one created through the API: over the default per-owner
    // quota of ten subscriptions (issue #6), which is not what this test is about.
    let stack = Stack::start_with(&[
        ("HOOKLINE__OUTBOUND__ALLOWLIST", ""),
        ("HOOKLINE__QUOTAS__MAX_SUBSCRIPTIONS", "20"),
    ])
    .await;
    let rx = Receiver::start().await;
    let port = rx.addr().port();
    let targets = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://127.0.0.2:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::ffff:7f00:1]:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://0x7f.0.0.1:{port}/hook"),
        format!("http://0177.0.0.1:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        // A name that resolves to loopback: what a rebinding attack ends with.
        format!("http://localhost:{port}/hook"),
    ];
    let mut subs = Vec::new();
    for t in &targets {
        subs.push((t.clone(), stack.active_subscription(t, &[EVENT]).await));
    }
    stack.publish(EVENT, None, json!({"name": "x"})).await;
    for (target, sub) in &subs {
        let rec = wait::until(&format!("delivery to {target} refused"), WAIT, || async {
            stack
                .deliveries_of(*sub)
                .await
                .into_iter()
                .find(|d| d.status == DeliveryStatus::Failed)
        })
        .await;
        let err = rec.last_error.unwrap_or_default();
        assert!(err.contains("destination refused"), "{target}: {err}");
        assert_eq!(rec.attempts, 1, "{target}: refused once, not retried");
    }
    assert!(rx.requests().is_empty(), "nothing reached the receiver");
    // The challenge of a subscription created through the API is refused the same way.
    let created = stack.create_subscription(&rx.url(), &[EVENT], None).await;
    let id = created["id"].as_str().unwrap().parse().unwrap();
    stack
        .wait_status(id, SubscriptionStatus::PendingDelete)
        .await;
    assert!(rx.requests().is_empty());
    let (_, _, metrics) =
        test_support::http::request("GET", &stack.worker.ops_url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics);
    assert!(
        text.lines()
            .any(|l| l.starts_with("hookline_worker_ssrf_refusals_total") && !l.ends_with(" 0")),
        "{text}"
    );
}

#[tokio::test]
async fn redirects_timeouts_and_oversized_bodies() {
    let stack = Stack::start_with(&[
        ("HOOKLINE__WORKER__MAX_ATTEMPTS", "1"),
        ("HOOKLINE__OUTBOUND__RESPONSE_HEADER_TIMEOUT_MS", "500"),
        ("HOOKLINE__OUTBOUND__ERROR_EXCERPT_BYTES", "64"),
    ])
    .await;
    let rx = Receiver::start().await;
    let (sub, _) = stack.verified_subscription(&rx, &[EVENT], None).await;
    let elsewhere = format!("http://127.0.0.1:{}/elsewhere", rx.addr().port());
    rx.push_response(Response::status(302).header("location", &elsewhere));
    rx.push_response(Response::status(200).delay(Duration::from_secs(2)));
    rx.push_response(Response::status(500).body(vec![b'x'; 3 * 1024 * 1024]));
    for i in 0..3 {
        stack.publish(EVENT, None, json!({"i": i})).await;
        rx.wait_for_deliveries(i + 1, WAIT).await;
    }
    let records = wait::until("three failed deliveries", WAIT, || async {
        let d = stack.deliveries_of(sub).await;
        (d.len() == 3 && d.iter().all(|r| r.status == DeliveryStatus::Failed)).then_some(d)
    })
    .await;
    let mut errors: Vec<String> = records
        .into_iter()
        .map(|r| r.last_error.unwrap_or_default())
        .collect();
    errors.sort();
    assert!(
        errors.iter().any(|e| e.starts_with("HTTP 302")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("timed out")), "{errors:?}");
    let big = errors.iter().find(|e| e.starts_with("HTTP 500")).unwrap();
    assert!(big.len() < 120 && big.ends_with("...[truncated]"), "{big}");
    assert!(
        rx.requests().iter().all(|r| r.path != "/elsewhere"),
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let stack = Stack::start_with(&[("HOOKLINE__WORKER__RETRY_SCHEDULE_MS", "100,3000")]).await;
    let rx = Receiver::start().await;
    rx.push_response(Response::status(503).header("retry-after", "2"));
    stack.verified_subscription(&rx, &[EVENT], None).await;
    stack.publish(EVENT, None, json!({})).await;
    let got = rx.wait_for_deliveries(2, WAIT).await;
    let gap = got[1].received_at.duration_since(got[0].received_at);
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, before Retry-After"
    );
    assert!(
        gap < Duration::from_millis(3000),
        "waited the schedule's step instead: {gap:?}"
    );
}

#[tokio::test]
async fn circuit_opens_reschedules_without_attempts_half_opens_with_one_probe_and_closes() {
    let stack = Stack::start_with(&[
        ("HOOKLINE__WORKER__CIRCUIT_FAILURE_THRESHOLD", "3"),
        ("HOOKLINE__WORKER__CIRCUIT_OPEN_MS", "1500,1500"),
        ("HOOKLINE__WORKER__RETRY_SCHEDULE_MS", "50"),
        ("HOOKLINE__WORKER__MAX_ATTEMPTS", "20"),
    ])
    .await;
    let rx = Receiver::start().await;
    let (sub, _) = stack.verified_subscription(&rx, &[EVENT], None).await;
    rx.set_default_status(500);
    stack.publish(EVENT, None, json!({"n": 1})).await;
    rx.wait_for_deliveries(3, WAIT).await;
    let opened_at = Instant::now();
    // Open: the delivery is rescheduled to the reopen time without consuming an attempt.
    let rec = wait::until("circuit open recorded", WAIT, || async {
        stack
            .deliveries_of(sub)
            .await
            .pop()
            .filter(|d| d.last_error.as_deref() == Some("circuit open"))
    })
    .await;
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.status, DeliveryStatus::Pending);
    // More work for the same host while open: none of it is sent.
    stack.publish(EVENT, None, json!({"n": 2})).await;
    stack.publish(EVENT, None, json!({"n": 3})).await;
    wait::never(
        "a request while the circuit is open",
        Duration::from_millis(1000),
        || async { rx.deliveries().len() > 3 },
    )
    .await;
    // Half-open: exactly one probe goes first; make it slow and successful.
    rx.set_default_status(200);
    rx.push_response(Response::status(200).delay(Duration::from_millis(1500)));
    let probes = rx.wait_for_deliveries(4, WAIT).await;
    assert!(
        probes[3]
            .received_at
            .duration_since(rx.deliveries()[2].received_at)
            >= Duration::from_millis(1000)
    );
    assert!(opened_at.elapsed() >= Duration::from_millis(1000));
    wait::never(
        "a second request during the probe",
        Duration::from_millis(1200),
        || async { rx.deliveries().len() > 4 },
    )
    .await;
    // The probe succeeded: closed, everything is delivered.
    let all = wait::until("all delivered", Duration::from_secs(20), || async {
        let d = stack.deliveries_of(sub).await;
        (d.len() == 3 && d.iter().all(|r| r.status == DeliveryStatus::Delivered)).then_some(d)
    })
    .await;
    let first = all.iter().find(|d| d.attempts >= 4).unwrap();
    assert_eq!(
        first.attempts, 4,
        "three failures and the probe: reschedules consumed nothing"
    );
    let others: Vec<u32> = all
        .iter()
        .filter(|d| d.id != first.id)
        .map(|d| d.attempts)
        .collect();
    assert_eq!(
        others,
        [1, 1],
        "deliveries held back by the open circuit consumed no attempt"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_attempts() {
    let mut stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack.verified_subscription(&rx, &[EVENT], None).await;
    rx.set_delay(Duration::from_millis(1500));
    stack.publish(EVENT, None, json!({})).await;
    let got = rx.wait_for_deliveries(1, WAIT).await;
    let id = got[0].delivery_id().unwrap().to_owned();
    let status = stack.worker.terminate().await;
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(
        stack.delivery(&id).await.status,
        DeliveryStatus::Delivered,
        "finished before exiting"
    );
}

#[tokio::test]
async fn three_workers_two_consumers_and_a_worker_killed_mid_run() {
    const SLOTS: usize = 8;
    let slots = SLOTS.to_string();
    let limits = [("HOOKLINE__WORKER__MAX_IN_FLIGHT", slots.as_str())];
    let stack = Stack::start_with(&limits).await;
    let _consumer2 = stack.replica(ServiceBin::EventConsumer, &[]).await;
    let mut victim = stack.replica(ServiceBin::DeliveryWorker, &limits).await;
    let _worker3 = stack.replica(ServiceBin::DeliveryWorker, &limits).await;
    let rx = Receiver::start().await;
    let (sub, _) = stack.verified_subscription(&rx, &[EVENT], None).await;
    rx.set_delay(Duration::from_millis(10));

    const N: usize = 600;
    for i in 0..N {
        stack.publish(EVENT, None, json!({"i": i})).await;
    }
    wait::until("half the deliveries", WAIT, || async {
        (rx.deliveries().len() >= N / 2).then_some(())
    })
    .await;
    victim.kill9();

    let records = wait::until(
        "every delivery delivered",
        Duration::from_secs(40),
        || async {
            let d = stack.deliveries_of(sub).await;
            (d.len() == N && d.iter().all(|r| r.status == DeliveryStatus::Delivered)).then_some(d)
        },
    )
    .await;
    let counts = rx.count_by_delivery_id();
    let ids: HashSet<String> = records.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(counts.len(), N, "every delivery reached the receiver");
    assert!(counts.keys().all(|k| ids.contains(k)));
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= SLOTS,
        "{duplicates} duplicate sends; only the victim's in-flight attempts (≤ {SLOTS}) may repeat"
    );
    let _ = stack.worker.ops_addr();
}

#[tokio::test]
async fn redis_restarted_empty_mid_run_recovers_without_restarts() {
    let mut stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack.verified_subscription(&rx, &[EVENT], None).await;
    stack.publish(EVENT, None, json!({"before": true})).await;
    rx.wait_for_deliveries(1, WAIT).await;

    stack.redis_mut().restart_empty();
    // Everything was lost: subscribe again and deliver again, with the same processes.
    let rx2 = Receiver::start().await;
    let (_, secret) = wait::until("the API works again", Duration::from_secs(20), || async {
        let (status, body) = stack
            .api(
                "POST",
                "/admin/webhooks/subscriptions",
                Some(json!({"name": "again", "url": rx2.url(), "events": [EVENT]})),
            )
            .await;
        (status == 201).then_some((
            body["id"].clone(),
            body["secret"].as_str().unwrap_or_default().to_owned(),
        ))
    })
    .await;
    rx2.wait_for_challenges(1, Duration::from_secs(20)).await;
    wait::until(
        "a delivery after the restart",
        Duration::from_secs(20),
        || async {
            stack.publish(EVENT, None, json!({"after": true})).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            (!rx2.deliveries().is_empty()).then_some(())
        },
    )
    .await;
    assert!(rx2.deliveries()[0].verify_signature(&secret));
    assert!(stack.consumer.is_running() && stack.worker.is_running() && stack.api.is_running());
}

#[tokio::test]
async fn sigterm_exits_without_waiting_out_redis_timeouts_when_redis_is_gone() {
    // Nothing is in flight, so no service may spend long on a Redis that is not there: before the fix the
    // worker took 15 s (a queue read and `QUIT` waiting out their timeouts), three times its grace period
    // (5 s in these tests). The bound leaves room for a loaded machine.
    const BOUND: Duration = Duration::from_secs(10);
    let mut stack = Stack::start().await;
    let rx = Receiver::start().await;
    stack.verified_subscription(&rx, &[EVENT], None).await;
    stack.redis_mut().kill();
    stack.worker.sigterm();
    stack.consumer.sigterm();
    stack.api.sigterm();
    for svc in [&mut stack.worker, &mut stack.consumer, &mut stack.api] {
        let status = svc.wait_exit(BOUND).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "{} exits cleanly within {BOUND:?} of SIGTERM: {status:?}\n{}",
            svc.bin().name(),
            svc.logs().join("\n")
        );
    }
}
