//! How far a consumer group is behind its stream, for the lag gauges: the queue's oldest undelivered entry
//! (the delivery-worker's sampler) and the consumer lag on the input stream (the event-consumer's sampler).
//!
//! Three reads per sample, none of them blocking or proportional to the backlog on Redis 7: `XINFO GROUPS`
//! (the group's last-delivered id, its pending count and, on 7.0+, its `lag`), the `XPENDING` summary (the
//! oldest entry read and not acknowledged) and one `XRANGE … COUNT 1` after the last-delivered id (the
//! oldest entry not read yet). An entry's age comes from its id (`<ms>-<seq>`, Redis's append time).

use fred::prelude::*;
use fred::types::Value;

use super::Store;
use super::cleanup::{StreamId, field};
use super::streams;
use crate::error::{Error, Result};
use crate::keys::{EVENTS_GROUP, QUEUE_GROUP};

/// Bound on the entries counted one by one when Redis does not report a group's lag (before 7.0, or after
/// deletions it cannot see past): beyond it, [`GroupBacklog::unread`] says at least this many.
pub const UNREAD_COUNT_CAP: u64 = 1000;

/// One consumer group's backlog on a stream ([`Store::group_backlog`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBacklog {
    /// Entries after the group's last-delivered id: not read by any of its consumers yet. Redis's own count
    /// (`XINFO GROUPS` `lag`) when it has one, else counted up to [`UNREAD_COUNT_CAP`].
    pub unread: u64,
    /// Entries read by some consumer of the group and not acknowledged.
    pub pending: u64,
    /// Append time (Unix ms) of the oldest entry the group has not acknowledged, read or not; `None` when
    /// the group is caught up (or the stream or group does not exist).
    pub oldest_ms: Option<u64>,
}

impl GroupBacklog {
    /// Seconds since the oldest unacknowledged entry was appended, at `now_ms`; 0 when there is none.
    pub fn oldest_age_secs(&self, now_ms: u64) -> f64 {
        self.oldest_ms
            .map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0)
    }
}

impl Store {
    /// The queues' backlog in the `delivery-workers` group. A queue holds only live work (entries are
    /// deleted when acknowledged), so its oldest entry is the oldest delivery or challenge not done yet.
    ///
    /// # Errors
    /// Redis failure or an unreadable reply.
    pub async fn queue_backlog(&self) -> Result<GroupBacklog> {
        // Summed over every queue a worker reads (one on a single node, one per shard on a cluster); the
        // oldest entry is the oldest of them all.
        let mut total = GroupBacklog::default();
        for q in self.keys().worker_streams() {
            let b = self.group_backlog(&q, QUEUE_GROUP).await?;
            total.unread += b.unread;
            total.pending += b.pending;
            total.oldest_ms = match (total.oldest_ms, b.oldest_ms) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
        Ok(total)
    }

    /// The input stream's backlog in the `webhook-consumers` group (consumer lag).
    ///
    /// # Errors
    /// Redis failure or an unreadable reply.
    pub async fn events_backlog(&self) -> Result<GroupBacklog> {
        let stream = self.keys().events_stream().to_owned();
        self.group_backlog(&stream, EVENTS_GROUP).await
    }

    /// `group`'s backlog on `stream`; all zero when the stream or the group does not exist.
    ///
    /// # Errors
    /// Redis failure or an unreadable reply.
    pub async fn group_backlog(&self, stream: &str, group: &str) -> Result<GroupBacklog> {
        let groups: Value = match self.pool().xinfo_groups(stream).await {
            Ok(v) => v,
            Err(e) if e.details().contains("no such key") => return Ok(GroupBacklog::default()),
            Err(e) => return Err(e.into()),
        };
        let Some(info) = groups
            .into_array()
            .into_iter()
            .find(|g| field(g, "name").and_then(|v| v.as_string()).as_deref() == Some(group))
        else {
            return Ok(GroupBacklog::default());
        };
        let last_delivered: StreamId = field(&info, "last-delivered-id")
            .and_then(|v| v.as_string())
            .ok_or_else(|| {
                Error::Decode(format!("XINFO GROUPS: {group} has no last-delivered-id"))
            })?
            .parse()?;
        let lag = field(&info, "lag").and_then(|v| v.as_u64());

        let summary: Value = self.pool().xpending(stream, group, ()).await?;
        let summary = summary.into_array();
        let pending = summary.first().and_then(Value::as_u64).unwrap_or(0);
        let oldest_pending = if pending > 0 {
            summary
                .get(1)
                .and_then(Value::as_string)
                .map(|s| s.parse::<StreamId>())
                .transpose()?
        } else {
            None
        };

        // Only the first entry is fetched when Redis knows the lag; otherwise they are counted, bounded.
        let count = if lag.is_some() { 1 } else { UNREAD_COUNT_CAP };
        let after: Value = self
            .pool()
            .xrange(stream, format!("({last_delivered}"), "+", Some(count))
            .await?;
        let unread_entries = streams::parse_entries(after);
        let first_unread = unread_entries
            .first()
            .map(|e| e.id.parse::<StreamId>())
            .transpose()?;
        let unread = lag.unwrap_or(unread_entries.len() as u64);

        let oldest = match (oldest_pending, first_unread) {
            (Some(p), Some(u)) => Some(p.min(u)),
            (p, u) => p.or(u),
        };
        Ok(GroupBacklog {
            unread,
            pending,
            oldest_ms: oldest.map(|id| id.ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_zero_without_a_backlog_and_never_negative() {
        let none = GroupBacklog::default();
        assert!(none.oldest_age_secs(10_000).abs() < f64::EPSILON);
        let b = GroupBacklog {
            oldest_ms: Some(8_500),
            ..GroupBacklog::default()
        };
        assert!((b.oldest_age_secs(10_000) - 1.5).abs() < 1e-9);
        // A clock behind Redis's: 0, not a negative age.
        assert!(b.oldest_age_secs(8_000).abs() < f64::EPSILON);
    }

    #[test]
    fn fields_are_read_from_flat_and_map_replies() {
        let flat = Value::Array(vec![
            Value::from("name"),
            Value::from("g"),
            Value::from("lag"),
            Value::from(3),
        ]);
        assert_eq!(field(&flat, "lag").and_then(|v| v.as_u64()), Some(3));
        assert_eq!(field(&flat, "missing"), None);
    }
}
