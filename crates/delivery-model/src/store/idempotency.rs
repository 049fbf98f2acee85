//! `Idempotency-Key`: the first answer to a caller's request, replayed to its retries (issue #14).
//!
//! A key's life ([`Keyspace::idempotency`](crate::keys::Keyspace::idempotency), a hash):
//! 1. [`Store::idempotency_begin`] claims it for the first request (`state = pending`, a short lease, so a
//!    first request that died mid-way does not block the key for the whole window), or reports an earlier
//!    request: still in flight, made with another body (`mismatch`), or answered (its stored answer).
//! 2. The first request does its write **without** `WAIT` ([`Store::without_ack_wait`]), then
//!    [`Store::idempotency_finish`] stores the answer for the window and confirms it with `WAIT`: replicas
//!    apply the one replication stream in order, so that confirms the request's write as well — one `WAIT`
//!    per request. If the replicas do not confirm, the answer is stored on the primary anyway and the caller
//!    gets a 503; its retry replays the stored answer once the replicas confirm (a replay writes a counter,
//!    which `WAIT` then confirms with everything before it), and nothing is created twice.
//! 3. A first request that fails before writing anything gives its claim back
//!    ([`Store::idempotency_release`]) so that a retry runs afresh.
//!
//! What remains (documented in `docs/operations.md`): a failover in the few milliseconds between the
//! request's write reaching a replica and its stored answer reaching it keeps the write but leaves the key
//! `pending`; once the lease expires, a retry runs again and creates a second event.

use std::time::Duration;

use fred::types::Value;

use super::{Store, scripts};
use crate::error::{Error, Result};

/// How long a first request may run before its claim lapses and a retry may run afresh. Longer than any
/// request the gateway serves (the store's command timeouts are seconds).
pub const IDEMPOTENCY_LEASE: Duration = Duration::from_secs(60);

/// Which key: a fixed route word, the caller's id and the client's key.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyScope<'a> {
    /// `events` or `invoke` (a constant, never client input).
    pub route: &'a str,
    pub caller: &'a str,
    pub key: &'a str,
}

/// An answer kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

/// What [`Store::idempotency_begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The key is claimed for this request: run it, then finish or release.
    New,
    /// A request with this key is still running.
    InFlight,
    /// The key was used for a different request (another body or target).
    Mismatch,
    /// The first answer, confirmed by the replicas as configured.
    Replay(StoredAnswer),
}

/// The fingerprint of a request: SHA-1 of its target and exact body bytes. A retry must repeat both; the
/// same key with anything else is a [`IdempotencyBegin::Mismatch`].
pub fn request_fingerprint(target: &str, body: &[u8]) -> String {
    // Bodies are JSON, valid UTF-8 whenever they decode; a lossy conversion only matters for bodies the
    // handler refuses anyway.
    fred::util::sha1_hash(&format!("{target}\n{}", String::from_utf8_lossy(body)))
}

impl Store {
    fn idempotency_key(&self, scope: IdempotencyScope<'_>) -> String {
        self.keys()
            .idempotency(scope.route, scope.caller, scope.key)
    }

    /// Claims `scope` for a request with `fingerprint` or reports an earlier one. A replay is confirmed by
    /// the replicas first ([`AckWait`](super::AckWait)).
    ///
    /// # Errors
    /// Redis failure, [`Error::NotReplicated`] for a replay the replicas do not confirm in time, or a reply
    /// this crate does not understand.
    pub async fn idempotency_begin(
        &self,
        scope: IdempotencyScope<'_>,
        fingerprint: &str,
    ) -> Result<IdempotencyBegin> {
        let client = self.writer();
        let reply: Vec<Value> = scripts::IDEMPOTENCY_BEGIN
            .run_on(
                &client,
                vec![self.idempotency_key(scope)],
                vec![
                    fingerprint.to_owned(),
                    IDEMPOTENCY_LEASE.as_millis().to_string(),
                ],
            )
            .await?;
        let mut it = reply.into_iter().map(|v| v.as_string().unwrap_or_default());
        match it.next().as_deref() {
            Some("new") => Ok(IdempotencyBegin::New),
            Some("pending") => Ok(IdempotencyBegin::InFlight),
            Some("mismatch") => Ok(IdempotencyBegin::Mismatch),
            Some("done") => {
                let status = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::Decode("idempotency: stored status".into()))?;
                let body = it.next().unwrap_or_default();
                self.confirm(&client, &[&self.idempotency_key(scope)])
                    .await?;
                Ok(IdempotencyBegin::Replay(StoredAnswer { status, body }))
            }
            other => Err(Error::Script(format!("idempotency_begin: {other:?}"))),
        }
    }

    /// Stores the first answer for `window` and confirms it — with it, the request's own writes — with the
    /// replicas as configured.
    ///
    /// # Errors
    /// Redis failure, or [`Error::NotReplicated`] (stored on the primary; a retry replays it once confirmed).
    pub async fn idempotency_finish(
        &self,
        scope: IdempotencyScope<'_>,
        fingerprint: &str,
        answer: &StoredAnswer,
        window: Duration,
    ) -> Result<()> {
        let client = self.writer();
        let _: i64 = scripts::IDEMPOTENCY_FINISH
            .run_on(
                &client,
                vec![self.idempotency_key(scope)],
                vec![
                    fingerprint.to_owned(),
                    answer.status.to_string(),
                    answer.body.clone(),
                    window.as_millis().max(1).to_string(),
                ],
            )
            .await?;
        self.confirm(&client, &[&self.idempotency_key(scope)]).await
    }

    /// Gives up the claim of a first request that wrote nothing, so that a retry runs afresh.
    ///
    /// # Errors
    /// Redis failure (the claim then lapses with its lease).
    pub async fn idempotency_release(
        &self,
        scope: IdempotencyScope<'_>,
        fingerprint: &str,
    ) -> Result<()> {
        let _: i64 = scripts::IDEMPOTENCY_RELEASE
            .run(
                self.pool(),
                vec![self.idempotency_key(scope)],
                vec![fingerprint.to_owned()],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_cover_target_and_exact_body() {
        let fp = request_fingerprint("/events", br#"{"a":1}"#);
        assert_eq!(fp, request_fingerprint("/events", br#"{"a":1}"#));
        assert_ne!(fp, request_fingerprint("/events", br#"{"a": 1}"#));
        assert_ne!(fp, request_fingerprint("/addons/x/invoke", br#"{"a":1}"#));
        assert_eq!(fp.len(), 40, "hex SHA-1");
    }
}
