//! Per-subscription limits (issue #18) hold across worker replicas: three workers in process share one
//! Redis, one subscription and one receiver, which counts and times what arrives.

use std::time::Duration;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::ids::DeliveryId;
use delivery_model::subscription::{RateLimit, Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use prometheus::Registry;
use service_common::config::Settings;
use service_common::service::Context;
use test_support::receiver::Receiver;
use test_support::redis::RedisServer;
use test_support::store::StoreFixture;
use test_support::wait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::settings;

/// Worker replicas in each test.
const WORKERS: usize = 3;

/// Replicas of the worker on `fixture`'s Redis, each with its own consumer name, store and registry.
struct Replicas {
    token: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    registries: Vec<Registry>,
}

impl Replicas {
    /// `base`: the settings `fixture` was connected with (its key prefix).
    async fn start(base: &Settings, fixture: &StoreFixture) -> Self {
        let token = CancellationToken::new();
        let (mut tasks, mut registries) = (Vec::new(), Vec::new());
        for i in 0..WORKERS {
            let mut s = base.clone();
            s.worker.consumer_name = format!("worker-{i}");
            let registry = Registry::new();
            registries.push(registry.clone());
            tasks.push(tokio::spawn(delivery_worker::run(Context {
                settings: s,
                store: fixture.other_store().await,
                registry,
                shutdown: token.clone(),
            })));
        }
        Self {
            token,
            tasks,
            registries,
        }
    }

    /// A counter summed over the replicas.
    fn metric(&self, name: &str, label: (&str, &str)) -> f64 {
        self.registries
            .iter()
            .flat_map(Registry::gather)
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().to_vec())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == label.0 && l.value() == label.1)
            })
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    async fn stop(self) {
        self.token.cancel();
        for t in self.tasks {
            t.await.unwrap().unwrap();
        }
    }
}

/// A limited active subscription to `receiver` with `n` deliveries queued.
async fn queued(
    fixture: &StoreFixture,
    receiver: &Receiver,
    rate_limit: Option<RateLimit>,
    max_in_flight: Option<u32>,
    n: usize,
) -> Vec<DeliveryId> {
    let sub = Subscription {
        rate_limit,
        max_in_flight,
        ..Subscription::new(
            "owner-1",
            "limited",
            format!("{}/hook", receiver.url()),
            vec!["threat_model.created".into()],
            SubscriptionStatus::Active,
            now_micros(),
        )
    };
    fixture.create(&sub).await;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(fixture.queue_delivery(sub.id).await.id);
    }
    ids
}

async fn all_delivered(fixture: &StoreFixture, ids: &[DeliveryId], timeout: Duration) {
    wait::until("every delivery is delivered", timeout, || async {
        for id in ids {
            let r = fixture.store.get_delivery(*id).await.unwrap().unwrap();
            if r.status != DeliveryStatus::Delivered {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_three_workers() {
    const RATE: u32 = 50;
    const WINDOW: Duration = Duration::from_secs(20);
    let receiver = Receiver::start().await;
    let redis = RedisServer::start();
    let base = settings(&redis, &[]);
    let fixture = StoreFixture::on(redis, base.store_options()).await;
    // More than the window can take at the rate, all queued before the workers start: a backlog.
    let rate = RateLimit {
        per_second: RATE,
        burst: 1,
    };
    let ids = queued(&fixture, &receiver, Some(rate), None, 1150).await;
    let replicas = Replicas::start(&base, &fixture).await;

    // Everything that arrives in the WINDOW after the first request: the window must have passed (a
    // delivery after it) before counting.
    let first = receiver
        .wait_for_deliveries(1, Duration::from_secs(30))
        .await[0]
        .received_at;
    let got = wait::until(
        "a delivery arrives after the window",
        WINDOW * 3,
        || async {
            let got = receiver.deliveries();
            got.iter()
                .any(|r| r.received_at.duration_since(first) >= WINDOW)
                .then_some(got)
        },
    )
    .await;
    let in_window = got
        .iter()
        .filter(|r| r.received_at.duration_since(first) < WINDOW)
        .count();
    let expected = f64::from(RATE) * WINDOW.as_secs_f64();
    assert!(
        (in_window as f64 - expected).abs() <= expected * 0.1,
        "{in_window} deliveries in {WINDOW:?}, expected {expected} ± 10 %"
    );
    assert!(
        replicas.metric("hookline_worker_deferrals_total", ("reason", "rate")) > 0.0,
        "the backlog was deferred by the rate"
    );
    all_delivered(&fixture, &ids, Duration::from_secs(30)).await;
    replicas.stop().await;
    let counts = receiver.count_by_delivery_id();
    assert!(counts.values().all(|n| *n == 1), "each sent once");
    let record = fixture
        .store
        .get_delivery(ids[1149])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.attempts, 1,
        "deferrals consume no attempt: one, the one that delivered it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_cap_of_two_holds_across_three_workers() {
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(150));
    let redis = RedisServer::start();
    let base = settings(&redis, &[]);
    let fixture = StoreFixture::on(redis, base.store_options()).await;
    let ids = queued(&fixture, &receiver, None, Some(2), 30).await;
    let replicas = Replicas::start(&base, &fixture).await;

    all_delivered(&fixture, &ids, Duration::from_secs(60)).await;
    assert!(
        receiver.max_concurrent() <= 2,
        "{} requests at once",
        receiver.max_concurrent()
    );
    assert!(
        replicas.metric("hookline_worker_deferrals_total", ("reason", "in_flight")) > 0.0,
        "the others waited for a slot"
    );
    replicas.stop().await;
    assert_eq!(receiver.deliveries().len(), 30, "each sent once");
}
