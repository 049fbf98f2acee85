//! `hookline-migrate --from-redis URL`: copies a standalone Hookline deployment into the configured Redis
//! (a cluster's layout, or another node), issue #15 "Moving an existing deployment".
//!
//! The source is read through a [`Store`] connected to it (its keyspace names its keys), the target is
//! written through the import's create-if-absent steps, so a run can be repeated and writes nothing twice:
//! a subscription with its indexes (and a `pending_verification` one's challenge) in one step, a delivery
//! with its indexes and its one queue or schedule entry in one step. A crash mid-run leaves every delivery
//! either fully copied (record and entry) or not at all, and the re-run copies the rest.
//!
//! Order: subscriptions (add-ons name them), add-ons, quotas, the URL deny list, deliveries, the add-on
//! invokers' invocation windows (their active sets name deliveries), idempotency records. What is not copied, and why, is in `docs/operations.md` ("Moving to a Redis Cluster").

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _, stream};

use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::DeliveryId;
use delivery_model::keys::Layout;
use delivery_model::store::Store;
use delivery_model::store::addons::CreateAddon;
use delivery_model::store::export::CopiedDelivery;
use delivery_model::store::import::{ImportWrite, LegacyPlacement};
use delivery_model::time::Micros;

use crate::error::{Error, Result};
use crate::import::{count, would};
use crate::report::{Report, TableReport};

/// Records read per page from the source.
const PAGE: u64 = 500;
/// Deliveries copied at once. One at a time the copy waits out two round trips per record: 3 000 deliveries
/// from one node into a 3-master cluster on loopback (this 2-core machine) took 2.5 s so, 1.1 s with 32 at
/// once, the process start included.
const CONCURRENCY: usize = 32;

/// The report's table names for a copy.
pub mod table {
    pub const SUBSCRIPTIONS: &str = "subscriptions";
    pub const ADDONS: &str = "addons";
    pub const WEBHOOK_QUOTAS: &str = "webhook_quotas";
    pub const ADDON_QUOTAS: &str = "addon_quotas";
    pub const DENY_LIST: &str = "url_deny_list";
    pub const DELIVERIES: &str = "deliveries";
    pub const INVOCATION_WINDOWS: &str = "addon_invocation_windows";
    pub const IDEMPOTENCY: &str = "idempotency_keys";
}

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Read and count, write nothing.
    pub dry_run: bool,
    /// The instant that decides a scheduled delivery's TTL.
    pub now: Micros,
    /// The TTL of a record the source keeps without one (Hookline always sets one; a hand-made record).
    pub terminal_ttl: Duration,
}

/// Refuses a copy onto itself (two URLs naming one server: same `run_id`) and a source that is a cluster
/// node (this copies a standalone deployment's layout).
///
/// # Errors
/// [`Error::Refused`] for either, or Redis failure.
pub async fn check_distinct(source: &Store, target: &Store) -> Result<()> {
    let from = source.server_identity().await?;
    if from.cluster_node {
        return Err(Error::Refused(
            "the source is a Redis Cluster node: --from-redis copies a standalone (or Sentinel-managed) \
             deployment"
                .into(),
        ));
    }
    // A cluster's nodes all have cluster_enabled:1, so a standalone source cannot be one of them.
    if target.keys().layout() == Layout::Standalone
        && target.server_identity().await?.run_id == from.run_id
    {
        return Err(Error::Refused(
            "the source and the target are the same Redis server (same run_id): nothing to copy"
                .into(),
        ));
    }
    Ok(())
}

/// Copies everything and returns what it did per kind of record.
///
/// # Errors
/// Redis failure on either side (what was written stays written; a re-run skips it).
pub async fn run(source: &Store, target: &Store, opts: &CopyOptions) -> Result<Report> {
    let mut tables = vec![
        subscriptions(source, target, opts).await?,
        addons(source, target, opts).await?,
        quotas(source, target, opts).await?,
        addon_quotas(source, target, opts).await?,
        deny_list(source, target, opts).await?,
    ];
    let (report, invokers) = deliveries(source, target, opts).await?;
    tables.push(report);
    tables.push(invocation_windows(source, target, opts, &invokers).await?);
    tables.push(idempotency(source, target, opts).await?);
    for t in &tables {
        tracing::info!(
            table = t.table,
            copied = t.imported,
            exists = t.exists,
            invalid = t.invalid.len(),
            dry_run = opts.dry_run,
            "copied"
        );
    }
    Ok(Report {
        dry_run: opts.dry_run,
        tables,
    })
}

async fn subscriptions(source: &Store, target: &Store, opts: &CopyOptions) -> Result<TableReport> {
    let mut report = TableReport::new(table::SUBSCRIPTIONS);
    let mut offset = 0;
    loop {
        let page = source.list_subscriptions(None, offset, PAGE).await?;
        for sub in &page.items {
            let write = if opts.dry_run {
                would(target.subscription_exists(sub.id).await?)
            } else {
                target.import_subscription(sub).await?
            };
            count(&mut report, write);
        }
        offset += PAGE;
        if offset >= page.total {
            return Ok(report);
        }
    }
}

