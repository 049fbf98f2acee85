//! Redis Cluster under load (issue #15): the four binaries on a 3-master cluster, events flowing through
//! `POST /events` at a steady rate, while the cluster changes under them.
//!
//! - A failover: the master that holds the input stream is SIGKILLed and one of its two replicas promoted
//!   (the other follows the new master, so `WAIT` has a replica to count again). With
//!   `redis.wait_replicas = 1` nothing acknowledged before the kill may be lost (measured as in the Sentinel
//!   failover test, `failover.rs`), delivery resumes, and no service needs a restart.
//! - A reshard: every slot of one master, the control slot's and some queue shards' among them, moves to
//!   another with `redis-cli --cluster reshard` while events flow. Nothing is lost, and nothing is sent
//!   twice beyond the attempts in flight.
//!
//! Both print their figures (acknowledged before/after, lost, resumed after, sent twice).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use delivery_model::store::Store;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use test_support::cluster::{Cluster, ClusterOptions, key_slot};
use test_support::inproc::test_settings;
use test_support::receiver::Receiver;
use test_support::redis::hookline_cluster_acl_rule;
use test_support::service::{Service, ServiceBin};
use test_support::wait;
use tokio_util::sync::CancellationToken;

use crate::cluster::cluster_env;
use crate::failover::{EVENT, RATE, acked_around, delivered, publish};

/// How long delivery may take to resume, and the stack to drain, after the cluster settled.
const SETTLE: Duration = Duration::from_secs(40);
/// The worker's slots: at most this many attempts are in flight at a change, so sent twice.
const MAX_IN_FLIGHT: usize = 8;
/// How long the load runs after the change.
const AFTER: Duration = Duration::from_secs(3);

struct ClusterStack {
    services: Vec<Service>,
    store: Store,
}

impl ClusterStack {
    async fn start(cluster: &Cluster, wait_replicas: u32) -> Self {
        let env = cluster_env(
            cluster,
            &[
                ("HOOKLINE__REDIS__COMMAND_TIMEOUT_MS", "2000"),
                ("HOOKLINE__REDIS__WAIT_REPLICAS", &wait_replicas.to_string()),
                ("HOOKLINE__REDIS__WAIT_TIMEOUT_MS", "1000"),
                (
                    "HOOKLINE__WORKER__MAX_IN_FLIGHT",
                    &MAX_IN_FLIGHT.to_string(),
                ),
            ],
        );
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let opts = test_settings(&cluster.url(), &pairs).store_options();
        let store = Store::connect(&opts).await.unwrap();
        let mut services = Vec::new();
        for bin in [
            ServiceBin::ApiGateway,
            ServiceBin::EventConsumer,
            ServiceBin::DeliveryWorker,
            ServiceBin::Cleanup,
        ] {
            services.push(Service::start(bin, &env).await);
        }
        Self { services, store }
    }

    fn api(&self) -> &Service {
        &self.services[0]
    }

    /// Whether every queue shard is drained: nothing unread, nothing read and not acknowledged. Through the
    /// store, which follows the failover (a plain client would not reconnect).
    async fn queues_drained(&self) -> bool {
        self.store
            .queue_backlog()
            .await
            .is_ok_and(|b| b.unread == 0 && b.pending == 0)
    }
}

async fn subscribe(store: &Store, rx: &Receiver) {
    let sub = Subscription::new(
        "admin-1",
        "cluster-under-load",
        rx.url(),
        vec![EVENT.to_owned()],
        SubscriptionStatus::Active,
        delivery_model::time::now_micros(),
    );
    assert!(store.create_subscription(&sub).await.unwrap());
}

/// What a run under load came to.
struct Figures {
    before: Vec<u64>,
    after: Vec<u64>,
    lost: Vec<u64>,
    twice: usize,
}

