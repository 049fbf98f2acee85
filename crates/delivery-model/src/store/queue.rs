//! The queue, the schedule and the streams' plumbing: promoting due work, scheduling, acknowledgements
//! without an outcome write, publishing to the input stream, idempotent consumer-group setup, dedicated
//! reader connections, and the depth figures for metrics.

use fred::prelude::*;
use fred::types::Value;

use super::{Store, StreamReader, scripts, streams};
use crate::error::Result;
use crate::event::StreamEvent;
use crate::keys::{EVENTS_GROUP, QUEUE_GROUP};
use crate::queue::{MESSAGE_FIELD, QueueMessage};

impl Store {
    /// Moves up to `limit` messages due by `now_ms` from each schedule to its queue (one pair on a single
    /// node; every shard's and the challenges' on a cluster, one script each, concurrently); returns how
    /// many in all.
    ///
    /// # Errors
    /// Redis failure (pairs that succeeded have moved their messages; each move is atomic).
    pub async fn promote_due(&self, now_ms: i64, limit: u32) -> Result<u64> {
        let k = self.keys();
        let moves = k.schedules().into_iter().map(|(schedule, queue)| {
            let mut keys = vec![schedule, queue];
            let mut args = vec![
                now_ms.to_string(),
                limit.to_string(),
                MESSAGE_FIELD.to_owned(),
            ];
            // A delivery coming due takes its fair share of the queue. The challenges' own schedule (a
            // control key on a cluster, of no shard) holds no deliveries: no fair keys, share 0.
            match k.shard_of_key(&keys[1]) {
                Some(shard) => {
                    keys.push(k.fair_parking(shard));
                    args.extend(self.fair_args(shard));
                    args.push(k.delivery_prefix(shard));
                }
                None => args.extend(["0", "", "", ""].map(String::from)),
            }
            args.push(self.inner.active_ttl_secs.to_string());
            scripts::PROMOTE_DUE.run::<u64>(self.pool(), keys, args)
        });
        Ok(futures::future::try_join_all(moves)
            .await?
            .into_iter()
            .sum())
    }

    /// Puts a message on the schedule, due at `due_ms`.
    ///
    /// # Errors
    /// Redis failure.
    pub async fn schedule(&self, msg: &QueueMessage, due_ms: i64) -> Result<()> {
        let k = self.keys();
        // A delivery goes back to its shard's schedule, a challenge to the control one.
        let key = match msg {
            QueueMessage::DeliveryV1 { delivery_id } => k.scheduled(k.shard_of(*delivery_id)),
            QueueMessage::ChallengeV1 { .. } => k.challenge_scheduled(),
        };
        let _: i64 = self
            .pool()
            .zadd(key, None, None, false, false, (due_ms as f64, msg.encode()))
            .await?;
        Ok(())
    }