async fn addons(source: &Store, target: &Store, opts: &CopyOptions) -> Result<TableReport> {
    let mut report = TableReport::new(table::ADDONS);
    let mut offset = 0;
    loop {
        let page = source.list_addons(None, offset, PAGE).await?;
        for addon in &page.items {
            let no_subscription =
                || format!("webhook_id {} names no subscription", addon.webhook_id);
            if opts.dry_run {
                if target.addon_exists(addon.id).await? {
                    report.exists += 1;
                } else if source.subscription_exists(addon.webhook_id).await?
                    || target.subscription_exists(addon.webhook_id).await?
                {
                    report.imported += 1;
                } else {
                    report.invalid(addon.id.to_string(), no_subscription());
                }
                continue;
            }
            match target.create_addon(addon).await? {
                CreateAddon::Created => report.imported += 1,
                CreateAddon::Exists => report.exists += 1,
                CreateAddon::NoSubscription => {
                    report.invalid(addon.id.to_string(), no_subscription());
                }
            }
        }
        offset += PAGE;
        if offset >= page.total {
            return Ok(report);
        }
    }
}

// Quotas are put only when absent (check, then put): an override an administrator set on the target since
// an earlier run is kept. One operator runs the copy, so the check does not race.
async fn quotas(source: &Store, target: &Store, opts: &CopyOptions) -> Result<TableReport> {
    let mut report = TableReport::new(table::WEBHOOK_QUOTAS);
    let mut offset = 0;
    loop {
        let page = source.list_webhook_quotas(offset, PAGE).await?;
        for quota in &page.items {
            let exists = target.get_webhook_quota(&quota.owner_id).await?.is_some();
            if !exists && !opts.dry_run {
                target.put_webhook_quota(quota).await?;
            }
            count(&mut report, would(exists));
        }
        offset += PAGE;
        if offset >= page.total {
            return Ok(report);
        }
    }
}

async fn addon_quotas(source: &Store, target: &Store, opts: &CopyOptions) -> Result<TableReport> {
    let mut report = TableReport::new(table::ADDON_QUOTAS);
    let mut offset = 0;
    loop {
        let page = source.list_addon_quotas(offset, PAGE).await?;
        for quota in &page.items {
            let exists = target.get_addon_quota(&quota.owner_id).await?.is_some();
            if !exists && !opts.dry_run {
                target.put_addon_quota(quota).await?;
            }
            count(&mut report, would(exists));
        }
        offset += PAGE;
        if offset >= page.total {
            return Ok(report);
        }
    }
}

async fn deny_list(source: &Store, target: &Store, opts: &CopyOptions) -> Result<TableReport> {
    let mut report = TableReport::new(table::DENY_LIST);
    for entry in source.url_deny_list().await? {
        let write = if opts.dry_run {
            would(target.url_deny_entry_exists(&entry.id).await?)
        } else {
            target.import_url_deny_entry(&entry).await?
        };
        count(&mut report, write);
    }
    Ok(report)
}

/// Where a copied delivery goes: a pending one back on the schedule at its due time when the source had it
/// there, else on the queue (queued, or in flight when the source stopped: its lease is not copied, so a
/// worker attempts it again); an `in_progress` one into the activity index; a terminal one stored only. The
/// ones that are stored only keep the TTL they had left.
pub fn placement(
    copy: &CopiedDelivery,
    scheduled: &HashMap<DeliveryId, i64>,
    default_ttl: Duration,
) -> LegacyPlacement {
    let ttl = copy.ttl.unwrap_or(default_ttl).max(Duration::from_secs(1));
    match copy.record.status {
        DeliveryStatus::Pending => match scheduled.get(&copy.record.id) {
            Some(&due_ms) => LegacyPlacement::Schedule { due_ms },
            None => LegacyPlacement::Enqueue,
        },
        DeliveryStatus::InProgress => LegacyPlacement::AwaitCallback { ttl },
        DeliveryStatus::Delivered | DeliveryStatus::Failed => LegacyPlacement::Keep { ttl },
    }
}

/// Copies one delivery; `None` when it is gone at the source (expired since its index entry was read).
/// Returns what the write did and the record's add-on invoker, if any.
async fn copy_delivery(
    source: &Store,
    target: &Store,
    opts: &CopyOptions,
    scheduled: &HashMap<DeliveryId, i64>,
    id: DeliveryId,
) -> Result<Option<(ImportWrite, Option<String>)>> {
    let Some(copy) = source.export_delivery(id).await? else {
        return Ok(None);
    };
    let invoker = copy.record.invoked_by.as_ref().map(|i| i.uuid.clone());
    let write = if opts.dry_run {
        would(target.delivery_exists(id).await?)
    } else {
        let place = placement(&copy, scheduled, opts.terminal_ttl);
        target
            .import_copied_delivery(&copy, place, opts.now)
            .await?
    };
    Ok(Some((write, invoker)))
}

