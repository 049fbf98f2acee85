//! Dropping TMI's legacy `webhook_deliveries` table, only once nothing in it would be lost.
//!
//! TMI simply drops the table on startup, losing the rows still pending. Here the drop is the last step of a
//! transaction that first locks the table (`ACCESS EXCLUSIVE`: no writer can add a row meanwhile), re-reads
//! every id and checks that each row is either in Redis or too old to import (its last write is older than
//! the terminal TTL). One row short, and nothing is dropped: the transaction is rolled back and the missing
//! rows are named.

use std::time::Duration;

use delivery_model::ids::DeliveryId;
use delivery_model::store::Store;
use delivery_model::time::Micros;
use tokio_postgres::Client;

use crate::convert::{is_too_old, last_write};
use crate::error::Result;
use crate::report::Invalid;
use crate::source::{self, table};

/// How long to wait for the table lock (TMI's writers must be stopped first; see docs/migration.md).
const LOCK_TIMEOUT: &str = "30s";

/// What [`drop_legacy`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropOutcome {
    /// Every row was accounted for and the table is gone.
    Dropped { rows: u64 },
    /// Dry run: every row is accounted for; the table would be dropped.
    WouldDrop { rows: u64 },
    /// There is no such table (dropped already).
    Absent,
    /// Rows that are neither in Redis nor too old; nothing was dropped.
    Refused { missing: Vec<Invalid> },
}

/// Drops `webhook_deliveries` if every row is in Redis or too old, checked under a table lock in the same
/// transaction.
///
/// # Errors
/// PostgreSQL failure (including the lock timeout) or Redis failure; the transaction is rolled back.
pub async fn drop_legacy(
    db: &mut Client,
    store: &Store,
    now: Micros,
    terminal_ttl: Duration,
    dry_run: bool,
) -> Result<DropOutcome> {
    let tx = db.transaction().await?;
    if !source::table_exists(&tx, table::DELIVERIES).await? {
        return Ok(DropOutcome::Absent);
    }
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        table::DELIVERIES
    ))
    .await?;
    let rows = source::delivery_ages(&tx).await?;
    let mut missing = Vec::new();
    for (id, created_at, delivered_at) in &rows {
        if is_too_old(last_write(*created_at, *delivered_at), now, terminal_ttl) {
            continue;
        }
        let reason = match id.trim().parse::<DeliveryId>() {
            Err(_) => "not a UUID: it was never imported".to_owned(),
            Ok(d) if store.delivery_exists(d).await? => continue,
            Ok(_) => {
                "not in Redis: run the import first (or fix the row; see the import's invalid rows)"
                    .to_owned()
            }
        };
        missing.push(Invalid {
            table: table::DELIVERIES,
            id: id.clone(),
            reason,
        });
    }
    let count = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    if !missing.is_empty() {
        tx.rollback().await?;
        return Ok(DropOutcome::Refused { missing });
    }
    if dry_run {
        tx.rollback().await?;
        return Ok(DropOutcome::WouldDrop { rows: count });
    }
    tx.batch_execute(&format!("DROP TABLE {}", table::DELIVERIES))
        .await?;
    tx.commit().await?;
    tracing::info!(
        table = table::DELIVERIES,
        rows = count,
        "legacy table dropped"
    );
    Ok(DropOutcome::Dropped { rows: count })
}
