//! Reading a whole Hookline deployment back out, for `hookline-migrate --from-redis` (issue #15: moving a
//! standalone deployment to a cluster). The source is a [`Store`] connected to it like any other, so its
//! keys are named by its own [`Keyspace`](crate::keys::Keyspace) and nothing here spells one; the writes on
//! the target are the import's create-if-absent scripts ([`super::import`]).
//!
//! What is read beyond the typed records: a delivery's internal attempt log and its remaining TTL, where each
//! pending delivery waits (its due time on a schedule, else the queue), an add-on invoker's invocation
//! windows (active set, hourly window), the idempotency records with their remaining TTLs, and the server's
//! identity, so a copy onto itself is refused.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::*;
use fred::types::{InfoKind, Value};

use super::Store;
use super::import::ImportWrite;
use super::scripts;
use crate::delivery::{DeliveryRecord, DeliveryStatus, field};
use crate::error::{Error, Result};
use crate::ids::DeliveryId;
use crate::keys::Shard;
use crate::queue::QueueMessage;

/// A delivery record as a copy needs it: the record, its attempt log (an internal field the typed record
/// leaves out) and how long it has left to live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedDelivery {
    pub record: DeliveryRecord,
    /// The latest attempts, one JSON line each, as the record stores them.
    pub attempt_log: Option<String>,
    /// The record's remaining TTL; `None` when it has no expiry.
    pub ttl: Option<Duration>,
}

/// An `Idempotency-Key` record (a hash) with its name after the key prefix and its remaining TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedIdempotency {
    /// The key's name after [`Keyspace::idempotency_prefix`](crate::keys::Keyspace::idempotency_prefix):
    /// `<route>:<digest>`.
    pub name: String,
    pub fields: Vec<(String, String)>,
    pub ttl: Duration,
}

/// One add-on invoker's invocation windows: the active set (delivery ids, score = created ms) and the
/// hourly window (TMI's `<unix>:<unixnano>` members, score = unix s), each with its remaining TTL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationWindows {
    pub active: Vec<(String, f64)>,
    pub active_ttl: Option<Duration>,
    pub hourly: Vec<(String, f64)>,
    pub hourly_ttl: Option<Duration>,
}

/// Who a Redis server is (`INFO server` / `INFO cluster`), to refuse copying a deployment onto itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// `run_id`: random per server process, so two URLs naming one server give the same one.
    pub run_id: String,
    /// The server is a Redis Cluster node (`cluster_enabled:1`).
    pub cluster_node: bool,
}

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

impl Store {
    /// The identity of the server this store talks to. On a cluster, of one of its nodes.
    ///
    /// # Errors
    /// Redis failure, or a reply without a `run_id`.
    pub async fn server_identity(&self) -> Result<ServerIdentity> {
        let server: String = self.pool().info(Some(InfoKind::Server)).await?;
        let cluster: String = self.pool().info(Some(InfoKind::Cluster)).await?;
        let run_id = info_field(&server, "run_id")
            .ok_or_else(|| Error::Decode("INFO server has no run_id".into()))?
            .to_owned();
        Ok(ServerIdentity {
            run_id,
            cluster_node: info_field(&cluster, "cluster_enabled") == Some("1"),
        })
    }

    /// The ids at ranks `offset..offset + limit` of `shard`'s index of every delivery, oldest first. A
    /// stopped deployment's index does not move, so paging by rank visits each id once.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn delivery_ids_page(
        &self,
        shard: Shard,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<DeliveryId>> {
        let (ids, _) = self
            .zpage(&self.keys().deliveries_all(shard), offset, limit, false)
            .await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// A delivery record with its attempt log and remaining TTL; `None` when it is gone (expired since its
    /// index entry was read).
    ///
    /// # Errors
    /// Redis failure or a corrupt record.
    pub async fn export_delivery(&self, id: DeliveryId) -> Result<Option<CopiedDelivery>> {
        let key = self.keys().delivery(id);
        let pipeline = self.pool().next().pipeline();
        let _: () = pipeline.hgetall(&key).await?;
        let _: () = pipeline.pttl(&key).await?;
        let (h, pttl): (HashMap<String, String>, i64) = pipeline.all().await?;
        if h.is_empty() {
            return Ok(None);
        }
        Ok(Some(CopiedDelivery {
            record: DeliveryRecord::from_hash(&h)?,
            attempt_log: h.get(field::ATTEMPT_LOG).filter(|l| !l.is_empty()).cloned(),
            ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
        }))
    }

    /// Every delivery waiting on a schedule (retries, deferrals) with its due time (Unix ms), over every
    /// shard's schedule; challenges are left out.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn scheduled_deliveries(&self) -> Result<HashMap<DeliveryId, i64>> {
        const PAGE: i64 = 1000;
        let mut due = HashMap::new();
        for (schedule, _) in self.keys().schedules() {
            let mut start = 0;
            loop {
                let page: Vec<(String, f64)> = self
                    .pool()
                    .zrange(&schedule, start, start + PAGE - 1, None, false, None, true)
                    .await?;
                for (member, score) in &page {
                    if let Ok(QueueMessage::DeliveryV1 { delivery_id }) =
                        QueueMessage::decode(member)
                    {
                        // Scores are whole milliseconds.
                        due.insert(delivery_id, *score as i64);
                    }
                }
                if i64::try_from(page.len()).unwrap_or(PAGE) < PAGE {
                    break;
                }
                start += PAGE;
            }
        }
        Ok(due)
    }

