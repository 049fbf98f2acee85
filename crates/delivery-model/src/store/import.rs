//! Idempotent writes for importing TMI's PostgreSQL tables (`hookline-migrate`, issue #7).
//!
//! Every write here is create-if-absent in one step (a script that checks the key first, or `HSETNX`), so an
//! import can be re-run after a crash or on purpose and writes nothing the second time: each method says
//! whether it created something ([`ImportWrite`]). Records keep TMI's ids.
//!
//! - Subscriptions keep their status and counters; an `active` one enters the match indexes in the same step,
//!   a `pending_verification` one gets its challenge queued, as on creation.
//! - Rows of TMI's legacy `webhook_deliveries` table become unified delivery records. A pending one is handed
//!   to the worker in the same step ([`LegacyPlacement`]); a terminal one is stored with the TTL it has left.
//! - Records copied from a standalone Hookline (`hookline-migrate --from-redis`, [`super::export`]) take the
//!   same path with their internal fields (attempt log) and, in a cluster, the `routed` flag of a record
//!   that has its queue entry ([`Store::import_copied_delivery`]).
//!
//! On a Redis Cluster every script here stays in one slot: a subscription with its indexes and challenge in
//! the control slot, a delivery with its indexes and its queue or schedule entry in its shard's.
//! - TMI's URL deny list becomes the [`Keyspace::url_deny_list`](crate::keys::Keyspace::url_deny_list) hash,
//!   which the api-gateway consults next to its configured patterns ([`Store::url_deny_list`]).

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};

use super::export::CopiedDelivery;
use super::{Store, push_record_with, scripts, secs};
use crate::delivery::DeliveryRecord;
use crate::error::{Error, Result};
use crate::ids::{AddonId, DeliveryId, SubscriptionId};
use crate::keys::Layout;
use crate::queue::{MESSAGE_FIELD, QueueMessage};
use crate::subscription::{Subscription, SubscriptionStatus};
use crate::time::Micros;

/// What an import write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportWrite {
    Created,
    /// The id was there already; nothing was written.
    Exists,
}

impl ImportWrite {
    fn from_created(created: bool) -> Self {
        if created {
            ImportWrite::Created
        } else {
            ImportWrite::Exists
        }
    }
}

/// Where an imported delivery goes besides its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyPlacement {
    /// Pending and due: appended to the queue now.
    Enqueue,
    /// Pending with its retry time ahead: on the schedule, due at `due_ms` (Unix ms).
    Schedule { due_ms: i64 },
    /// `in_progress` (a receiver's callback is awaited): stored with its entry in the activity index (score
    /// `last_activity_at`, so cleanup's stale sweep times it as before), no queue entry, expiring after
    /// `ttl`.
    AwaitCallback { ttl: Duration },
    /// Terminal: stored only, expiring after `ttl` (what is left of its 7 days).
    Keep { ttl: Duration },
}

/// How a deny-list pattern matches a URL (TMI's `pattern_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyPatternType {
    Glob,
    Regex,
}

impl DenyPatternType {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyPatternType::Glob => "glob",
            DenyPatternType::Regex => "regex",
        }
    }
}

impl std::str::FromStr for DenyPatternType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "glob" => Ok(DenyPatternType::Glob),
            "regex" => Ok(DenyPatternType::Regex),
            other => Err(Error::Decode(format!("unknown pattern_type {other:?}"))),
        }
    }
}

/// One row of TMI's `webhook_url_deny_list`: subscription URLs matching `pattern` are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlDenyEntry {
    /// TMI's row id (the hash field).
    pub id: String,
    pub pattern: String,
    pub pattern_type: DenyPatternType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: Micros,
}

impl Store {
    /// Imports a subscription as it is (id, status, secret, challenge state, counters, pinned flag), only if
    /// absent, with every index its status implies, in one step: an `active` one is matched by events at once,
    /// a `pending_verification` one gets its challenge queued.
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn import_subscription(&self, sub: &Subscription) -> Result<ImportWrite> {
        let (keys, mut args) =
            self.subscription_write(sub, vec![self.keys().match_generation()], None);
        args.push(if sub.status == SubscriptionStatus::Active {
            self.keys().subscriptions_by_event_prefix()
        } else {
            String::new()
        });
        args.push(sub.events.len().to_string());
        args.extend(sub.events.iter().cloned());
        super::push_fields(&mut args, sub, self.secrets())?;
        let created: i64 = scripts::IMPORT_SUBSCRIPTION
            .run(self.pool(), keys, args)
            .await?;
        Ok(ImportWrite::from_created(created == 1))
    }

    /// Imports a legacy delivery row as a record with its indexes, only if absent, and places it (queue,
    /// schedule, activity index, or nowhere for a terminal one) in the same step. A scheduled record lives
    /// until its due time plus the active TTL, so it cannot expire before the worker sees it.
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn import_delivery(
        &self,
        record: &DeliveryRecord,
        placement: LegacyPlacement,
        now: Micros,
    ) -> Result<ImportWrite> {
        self.import_record(record, &[], placement, now).await
    }

