//! A real Prometheus scraping the real binaries (issue #19): every service's ops listener is a target and
//! up; the delivered count Prometheus sees equals what the receiver counted, and so do the SLO histograms;
//! the lag gauges are exported; the rule file loads and every rule evaluates in a real server; every PromQL
//! expression of the Grafana dashboard parses and runs.
//!
//! Needs Debian's `prometheus` package: `make test` installs it and sets `HOOKLINE_REQUIRE_PROMETHEUS`, so
//! there a missing binary fails; a plain `cargo test` without the binary skips with a message.

use std::path::PathBuf;

use serde_json::{Value, json};
use test_support::prometheus::{self, PrometheusServer};
use test_support::receiver::Receiver;
use test_support::service::ServiceBin;
use test_support::wait;

use crate::harness::{Stack, WAIT};

const EVENTS: usize = 20;

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// The Prometheus binary, or `None` (after saying why) when this run may skip.
fn prometheus_binary() -> Option<PathBuf> {
    match PrometheusServer::binary() {
        Some(bin) => Some(bin),
        None if PrometheusServer::required() => panic!(
            "no prometheus binary, but {} is set (make test): run scripts/install-deps.sh",
            prometheus::REQUIRE_ENV
        ),
        None => {
            eprintln!(
                "SKIPPED: no `prometheus` on PATH (apt-get install prometheus, or set {}); make test installs it",
                prometheus::BIN_ENV
            );
            None
        }
    }
}

/// Every PromQL expression of the dashboard, with Grafana's interval variables replaced by durations.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file("deploy/grafana/hookline-dashboard.json"))
        .expect("read the dashboard");
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$__range", "1h");
            out.push((panel["title"].as_str().unwrap_or("").to_owned(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_and_counts_what_the_receiver_got() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let stack = Stack::start().await;
    let cleanup = stack.replica(ServiceBin::Cleanup, &[]).await;
    let rx = Receiver::start().await;
    stack
        .verified_subscription(&rx, &["threat_model.created"], None)
        .await;

    let targets = [
        ("api-gateway", stack.api.ops_addr()),
        ("event-consumer", stack.consumer.ops_addr()),
        ("delivery-worker", stack.worker.ops_addr()),
        ("cleanup", cleanup.ops_addr()),
    ];
    let rules = repo_file("deploy/prometheus/hookline-rules.yaml");
    let prom = PrometheusServer::start(&bin, &targets, &[rules]).await;
    let mut jobs = prom.wait_targets_up(targets.len()).await;
    jobs.sort();
    assert_eq!(
        jobs,
        [
            "api-gateway",
            "cleanup",
            "delivery-worker",
            "event-consumer"
        ]
    );

    // One event first, seen by a scrape, then the rest: a counter series is born at its first increment, and
    // `rate()` over a series whose first sample already holds every delivery is 0, which would make the SLO
    // ratio 0/0 (NaN) when all deliveries land between two scrapes.
    let delivered = r#"sum(hookline_worker_deliveries_total{outcome="delivered"})"#;
    stack
        .publish("threat_model.created", None, json!({"n": 0}))
        .await;
    wait::until("Prometheus sees the first delivery", WAIT, || async {
        (prom.value(delivered).await == Some(1.0)).then_some(())
    })
    .await;
    for i in 1..EVENTS {
        stack
            .publish("threat_model.created", None, json!({"n": i}))
            .await;
    }
    let received = rx.wait_for_deliveries(EVENTS, WAIT).await.len();
    assert_eq!(received, EVENTS);

    // Scrapes lag the counters by up to a scrape interval: wait for the value, then hold it to the count.
    wait::until(
        &format!("Prometheus sees {EVENTS} delivered deliveries"),
        WAIT,
        || async { (prom.value(delivered).await == Some(EVENTS as f64)).then_some(()) },
    )
    .await;
    assert_eq!(
        rx.deliveries().len(),
        EVENTS,
        "the receiver got no more than it counted"
    );
    // The SLO histograms saw each delivery once, all well within the SLO's 60 s bucket.
    for expr in [
        "sum(hookline_worker_event_to_delivered_seconds_count)",
        r#"sum(hookline_worker_event_to_delivered_seconds_bucket{le="60"})"#,
        "sum(hookline_worker_event_to_first_attempt_seconds_count)",
    ] {
        wait::until(&format!("{expr} = {EVENTS}"), WAIT, || async {
            (prom.value(expr).await == Some(EVENTS as f64)).then_some(())
        })
        .await;
    }
    // The lag gauges exist; once the samplers have run after the last delivery, they are back to zero.
    for expr in [
        "max(hookline_worker_queue_oldest_age_seconds)",
        "max(hookline_consumer_events_oldest_age_seconds)",
        "max(hookline_consumer_events_lag)",
        "max(hookline_consumer_events_pending)",
    ] {
        wait::until(&format!("{expr} = 0"), WAIT, || async {
            (prom.value(expr).await == Some(0.0)).then_some(())
        })
        .await;
    }

    // The rule file loads in a real server and every rule evaluates without error.
    wait::until("every rule evaluated healthy", WAIT, || async {
        let rules = prom.api("/api/v1/rules").await;
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if let Some(bad) = all.iter().find(|r| r["health"] == "err") {
            panic!("rule {} fails: {}", bad["name"], bad["lastError"]);
        }
        (!all.is_empty() && all.iter().all(|r| r["health"] == "ok")).then_some(())
    })
    .await;
    // The recording rule has a value once its window holds two scrapes of the deliveries.
    let ratio = wait::until("the SLO error ratio is recorded", WAIT, || async {
        prom.value("hookline:delivery_slo_errors:ratio_rate5m")
            .await
    })
    .await;
    assert!(
        ratio.abs() < f64::EPSILON,
        "no delivery was late or failed, so the SLO error ratio is 0, not {ratio}"
    );

    // Every dashboard expression parses and runs against this server.
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "the dashboard has its panels");
    let mut failures = Vec::new();
    for (panel, expr) in &exprs {
        if let Err(e) = prom.try_query(expr).await {
            failures.push(format!("{panel}: {expr}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard expressions Prometheus refuses:\n{}",
        failures.join("\n")
    );
}
