//! Saturation (phase `saturation`): `--producers` concurrent producers on `POST /events`, each sending its
//! next event as soon as the gateway answers, for `--saturation-secs`; once to one endpoint and once to
//! `--fanout-subscriptions` endpoints sharing one receiver host. What a fleet of producers gets out of one
//! box: deliveries/s, latency, how long the backlog takes to drain after the last accepted event, and how
//! busy the machine was.

use std::time::Duration;

use crate::Args;
use crate::backend::RedisSpec;
use crate::load::saturate;
use crate::measure::{Run, measure};
use crate::probes::print_debug;
use crate::report::{self, quantile_ms};
use crate::stack::{Stack, StackSpec};

/// Runs one saturation case per subscription count in `cases`.
///
/// # Errors
/// A stack does not start or its warm-up fails.
pub(crate) async fn run(args: &Args, cases: &[usize]) -> anyhow::Result<()> {
    println!(
        "\n## Saturation through the API ({} producers, {} s of load per case)\n",
        args.producers, args.saturation_secs
    );
    let mut done: Vec<(usize, Run)> = Vec::new();
    for &k in cases {
        let stack = Stack::start(&StackSpec {
            redis: RedisSpec::Single,
            subscriptions: k,
            gateway: true,
            workers: args.fast_workers,
            receiver_delay: Duration::ZERO,
            extra_env: Vec::new(),
            service_env: &args.service_env,
        })
        .await?;
        let publisher = stack.publisher(args.producers)?;
        stack.warm_up(&publisher).await?;
        let r = measure(
            &stack,
            args.drain_timeout(),
            saturate(&publisher, args.producers, args.saturation_secs as f64),
        )
        .await;
        report::print_run(&format!("{k} endpoint(s) on one host"), &r);
        print_debug(&stack, r.delivered).await?;
        done.push((k, r));
    }
    println!();
    println!(
        "| endpoints per event (one host) | events accepted/s | deliveries/s | p50 ms | p99 ms | last accepted → last delivery s | machine busy |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (k, r) in &done {
        println!(
            "| {k} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} |",
            r.sent.accepted as f64 / r.sent.issue_secs.max(1e-9),
            r.deliveries_per_sec(),
            quantile_ms(&r.latencies, 0.5),
            quantile_ms(&r.latencies, 0.99),
            r.drain_secs.map_or_else(
                || format!("not drained in {} s", args.drain_timeout_secs),
                |d| format!("{d:.2}")
            ),
            report::machine_busy(&r.usage),
        );
    }
    for (k, r) in &done {
        println!("\n### {k} endpoint(s): where the time goes\n");
        report::print_cpu(&r.usage, r.delivered);
        report::print_hops(&r.usage, &r.latencies, true);
    }
    Ok(())
}
