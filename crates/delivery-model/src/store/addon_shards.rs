//! Add-on invocations and deletes on a Redis Cluster (docs/cluster.md §4.4, §4.6). On one node each is one
//! script over the add-on, the invoker's limits and the delivery records; on a cluster the add-on and the
//! limits are in the control slot and the records in their shards, so each becomes short steps whose order
//! keeps every guarantee:
//!
//! - **Invoke**: read the invoker's active deliveries (their shards); reserve on the control slot (the
//!   add-on exists and is not being deleted, the limits, the duplicate key, the hourly entry, the new id in
//!   the active set: atomic, so two invocations cannot both pass a limit); create the record with its queue
//!   entry in its shard (`routed` set, so the consumer only acknowledges the `addon.invoked` entry); append
//!   that entry for TMI-compatible readers. A crash after the reservation leaves a counted hourly entry and
//!   an active-set member without a record, which counts as active for [`RESERVED_GRACE_MS`] (the record may
//!   be on its way) and is pruned after.
//! - **Delete**: mark the add-on as being deleted (invocations are refused while the mark stands), read its
//!   deliveries in every shard, then delete only if none is active and the mark is still the caller's.

use fred::prelude::*;
use fred::types::Value;

use super::addons::{ActiveInvocation, DeleteAddon, HOURLY_KEY_TTL_SECS, HOURLY_WINDOW_SECS};
use super::addons::{Invocation, InvocationLimits, InvokeOutcome};
use super::{Store, created_score, push_record_with, scripts, secs};
use crate::delivery::{DeliveryStatus, field};
use crate::error::{Error, Result};
use crate::ids::{AddonId, DeliveryId};
use crate::queue::{MESSAGE_FIELD, QueueMessage};
use crate::time::Micros;

/// How long an active-set member without a record still counts as active: the time between a reservation
/// and its record (a gateway that died in between never writes one).
pub const RESERVED_GRACE_MS: i64 = 60_000;
/// How long a delete's mark holds invocations off while the gateway checks the shards.
const DELETE_MARK_MS: i64 = 10_000;

impl Store {
    /// [`Store::invoke_addon`] on a cluster.
    pub(super) async fn invoke_addon_sharded(
        &self,
        inv: &Invocation<'_>,
        limits: &InvocationLimits,
        now: Micros,
        hourly_member: String,
    ) -> Result<InvokeOutcome> {
        let k = self.keys();
        let record = inv.record;
        let (active, finished) = self.active_invocations(inv.invoker, now).await?;
        let mut args = vec![
            now.div_euclid(1_000_000).to_string(),
            hourly_member,
            limits.max_active.to_string(),
            limits.max_per_hour.to_string(),
            secs(limits.dedup_window).to_string(),
            HOURLY_WINDOW_SECS.to_string(),
            HOURLY_KEY_TTL_SECS.to_string(),
            (self.inner.active_ttl_secs + 3600).to_string(),
            created_score(record.created_at),
            record.id.to_string(),
            (now / 1000).to_string(),
        ];
        args.extend(finished);
        let keys = vec![
            k.addon(inv.addon),
            k.addon_hourly(inv.invoker),
            k.addon_dedup(inv.addon, inv.invoker),
            k.addon_active(inv.invoker),
        ];
        // One client for the reservation, the record and the `WAIT`s that confirm both.
        let client = self.writer();
        let reserved = keys[0].clone();
        let reply: Vec<Value> = scripts::INVOKE_RESERVE.run_on(&client, keys, args).await?;
        let mut it = reply.into_iter().map(|v| v.as_string().unwrap_or_default());
        match it.next().as_deref() {
            Some("reserved") => {}
            Some("gone") => return Ok(InvokeOutcome::AddonGone),
            Some("duplicate") => return Ok(InvokeOutcome::Duplicate),
            Some("active") => return Ok(InvokeOutcome::ActiveLimit { active }),
            Some("hourly") => {
                let current = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let oldest_secs = it
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .map_or(now.div_euclid(1_000_000), |s| s as i64);
                return Ok(InvokeOutcome::HourlyLimit {
                    current,
                    oldest_secs,
                });
            }
            other => return Err(Error::Script(format!("invoke_reserve: {other:?}"))),
        }
        // The record and its queue entry, in its shard: routed now, so the input entry is only acknowledged.
        let shard = k.shard_of(record.id);
        let mut keys = vec![
            k.delivery(record.id),
            k.queue_stream(shard),
            k.delivery_index_registry(shard),
        ];
        keys.extend(self.record_index_keys(record));
        let mut args = vec![self.inner.active_ttl_secs.to_string()];
        push_record_with(&mut args, record, &[("routed", "1")]);
        args.push(MESSAGE_FIELD.to_owned());
        args.push(
            QueueMessage::DeliveryV1 {
                delivery_id: record.id,
            }
            .encode(),
        );
        let created: i64 = scripts::CREATE_DELIVERY.run_on(&client, keys, args).await?;
        if created != 1 {
            return Err(Error::Script(format!(
                "invoke_addon: delivery id {} already exists",
                record.id
            )));
        }
        self.confirm(&client, &[&reserved, &k.delivery(record.id)])
            .await?;
        // For TMI-compatible readers of the input stream (Hookline's consumer only acknowledges it). It
        // confirms its own write.
        self.publish_event(inv.event).await?;
        Ok(InvokeOutcome::Created)
    }

