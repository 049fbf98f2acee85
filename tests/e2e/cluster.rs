//! Redis Cluster (issue #15): every binary starts on a cluster, hookline-migrate included, against a real
//! cluster (plain, and TLS with the services' ACL user). And the delivery path through the real binaries on
//! a cluster: events to the receiver across every shard, with a worker killed mid-run. (The pipeline, callback and add-on scenarios run on a cluster
//! too: their `…_on_a_cluster` twins.)

use test_support::cluster::{Cluster, ClusterOptions, ClusterTls};
use test_support::redis::hookline_cluster_acl_rule;
use test_support::service::{Service, ServiceBin};

use std::collections::HashSet;
use std::time::Duration;

use delivery_model::delivery::DeliveryStatus;
use delivery_model::event::StreamEvent;
use delivery_model::keys::QUEUE_GROUP;
use delivery_model::store::Store;
use delivery_model::subscription::{Subscription, SubscriptionStatus};
use delivery_model::time::now_micros;
use fred::prelude::*;
use test_support::inproc::test_settings;
use test_support::receiver::Receiver;
use test_support::wait;

use crate::harness::{WAIT, base_env, merge, run_to_exit};

async fn every_binary_starts(cluster: &Cluster) {
    let mut env = base_env(&cluster.url());
    env.retain(|(k, _)| k != "HOOKLINE__REDIS__URL");
    env.extend(cluster.service_env());
    // hookline-migrate connects and runs (its PostgreSQL import and --from-redis are tested on a cluster
    // in services/migrate/tests).
    let mut with_key = env.clone();
    with_key.extend([
        ("HOOKLINE__SECRET_KEYS__CURRENT".to_owned(), "k1".to_owned()),
        (
            "HOOKLINE__SECRET_KEYS__KEYS__K1".to_owned(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
        ),
    ]);
    let (code, out) = run_to_exit(ServiceBin::Migrate, &["--reencrypt-secrets"], &with_key).await;
    assert_eq!(code, Some(0), "hookline-migrate: {out}");
    assert!(out.contains("subscription secrets: scanned=0"), "{out}");
    // Every service's paths are slot-safe: they start (and are stopped on drop), and a cleanup cycle
    // completes.
    let gateway = Service::start(ServiceBin::ApiGateway, &env).await;
    let consumer = Service::start(ServiceBin::EventConsumer, &env).await;
    let worker = Service::start(ServiceBin::DeliveryWorker, &env).await;
    let (code, out) = run_to_exit(ServiceBin::Cleanup, &["--once"], &env).await;
    assert_eq!(code, Some(0), "cleanup --once: {out}");
    drop((gateway, consumer, worker));
}

#[tokio::test]
async fn every_binary_starts_on_a_cluster() {
    every_binary_starts(&Cluster::start(3, 0)).await;
    every_binary_starts(&Cluster::start_with(ClusterOptions {
        tls: ClusterTls::Mutual,
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    }))
    .await;
}

/// Events in the kill test: enough that the kill lands mid-run at the receiver's pace.
const EVENTS: usize = 300;
/// The workers' slots: at most this many attempts of the killed worker are in flight, so sent twice.
const SLOTS: &str = "8";

/// The services' environment on `cluster`: the e2e base, the cluster's access, 6 queue shards.
pub(crate) fn cluster_env(cluster: &Cluster, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(&cluster.url());
    env.retain(|(k, _)| k != "HOOKLINE__REDIS__URL");
    env.extend(cluster.service_env());
    merge(
        env,
        &[
            extra,
            &[
                ("HOOKLINE__REDIS__CLUSTER_SHARDS", "6"),
                // The ACL user's key patterns are the unprefixed ones.
                ("HOOKLINE__REDIS__KEY_PREFIX", ""),
            ],
        ]
        .concat(),
    )
}

fn created(i: usize) -> StreamEvent {
    StreamEvent {
        event_type: "threat_model.created".into(),
        threat_model_id: None,
        object_id: Some(format!("tm-{i}")),
        object_type: Some("threat_model".into()),
        owner_id: Some("owner-1".into()),
        timestamp: Some("2026-04-01T12:00:00Z".into()),
        payload: format!(r#"{{"event_type":"threat_model.created","object_id":"tm-{i}"}}"#),
        delivery_id: None,
        trace: None,
    }
}

#[tokio::test]
async fn events_reach_the_receiver_on_a_cluster_and_survive_a_killed_worker() {
    let cluster = Cluster::start_with(ClusterOptions {
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    });
    let env = cluster_env(
        &cluster,
        &[
            ("HOOKLINE__WORKER__MAX_IN_FLIGHT", SLOTS),
            ("HOOKLINE__WORKER__MAX_IN_FLIGHT_PER_HOST", SLOTS),
            ("HOOKLINE__WORKER__LEASE_MARGIN_MS", "300"),
        ],
    );
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let settings = test_settings(&cluster.url(), &pairs);
    let store = Store::connect(&settings.store_options()).await.unwrap();
    let receiver = Receiver::start().await;
    // A receiver that takes its time, so the kill finds attempts in flight and a backlog behind them.
    receiver.set_delay(Duration::from_millis(10));
    let sub = Subscription::new(
        "owner-1",
        "hook",
        format!("{}/hook", receiver.url()),
        vec!["threat_model.created".into()],
        SubscriptionStatus::Active,
        now_micros(),
    );
    assert!(store.create_subscription(&sub).await.unwrap());

    let _consumer = Service::start(ServiceBin::EventConsumer, &env).await;
    let mut doomed = Service::start(ServiceBin::DeliveryWorker, &env).await;
    let _survivor = Service::start(ServiceBin::DeliveryWorker, &env).await;
    for i in 0..EVENTS {
        store.publish_event(&created(i)).await.unwrap();
    }
    receiver.wait_for_deliveries(EVENTS / 4, WAIT).await;
    assert!(doomed.kill9().is_some(), "the worker was running");

    // Everything arrives: the survivor takes over the dead worker's entries once their leases lapse.
    wait::until("every event reaches the receiver", WAIT * 2, || async {
        (receiver.count_by_delivery_id().len() == EVENTS).then_some(())
    })
    .await;
    let counts = receiver.count_by_delivery_id();
    let twice = counts.values().filter(|&&n| n > 1).count();
    assert!(
        twice <= SLOTS.parse::<usize>().unwrap(),
        "only attempts in flight at the kill are sent twice: {twice}"
    );
    let k = store.keys();
    let shards: HashSet<_> = counts
        .keys()
        .map(|id| k.shard_of(id.parse().unwrap()))
        .collect();
    assert_eq!(shards.len(), 6, "every shard carried deliveries");
    for id in counts.keys() {
        let id = id.parse().unwrap();
        let record = wait::until("the record is delivered", WAIT, || async {
            let r = store.get_delivery(id).await.unwrap().unwrap();
            (r.status == DeliveryStatus::Delivered).then_some(r)
        })
        .await;
        assert_eq!(record.subscription_id, sub.id);
    }
    let raw = Builder::from_config(
        delivery_model::store::connection::fred_config(&settings.store_options()).unwrap(),
    )
    .build()
    .unwrap();
    raw.init().await.unwrap();
    wait::until("every queue entry is acknowledged", WAIT, || async {
        let mut pending = 0;
        for shard in k.shards() {
            let v: Value = raw
                .xpending(k.queue_stream(shard), QUEUE_GROUP, ())
                .await
                .unwrap();
            pending += v.into_array().first().and_then(Value::as_u64).unwrap_or(0);
        }
        (pending == 0).then_some(())
    })
    .await;
    // The subscription's counters followed through the fold.
    wait::until("the fold records the successes", WAIT, || async {
        let s = store.get_subscription(sub.id).await.unwrap().unwrap();
        s.last_successful_use.map(|_| ())
    })
    .await;
    raw.quit().await.unwrap();
    store.quit().await;
}
