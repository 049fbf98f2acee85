//! The per-test fixture: the shared [`StoreFixture`] (a private redis-server, a store on it, a raw client for
//! checking state) and the store tests' builders.

use delivery_model::keys::Shard;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use delivery_model::delivery::DeliveryRecord;
use delivery_model::event::StreamEvent;
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::keys::QUEUE_GROUP;
use delivery_model::queue::{MESSAGE_FIELD, QueueMessage};
use delivery_model::store::BeginAttempt;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};
use test_support::store::StoreFixture;

/// The fixture store's record TTLs ([`delivery_model::store::StoreOptions::new`]'s defaults).
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

/// One test's world: the shared [`StoreFixture`] (a private server, a store with TMI's default TTLs, a raw
/// client, and the drop check that nothing is left pending) plus the store tests' own setup helpers.
pub struct Ctx(StoreFixture);

impl Deref for Ctx {
    type Target = StoreFixture;

    fn deref(&self) -> &StoreFixture {
        &self.0
    }
}

impl DerefMut for Ctx {
    fn deref_mut(&mut self) -> &mut StoreFixture {
        &mut self.0
    }
}

impl Ctx {
    pub async fn start() -> Self {
        Self(StoreFixture::start().await)
    }

    /// As [`start`](Self::start), with `adjust` applied to the store's options.
    pub async fn start_with(adjust: impl FnOnce(&mut delivery_model::store::StoreOptions)) -> Self {
        Self(StoreFixture::start_with(adjust).await)
    }

    /// The stored subscription `id`, which must exist.
    pub async fn stored_subscription(&self, id: SubscriptionId) -> Subscription {
        self.store.get_subscription(id).await.unwrap().unwrap()
    }

    /// The stored delivery `id`, which must exist.
    pub async fn stored_delivery(&self, id: DeliveryId) -> DeliveryRecord {
        self.store.get_delivery(id).await.unwrap().unwrap()
    }

    // ---- setup -------------------------------------------------------------------------------------------

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
            .read_group(
                &self.k().queue_stream(Shard::ZERO),
                QUEUE_GROUP,
                CONSUMER,
                1000,
                10,
            )
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
            records.push(self.queue_delivery(sub.id).await);
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
        let queue = self.store.keys().queue_stream(Shard::ZERO);
        self.store.ack_queue(&queue, &others).await.unwrap();
        (sub, out)
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

/// Input event number `n` (`threat_model.created`, owner `owner-1`, threat model `tm-1`).
pub fn event(n: u32) -> StreamEvent {
    StreamEvent {
        event_type: "threat_model.created".into(),
        threat_model_id: Some("tm-1".into()),
        object_id: Some(format!("obj-{n}")),
        object_type: Some("threat_model".into()),
        owner_id: Some("owner-1".into()),
        timestamp: Some("2026-04-01T12:00:00Z".into()),
        payload: format!(r#"{{"object_id":"obj-{n}"}}"#),
        delivery_id: None,
        trace: None,
    }
}
