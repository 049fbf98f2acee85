//! One import run over every table, in dependency order: subscriptions first (add-ons and deliveries name
//! them), then add-ons, quotas, the URL deny list and the legacy deliveries.
//!
//! Every write is create-if-absent in one step, so a run can be repeated: what is there already is counted as
//! "skipped (exists)" and left exactly as it is (an admin may have changed it in Hookline since). A dry run
//! reads PostgreSQL and Redis the same way and writes nothing.

use std::collections::HashSet;
use std::time::Duration;

use delivery_model::ids::SubscriptionId;
use delivery_model::store::Store;
use delivery_model::store::addons::CreateAddon;
use delivery_model::store::import::ImportWrite;
use delivery_model::time::Micros;
use tokio_postgres::GenericClient;

use crate::convert::{self, DeliveryPlan};
use crate::error::Result;
use crate::report::{Report, TableReport};
use crate::source::{self, table};

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Read and count, write nothing.
    pub dry_run: bool,
    /// The instant that decides what is due and what is too old.
    pub now: Micros,
    /// How long terminal records live (`[delivery] terminal_ttl_secs`, 7 days).
    pub terminal_ttl: Duration,
}

/// Runs the import and returns what it did per table.
///
/// # Errors
/// PostgreSQL or Redis failure (rows already written stay written; a re-run skips them).
pub async fn run(db: &impl GenericClient, store: &Store, opts: &ImportOptions) -> Result<Report> {
    let mut known = HashSet::new();
    let tables = vec![
        subscriptions(db, store, opts, &mut known).await?,
        addons(db, store, opts, &known).await?,
        webhook_quotas(db, store, opts).await?,
        addon_quotas(db, store, opts).await?,
        deny_list(db, store, opts).await?,
        deliveries(db, store, opts, &known).await?,
    ];
    for t in &tables {
        tracing::info!(
            table = t.table,
            absent = t.absent,
            imported = t.imported,
            exists = t.exists,
            too_old = t.too_old,
            invalid = t.invalid.len(),
            dry_run = opts.dry_run,
            "table done"
        );
    }
    Ok(Report {
        dry_run: opts.dry_run,
        tables,
    })
}

/// Counts one import write in its table's report (the PostgreSQL import and the copy from a Redis).
pub(crate) fn count(report: &mut TableReport, write: ImportWrite) {
    match write {
        ImportWrite::Created => report.imported += 1,
        ImportWrite::Exists => report.exists += 1,
    }
}

/// In a dry run: what the write would have done, from whether the record is there.
pub(crate) fn would(exists: bool) -> ImportWrite {
    if exists {
        ImportWrite::Exists
    } else {
        ImportWrite::Created
    }
}

/// Whether `db` has `name`; records an absent table in the report.
async fn present(
    db: &impl GenericClient,
    name: &'static str,
    report: &mut TableReport,
) -> Result<bool> {
    let exists = source::table_exists(db, name).await?;
    if !exists {
        tracing::info!(table = name, "table absent");
        report.absent = true;
    }
    Ok(exists)
}

async fn subscriptions(
    db: &impl GenericClient,
    store: &Store,
    opts: &ImportOptions,
    known: &mut HashSet<SubscriptionId>,
) -> Result<TableReport> {
    let mut report = TableReport::new(table::SUBSCRIPTIONS);
    if !present(db, table::SUBSCRIPTIONS, &mut report).await? {
        return Ok(report);
    }
    for row in source::subscriptions(db).await? {
        let sub = match convert::subscription(&row) {
            Ok(s) => s,
            Err(reason) => {
                report.invalid(&row.id, reason);
                continue;
            }
        };
        let write = if opts.dry_run {
            would(store.subscription_exists(sub.id).await?)
        } else {
            store.import_subscription(&sub).await?
        };
        known.insert(sub.id);
        count(&mut report, write);
    }
    Ok(report)
}

/// Whether subscription `id` is (or, in a dry run, will be) in Redis.
async fn subscription_known(
    store: &Store,
    known: &HashSet<SubscriptionId>,
    id: SubscriptionId,
) -> Result<bool> {
    Ok(known.contains(&id) || store.subscription_exists(id).await?)
}

