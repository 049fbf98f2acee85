//! One test's world: the shared [`StoreFixture`] (a private redis-server, a store on it, a raw client for
//! checking state), and cleaners with fast settings.

use std::ops::Deref;
use std::time::Duration;

use cleanup::config::CleanupConfig;
use cleanup::cycle::{Budget, Cleaner, CycleOutcome, CycleReport};
use cleanup::lifecycle::LifecycleRules;
use cleanup::metrics::Metrics;
use delivery_model::delivery::{DeliveryRecord, DeliveryStatus};
use delivery_model::ids::{DeliveryId, SubscriptionId};
use delivery_model::store::Store;
use delivery_model::store::callbacks::{CallbackResult, CallbackUpdate};
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::{Micros, now_micros};
use test_support::store::StoreFixture;
use test_support::wait;
use tokio_util::sync::CancellationToken;

pub const LONG_TTL: Duration = Duration::from_secs(4 * 3600);
pub const SECOND: Micros = 1_000_000;
pub const DAY: Micros = 86_400 * SECOND;

/// Settings for tests: TMI's lifecycle thresholds, small chunks so that chunking is exercised, an index
/// pass whenever asked.
pub fn config() -> CleanupConfig {
    CleanupConfig {
        replica: "it".into(),
        interval: Duration::from_millis(50),
        error_pause: Duration::from_millis(50),
        lease_ttl: Duration::from_secs(10),
        chunk_size: 3,
        max_chunks_per_step: 1000,
        stale_after: Duration::from_secs(900),
        lifecycle: LifecycleRules {
            idle_after: Duration::from_secs(90 * 86_400),
            broken_min_failures: 10,
            broken_after: Duration::from_secs(7 * 86_400),
            delete_grace: Duration::ZERO,
        },
        index_pass_interval: Duration::ZERO,
    }
}

/// One test's world: the shared [`StoreFixture`] (a private server, a store whose records live
/// [`LONG_TTL`], a raw client, and the drop check that nothing is left pending) plus cleaners and the cleanup
/// tests' setup helpers.
pub struct Ctx(StoreFixture);

impl Deref for Ctx {
    type Target = StoreFixture;

    fn deref(&self) -> &StoreFixture {
        &self.0
    }
}

impl Ctx {
    pub async fn start() -> Self {
        Self(
            StoreFixture::start_with(|o| {
                o.active_ttl = LONG_TTL;
                o.terminal_ttl = LONG_TTL;
            })
            .await,
        )
    }

    /// Another store on the same server whose records live `ttl`.
    pub async fn store_with_ttl(&self, ttl: Duration) -> Store {
        self.store_with(|o| {
            o.active_ttl = ttl;
            o.terminal_ttl = ttl;
        })
        .await
    }

    pub fn cleaner(&self, cfg: CleanupConfig) -> (Cleaner, Metrics) {
        let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
        (
            Cleaner::new(self.store.clone(), cfg, metrics.clone()),
            metrics,
        )
    }

    /// One cycle run to completion; panics unless it completed.
    pub async fn cycle(&self, cleaner: &Cleaner) -> CycleReport {
        match cleaner
            .cycle(&CancellationToken::new(), Budget::Unlimited)
            .await
            .unwrap()
        {
            CycleOutcome::Completed(r) => r,
            other => panic!("cycle did not complete: {other:?}"),
        }
    }

    /// Waits until the records `ids` (stored with a short TTL) have expired.
    pub async fn wait_expired(&self, ids: &[DeliveryId]) {
        wait::until(
            "the short-lived records expire",
            Duration::from_secs(10),
            || async {
                for id in ids {
                    if self.exists(&self.k().delivery(*id)).await {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
    }

    pub async fn subscription(&self, id: SubscriptionId) -> Option<Subscription> {
        self.store.get_subscription(id).await.unwrap()
    }

    /// An `in_progress` delivery of `sub` whose last activity was at `last_activity`: created `pending`, then
    /// moved by a receiver's progress callback at that time (which indexes it by activity).
    pub async fn in_progress(
        &self,
        store: &Store,
        sub: SubscriptionId,
        last_activity: Micros,
    ) -> DeliveryRecord {
        let mut r = record(sub, "threat_model.updated");
        r.created_at = last_activity;
        r.last_activity_at = last_activity;
        assert!(store.create_and_enqueue_delivery(&r).await.unwrap());
        assert_eq!(
            progress(store, &r, last_activity).await,
            CallbackResult::Updated {
                status: DeliveryStatus::InProgress,
                percent: 10
            }
        );
        r.status = DeliveryStatus::InProgress;
        r
    }
}

/// A receiver's progress callback on `r` at `at` (the store's side of `POST /webhook-deliveries/{id}/status`).
pub async fn progress(store: &Store, r: &DeliveryRecord, at: Micros) -> CallbackResult {
    let update = CallbackUpdate {
        status: DeliveryStatus::InProgress,
        percent: Some(10),
        message: Some("working".into()),
    };
    store
        .apply_callback(r.id, r.subscription_id, &update, at)
        .await
        .unwrap()
}

/// A `pending` delivery record of `sub` created now (not stored).
pub fn record(sub: SubscriptionId, event_type: &str) -> DeliveryRecord {
    DeliveryRecord::new_pending(
        DeliveryId::new_v7(),
        sub,
        event_type,
        r#"{"event_type":"x","data":{}}"#,
        now_micros(),
    )
}

/// A subscription in `status`, created `age` ago (not stored).
pub fn subscription(status: SubscriptionStatus, age: Micros) -> Subscription {
    let created = now_micros() - age;
    Subscription {
        secret: Some("0123456789abcdef0123456789abcdef".into()),
        challenge: Some("c".repeat(64)),
        challenges_sent: 1,
        ..Subscription::new(
            "owner-1",
            "it",
            "https://receiver.example.com/hook",
            vec!["threat_model.updated".into()],
            status,
            created,
        )
    }
}
