//! One test's Redis world: a private redis-server, a connected [`Store`] with a random key prefix, and a raw
//! client for checking what was really written.
//!
//! The store and cleanup integration tests both build on [`StoreFixture`] (each wraps it in its own `Ctx`
//! with its crate's helpers). Like crates.io's `TestApp`, dropping the fixture checks that nothing is left
//! behind: no entry read from the queue stream (or the events stream, when its group exists) may still be
//! pending. A test that leaves entries pending on purpose says so with [`StoreFixture::allow_pending`].

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use delivery_model::delivery::DeliveryRecord;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::{EVENTS_GROUP, Keyspace, QUEUE_GROUP};
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::store::{Store, StoreOptions};
use delivery_model::subscription::Subscription;
use delivery_model::time::now_micros;
use fred::prelude::*;
use fred::types::Value;

use crate::redis::RedisServer;

/// A private redis-server, a [`Store`] on it and a raw client. Fields drop in order: the clients first, then
/// the server.
///
/// Its helpers panic on any Redis error: in a test, an error is a failure.
pub struct StoreFixture {
    pub store: Store,
    /// A plain client on the same server, to read (and, simulating other writers, write) keys directly.
    pub raw: Client,
    pub redis: RedisServer,
    /// The options [`store`](Self::store) was connected with; further stores start from them.
    options: StoreOptions,
    /// Set by [`allow_pending`](Self::allow_pending): the drop check is skipped.
    allow_pending: AtomicBool,
}

/// A random key prefix, so that no two fixtures' keys could ever meet.
fn random_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}

#[expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test fixture: a Redis error fails the test"
)]
impl StoreFixture {
    /// Starts a server and connects a store with TMI's default options and a random key prefix.
    ///
    /// # Panics
    /// When redis-server does not come up or the store cannot connect.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// As [`start`](Self::start), with `adjust` applied to the store's options (TTLs, …).
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub async fn start_with(adjust: impl FnOnce(&mut StoreOptions)) -> Self {
        let redis = RedisServer::start();
        let mut options = StoreOptions {
            key_prefix: random_prefix(),
            ..StoreOptions::new(redis.url())
        };
        adjust(&mut options);
        Self::on(redis, options).await
    }

    /// A fixture on a server the test started itself, with a store connected with `options` (a service's
    /// own, for in-process service tests).
    ///
    /// # Panics
    /// When the store or the raw client cannot connect.
    pub async fn on(redis: RedisServer, options: StoreOptions) -> Self {
        let store = Store::connect(&options).await.expect("store connects");
        // Reconnect at once: some tests restart the server under the raw client.
        // As the harness's admin user, whatever user `options` name (a restricted service's, for ACL tests).
        let raw_config = delivery_model::store::connection::fred_config(&redis.admin_options())
            .expect("raw client config");
        let raw = Builder::from_config(raw_config)
            .set_policy(ReconnectPolicy::new_constant(0, 50))
            .build()
            .unwrap();
        raw.init().await.expect("raw client connects");
        Self {
            store,
            raw,
            redis,
            options,
            allow_pending: AtomicBool::new(false),
        }
    }

    /// The options the fixture's store was connected with (its URL and key prefix included).
    pub fn options(&self) -> StoreOptions {
        self.options.clone()
    }

