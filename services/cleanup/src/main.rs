//! `cleanup`: fails stale `in_progress` deliveries, runs the subscription lifecycle, prunes expired deliveries
//! from the indexes and trims acknowledged stream entries. Loops by default; `--once` runs one cycle and exits
//! (for a Kubernetes CronJob).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use cleanup::OnceOutcome;
use cleanup::config::{CleanupConfig, risky_settings};
use service_common::{ops, shutdown, startup};

const SERVICE: &str = "cleanup";

#[derive(Parser)]
#[command(name = SERVICE, version, about = "Hookline's cleanup service")]
struct Args {
    /// Run one cycle to completion and exit: status 0 when it completed (or another replica holds the lease
    /// and is doing the work), non-zero when it failed or was interrupted.
    #[arg(long)]
    once: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (settings, _telemetry) = startup::init(SERVICE)?;
    for warning in risky_settings(&settings) {
        tracing::warn!("{warning}");
    }
    let store = service_common::redis::connect(&settings)
        .await
        .context("connecting to Redis")?;
    let token = shutdown::token();
    let registry = prometheus::Registry::new();
    let metrics = cleanup::metrics::Metrics::register(&registry)?;

    let listener = ops::bind(settings.ops.listen, SERVICE)
        .await
        .context("binding the ops listener")?;
    let ready: ops::ReadyCheck = {
        let store = store.clone();
        Arc::new(move || {
            let store = store.clone();
            Box::pin(async move { store.ping().await.map_err(|e| format!("redis: {e}")) })
        })
    };
    let ops_token = tokio_util::sync::CancellationToken::new();
    let ops_task = tokio::spawn(ops::serve(listener, registry, ready, ops_token.clone()));

    let cfg = CleanupConfig::from_settings(&settings);
    let result = if args.once {
        match cleanup::run_once(cfg, store.clone(), metrics, token).await {
            Ok(OnceOutcome::Completed(report)) => {
                tracing::info!(
                    duration_ms = u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
                    "cleanup cycle completed"
                );
                Ok(())
            }
            Ok(OnceOutcome::LeaseHeldElsewhere) => {
                tracing::info!(
                    "another cleanup replica kept the lease throughout; it is doing the work"
                );
                Ok(())
            }
            Ok(OnceOutcome::Interrupted) => {
                Err(anyhow::anyhow!("interrupted before the cycle completed"))
            }
            Err(e) => Err(anyhow::Error::new(e).context("cleanup cycle failed")),
        }
    } else {
        cleanup::run(cfg, store.clone(), metrics, token).await;
        Ok(())
    };
    // The ops listener outlives the last cycle, so probes keep answering while it finishes.
    ops_token.cancel();
    let _ = ops_task.await;
    store.quit().await;
    tracing::info!("stopped");
    result
}