    /// One `SCAN` page of the idempotency records (one node only: `SCAN` sees the node it runs on) from
    /// `cursor` (`"0"` to start); returns the next cursor (`"0"` when the walk is done) and the records
    /// found, each with its remaining TTL. A record that expires meanwhile is left out.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn idempotency_page(&self, cursor: &str) -> Result<(String, Vec<CopiedIdempotency>)> {
        let prefix = self.keys().idempotency_prefix();
        let reply: Value = self
            .pool()
            .next()
            .scan_page(cursor.to_owned(), format!("{prefix}*"), Some(500), None)
            .await?;
        let (next, keys): (String, Vec<String>) = reply.convert()?;
        let mut out = Vec::new();
        for key in keys {
            let Some(name) = key.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let pipeline = self.pool().next().pipeline();
            let _: () = pipeline.hgetall(&key).await?;
            let _: () = pipeline.pttl(&key).await?;
            let (h, pttl): (HashMap<String, String>, i64) = pipeline.all().await?;
            // An expired one, or one without an expiry (not Hookline's: it always sets one).
            let Ok(ms) = u64::try_from(pttl) else {
                continue;
            };
            if h.is_empty() {
                continue;
            }
            let mut fields: Vec<(String, String)> = h.into_iter().collect();
            fields.sort();
            out.push(CopiedIdempotency {
                name: name.to_owned(),
                fields,
                ttl: Duration::from_millis(ms),
            });
        }
        Ok((next, out))
    }

    /// A sorted set's members with their scores, and its remaining TTL (`None`: no expiry, or no set).
    async fn zset_with_ttl(&self, key: &str) -> Result<(Vec<(String, f64)>, Option<Duration>)> {
        let pipeline = self.pool().next().pipeline();
        let _: () = pipeline.zrange(key, 0, -1, None, false, None, true).await?;
        let _: () = pipeline.pttl(key).await?;
        let (members, pttl): (Vec<(String, f64)>, i64) = pipeline.all().await?;
        Ok((members, u64::try_from(pttl).ok().map(Duration::from_millis)))
    }

    /// Add-on invoker `invoker`'s invocation windows, so that the limits they enforce carry over a move. The
    /// active set keeps only members whose delivery is still `pending` or `in_progress`: the others no
    /// longer count (an invocation prunes them), and copying them would only have the next copy add them
    /// back after that pruning.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn invocation_windows(&self, invoker: &str) -> Result<InvocationWindows> {
        let k = self.keys();
        let (members, active_ttl) = self.zset_with_ttl(&k.addon_active(invoker)).await?;
        let mut active = Vec::new();
        for (member, score) in members {
            let Ok(id) = member.parse::<DeliveryId>() else {
                continue;
            };
            let status: Option<String> = self.pool().hget(k.delivery(id), field::STATUS).await?;
            let live = status
                .and_then(|s| s.parse::<DeliveryStatus>().ok())
                .is_some_and(|s| !s.is_terminal());
            if live {
                active.push((member, score));
            }
        }
        let (hourly, hourly_ttl) = self.zset_with_ttl(&k.addon_hourly(invoker)).await?;
        Ok(InvocationWindows {
            active,
            active_ttl,
            hourly,
            hourly_ttl,
        })
    }

    /// Adds copied invocation windows to invoker `invoker`'s (control slot; one single-key script per
    /// window), each member only if absent; a window this creates gets the TTL the copy had left.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn import_invocation_windows(
        &self,
        invoker: &str,
        windows: &InvocationWindows,
    ) -> Result<ImportWrite> {
        let k = self.keys();
        let mut added = 0;
        for (key, members, ttl) in [
            (k.addon_active(invoker), &windows.active, windows.active_ttl),
            (k.addon_hourly(invoker), &windows.hourly, windows.hourly_ttl),
        ] {
            if members.is_empty() {
                continue;
            }
            let ms = ttl.map_or(0, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
            });
            let mut args = vec![ms.to_string()];
            for (member, score) in members {
                args.push(score.to_string());
                args.push(member.clone());
            }
            let n: i64 = scripts::IMPORT_ZSET
                .run(self.pool(), vec![key], args)
                .await?;
            added += n;
        }
        Ok(if added > 0 {
            ImportWrite::Created
        } else {
            ImportWrite::Exists
        })
    }

    /// Stores a copied idempotency record under this deployment's name for it, with its remaining TTL, only
    /// if absent (a single-key script: the record has no hash tag and lives wherever its slot is).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn import_idempotency(&self, copy: &CopiedIdempotency) -> Result<ImportWrite> {
        let key = format!("{}{}", self.keys().idempotency_prefix(), copy.name);
        let ms = u64::try_from(copy.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut args = vec![ms.to_string()];
        for (f, v) in &copy.fields {
            args.push(f.clone());
            args.push(v.clone());
        }
        let created: i64 = scripts::IMPORT_HASH
            .run(self.pool(), vec![key], args)
            .await?;
        Ok(if created == 1 {
            ImportWrite::Created
        } else {
            ImportWrite::Exists
        })
    }
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn reads_info_fields_by_exact_name() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\nrun_id_x:no\r\n";
        assert_eq!(info_field(info, "run_id"), Some("abc123"));
        assert_eq!(info_field(info, "cluster_enabled"), None);
        assert_eq!(
            info_field("cluster_enabled:1\r\n", "cluster_enabled"),
            Some("1")
        );
    }
}