    /// A second, independent store (its own connections) on the same server and prefix.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn other_store(&self) -> Store {
        self.store_with(|_| {}).await
    }

    /// A further store on the same server and prefix, with `adjust` applied to the fixture's options.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn store_with(&self, adjust: impl FnOnce(&mut StoreOptions)) -> Store {
        let mut options = self.options();
        adjust(&mut options);
        Store::connect(&options)
            .await
            .expect("another store connects")
    }

    pub fn k(&self) -> &Keyspace {
        self.store.keys()
    }

    /// The test leaves entries pending on purpose (a crashed consumer, a stale claim): skip the drop check.
    pub fn allow_pending(&self) {
        self.allow_pending.store(true, Ordering::Relaxed);
    }

    // ---- raw reads ---------------------------------------------------------------------------------------

    pub async fn hgetall(&self, key: &str) -> HashMap<String, String> {
        self.raw.hgetall(key).await.unwrap()
    }

    pub async fn hget(&self, key: &str, field: &str) -> Option<String> {
        self.raw.hget(key, field).await.unwrap()
    }

    pub async fn exists(&self, key: &str) -> bool {
        self.raw.exists::<i64, _>(key).await.unwrap() == 1
    }

    /// `KEYS pattern` (small test databases only).
    pub async fn keys_matching(&self, pattern: &str) -> Vec<String> {
        self.raw
            .custom(fred::cmd!("KEYS"), vec![pattern.to_owned()])
            .await
            .unwrap()
    }

    /// Seconds to live (`-1` no expiry, `-2` no key).
    pub async fn ttl(&self, key: &str) -> i64 {
        self.raw.ttl(key).await.unwrap()
    }

    pub async fn smembers(&self, key: &str) -> BTreeSet<String> {
        self.raw.smembers(key).await.unwrap()
    }

    pub async fn zscore(&self, key: &str, member: &str) -> Option<f64> {
        self.raw.zscore(key, member).await.unwrap()
    }

    /// Members with scores, lowest score first.
    pub async fn zall(&self, key: &str) -> Vec<(String, f64)> {
        self.raw
            .zrange(key, 0, -1, None, false, None, true)
            .await
            .unwrap()
    }

    /// The members of a sorted set, without their scores.
    pub async fn zmembers(&self, key: &str) -> BTreeSet<String> {
        self.zall(key).await.into_iter().map(|(m, _)| m).collect()
    }

    /// Every entry of `stream` (`XRANGE - +`).
    pub async fn entries(&self, stream: &str) -> Vec<(String, HashMap<String, String>)> {
        self.raw
            .xrange_values(stream, "-", "+", None)
            .await
            .unwrap()
    }

    /// Ids of the entries a stream holds, in order.
    pub async fn entry_ids(&self, stream: &str) -> Vec<String> {
        self.entries(stream)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// The entries of every queue a worker reads (one on a single node), decoded.
    pub async fn queue(&self) -> Vec<(String, QueueMessage)> {
        let mut out = Vec::new();
        for stream in self.k().worker_streams() {
            out.extend(
                self.entries(&stream)
                    .await
                    .into_iter()
                    .map(|(id, f)| (id, QueueMessage::decode(&f[MESSAGE_FIELD]).unwrap())),
            );
        }
        out
    }

    /// The number of entries delivered to a consumer of `group` and not acknowledged (`XPENDING` summary).
    pub async fn pending(&self, stream: &str, group: &str) -> u64 {
        let v: Value = self.raw.xpending(stream, group, ()).await.unwrap();
        v.into_array().first().and_then(Value::as_u64).unwrap()
    }

    /// The style guide's end-of-test check, here at any point of a test: nothing read from either stream is
    /// left unacknowledged.
    ///
    /// # Panics
    /// When a group has pending entries.
    pub fn assert_nothing_pending(&self) {
        let left = self.pending_left();
        assert!(left.is_empty(), "{}", left.join("; "));
    }

    /// One line for each of the queue's and the events stream's groups that has pending entries. Synchronous
    /// (its own short connection), so that `Drop` can ask too; a server that is gone has nothing pending.
    fn pending_left(&self) -> Vec<String> {
        let k = self.k();
        std::iter::once((k.events_stream().to_owned(), EVENTS_GROUP))
            .chain(k.worker_streams().into_iter().map(|s| (s, QUEUE_GROUP)))
            .filter_map(|(stream, group)| {
                let n = pending_count(self.redis.port(), &stream, group)?;
                (n > 0).then(|| format!("{stream}/{group} has {n} pending entries"))
            })
            .collect()
    }

    // ---- raw writes (simulating other writers) ----------------------------------------------------------

    /// `HSET key field value`, as another writer (a callback, an operator) would.
    pub async fn hset(&self, key: &str, field: &str, value: &str) {
        let _: i64 = self.raw.hset(key, (field, value)).await.unwrap();
    }

    pub async fn del(&self, key: &str) {
        let _: i64 = self.raw.del(key).await.unwrap();
    }

    /// `XADD stream * field value`; returns the entry id.
    pub async fn xadd(&self, stream: &str, field: &str, value: &str) -> String {
        self.raw
            .xadd(stream, false, None, "*", vec![(field, value)])
            .await
            .unwrap()
    }

    /// `XDEL stream id`.
    pub async fn xdel(&self, stream: &str, id: &str) {
        let _: i64 = self.raw.xdel(stream, id).await.unwrap();
    }

    /// Everything is gone: a Redis restart without persistence.
    pub async fn flushall(&self) {
        let _: () = self.raw.flushall(false).await.unwrap();
    }

    // ---- setup -------------------------------------------------------------------------------------------

    /// Stores `sub` and checks it was new.
    pub async fn create(&self, sub: &Subscription) {
        assert!(
            self.store.create_subscription(sub).await.unwrap(),
            "subscription {} is new",
            sub.id
        );
    }

    /// Creates and queues a pending `threat_model.created` delivery for `subscription`, as fan-out would.
    pub async fn queue_delivery(&self, subscription: SubscriptionId) -> DeliveryRecord {
        let record = DeliveryRecord::new_pending(
            DeliveryId::new_v7(),
            subscription,
            "threat_model.created",
            r#"{"event_type":"threat_model.created","data":{}}"#,
            now_micros(),
        );
        assert!(
            self.store
                .create_and_enqueue_delivery(&record)
                .await
                .unwrap(),
            "delivery {} is new",
            record.id
        );
        record
    }
}

