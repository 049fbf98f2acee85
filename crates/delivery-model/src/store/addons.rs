//! Add-ons and their invocation (issue #3).
//!
//! - An add-on is a hash with three indexes: every add-on by creation time, by threat-model scope (one ZSET
//!   per threat model plus one for unscoped add-ons), and by subscription (a SET, read by the
//!   subscription-delete cascade). Create, delete and that cascade are single scripts, so the indexes never
//!   disagree with the hashes.
//! - An invocation is one script ([`Store::invoke_addon`]): the per-user limits (TMI's key names, so TMI's
//!   test tooling can clear them), the duplicate check and the creation of the `addon.invoked` delivery with
//!   the input-stream entry naming it. Nothing is recorded when a limit refuses the call.

use std::time::Duration;

use fred::types::Value;

use super::{Page, Store, created_score, push_record, read_each, scripts, secs};
use crate::addon::Addon;
use crate::delivery::{DeliveryRecord, DeliveryStatus};
use crate::error::{Error, Result};
use crate::event::StreamEvent;
use crate::ids::{AddonId, DeliveryId};
use crate::keys::{Layout, Shard};
use crate::time::Micros;

/// TMI's sliding window for the hourly limit, seconds.
pub const HOURLY_WINDOW_SECS: u64 = 3600;
/// TTL of the hourly ZSET after the last invocation (TMI: window + one minute), seconds.
pub const HOURLY_KEY_TTL_SECS: u64 = 3660;
/// Lifetime of the temporary union key of a filtered list (it is deleted at once; this only covers a script
/// that fails midway), seconds.
const TMP_KEY_TTL_SECS: u64 = 5;

/// Result of [`Store::create_addon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateAddon {
    Created,
    /// The subscription it names does not exist.
    NoSubscription,
    /// The id is taken (a broken random source).
    Exists,
}

/// Result of [`Store::delete_addon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteAddon {
    Deleted,
    NotFound,
    /// One of its deliveries is still `pending` or `in_progress`.
    Active,
}

/// The per-invoker limits of [`Store::invoke_addon`].
#[derive(Debug, Clone, Copy)]
pub struct InvocationLimits {
    /// Invocations whose delivery is still `pending`/`in_progress` (TMI: 3).
    pub max_active: u32,
    /// Invocations accepted in the last hour (TMI: 10).
    pub max_per_hour: u32,
    /// A repeat of the same add-on by the same user within this window is a duplicate (TMI: 5 s).
    pub dedup_window: Duration,
}

/// One invocation, ready to be recorded.
#[derive(Debug)]
pub struct Invocation<'a> {
    pub addon: AddonId,
    /// The invoker's id (rate-limit keys are per invoker).
    pub invoker: &'a str,
    /// The `pending` `addon.invoked` record (with `addon_id` and the invoker) to create.
    pub record: &'a DeliveryRecord,
    /// The `addon.invoked` input entry carrying the record's id.
    pub event: &'a StreamEvent,
}

/// A delivery that counts against the active limit (for TMI's `blocking_invocations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveInvocation {
    pub delivery_id: DeliveryId,
    pub addon_id: Option<AddonId>,
    pub status: DeliveryStatus,
    pub created_at: Micros,
    pub last_activity_at: Micros,
}

/// Result of [`Store::invoke_addon`]. A refusal writes nothing (beyond pruning finished deliveries from the
/// invoker's active set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// Recorded: the delivery exists and its input entry is on the stream.
    Created,
    /// The add-on was deleted meanwhile.
    AddonGone,
    /// Too many active invocations; `active` lists them, oldest first.
    ActiveLimit { active: Vec<ActiveInvocation> },
    /// Too many invocations in the last hour; the oldest of them was at `oldest_secs` (Unix seconds).
    HourlyLimit { current: u64, oldest_secs: i64 },
    /// The same user invoked the same add-on within the dedup window.
    Duplicate,
}

fn text(v: Option<Value>) -> String {
    v.and_then(|v| v.as_string()).unwrap_or_default()
}

