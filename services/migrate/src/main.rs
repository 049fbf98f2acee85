//! `hookline-migrate`: imports TMI's PostgreSQL webhook tables into Hookline's Redis (or, with
//! `--drop-legacy`, drops TMI's legacy `webhook_deliveries` table once everything in it is imported).
//!
//! With `--reencrypt-secrets` it touches no database: it seals every subscription secret in Redis under
//! `[secret_keys] current` (after a key rotation, or to encrypt secrets stored before encryption at rest).
//! Idempotent and resumable: rerun it until it reports `resealed=0`.
//!
//! With `--from-redis URL` it touches no database either: it copies a standalone Hookline deployment from
//! that Redis into the configured one (a Redis Cluster's layout, or another node), create-if-absent, so a
//! re-run copies nothing twice (`docs/operations.md`, "Moving to a Redis Cluster").
//!
//! Exit status: 0 when everything was imported (or skipped) and any drop done; 2 when rows were invalid
//! (named in the summary); 3 when `--drop-legacy` refused; 1 on any other failure.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use delivery_model::store::{Store, StoreOptions, TlsOptions};
use migrate::drop_legacy::{DropOutcome, drop_legacy};
use migrate::from_redis::{self, CopyOptions};
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
    /// Import nothing from PostgreSQL; copy the standalone Hookline deployment in this Redis
    /// (`redis://` or `rediss://`, credentials in the URL) into the configured one.
    #[arg(long, value_name = "URL", conflicts_with_all = ["drop_legacy", "postgres_url", "reencrypt_secrets"])]
    from_redis: Option<String>,
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

/// The source store of `--from-redis`: the target's settings (key prefix, input stream, TTLs, secret keys,
/// TLS trust) with the source's URL; credentials only from the URL, no Sentinel, no `WAIT`.
fn source_options(
    settings: &service_common::config::Settings,
    url: &str,
) -> anyhow::Result<StoreOptions> {
    if delivery_model::store::cluster::is_cluster_url(url) {
        anyhow::bail!(
            "--from-redis copies a standalone deployment: give its redis:// or rediss:// URL, not a cluster's"
        );
    }
    let mut opts = settings.store_options();
    opts.url = url.to_owned();
    opts.sentinel = None;
    opts.wait_replicas = 0;
    opts.username = None;
    opts.password = None;
    if !url.starts_with("rediss://") {
        opts.tls = TlsOptions::default();
    }
    Ok(opts)
}

/// `--from-redis`: see the module doc.
async fn from_redis(
    settings: &service_common::config::Settings,
    url: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let source = Store::connect(&source_options(settings, url)?)
        .await
        .context("connecting to the source Redis")?;
    let target = service_common::redis::connect(settings)
        .await
        .context("connecting to Redis")?;
    let opts = CopyOptions {
        dry_run,
        now: delivery_model::time::now_micros(),
        terminal_ttl: Duration::from_secs(settings.delivery.terminal_ttl_secs),
    };
    let result = async {
        from_redis::check_distinct(&source, &target).await?;
        from_redis::run(&source, &target, &opts).await
    }
    .await;
    source.quit().await;
    target.quit().await;
    let report = result.context("copying from the source Redis")?;
    print!("{}", report.render());
    Ok(if report.invalid().next().is_some() {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let (settings, _telemetry) = startup::init(SERVICE)?;
    if args.reencrypt_secrets {
        return reencrypt_secrets(&settings).await;
    }
    if let Some(url) = &args.from_redis {
        return from_redis(&settings, url, args.dry_run).await;
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