/// Copies every delivery, [`CONCURRENCY`] at a time (each is one independent create-if-absent step, so
/// their order does not matter and a crash leaves each copied or not); returns the report and the invokers
/// of the add-on deliveries it saw.
async fn deliveries(
    source: &Store,
    target: &Store,
    opts: &CopyOptions,
) -> Result<(TableReport, BTreeSet<String>)> {
    let mut report = TableReport::new(table::DELIVERIES);
    let mut invokers = BTreeSet::new();
    let scheduled = source.scheduled_deliveries().await?;
    for shard in source.keys().shards() {
        let mut offset = 0;
        loop {
            let ids = source.delivery_ids_page(shard, offset, PAGE).await?;
            let copied: Vec<_> = stream::iter(ids.iter().copied())
                .map(|id| copy_delivery(source, target, opts, &scheduled, id))
                .buffer_unordered(CONCURRENCY)
                .try_collect()
                .await?;
            for (write, invoker) in copied.into_iter().flatten() {
                count(&mut report, write);
                invokers.extend(invoker);
            }
            if (ids.len() as u64) < PAGE {
                break;
            }
            offset += PAGE;
        }
    }
    Ok((report, invokers))
}

/// Each add-on invoker's active set and hourly window, so that the per-invoker limits hold across the move
/// (an invoker who used the hour's allowance on the old deployment still has it used).
async fn invocation_windows(
    source: &Store,
    target: &Store,
    opts: &CopyOptions,
    invokers: &BTreeSet<String>,
) -> Result<TableReport> {
    let mut report = TableReport::new(table::INVOCATION_WINDOWS);
    for invoker in invokers {
        let windows = source.invocation_windows(invoker).await?;
        if windows.active.is_empty() && windows.hourly.is_empty() {
            continue;
        }
        let write = if opts.dry_run {
            // Counted without asking the target: the write itself adds only missing members.
            ImportWrite::Created
        } else {
            target.import_invocation_windows(invoker, &windows).await?
        };
        count(&mut report, write);
    }
    Ok(report)
}

async fn idempotency(source: &Store, target: &Store, opts: &CopyOptions) -> Result<TableReport> {
    let mut report = TableReport::new(table::IDEMPOTENCY);
    let mut cursor = "0".to_owned();
    loop {
        let (next, records) = source.idempotency_page(&cursor).await?;
        for record in &records {
            let write = if opts.dry_run {
                // Counted without asking the target: the records live a day at most, and the write
                // itself checks for the key.
                ImportWrite::Created
            } else {
                target.import_idempotency(record).await?
            };
            count(&mut report, write);
        }
        if next == "0" {
            return Ok(report);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use delivery_model::delivery::DeliveryRecord;
    use delivery_model::ids::SubscriptionId;

    fn copy(status: DeliveryStatus, ttl: Option<Duration>) -> CopiedDelivery {
        let mut record = DeliveryRecord::new_pending(
            DeliveryId::new_v7(),
            SubscriptionId::new_v4(),
            "threat_model.created",
            "{}",
            1,
        );
        record.status = status;
        CopiedDelivery {
            record,
            attempt_log: None,
            ttl,
        }
    }

    #[test]
    fn pending_ones_go_where_the_source_had_them_and_others_keep_their_ttl() {
        let day = Duration::from_secs(86_400);
        let queued = copy(DeliveryStatus::Pending, Some(day));
        let retried = copy(DeliveryStatus::Pending, Some(day));
        let scheduled = HashMap::from([(retried.record.id, 42_000)]);
        assert_eq!(
            placement(&queued, &scheduled, day),
            LegacyPlacement::Enqueue
        );
        assert_eq!(
            placement(&retried, &scheduled, day),
            LegacyPlacement::Schedule { due_ms: 42_000 }
        );
        let left = Duration::from_secs(90);
        assert_eq!(
            placement(
                &copy(DeliveryStatus::InProgress, Some(left)),
                &scheduled,
                day
            ),
            LegacyPlacement::AwaitCallback { ttl: left }
        );
        assert_eq!(
            placement(&copy(DeliveryStatus::Failed, Some(left)), &scheduled, day),
            LegacyPlacement::Keep { ttl: left }
        );
        // No expiry at the source (not Hookline's doing): the default; never below a second.
        assert_eq!(
            placement(&copy(DeliveryStatus::Delivered, None), &scheduled, day),
            LegacyPlacement::Keep { ttl: day }
        );
        assert_eq!(
            placement(
                &copy(DeliveryStatus::Delivered, Some(Duration::ZERO)),
                &scheduled,
                day
            ),
            LegacyPlacement::Keep {
                ttl: Duration::from_secs(1)
            }
        );
    }
}