/// What the delete script answered.
pub(super) fn parse_delete(r: &str) -> Result<DeleteAddon> {
    match r {
        "deleted" => Ok(DeleteAddon::Deleted),
        "missing" => Ok(DeleteAddon::NotFound),
        "active" => Ok(DeleteAddon::Active),
        other => Err(Error::Script(format!("delete_addon: {other}"))),
    }
}

fn parse_active(rest: &mut impl Iterator<Item = Value>) -> Vec<ActiveInvocation> {
    let mut active = Vec::new();
    loop {
        let (Some(id), addon, status, created, last) = (
            rest.next(),
            rest.next(),
            rest.next(),
            rest.next(),
            rest.next(),
        ) else {
            return active;
        };
        let Ok(delivery_id) = text(Some(id)).parse() else {
            continue;
        };
        active.push(ActiveInvocation {
            delivery_id,
            addon_id: text(addon).parse().ok(),
            status: text(status).parse().unwrap_or(DeliveryStatus::Pending),
            created_at: text(created).parse().unwrap_or(0),
            last_activity_at: text(last).parse().unwrap_or(0),
        });
    }
}

impl Store {
    /// Stores a new add-on with its indexes, provided its subscription exists (checked in the same step).
    ///
    /// # Errors
    /// Redis failure, or a parameter that cannot be encoded.
    pub async fn create_addon(&self, addon: &Addon) -> Result<CreateAddon> {
        let k = self.keys();
        let scope = match &addon.threat_model_id {
            Some(tm) => k.addons_by_threat_model(tm),
            None => k.addons_unscoped(),
        };
        let keys = vec![
            k.addon(addon.id),
            k.subscription(addon.webhook_id),
            k.addons_all(),
            scope,
            k.addons_by_subscription(addon.webhook_id),
        ];
        let mut args = vec![addon.id.to_string(), created_score(addon.created_at)];
        for (f, v) in addon.to_fields()? {
            args.push(f.to_owned());
            args.push(v);
        }
        let r: String = scripts::CREATE_ADDON.run(self.pool(), keys, args).await?;
        match r.as_str() {
            "created" => Ok(CreateAddon::Created),
            "no_subscription" => Ok(CreateAddon::NoSubscription),
            "exists" => Ok(CreateAddon::Exists),
            other => Err(Error::Script(format!("create_addon: {other}"))),
        }
    }

    /// Reads one add-on.
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn get_addon(&self, id: AddonId) -> Result<Option<Addon>> {
        self.read_hash(self.keys().addon(id), Addon::from_hash)
            .await
    }

    /// Lists add-ons newest first; with `tm`, only those scoped to it or unscoped (TMI's filter).
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn list_addons(
        &self,
        tm: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Addon>> {
        let k = self.keys();
        let (ids, total) = match tm {
            None => self.zpage(&k.addons_all(), offset, limit, true).await?,
            Some(tm) => {
                let token = uuid::Uuid::new_v4().simple().to_string();
                let reply: Vec<Value> = scripts::LIST_ADDONS
                    .run(
                        self.pool(),
                        vec![
                            k.addon_query_tmp(&token),
                            k.addons_by_threat_model(tm),
                            k.addons_unscoped(),
                        ],
                        vec![
                            offset.to_string(),
                            limit.to_string(),
                            TMP_KEY_TTL_SECS.to_string(),
                        ],
                    )
                    .await?;
                let mut it = reply.into_iter();
                let total = it.next().and_then(|v| v.as_u64()).unwrap_or(0);
                (it.filter_map(|v| v.as_string()).collect(), total)
            }
        };
        let ids = ids.iter().filter_map(|id| id.parse::<AddonId>().ok());
        let items = read_each(ids, |id| self.get_addon(id)).await?;
        Ok(Page { items, total })
    }

    /// Deletes an add-on and its index entries, unless one of its deliveries is still active (checked in the
    /// same step).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn delete_addon(&self, id: AddonId) -> Result<DeleteAddon> {
        let k = self.keys();
        if k.layout() != Layout::Standalone {
            return self
                .delete_addon_sharded(id, crate::time::now_micros())
                .await;
        }
        let shard = Shard::ZERO;
        let r: String = scripts::DELETE_ADDON
            .run(
                self.pool(),
                vec![
                    k.addon(id),
                    k.addons_all(),
                    k.deliveries_by_addon(shard, id),
                ],
                vec![
                    id.to_string(),
                    k.delivery_prefix(shard),
                    k.addons_by_threat_model_prefix(),
                    k.addons_unscoped(),
                    k.addons_by_subscription_prefix(),
                ],
            )
            .await?;
        parse_delete(&r)
    }

