//! The per-test fixture: a private redis-server, a [`Store`] on it, and a raw client for checking state.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use delivery_model::delivery::DeliveryRecord;
use delivery_model::ids::DeliveryId;
use delivery_model::keys::{EVENTS_GROUP, Keyspace, QUEUE_GROUP};
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::store::{BeginAttempt, Store, StoreOptions};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};
use fred::prelude::*;
use fred::types::Value;
use test_support::redis::RedisServer;

pub const ACTIVE_TTL: Duration = Duration::from_secs(4 * 3600);
pub const TERMINAL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The consumer name tests read with.
pub const CONSUMER: &str = "it-consumer";
pub const SEC: Micros = 1_000_000;
/// The lease the attempt tests take.
pub const LEASE: Micros = 30 * SEC;

/// Takes the lease of `id` with `token` at `now`, expecting `Go`, and returns the record the script handed
/// out.
pub async fn go(ctx: &Ctx, id: DeliveryId, token: &str, now: Micros) -> DeliveryRecord {
    match ctx
        .store
        .begin_attempt(id, token, now, now + LEASE, Duration::ZERO)
        .await
        .unwrap()
    {
        BeginAttempt::Go(l) => l.record,
        other => panic!("expected Go, got {other:?}"),
    }
}

pub fn options(url: String) -> StoreOptions {
    StoreOptions {
        key_prefix: "t:".into(),
        active_ttl: ACTIVE_TTL,
        terminal_ttl: TERMINAL_TTL,
        ..StoreOptions::new(url)
    }
}

/// One test's world. Fields drop in order: the clients first, then the server.
pub struct Ctx {
    pub store: Store,
    pub raw: Client,
    pub redis: RedisServer,
}

impl Ctx {
    pub async fn start() -> Self {
        let redis = RedisServer::start();
        let store = Store::connect(&options(redis.url()))
            .await
            .expect("store connects");
        let raw = Builder::from_config(Config::from_url(&redis.url()).unwrap())
            .set_policy(ReconnectPolicy::new_constant(0, 50))
            .build()
            .unwrap();
        raw.init().await.expect("raw client connects");
        Self { store, raw, redis }
    }

    /// A second, independent store (its own connections) on the same server.
    pub async fn other_store(&self) -> Store {
        Store::connect(&options(self.redis.url()))
            .await
            .expect("second store connects")
    }