    /// Acknowledges and deletes entries of queue `stream` (the one they were read from: a shard's queue or
    /// the challenge queue on a cluster, the one queue on a single node) handled without an outcome write
    /// (stale or finished work, challenges).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn ack_queue(&self, stream: &str, entry_ids: &[String]) -> Result<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .pool()
            .xack(stream, QUEUE_GROUP, entry_ids.to_vec())
            .await?;
        let _: i64 = self.pool().xdel(stream, entry_ids.to_vec()).await?;
        Ok(())
    }

    /// Acknowledges input entries without fan-out (malformed entries, `addon.invoked` routing).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn ack_events(&self, entry_ids: &[String]) -> Result<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .pool()
            .xack(
                self.keys().events_stream(),
                EVENTS_GROUP,
                entry_ids.to_vec(),
            )
            .await?;
        Ok(())
    }

    /// Appends an event to the input stream exactly as TMI's emitter does; returns the entry id. Waits for
    /// replicas as configured ([`AckWait`](super::AckWait)).
    ///
    /// # Errors
    /// Redis failure, or [`Error::NotReplicated`](crate::Error::NotReplicated) (the entry is appended).
    pub async fn publish_event(&self, event: &StreamEvent) -> Result<String> {
        let client = self.writer();
        let id: String = client
            .xadd(
                self.keys().events_stream(),
                false,
                None,
                "*",
                event.to_fields(),
            )
            .await?;
        self.confirm(&client, &[self.keys().events_stream()])
            .await?;
        Ok(id)
    }

    /// Creates the input stream's consumer group if missing (`start_id` for a new group: `0` replays what
    /// the stream holds, `$` starts at its end).
    ///
    /// # Errors
    /// Redis failure other than `BUSYGROUP`.
    pub async fn ensure_events_group(&self, start_id: &str) -> Result<()> {
        self.ensure_group(self.keys().events_stream(), EVENTS_GROUP, start_id)
            .await
    }

    /// Creates the consumer group of every queue a worker reads (each shard's and the challenge queue; one
    /// in standalone mode) if missing. A queue only ever holds live work, so a new group starts at `0`.
    ///
    /// # Errors
    /// Redis failure other than `BUSYGROUP`.
    pub async fn ensure_queue_group(&self) -> Result<()> {
        for stream in self.keys().worker_streams() {
            self.ensure_group(&stream, QUEUE_GROUP, "0").await?;
        }
        Ok(())
    }

    /// Creates `group` on `stream` (and the stream) if missing, starting at `start_id`.
    ///
    /// # Errors
    /// Redis failure other than `BUSYGROUP`.
    pub async fn ensure_group(&self, stream: &str, group: &str, start_id: &str) -> Result<()> {
        match self
            .pool()
            .xgroup_create::<Value, _, _, _>(stream, group, start_id, true)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.details().starts_with("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `group` exists on `stream` (readiness).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn group_exists(&self, stream: &str, group: &str) -> Result<bool> {
        let groups: Value = match self.pool().xinfo_groups(stream).await {
            Ok(v) => v,
            // "ERR no such key": the stream itself is gone.
            Err(e) if e.details().contains("no such key") => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(streams::group_names(groups).iter().any(|g| g == group))
    }

    /// Opens a dedicated connection for blocking stream reads. A blocking `XREADGROUP` would hold up every
    /// command multiplexed on a shared connection, so each read loop gets its own.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn reader(&self) -> Result<StreamReader> {
        let client = self.inner.builder.build()?;
        // Bounded: a half-open path may accept the connection and then answer nothing.
        let timeout = self.command_timeout();
        match tokio::time::timeout(timeout, client.init()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                // Stop the connection task, which would otherwise go on reconnecting.
                let _ = tokio::time::timeout(super::QUIT_WAIT, client.quit()).await;
                return Err(super::streams::timeout_error(
                    "opening a read connection",
                    timeout,
                ));
            }
        }
        Ok(StreamReader::new(client, timeout))
    }

    /// Length and pending count of the queues, summed over every queue a worker reads (metrics).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn queue_depth(&self) -> Result<(u64, u64)> {
        let (mut len, mut pending) = (0, 0);
        // Summed over every queue a worker reads (one on a single node).
        for q in self.keys().worker_streams() {
            let n: u64 = self.pool().xlen(&q).await?;
            let p: Value = match self.pool().xpending(&q, QUEUE_GROUP, ()).await {
                Ok(v) => v,
                Err(e) if e.details().starts_with("NOGROUP") => Value::Null,
                Err(e) => return Err(e.into()),
            };
            len += n;
            pending += p.into_array().first().and_then(Value::as_u64).unwrap_or(0);
        }
        Ok((len, pending))
    }

    /// Number of scheduled messages, over every schedule (metrics).
    ///
    /// # Errors
    /// Redis failure.
    pub async fn scheduled_len(&self) -> Result<u64> {
        let mut n = 0;
        for (schedule, _) in self.keys().schedules() {
            let len: u64 = self.pool().zcard(schedule).await?;
            n += len;
        }
        Ok(n)
    }
}