    /// The invoker's active add-on deliveries (oldest first) and the ids of its active-set members that
    /// have finished (or whose record never came within [`RESERVED_GRACE_MS`]).
    async fn active_invocations(
        &self,
        invoker: &str,
        now: Micros,
    ) -> Result<(Vec<ActiveInvocation>, Vec<String>)> {
        let k = self.keys();
        let members: Vec<(String, f64)> = self
            .pool()
            .zrange(k.addon_active(invoker), 0, -1, None, false, None, true)
            .await?;
        let reads = members.iter().map(|(id, _)| async move {
            let Ok(id) = id.parse::<DeliveryId>() else {
                return Ok(None);
            };
            let h: Vec<Option<String>> = self
                .pool()
                .hmget(
                    k.delivery(id),
                    vec![
                        field::STATUS,
                        field::ADDON_ID,
                        field::CREATED_AT,
                        field::LAST_ACTIVITY_AT,
                    ],
                )
                .await?;
            Ok::<_, Error>(Some(h))
        });
        let records = futures::future::try_join_all(reads).await?;
        let (mut active, mut finished) = (Vec::new(), Vec::new());
        for ((id, score), h) in members.into_iter().zip(records) {
            let Some(h) = h else {
                finished.push(id);
                continue;
            };
            let get = |i: usize| h.get(i).cloned().flatten();
            let status = get(0).and_then(|s| s.parse::<DeliveryStatus>().ok());
            let reserved_recently = (now / 1000) - (score as i64) < RESERVED_GRACE_MS;
            let counts = match status {
                Some(s) => !s.is_terminal(),
                None => reserved_recently,
            };
            if !counts {
                finished.push(id);
                continue;
            }
            if let Ok(delivery_id) = id.parse() {
                active.push(ActiveInvocation {
                    delivery_id,
                    addon_id: get(1).and_then(|a| a.parse().ok()),
                    status: status.unwrap_or(DeliveryStatus::Pending),
                    created_at: get(2).and_then(|v| v.parse().ok()).unwrap_or(0),
                    last_activity_at: get(3).and_then(|v| v.parse().ok()).unwrap_or(0),
                });
            }
        }
        Ok((active, finished))
    }

    /// [`Store::delete_addon`] on a cluster.
    pub(super) async fn delete_addon_sharded(
        &self,
        id: AddonId,
        now: Micros,
    ) -> Result<DeleteAddon> {
        let k = self.keys();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mark = |until: String| {
            scripts::ADDON_DELETE_MARK.run::<String>(
                self.pool(),
                vec![k.addon(id)],
                vec![token.clone(), until],
            )
        };
        let now_ms = now / 1000;
        if mark((now_ms + DELETE_MARK_MS).to_string()).await? == "missing" {
            return self.delete_addon_marked(id, &token, now_ms).await;
        }
        if self.addon_has_active_delivery(id).await? {
            mark(String::new()).await?;
            return Ok(DeleteAddon::Active);
        }
        self.delete_addon_marked(id, &token, now_ms).await
    }

    /// Whether any shard holds a `pending`/`in_progress` delivery of add-on `id` (newest first per shard:
    /// active deliveries are recent).
    async fn addon_has_active_delivery(&self, id: AddonId) -> Result<bool> {
        let k = self.keys();
        for shard in k.shards() {
            let ids: Vec<String> = self
                .pool()
                .zrevrange(k.deliveries_by_addon(shard, id), 0, -1, false)
                .await?;
            let prefix = k.delivery_prefix(shard);
            for page in ids.chunks(100) {
                let reads = page.iter().map(|d| {
                    self.pool()
                        .hget::<Option<String>, _, _>(format!("{prefix}{d}"), field::STATUS)
                });
                let statuses = futures::future::try_join_all(reads).await?;
                if statuses
                    .iter()
                    .any(|s| matches!(s.as_deref(), Some("pending" | "in_progress")))
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The last step of a delete on a cluster: only while the caller's mark stands.
    async fn delete_addon_marked(
        &self,
        id: AddonId,
        token: &str,
        now_ms: i64,
    ) -> Result<DeleteAddon> {
        let k = self.keys();
        let r: String = scripts::DELETE_ADDON
            .run(
                self.pool(),
                vec![k.addon(id), k.addons_all()],
                vec![
                    id.to_string(),
                    String::new(),
                    k.addons_by_threat_model_prefix(),
                    k.addons_unscoped(),
                    k.addons_by_subscription_prefix(),
                    token.to_owned(),
                    now_ms.to_string(),
                ],
            )
            .await?;
        super::addons::parse_delete(&r)
    }
}
