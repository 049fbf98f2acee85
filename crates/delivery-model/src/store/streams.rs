//! Blocking stream reads on a dedicated connection, and decoding of stream replies.
//!
//! Every call is bounded: a blocking read by its block time plus the command timeout, any other by the
//! command timeout. A blocking read holds its connection, and fred's check for half-open connections skips
//! a connection held that way, so after a timed-out call the reader replaces the connection itself
//! ([`StreamReader::reconnect`]) instead of queueing more calls behind a reply that may never come.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Value;
use fred::types::config::Options;

use crate::error::Result;

/// One stream entry: its id and field map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    pub fields: HashMap<String, String>,
}

/// When Redis added the entry with id `id` (`<ms>-<seq>`, with an id Redis generated), in milliseconds since
/// the epoch; `None` for an id of another shape. Millisecond resolution: what the hop-latency metrics read.
pub fn entry_time_ms(id: &str) -> Option<i64> {
    id.split_once('-')?.0.parse().ok()
}

/// A dedicated connection for one read loop (see [`Store::reader`](super::Store::reader)).
pub struct StreamReader {
    client: Client,
    /// The store's command timeout: added to a blocking read's block time, and the bound on reconnecting.
    command_timeout: Duration,
}

impl StreamReader {
    pub(crate) fn new(client: Client, command_timeout: Duration) -> Self {
        Self {
            client,
            command_timeout,
        }
    }

    /// Closes this connection and opens a new one in its place, after a call timed out (the connection may
    /// be half-open). Calls that timed out are not sent again; entries a lost reply handed to this consumer
    /// stay in its pending list, which the reader re-reads.
    ///
    /// # Errors
    /// Redis unreachable within the command timeout (the caller pauses and tries again).
    pub async fn reconnect(&self) -> Result<()> {
        match tokio::time::timeout(self.command_timeout, self.client.force_reconnection()).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(timeout_error("reconnecting", self.command_timeout)),
        }
    }

    /// `XREADGROUP GROUP group consumer COUNT count BLOCK block_ms STREAMS stream >`: new entries only.
    ///
    /// # Errors
    /// Redis failure; [`Error::is_nogroup`](crate::Error::is_nogroup) when the group is gone.
    pub async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: u64,
        block_ms: u64,
    ) -> Result<Vec<StreamEntry>> {
        // The server answers a healthy blocking read within `block_ms`; the command timeout on top bounds
        // one that gets no answer at all.
        let bound = Options {
            timeout: Some(Duration::from_millis(block_ms) + self.command_timeout),
            ..Options::default()
        };
        let v: Value = self
            .client
            .with_options(&bound)
            .xreadgroup(
                group,
                consumer,
                Some(count),
                Some(block_ms),
                false,
                stream,
                ">",
            )
            .await?;
        Ok(parse_xread(v))
    }

    /// `XREADGROUP … STREAMS stream 0`: this consumer's own pending entries (delivered to it before a crash
    /// or restart and never acknowledged). Consumer names are stable per replica, so a restarted replica
    /// resumes its own work at once instead of waiting for another to reclaim it.
    ///
    /// # Errors
    /// Redis failure; [`Error::is_nogroup`](crate::Error::is_nogroup) when the group is gone.
    pub async fn read_own_pending(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: u64,
    ) -> Result<Vec<StreamEntry>> {
        let v: Value = self
            .client
            .xreadgroup(group, consumer, Some(count), None, false, stream, "0")
            .await?;
        Ok(parse_xread(v))
    }

    /// `XAUTOCLAIM`: takes over up to `count` entries idle for at least `min_idle_ms` in other consumers'
    /// pending lists (their consumer died or hung). Returns the claimed entries; entries whose data was
    /// deleted meanwhile are dropped from the pending list by Redis and not returned.
    ///
    /// # Errors
    /// Redis failure; [`Error::is_nogroup`](crate::Error::is_nogroup) when the group is gone.
    pub async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle_ms: u64,
        count: u64,
    ) -> Result<Vec<StreamEntry>> {
        let v: Value = self
            .client
            .xautoclaim(
                stream,
                group,
                consumer,
                min_idle_ms,
                "0-0",
                Some(count),
                false,
            )
            .await?;
        let mut parts = v.into_array().into_iter();
        let _next = parts.next();
        Ok(parts.next().map(parse_entries).unwrap_or_default())
    }

    /// Closes the connection, waiting at most [`super::QUIT_WAIT`] (see [`Store::quit`](super::Store::quit)).
    pub async fn quit(&self) {
        let _ = tokio::time::timeout(super::QUIT_WAIT, self.client.quit()).await;
    }
}

/// A timeout error like fred's own, for bounds this crate applies around fred calls.
pub(crate) fn timeout_error(what: &str, after: Duration) -> crate::Error {
    crate::Error::Redis(fred::error::Error::new(
        fred::error::ErrorKind::Timeout,
        format!("{what}: no answer from Redis within {after:?}"),
    ))
}

/// `[[stream, [[id, [f, v, …]], …]], …]` (or nil on timeout) → entries.
fn parse_xread(v: Value) -> Vec<StreamEntry> {
    let mut out = Vec::new();
    match v {
        Value::Array(streams) => {
            for s in streams {
                let mut parts = s.into_array().into_iter();
                let _name = parts.next();
                if let Some(entries) = parts.next() {
                    out.extend(parse_entries(entries));
                }
            }
        }
        // RESP3 answers with a map keyed by stream name.
        Value::Map(m) => {
            for (_, entries) in m.inner() {
                out.extend(parse_entries(entries));
            }
        }
        _ => {}
    }
    out
}

/// `[[id, [f, v, …]], …]` → entries. An entry whose fields are nil (deleted) is skipped.
pub(crate) fn parse_entries(v: Value) -> Vec<StreamEntry> {
    v.into_array()
        .into_iter()
        .filter_map(|e| {
            let mut parts = e.into_array().into_iter();
            let id = parts.next()?.as_string()?;
            let kv = parts.next()?;
            if kv.is_null() {
                return None;
            }
            let flat = kv.into_array();
            let mut fields = HashMap::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(val)) = (it.next(), it.next()) {
                if let (Some(k), Some(val)) = (k.as_string(), val.as_string()) {
                    fields.insert(k, val);
                }
            }
            Some(StreamEntry { id, fields })
        })
        .collect()
}

/// Names of the groups in an `XINFO GROUPS` reply.
pub(crate) fn group_names(v: Value) -> Vec<String> {
    v.into_array()
        .into_iter()
        .filter_map(|g| {
            let flat = g.into_array();
            let mut it = flat.into_iter();
            while let (Some(k), Some(val)) = (it.next(), it.next()) {
                if k.as_str().as_deref() == Some("name") {
                    return val.as_string();
                }
            }
            None
        })
        .collect()
}
