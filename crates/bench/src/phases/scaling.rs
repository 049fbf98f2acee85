//! Scaling (phase `scaling`): a receiver that answers after `--slow-ms`, with 1, 2, 4 … worker processes.
//!
//! This phase overrides the worker's slots on purpose: each worker gets `--slots` slots and the same
//! per-host gate, so that with a slow receiver the slots are the only limit and the figure shows how
//! throughput grows with processes (default slots would need thousands of events per run to fill).

use std::time::Duration;

use crate::Args;
use crate::backend::RedisSpec;
use crate::load::burst;
use crate::measure::measure;
use crate::report;
use crate::stack::{Stack, StackSpec};

/// One run per `--workers` count; one table row each, relative to the first.
///
/// # Errors
/// A stack does not start or its warm-up fails.
pub(crate) async fn run(args: &Args) -> anyhow::Result<()> {
    println!(
        "\n## Scaling (receiver answers after {} ms; {} in-flight slots and per-host gate per worker; {} events by XADD)\n",
        args.slow_ms, args.slots, args.slow_events
    );
    let slots = args.slots.to_string();
    let mut rows = Vec::new();
    for &w in &args.workers {
        let stack = Stack::start(&StackSpec {
            redis: RedisSpec::Single,
            subscriptions: 1,
            gateway: false,
            workers: w,
            receiver_delay: Duration::from_millis(args.slow_ms),
            extra_env: vec![
                ("HOOKLINE__WORKER__MAX_IN_FLIGHT".into(), slots.clone()),
                (
                    "HOOKLINE__WORKER__MAX_IN_FLIGHT_PER_HOST".into(),
                    slots.clone(),
                ),
            ],
            service_env: &args.service_env,
        })
        .await?;
        let publisher = stack.publisher(0)?;
        stack.warm_up(&publisher).await?;
        let r = measure(
            &stack,
            args.drain_timeout(),
            burst(&publisher, args.slow_events, 128),
        )
        .await;
        report::print_run(&format!("{w} worker(s)"), &r);
        rows.push((w, r));
    }
    println!();
    println!("| workers | deliveries/s | × the first |");
    println!("|---:|---:|---:|");
    let base = rows.first().map_or(1.0, |(_, r)| r.deliveries_per_sec());
    for (w, r) in &rows {
        println!(
            "| {w} | {:.0} | {:.2} |",
            r.deliveries_per_sec(),
            r.deliveries_per_sec() / base
        );
    }
    for (w, r) in &rows {
        println!("\n### {w} worker(s): where the time goes\n");
        report::print_cpu(&r.usage, r.delivered);
        report::print_hops(&r.usage, &r.latencies, false);
    }
    Ok(())
}
