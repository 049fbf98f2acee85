//! What the benchmark reads from Redis (memory, command statistics) and from `wrk` (the raw POST
//! ceiling), and the services' raw counters for `BENCH_DEBUG`. CPU readings are in `cpu.rs`, histograms in
//! `hops.rs`.

use anyhow::Context;
use fred::prelude::*;
use test_support::service::Service;

use crate::stack::Stack;

pub(crate) async fn memory_used(c: &Client) -> anyhow::Result<u64> {
    let _: u64 = c.xtrim("tmi:events", ("MAXLEN", 0)).await?;
    let info: String = c.info(Some(fred::types::InfoKind::Memory)).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("used_memory")
}

/// Redis's own time per command since start, heaviest first, and per delivery of the flood (`BENCH_DEBUG`).
pub(crate) async fn print_commandstats(c: &Client, deliveries: f64) -> anyhow::Result<()> {
    let info: String = c.info(Some(fred::types::InfoKind::CommandStats)).await?;
    let mut rows: Vec<(String, u64, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |f: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))?
                    .parse::<u64>()
                    .ok()
            };
            Some((name.to_owned(), field("calls")?, field("usec")?))
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
    println!("\n    Redis time by command (µs per delivery is indicative):");
    for (name, calls, usec) in rows.iter().take(12) {
        println!(
            "    {name:<16} calls {calls:>9}  usec {usec:>10}  per call {:>7.1}  per delivery {:>6.1}",
            *usec as f64 / (*calls).max(1) as f64,
            *usec as f64 / deliveries
        );
    }
    Ok(())
}

pub(crate) fn wrk(url: &str, body: &str) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("hookline-bench-{}.lua", std::process::id()));
    let escaped = body.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{escaped}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c64", "-d5s", "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk (make bench installs it)")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("parsing wrk output: {text}"))
}

/// Whether `BENCH_DEBUG` asks for the raw figures.
pub(crate) fn debug() -> bool {
    std::env::var_os("BENCH_DEBUG").is_some()
}

/// Under `BENCH_DEBUG`: Redis's time per command (per delivery of `deliveries`) and the consumer's and
/// workers' counters, after a run on `stack`.
///
/// # Errors
/// Redis does not answer `INFO`.
pub(crate) async fn print_debug(stack: &Stack, deliveries: u64) -> anyhow::Result<()> {
    if debug() {
        print_commandstats(&stack.raw, deliveries as f64).await?;
        print_service_metrics(std::iter::once(&stack.consumer).chain(&stack.workers)).await;
    }
    Ok(())
}

/// The services' counters and histogram sums from their `/metrics` (`BENCH_DEBUG`).
pub(crate) async fn print_service_metrics<'a>(services: impl IntoIterator<Item = &'a Service>) {
    for svc in services {
        let (_, _, m) = test_support::http::request("GET", &svc.ops_url("/metrics"), &[], "").await;
        for l in String::from_utf8_lossy(&m)
            .lines()
            .filter(|l| l.contains("_sum") || l.contains("_count") || l.contains("total"))
        {
            println!("    {l}");
        }
    }
}