    /// [`import_delivery`](Self::import_delivery) for a record copied from another Hookline deployment: its
    /// attempt log comes along, and in a cluster a record placed on the queue or the schedule is marked
    /// `routed` (it has its one queue entry, so an `addon.invoked` entry naming it enqueues nothing more).
    ///
    /// # Errors
    /// Redis failure (nothing was written).
    pub async fn import_copied_delivery(
        &self,
        copy: &CopiedDelivery,
        placement: LegacyPlacement,
        now: Micros,
    ) -> Result<ImportWrite> {
        let mut extra: Vec<(&'static str, &str)> = Vec::new();
        if let Some(log) = copy.attempt_log.as_deref() {
            extra.push((crate::delivery::field::ATTEMPT_LOG, log));
        }
        let queued = matches!(
            placement,
            LegacyPlacement::Enqueue | LegacyPlacement::Schedule { .. }
        );
        if queued && matches!(self.keys().layout(), Layout::Cluster { .. }) {
            extra.push(("routed", "1"));
        }
        self.import_record(&copy.record, &extra, placement, now)
            .await
    }

    async fn import_record(
        &self,
        record: &DeliveryRecord,
        extra: &[(&'static str, &str)],
        placement: LegacyPlacement,
        now: Micros,
    ) -> Result<ImportWrite> {
        let k = self.keys();
        let (mode, ttl, due) = match placement {
            LegacyPlacement::Enqueue => ("queue", self.inner.active_ttl_secs, String::new()),
            LegacyPlacement::Schedule { due_ms } => {
                let ahead_secs = (due_ms.saturating_sub(now / 1000) / 1000).max(0);
                (
                    "schedule",
                    self.inner.active_ttl_secs.saturating_add(ahead_secs),
                    due_ms.to_string(),
                )
            }
            LegacyPlacement::AwaitCallback { ttl } => ("activity", secs(ttl), String::new()),
            LegacyPlacement::Keep { ttl } => ("keep", secs(ttl), String::new()),
        };
        let shard = k.shard_of(record.id);
        let mut keys = vec![
            k.delivery(record.id),
            k.queue_stream(shard),
            k.scheduled(shard),
            k.delivery_index_registry(shard),
            k.deliveries_activity(shard),
        ];
        keys.extend(self.record_index_keys(record));
        let mut args = vec![ttl.to_string()];
        push_record_with(&mut args, record, extra);
        args.push(mode.to_owned());
        args.push(MESSAGE_FIELD.to_owned());
        args.push(
            QueueMessage::DeliveryV1 {
                delivery_id: record.id,
            }
            .encode(),
        );
        args.push(due);
        args.push(record.last_activity_at.to_string());
        let created: i64 = scripts::IMPORT_DELIVERY
            .run(self.pool(), keys, args)
            .await?;
        Ok(ImportWrite::from_created(created == 1))
    }

    /// Adds a deny-list entry under its TMI id unless that id is there already (`HSETNX`).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn import_url_deny_entry(&self, entry: &UrlDenyEntry) -> Result<ImportWrite> {
        let created: bool = self
            .pool()
            .hsetnx(
                self.keys().url_deny_list(),
                &entry.id,
                serde_json::to_string(entry)?,
            )
            .await?;
        Ok(ImportWrite::from_created(created))
    }

    /// Every imported deny-list entry (the api-gateway refuses subscription URLs matching any of them, on top
    /// of `[subscriptions] deny_globs` / `deny_regexes`). A corrupt entry is an error, not skipped: a deny
    /// list that silently shrinks would let refused URLs through.
    ///
    /// # Errors
    /// Redis failure or an entry that does not decode.
    pub async fn url_deny_list(&self) -> Result<Vec<UrlDenyEntry>> {
        let h: HashMap<String, String> = self.pool().hgetall(self.keys().url_deny_list()).await?;
        let mut entries = h
            .values()
            .map(|v| serde_json::from_str::<UrlDenyEntry>(v).map_err(Error::from))
            .collect::<Result<Vec<_>>>()?;
        entries.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(entries)
    }

    /// Whether deny-list entry `id` has been imported.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn url_deny_entry_exists(&self, id: &str) -> Result<bool> {
        Ok(self.pool().hexists(self.keys().url_deny_list(), id).await?)
    }

    /// Whether subscription `id` exists (without decoding it).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn subscription_exists(&self, id: SubscriptionId) -> Result<bool> {
        let n: i64 = self.pool().exists(self.keys().subscription(id)).await?;
        Ok(n == 1)
    }

    /// Whether add-on `id` exists (without decoding it).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn addon_exists(&self, id: AddonId) -> Result<bool> {
        let n: i64 = self.pool().exists(self.keys().addon(id)).await?;
        Ok(n == 1)
    }

    /// Whether delivery record `id` exists (it may have expired since it was written).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn delivery_exists(&self, id: DeliveryId) -> Result<bool> {
        let n: i64 = self.pool().exists(self.keys().delivery(id)).await?;
        Ok(n == 1)
    }
}