async fn addons(
    db: &impl GenericClient,
    store: &Store,
    opts: &ImportOptions,
    known: &HashSet<SubscriptionId>,
) -> Result<TableReport> {
    let mut report = TableReport::new(table::ADDONS);
    if !present(db, table::ADDONS, &mut report).await? {
        return Ok(report);
    }
    for row in source::addons(db).await? {
        let addon = match convert::addon(&row) {
            Ok(a) => a,
            Err(reason) => {
                report.invalid(&row.id, reason);
                continue;
            }
        };
        let no_subscription = || format!("webhook_id {} names no subscription", addon.webhook_id);
        if opts.dry_run {
            if store.addon_exists(addon.id).await? {
                report.exists += 1;
            } else if subscription_known(store, known, addon.webhook_id).await? {
                report.imported += 1;
            } else {
                report.invalid(&row.id, no_subscription());
            }
            continue;
        }
        // The create script checks the subscription in the same step.
        match store.create_addon(&addon).await? {
            CreateAddon::Created => report.imported += 1,
            CreateAddon::Exists => report.exists += 1,
            CreateAddon::NoSubscription => report.invalid(&row.id, no_subscription()),
        }
    }
    Ok(report)
}

async fn webhook_quotas(
    db: &impl GenericClient,
    store: &Store,
    opts: &ImportOptions,
) -> Result<TableReport> {
    let mut report = TableReport::new(table::WEBHOOK_QUOTAS);
    if !present(db, table::WEBHOOK_QUOTAS, &mut report).await? {
        return Ok(report);
    }
    for row in source::webhook_quotas(db).await? {
        let quota = match convert::webhook_quota(&row) {
            Ok(q) => q,
            Err(reason) => {
                report.invalid(&row.owner_id, reason);
                continue;
            }
        };
        // The quota store has a plain put; an override already in Hookline is left alone (an admin may have
        // changed it since the first run). One operator runs the import, so check-then-put does not race.
        let exists = store.get_webhook_quota(&quota.owner_id).await?.is_some();
        if !exists && !opts.dry_run {
            store.put_webhook_quota(&quota).await?;
        }
        count(&mut report, would(exists));
    }
    Ok(report)
}

async fn addon_quotas(
    db: &impl GenericClient,
    store: &Store,
    opts: &ImportOptions,
) -> Result<TableReport> {
    let mut report = TableReport::new(table::ADDON_QUOTAS);
    if !present(db, table::ADDON_QUOTAS, &mut report).await? {
        return Ok(report);
    }
    for row in source::addon_quotas(db).await? {
        let quota = match convert::addon_quota(&row) {
            Ok(q) => q,
            Err(reason) => {
                report.invalid(&row.owner_internal_uuid, reason);
                continue;
            }
        };
        // As for webhook quotas: an existing override is kept.
        let exists = store.get_addon_quota(&quota.owner_id).await?.is_some();
        if !exists && !opts.dry_run {
            store.put_addon_quota(&quota).await?;
        }
        count(&mut report, would(exists));
    }
    Ok(report)
}

async fn deny_list(
    db: &impl GenericClient,
    store: &Store,
    opts: &ImportOptions,
) -> Result<TableReport> {
    let mut report = TableReport::new(table::DENY_LIST);
    if !present(db, table::DENY_LIST, &mut report).await? {
        return Ok(report);
    }
    for row in source::deny_list(db).await? {
        let entry = match convert::deny_entry(&row) {
            Ok(e) => e,
            Err(reason) => {
                report.invalid(&row.id, reason);
                continue;
            }
        };
        let write = if opts.dry_run {
            would(store.url_deny_entry_exists(&entry.id).await?)
        } else {
            store.import_url_deny_entry(&entry).await?
        };
        count(&mut report, write);
    }
    Ok(report)
}

async fn deliveries(
    db: &impl GenericClient,
    store: &Store,
    opts: &ImportOptions,
    known: &HashSet<SubscriptionId>,
) -> Result<TableReport> {
    let mut report = TableReport::new(table::DELIVERIES);
    if !present(db, table::DELIVERIES, &mut report).await? {
        return Ok(report);
    }
    for row in source::deliveries(db).await? {
        let (record, placement) = match convert::delivery(&row, opts.now, opts.terminal_ttl) {
            Ok(DeliveryPlan::Import(record, placement)) => (record, placement),
            Ok(DeliveryPlan::TooOld) => {
                report.too_old += 1;
                continue;
            }
            Err(reason) => {
                report.invalid(&row.id, reason);
                continue;
            }
        };
        if store.delivery_exists(record.id).await? {
            report.exists += 1;
            continue;
        }
        // A record of a subscription that is not there could never be delivered nor shown in a list.
        if !subscription_known(store, known, record.subscription_id).await? {
            report.invalid(
                &row.id,
                format!(
                    "subscription_id {} names no subscription",
                    record.subscription_id
                ),
            );
            continue;
        }
        let write = if opts.dry_run {
            ImportWrite::Created
        } else {
            store.import_delivery(&record, placement, opts.now).await?
        };
        count(&mut report, write);
    }
    Ok(report)
}