impl Drop for StoreFixture {
    fn drop(&mut self) {
        // A failing test is already unwinding: a second panic would abort and hide its message.
        if std::thread::panicking() || self.allow_pending.load(Ordering::Relaxed) {
            return;
        }
        let left = self.pending_left();
        assert!(
            left.is_empty(),
            "the test left entries pending: {} (acknowledge them, or call allow_pending() if that is the point)",
            left.join("; ")
        );
    }
}

/// `XPENDING stream group` on `127.0.0.1:port` over a plain blocking connection: the number of pending
/// entries, or `None` when the group (or the stream, or the server) does not exist.
fn pending_count(port: u16, stream: &str, group: &str) -> Option<u64> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = String::from("*3\r\n");
    for arg in ["XPENDING", stream, group] {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    conn.write_all(request.as_bytes()).ok()?;
    // The summary is an array whose first element is the count: `*4`, then `:N`. A missing group is an
    // error reply (`-NOGROUP …`).
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if !line.starts_with('*') {
        return None;
    }
    line.clear();
    reader.read_line(&mut line).ok()?;
    line.trim_end().strip_prefix(':')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use delivery_model::keys::Shard;

    #[tokio::test]
    async fn pending_entries_are_counted_and_a_missing_group_is_none() {
        let fx = StoreFixture::start().await;
        let stream = fx.k().queue_stream(Shard::ZERO);
        assert_eq!(pending_count(fx.redis.port(), &stream, QUEUE_GROUP), None);

        fx.xadd(&stream, "m", "1").await;
        let Ok(()) = fx.raw.xgroup_create(&stream, QUEUE_GROUP, "0", false).await else {
            panic!("XGROUP CREATE")
        };
        assert_eq!(
            pending_count(fx.redis.port(), &stream, QUEUE_GROUP),
            Some(0)
        );
        let read: Result<Value, _> = fx
            .raw
            .custom(
                fred::cmd!("XREADGROUP"),
                vec!["GROUP", QUEUE_GROUP, "c", "STREAMS", &stream, ">"],
            )
            .await;
        assert!(read.is_ok(), "XREADGROUP: {read:?}");
        assert_eq!(
            pending_count(fx.redis.port(), &stream, QUEUE_GROUP),
            Some(1)
        );
        assert_eq!(fx.pending_left().len(), 1);
        fx.allow_pending();
    }
}