    pub fn k(&self) -> &Keyspace {
        self.store.keys()
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

    /// Every entry of `stream` (`XRANGE - +`).
    pub async fn entries(&self, stream: &str) -> Vec<(String, HashMap<String, String>)> {
        self.raw
            .xrange_values(stream, "-", "+", None)
            .await
            .unwrap()
    }

    /// The queue's entries, decoded.
    pub async fn queue(&self) -> Vec<(String, QueueMessage)> {
        self.entries(&self.k().queue_stream())
            .await
            .into_iter()
            .map(|(id, f)| (id, QueueMessage::decode(&f[MESSAGE_FIELD]).unwrap()))
            .collect()
    }

    /// The number of entries delivered to a consumer of `group` and not acknowledged (`XPENDING` summary).
    pub async fn pending(&self, stream: &str, group: &str) -> u64 {
        let v: Value = self.raw.xpending(stream, group, ()).await.unwrap();
        v.into_array().first().and_then(Value::as_u64).unwrap()
    }

    /// The style guide's end-of-test check: nothing read from either stream is left unacknowledged.
    pub async fn assert_nothing_pending(&self) {
        for (stream, group) in [
            (self.k().events_stream().to_owned(), EVENTS_GROUP),
            (self.k().queue_stream(), QUEUE_GROUP),
        ] {
            if self.store.group_exists(&stream, group).await.unwrap() {
                assert_eq!(
                    self.pending(&stream, group).await,
                    0,
                    "{stream}/{group} has pending entries"
                );
            }
        }
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

    /// A subscription made active the way the API does it: created pending verification, then verified.
    pub async fn verified(&self, events: &[&str]) -> Subscription {
        let mut sub = subscription(SubscriptionStatus::PendingVerification, events);
        self.create(&sub).await;
        assert!(
            self.store
                .set_subscription_status(
                    sub.id,
                    SubscriptionStatus::PendingVerification,
                    SubscriptionStatus::Active,
                    now_micros(),
                    true
                )
                .await
                .unwrap()
        );
        sub.status = SubscriptionStatus::Active;
        sub
    }

    /// Reads the queue as consumer [`CONSUMER`] (creating the group if needed), so the entries become pending.
    pub async fn read_queue(&self) -> Vec<(String, QueueMessage)> {
        self.store.ensure_queue_group().await.unwrap();
        let reader = self.store.reader().await.unwrap();
        let got = reader
            .read_group(&self.k().queue_stream(), QUEUE_GROUP, CONSUMER, 1000, 10)
            .await
            .unwrap();
        reader.quit().await;
        got.into_iter()
            .map(|e| {
                (
                    e.id,
                    QueueMessage::decode(&e.fields[MESSAGE_FIELD]).unwrap(),
                )
            })
            .collect()
    }

    /// A pending delivery of a new active subscription, created, enqueued and read from the queue: returns the
    /// record, its subscription and its (now pending) queue entry id.
    pub async fn delivery_in_flight(&self) -> (DeliveryRecord, Subscription, String) {
        let (sub, mut items) = self.deliveries_in_flight(1).await;
        let (record, entry) = items.pop().expect("one delivery");
        (record, sub, entry)
    }

    /// `n` pending deliveries of one new active subscription, created, enqueued and read from the queue:
    /// the subscription, and each record with its (now pending) queue entry id, in order.
    pub async fn deliveries_in_flight(
        &self,
        n: usize,
    ) -> (Subscription, Vec<(DeliveryRecord, String)>) {
        let sub = self.verified(&["threat_model.created"]).await;
        let mut records = Vec::new();
        for _ in 0..n {
            let record = DeliveryRecord::new_pending(
                DeliveryId::new_v7(),
                sub.id,
                "threat_model.created",
                r#"{"event_type":"threat_model.created","data":{}}"#,
                now_micros(),
            );
            assert!(
                self.store
                    .create_and_enqueue_delivery(&record)
                    .await
                    .unwrap()
            );
            records.push(record);
        }
        // The subscription's challenge is on the queue too: handle it (ack) so only the deliveries stay pending.
        let mut read = self.read_queue().await;
        let mut out = Vec::new();
        for record in records {
            let want = QueueMessage::DeliveryV1 {
                delivery_id: record.id,
            };
            let at = read
                .iter()
                .position(|(_, m)| *m == want)
                .expect("the delivery's queue entry");
            out.push((record, read.remove(at).0));
        }
        let others: Vec<String> = read.into_iter().map(|(id, _)| id).collect();
        self.store.ack_queue(&others).await.unwrap();
        (sub, out)
    }

    /// Ids of the entries a stream holds, in order.
    pub async fn entry_ids(&self, stream: &str) -> Vec<String> {
        self.entries(stream)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }
}

/// A subscription that is not stored yet.
pub fn subscription(status: SubscriptionStatus, events: &[&str]) -> Subscription {
    let now = now_micros();
    Subscription {
        secret: Some("0123456789abcdef0123456789abcdef".into()),
        challenge: Some("c".repeat(64)),
        ..Subscription::new(
            "owner-1",
            "it",
            "https://receiver.example.com/hook",
            events.iter().map(|e| (*e).to_owned()).collect(),
            status,
            now,
        )
    }
}

/// Milliseconds of a microsecond timestamp (the score unit of every created-at index).
pub fn ms(us: Micros) -> f64 {
    (us / 1000) as f64
}
