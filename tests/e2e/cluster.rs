//! Redis Cluster (issue #15), step by step: a binary whose every Redis path is slot-safe starts on a
//! cluster (the event-consumer); every other one refuses to, with the reason and before writing anything.
//! Against a real cluster (plain, and TLS with the services' ACL user), so the refusal cannot be mistaken for
//! a connection failure.

use service_common::redis::CLUSTER_REFUSAL;
use test_support::cluster::{Cluster, ClusterOptions, ClusterTls};
use test_support::redis::hookline_cluster_acl_rule;
use test_support::resp::Reply;
use test_support::service::{Service, ServiceBin};

use crate::harness::{base_env, run_to_exit};

async fn only_slot_safe_binaries_start(cluster: &Cluster) {
    let mut env = base_env(&cluster.url());
    env.retain(|(k, _)| k != "HOOKLINE__REDIS__URL");
    env.extend(cluster.service_env());
    for (bin, args) in [
        (ServiceBin::ApiGateway, &[][..]),
        (ServiceBin::DeliveryWorker, &[]),
        (ServiceBin::Cleanup, &["--once"]),
        (ServiceBin::Migrate, &["--reencrypt-secrets"]),
    ] {
        let (code, out) = run_to_exit(bin, args, &env).await;
        assert_ne!(code, Some(0), "{}: {out}", bin.name());
        assert!(out.contains(CLUSTER_REFUSAL), "{}: {out}", bin.name());
    }
    for port in cluster.master_ports() {
        assert_eq!(
            cluster.node_command(port, &["DBSIZE"]),
            Some(Reply::Int(0)),
            "nothing written on {port}"
        );
    }
    // The event-consumer's paths are slot-safe: it starts (and is stopped again on drop).
    let consumer = Service::start(ServiceBin::EventConsumer, &env).await;
    drop(consumer);
}

#[tokio::test]
async fn only_the_slot_safe_binaries_start_on_a_cluster() {
    only_slot_safe_binaries_start(&Cluster::start(3, 0)).await;
    only_slot_safe_binaries_start(&Cluster::start_with(ClusterOptions {
        tls: ClusterTls::Mutual,
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    }))
    .await;
}