/// Publishes, waits for steady delivery, runs `change`, keeps publishing for [`AFTER`], then waits until
/// every event acknowledged after the change started is delivered and the queues are drained.
async fn under_load<F, Fut>(stack: &mut ClusterStack, rx: &Receiver, change: F) -> Figures
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let stop = CancellationToken::new();
    let (acked, publisher) = publish(stack.api(), stop.clone());
    wait::until("steady delivery first", Duration::from_secs(30), || async {
        (delivered(rx).len() >= 2 * RATE as usize).then_some(())
    })
    .await;
    let changed_at = Instant::now();
    change().await;
    let settled_at = Instant::now();
    tokio::time::sleep_until((settled_at + AFTER).into()).await;
    stop.cancel();
    let sent = publisher.await.unwrap();

    let before = acked_around(&acked, changed_at, true);
    let after = acked_around(&acked, changed_at, false);
    let resumed = wait::until("delivery resumes", SETTLE, || async {
        let after: HashSet<&u64> = after.iter().collect();
        delivered(rx)
            .into_iter()
            .filter(|(i, at)| after.contains(i) && *at > settled_at)
            .map(|(_, at)| at)
            .min()
    })
    .await;
    wait::until(
        "every event acknowledged after the change is delivered",
        SETTLE,
        || async {
            let got = delivered(rx);
            after.iter().all(|i| got.contains_key(i)).then_some(())
        },
    )
    .await;
    wait::until("no queue entry left pending", SETTLE, || async {
        stack.queues_drained().await.then_some(())
    })
    .await;
    let got = delivered(rx);
    let lost: Vec<u64> = before
        .iter()
        .copied()
        .filter(|i| !got.contains_key(i))
        .collect();
    let twice = rx
        .count_by_delivery_id()
        .values()
        .filter(|&&c| c > 1)
        .count();
    eprintln!(
        "cluster figures: sent {sent}, acknowledged {} before the change and {} after; the change took \
         {:?}; delivery resumed {:?} after it; acknowledged before and lost: {} {lost:?}; sent twice: \
         {twice}",
        before.len(),
        after.len(),
        settled_at.duration_since(changed_at),
        resumed.saturating_duration_since(settled_at),
        lost.len(),
    );
    assert!(
        !before.is_empty() && !after.is_empty(),
        "load ran on both sides of the change"
    );
    for svc in &mut stack.services {
        assert!(
            svc.is_running(),
            "{:?} exited: services follow without a restart",
            svc.bin()
        );
    }
    Figures {
        before,
        after,
        lost,
        twice,
    }
}

#[tokio::test]
async fn with_wait_replicas_a_cluster_failover_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 2)
    });
    let mut stack = ClusterStack::start(&cluster, 1).await;
    let rx = Receiver::start().await;
    subscribe(&stack.store, &rx).await;
    // The master of the input stream: the consumer's group, the API's appends and some shards fail over.
    let events_master = cluster.node_for_slot(key_slot(stack.store.keys().events_stream()));
    let Some(index) = cluster
        .master_ports()
        .iter()
        .position(|&p| p == events_master)
    else {
        panic!("the input stream's master {events_master} is not a master")
    };
    let c = &mut cluster;
    let figures = under_load(&mut stack, &rx, move || async move {
        let (promoted, took) = c.kill_master_with_replica(index).await;
        eprintln!("master {events_master} killed; {promoted} promoted after {took:?}");
    })
    .await;
    assert!(
        figures.lost.is_empty(),
        "every event acknowledged before the kill survives it: lost {:?} of {}",
        figures.lost,
        figures.before.len()
    );
    assert!(
        figures.twice <= MAX_IN_FLIGHT,
        "{} deliveries sent twice: at most the attempts in flight at the kill",
        figures.twice
    );
    assert!(!figures.after.is_empty());
    stack.store.quit().await;
}

#[tokio::test]
async fn a_reshard_under_load_loses_nothing_and_sends_nothing_twice() {
    let cluster = Cluster::start_with(ClusterOptions {
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    });
    let mut stack = ClusterStack::start(&cluster, 0).await;
    let rx = Receiver::start().await;
    subscribe(&stack.store, &rx).await;
    let k = stack.store.keys().clone();
    // Every slot of the first master moves: the shards it held must be among them.
    let first = cluster.master_ports()[0];
    let moved: Vec<String> = k
        .shards()
        .map(|s| k.queue_stream(s))
        .filter(|q| cluster.node_for_key(q) == first)
        .collect();
    assert!(!moved.is_empty(), "the first master holds a queue shard");
    let slots = cluster
        .view()
        .iter()
        .find(|v| v.port == first)
        .map_or(0, |v| v.slot_count());
    let c = &cluster;
    let figures = under_load(&mut stack, &rx, move || async move {
        c.reshard(0, 1, slots).await;
    })
    .await;
    for q in &moved {
        assert_ne!(cluster.node_for_key(q), first, "{q} moved");
    }
    assert!(figures.lost.is_empty(), "lost {:?}", figures.lost);
    assert!(
        figures.twice <= MAX_IN_FLIGHT,
        "{} deliveries sent twice",
        figures.twice
    );
    stack.store.quit().await;
}
