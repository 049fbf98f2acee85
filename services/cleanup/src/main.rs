//! `cleanup`: fails stale `in_progress` deliveries, runs the subscription lifecycle, prunes expired deliveries
//! from the indexes and trims acknowledged stream entries. Loops by default; `--once` runs one cycle and exits
//! (for a Kubernetes CronJob).

use clap::Parser;
use cleanup::{SERVICE, readiness, run, run_once};
use service_common::service;

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
    if Args::parse().once {
        service::main(SERVICE, readiness, run_once).await
    } else {
        service::main(SERVICE, readiness, run).await
    }
}
