//! `hookline-migrate`: imports TMI's PostgreSQL webhook tables into Hookline's Redis (or, with
//! `--drop-legacy`, drops TMI's legacy `webhook_deliveries` table once everything in it is imported).
//!
//! With `--reencrypt-secrets` it touches no database: it seals every subscription secret in Redis under
//! `[secret_keys] current` (after a key rotation, or to encrypt secrets stored before encryption at rest).
//! Idempotent and resumable: rerun it until it reports `resealed=0`.
//!
//! Exit status: 0 when everything was imported (or skipped) and any drop done; 2 when rows were invalid
//! (named in the summary); 3 when `--drop-legacy` refused; 1 on any other failure.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use migrate::drop_legacy::{DropOutcome, drop_legacy};
use migrate::import::{self, ImportOptions};
use service_common::startup;

const SERVICE: &str = "hookline-migrate";
/// Some rows could not be imported.
const EXIT_INVALID: u8 = 2;
/// `--drop-legacy` found rows that are not in Redis.
const EXIT_REFUSED: u8 = 3;

#[derive(Parser)]
#[command(
    name = SERVICE,
    version,
    about = "Import TMI's PostgreSQL webhook tables into Hookline's Redis (see docs/migration.md)"
)]
struct Args {
    /// TMI's database (overrides `[migrate] postgres_url` / HOOKLINE__MIGRATE__POSTGRES_URL).
    #[arg(long, value_name = "URL")]
    postgres_url: Option<String>,
    /// Print what would be imported (or dropped), per table, and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Import nothing; drop `webhook_deliveries` if every row is in Redis or older than the terminal TTL.
    #[arg(long)]
    drop_legacy: bool,
    /// Import nothing; seal every subscription secret under `[secret_keys] current` (no database needed).
    #[arg(long, conflicts_with_all = ["drop_legacy", "dry_run", "postgres_url"])]
    reencrypt_secrets: bool,
}

/// Ids read per page by `--reencrypt-secrets`.
const RESEAL_PAGE: u64 = 500;

/// `--reencrypt-secrets`: see the module doc.
async fn reencrypt_secrets(
    settings: &service_common::config::Settings,
) -> anyhow::Result<ExitCode> {
    let store = service_common::redis::connect(settings)
        .await
        .context("connecting to Redis")?;
    let result = store.reseal_subscription_secrets(RESEAL_PAGE).await;
    store.quit().await;
    let r = result.context("re-encrypting subscription secrets")?;
    println!(
        "subscription secrets: scanned={} resealed={} already_current={} unsigned={} changed_meanwhile={}",
        r.scanned, r.resealed, r.current, r.unsigned, r.raced
    );
    if r.raced > 0 {
        println!("some records changed during the pass: run it again");
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let (settings, _telemetry) = startup::init(SERVICE)?;
    if args.reencrypt_secrets {
        return reencrypt_secrets(&settings).await;
    }
    let url = args
        .postgres_url
        .clone()
        .unwrap_or_else(|| settings.migrate.postgres_url.expose().to_owned());
    if url.trim().is_empty() {
        anyhow::bail!(
            "no PostgreSQL database given: pass --postgres-url or set [migrate] postgres_url \
             (HOOKLINE__MIGRATE__POSTGRES_URL)"
        );
    }
    // TLS as the URL's sslmode says, certificates always verified (docs/migration.md, "TLS").
    let ca_file = Some(settings.migrate.postgres_ca_file.trim())
        .filter(|f| !f.is_empty())
        .map(Path::new);
    let (mut db, connection) = migrate::postgres::connect(&url, ca_file).await?;
    let store = service_common::redis::connect(&settings)
        .await
        .context("connecting to Redis")?;
    let terminal_ttl = Duration::from_secs(settings.delivery.terminal_ttl_secs);
    let now = delivery_model::time::now_micros();

    let code = if args.drop_legacy {
        let outcome = drop_legacy(&mut db, &store, now, terminal_ttl, args.dry_run)
            .await
            .context("dropping webhook_deliveries")?;
        match outcome {
            DropOutcome::Dropped { rows } => {
                println!("webhook_deliveries: dropped ({rows} rows, each in Redis or too old)");
                ExitCode::SUCCESS
            }
            DropOutcome::WouldDrop { rows } => {
                println!(
                    "dry run: webhook_deliveries would be dropped ({rows} rows, each in Redis or too old)"
                );
                ExitCode::SUCCESS
            }
            DropOutcome::Absent => {
                println!("webhook_deliveries: table absent, nothing to drop");
                ExitCode::SUCCESS
            }
            DropOutcome::Refused { missing } => {
                println!(
                    "webhook_deliveries: NOT dropped: {} row(s) neither in Redis nor older than the terminal TTL:",
                    missing.len()
                );
                for m in &missing {
                    println!("  {} id={}: {}", m.table, m.id, m.reason);
                }
                ExitCode::from(EXIT_REFUSED)
            }
        }
    } else {
        let opts = ImportOptions {
            dry_run: args.dry_run,
            now,
            terminal_ttl,
        };
        let report = import::run(&db, &store, &opts).await.context("importing")?;
        print!("{}", report.render());
        if report.invalid().next().is_some() {
            ExitCode::from(EXIT_INVALID)
        } else {
            ExitCode::SUCCESS
        }
    };
    drop(db);
    let _ = connection.await;
    store.quit().await;
    Ok(code)
}
