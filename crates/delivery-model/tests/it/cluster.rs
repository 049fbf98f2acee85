//! A store on a real Redis Cluster (issue #15, the connection only: the key layout is not slot-aware yet,
//! so no multi-key script is run here). Connecting plain, over mutual TLS (with and without a server-name
//! override) and as the restricted ACL user; single-key commands on every master; a stream written through
//! the pool and read through a dedicated connection; and commands that keep working after a master is
//! SIGKILLed and its replica promoted.

use crate::harness::event;
use std::time::Duration;

use delivery_model::keys::EVENTS_GROUP;
use delivery_model::store::{Store, StoreOptions, connection};
use fred::prelude::*;
use test_support::certs::SERVER_NAME;
use test_support::cluster::{Cluster, ClusterOptions, ClusterTls};
use test_support::redis::{ACL_USER, hookline_cluster_acl_rule};
use test_support::resp::Reply;
use test_support::wait;

/// A raw client configured exactly as the store's connections are.
async fn raw_client(opts: &StoreOptions) -> Client {
    let client = Builder::from_config(connection::fred_config(opts).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// The first `i` whose `key(i)` lands on the master at `port`.
fn on_master(cluster: &Cluster, port: u16, key: impl Fn(u32) -> String) -> u32 {
    (0..1000)
        .find(|&i| cluster.node_for_key(&key(i)) == port)
        .unwrap()
}

/// Writes a key on every master through `raw` and reads it back, both through `raw` and through the store
/// (a revoked-token key, read by `EXISTS`): the client follows the slot map to each node.
/// `admin` writes the revoked-token keys (TMI's, read-only for the services' ACL user); `round` keeps the
/// keys of several calls on one cluster apart.
async fn every_master_answers(
    cluster: &Cluster,
    store: &Store,
    (raw, admin): (&Client, &Client),
    round: &str,
) {
    let masters = cluster.master_ports();
    assert_eq!(masters.len(), 3);
    for port in masters {
        let i = on_master(cluster, port, |i| {
            format!("webhook:cluster-test:{round}:{i}")
        });
        let key = format!("webhook:cluster-test:{round}:{i}");
        let _: () = raw.set(&key, port, None, None, false).await.unwrap();
        let back: u16 = raw.get(&key).await.unwrap();
        assert_eq!(back, port);
        // The node itself holds it: not a proxy, not a wrong slot.
        assert_eq!(
            cluster.node_command(port, &["GET", &key]),
            Some(Reply::Bulk(Some(port.to_string())))
        );

        let token = |i: u32| format!("{round}-t{i}");
        let token = token(on_master(cluster, port, |i| {
            store.keys().revoked_token(&token(i))
        }));
        assert!(!store.is_token_revoked(&token).await.unwrap());
        let revoked = store.keys().revoked_token(&token);
        let _: () = admin.set(&revoked, "1", None, None, false).await.unwrap();
        assert!(store.is_token_revoked(&token).await.unwrap());
    }
}

/// Appends through the store's pool, reads through a dedicated connection (`XREADGROUP`, blocking), and
/// acknowledges: one stream key, so one slot.
async fn stream_round_trip(store: &Store, first: u32) {
    store.ensure_events_group("0").await.unwrap();
    let ids = [
        store.publish_event(&event(first)).await.unwrap(),
        store.publish_event(&event(first + 1)).await.unwrap(),
    ];
    let reader = store.reader().await.unwrap();
    let stream = store.keys().events_stream().to_owned();
    let read = reader
        .read_group(&stream, EVENTS_GROUP, "consumer-1", 10, 200)
        .await
        .unwrap();
    assert_eq!(read.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    store
        .ack_events(&read.iter().map(|e| e.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    // Nothing new: the blocking read times out empty on the node that holds the stream.
    let none = reader
        .read_group(&stream, EVENTS_GROUP, "consumer-1", 10, 50)
        .await
        .unwrap();
    assert!(none.is_empty());
    reader.quit().await;
}

#[tokio::test]
async fn a_plain_cluster_serves_every_master_and_a_stream_read() {
    let cluster = Cluster::start(3, 0);
    let opts = cluster.admin_options();
    let store = Store::connect(&opts).await.unwrap();
    store.ping().await.unwrap();
    let raw = raw_client(&opts).await;
    every_master_answers(&cluster, &store, (&raw, &raw), "a").await;
    stream_round_trip(&store, 0).await;
    store.quit().await;
}

#[tokio::test]
async fn mutual_tls_verifies_every_node() {
    let cluster = Cluster::start_with(ClusterOptions {
        tls: ClusterTls::Mutual,
        ..ClusterOptions::new(3, 0)
    });
    let opts = StoreOptions {
        command_timeout: Duration::from_secs(2),
        ..cluster.admin_options()
    };
    assert!(opts.url.starts_with("rediss-cluster://"));
    let store = Store::connect(&opts).await.unwrap();
    let raw = raw_client(&opts).await;
    every_master_answers(&cluster, &store, (&raw, &raw), "a").await;
    stream_round_trip(&store, 0).await;

    // Every node, the discovered ones too, is checked against the override.
    let mut by_name = opts.clone();
    by_name.tls.server_name = Some(SERVER_NAME.into());
    let store = Store::connect(&by_name).await.unwrap();
    let raw = raw_client(&by_name).await;
    every_master_answers(&cluster, &store, (&raw, &raw), "b").await;

    let mut wrong_name = opts.clone();
    wrong_name.tls.server_name = Some("other.hookline.test".into());
    let e = Store::connect(&wrong_name).await.err().unwrap().to_string();
    assert!(e.contains("NotValidForName"), "{e}");

    let mut untrusted = opts.clone();
    untrusted.tls.ca_file = Some(cluster.tls_files().unwrap().untrusted_ca.clone());
    let e = Store::connect(&untrusted).await.err().unwrap().to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn the_services_acl_user_needs_only_the_documented_cluster_additions() {
    let cluster = Cluster::start_with(ClusterOptions {
        acl_rule: Some(hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 0)
    });
    let opts = cluster.service_options();
    assert_eq!(opts.username.as_deref(), Some(ACL_USER));
    let store = Store::connect(&opts).await.unwrap();
    let raw = raw_client(&opts).await;
    let admin = raw_client(&cluster.admin_options()).await;
    every_master_answers(&cluster, &store, (&raw, &admin), "a").await;
    stream_round_trip(&store, 0).await;
    store.quit().await;
    raw.quit().await.unwrap();
    admin.quit().await.unwrap();
    assert_eq!(cluster.acl_log(), Vec::<Reply>::new(), "refused commands");

    // Without either of the first two additions a clustered client cannot even start (ASKING is only
    // sent while a slot migrates; see CLUSTER_ACL_ADDITIONS).
    let opts = StoreOptions {
        command_timeout: Duration::from_secs(2),
        ..opts
    };
    for command in ["cluster|info", "cluster|slots"] {
        let set_all = |rule: &str| {
            for port in cluster.master_ports() {
                let reply = cluster.node_command(port, &["ACL", "SETUSER", ACL_USER, rule]);
                assert_eq!(reply, Some(Reply::Simple("OK".into())));
            }
        };
        set_all(&format!("-{command}"));
        let e = Store::connect(&opts).await.err().unwrap().to_string();
        assert!(
            e.contains(&format!(
                "NOPERM this user has no permissions to run the '{command}'"
            )),
            "{e}"
        );
        set_all(&format!("+{command}"));
    }
    Store::connect(&opts).await.unwrap().quit().await;
}

#[tokio::test]
async fn commands_and_a_stream_read_survive_a_master_failover() {
    let mut cluster = Cluster::start(3, 1);
    let opts = StoreOptions {
        command_timeout: Duration::from_secs(1),
        ..cluster.admin_options()
    };
    let store = Store::connect(&opts).await.unwrap();
    let raw = raw_client(&opts).await;
    store.ensure_events_group("0").await.unwrap();
    let stream = store.keys().events_stream().to_owned();
    // Kill the master that holds the input stream, with a revoked token on the same master.
    let victim = cluster.node_for_key(&stream);
    let index = cluster
        .master_ports()
        .iter()
        .position(|&p| p == victim)
        .unwrap();
    let token = on_master(&cluster, victim, |i| {
        store.keys().revoked_token(&format!("t{i}"))
    });
    let token = format!("t{token}");
    let _: () = raw
        .set(store.keys().revoked_token(&token), "1", None, None, false)
        .await
        .unwrap();
    let before = store.publish_event(&event(0)).await.unwrap();
    let reader = store.reader().await.unwrap();
    cluster.wait_replicated(Duration::from_secs(10)).await;

    let (promoted, took) = cluster.kill_master_with_replica(index).await;
    eprintln!("promoted {promoted} {took:?} after the kill");
    assert_eq!(cluster.node_for_key(&stream), promoted);

    // Within a deadline the pool finds the new master: the replicated key is there, and writes go on.
    let revoked = wait::until(
        "the token check answers again",
        Duration::from_secs(20),
        || async { store.is_token_revoked(&token).await.ok() },
    )
    .await;
    assert!(revoked, "the write replicated before the kill survives");
    let after = wait::until(
        "a publish succeeds again",
        Duration::from_secs(20),
        || async { store.publish_event(&event(1)).await.ok() },
    )
    .await;
    // The dedicated connection (opened before the kill) reads both, reconnecting as the reader loop does.
    let read = wait::until(
        "the read connection reads again",
        Duration::from_secs(20),
        || async {
            match reader.read_group(&stream, EVENTS_GROUP, "c", 10, 100).await {
                Ok(entries) => Some(entries),
                Err(_) => {
                    let _ = reader.reconnect().await;
                    None
                }
            }
        },
    )
    .await;
    let ids: Vec<String> = read.iter().map(|e| e.id.clone()).collect();
    // A publish that timed out during the failover may have been appended too (the caller retries, as an
    // API client would): the first entry and the confirmed one are there, in order.
    assert_eq!(ids.first(), Some(&before), "{ids:?}");
    assert_eq!(ids.last(), Some(&after), "{ids:?}");
    store.ack_events(&ids).await.unwrap();
    reader.quit().await;
    store.quit().await;
}
