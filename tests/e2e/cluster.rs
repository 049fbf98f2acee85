//! Redis Cluster (issue #15), for now: the connection settings take a cluster, but the key layout is not
//! slot-aware yet, so every binary refuses to start on one — with the reason, and before writing anything.
//! Against a real cluster (plain, and TLS with the services' ACL user), so the refusal cannot be mistaken for
//! a connection failure.

use service_common::redis::CLUSTER_REFUSAL;
use test_support::cluster::{Cluster, ClusterOptions, ClusterTls};
use test_support::redis::hookline_cluster_acl_rule;
use test_support::resp::Reply;
use test_support::service::ServiceBin;

use crate::harness::{base_env, run_to_exit};

async fn every_binary_refuses(cluster: &Cluster) {
    let mut env = base_env(&cluster.url());
    env.retain(|(k, _)| k != "HOOKLINE__REDIS__URL");
    env.extend(cluster.service_env());
    for (bin, args) in [
        (ServiceBin::ApiGateway, &[][..]),
        (ServiceBin::EventConsumer, &[]),
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
}

#[tokio::test]
async fn every_binary_refuses_a_cluster_until_the_key_layout_is_slot_aware() {
    every_binary_refuses(&Cluster::start(3, 0)).await;
    every_binary_refuses(&Cluster::start_with(ClusterOptions {
        tls: ClusterTls::Mutual,
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    }))
    .await;
}