    /// Records an invocation if the invoker's limits allow it, all in one step: the active limit (only
    /// deliveries still `pending`/`in_progress` count), the hourly sliding window, the duplicate window, then
    /// the hourly entry, the delivery record with its indexes and the input entry. The hourly entry is
    /// written only once the duplicate check has passed.
    ///
    /// # Errors
    /// Redis failure (nothing was written), a reply this crate does not understand, or
    /// [`Error::NotReplicated`] (recorded, not yet confirmed by replicas).
    pub async fn invoke_addon(
        &self,
        inv: &Invocation<'_>,
        limits: &InvocationLimits,
        now: Micros,
    ) -> Result<InvokeOutcome> {
        let k = self.keys();
        let record = inv.record;
        let now_secs = now.div_euclid(1_000_000);
        // TMI's member is "<unix>:<unixnano>"; a random sub-microsecond part keeps two invocations in the same
        // microsecond from collapsing into one member.
        let nanos = now
            .saturating_mul(1000)
            .saturating_add(i64::from(rand::random::<u16>() % 1000));
        if k.layout() != Layout::Standalone {
            let member = format!("{now_secs}:{nanos}");
            return self.invoke_addon_sharded(inv, limits, now, member).await;
        }
        let mut keys = vec![
            k.addon(inv.addon),
            k.addon_hourly(inv.invoker),
            k.addon_dedup(inv.addon, inv.invoker),
            k.addon_active(inv.invoker),
            k.delivery(record.id),
            k.events_stream().to_owned(),
        ];
        keys.extend(self.record_index_keys(record));
        let mut args = vec![
            now_secs.to_string(),
            format!("{now_secs}:{nanos}"),
            limits.max_active.to_string(),
            limits.max_per_hour.to_string(),
            secs(limits.dedup_window).to_string(),
            HOURLY_WINDOW_SECS.to_string(),
            HOURLY_KEY_TTL_SECS.to_string(),
            // One node: the invoker's active set is pruned by reading the records in the script.
            k.delivery_prefix(Shard::ZERO),
            // The active set outlives the longest a pending record can (its TTL) by an hour; its stale members
            // are pruned by the next invocation anyway.
            (self.inner.active_ttl_secs + 3600).to_string(),
            self.inner.active_ttl_secs.to_string(),
        ];
        push_record(&mut args, record);
        for (f, v) in inv.event.to_fields() {
            args.push(f.to_owned());
            args.push(v);
        }
        let client = self.writer();
        let reply: Vec<Value> = scripts::INVOKE_ADDON.run_on(&client, keys, args).await?;
        let mut it = reply.into_iter();
        let kind = text(it.next());
        match kind.as_str() {
            "created" => {
                // One node (a cluster takes `invoke_addon_sharded`): one `WAIT`, no names needed.
                self.confirm(&client, &[]).await?;
                Ok(InvokeOutcome::Created)
            }
            "gone" => Ok(InvokeOutcome::AddonGone),
            "duplicate" => Ok(InvokeOutcome::Duplicate),
            "active" => {
                let _count = it.next();
                Ok(InvokeOutcome::ActiveLimit {
                    active: parse_active(&mut it),
                })
            }
            "hourly" => Ok(InvokeOutcome::HourlyLimit {
                current: text(it.next()).parse().unwrap_or(0),
                // Scores come back as text such as "1775044800".
                oldest_secs: text(it.next())
                    .parse::<f64>()
                    .map_or(now_secs, |s| s as i64),
            }),
            "exists" => Err(Error::Script(format!(
                "invoke_addon: delivery id {} already exists",
                record.id
            ))),
            other => Err(Error::Script(format!("invoke_addon: {other:?}"))),
        }
    }
}
