//! The harness's own checks against a real cluster: it comes up with every slot covered, a replica takes
//! over a killed master, and a reshard moves slots (and the keys in them).

#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

/// `CLUSTER SLOTS` of the node on plain `port`: `(first, last, client port of the master)`, sorted.
fn cluster_slots(c: &Cluster, port: u16) -> Vec<(u16, u16, u16)> {
    let Some(Reply::Array(ranges)) = c.node_command(port, &["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS")
    };
    let mut out: Vec<(u16, u16, u16)> = ranges
        .into_iter()
        .map(|r| match r {
            Reply::Array(items) => match (&items[0], &items[1], &items[2]) {
                (Reply::Int(a), Reply::Int(b), Reply::Array(master)) => match &master[1] {
                    Reply::Int(p) => (
                        u16::try_from(*a).unwrap(),
                        u16::try_from(*b).unwrap(),
                        u16::try_from(*p).unwrap(),
                    ),
                    other => panic!("port {other:?}"),
                },
                other => panic!("range {other:?}"),
            },
            other => panic!("range {other:?}"),
        })
        .collect();
    out.sort_unstable();
    out
}

fn slots_of(map: &[(u16, u16, u16)], port: u16) -> u32 {
    map.iter()
        .filter(|r| r.2 == port)
        .map(|&(a, b, _)| u32::from(b) - u32::from(a) + 1)
        .sum()
}

#[test]
fn three_masters_cover_every_slot() {
    let started = Instant::now();
    let c = Cluster::start(3, 0);
    eprintln!("cluster up in {:?}", started.elapsed());
    let masters = c.master_ports();
    assert_eq!(masters.len(), 3);
    let map = cluster_slots(&c, masters[0]);
    let covered: u32 = masters.iter().map(|&p| slots_of(&map, p)).sum();
    assert_eq!(covered, u32::from(SLOTS));
    assert!(masters.iter().all(|&p| slots_of(&map, p) > 5000));
    for key in ["foo", "{hl:s0}:queue", "webhook:delivery:1", "tmi:events"] {
        let slot = key_slot(key);
        assert_eq!(
            c.node_command(masters[0], &["CLUSTER", "KEYSLOT", key]),
            Some(Reply::Int(i64::from(slot))),
            "{key}"
        );
        let owner = c.node_for_key(key);
        assert!(
            map.iter()
                .any(|&(a, b, p)| a <= slot && slot <= b && p == owner)
        );
    }
    assert!(c.url().starts_with("redis-cluster://127.0.0.1:"));
    assert_eq!(c.url().matches("node=").count(), 2);
}

#[tokio::test]
async fn a_replica_takes_over_a_killed_master() {
    let mut c = Cluster::start(3, 1);
    let before = c.master_ports();
    assert_eq!(before.len(), 3);
    let slot = key_slot("survives");
    let index = before
        .iter()
        .position(|&p| p == c.node_for_slot(slot))
        .unwrap();
    let owner = before[index];
    assert_eq!(
        c.node_command(owner, &["SET", "survives", "yes"]),
        Some(Reply::Simple("OK".into()))
    );
    c.wait_replicated(Duration::from_secs(10)).await;

    let (promoted, took) = c.kill_master_with_replica(index).await;
    eprintln!("replica {promoted} promoted {took:?} after the kill");
    assert_ne!(promoted, owner);
    assert_eq!(c.node_for_slot(slot), promoted);
    let after = c.master_ports();
    assert_eq!(after.len(), 3);
    assert!(!after.contains(&owner) && after.contains(&promoted));
    assert_eq!(
        c.node_command(promoted, &["GET", "survives"]),
        Some(Reply::Bulk(Some("yes".into())))
    );
}

#[tokio::test]
async fn a_reshard_moves_slots_and_their_keys() {
    let c = Cluster::start(3, 0);
    let masters = c.master_ports();
    let before = cluster_slots(&c, masters[0]);
    // A key in the first slot master 0 serves: a reshard moves the lowest slots first.
    let first = before.iter().find(|r| r.2 == masters[0]).unwrap().0;
    let key = (0..)
        .map(|i| format!("moved:{i}"))
        .find(|k| key_slot(k) == first)
        .unwrap();
    assert_eq!(
        c.node_command(masters[0], &["SET", &key, "v"]),
        Some(Reply::Simple("OK".into()))
    );

    c.reshard(0, 2, 100).await;
    let after = cluster_slots(&c, masters[1]);
    assert_eq!(
        slots_of(&after, masters[0]),
        slots_of(&before, masters[0]) - 100
    );
    assert_eq!(
        slots_of(&after, masters[2]),
        slots_of(&before, masters[2]) + 100
    );
    assert_eq!(slots_of(&after, masters[1]), slots_of(&before, masters[1]));
    assert_eq!(c.node_for_slot(first), masters[2]);
    assert_eq!(
        c.node_command(masters[2], &["GET", &key]),
        Some(Reply::Bulk(Some("v".into())))
    );
}

#[test]
fn a_mutual_tls_cluster_with_acl_users_comes_up() {
    // With replicas: `start` waits for their links, so replication over TLS as the admin works too.
    let c = Cluster::start_with(ClusterOptions {
        tls: ClusterTls::Mutual,
        acl_rule: Some(crate::redis::hookline_cluster_acl_rule()),
        ..ClusterOptions::new(3, 1)
    });
    assert!(c.url().starts_with("rediss-cluster://127.0.0.1:"));
    let masters = c.master_ports();
    assert_eq!(masters.len(), 3);
    // Client ports are the TLS ports: plain text there gets no answer.
    assert!(crate::resp::command(masters[0], &["PING"]).is_none());
    // The harness's own port needs the admin: the `default` user is off.
    let view = c.view();
    assert!(matches!(
        crate::resp::command(view[0].port, &["PING"]),
        Some(Reply::Error(e)) if e.starts_with("NOAUTH")
    ));
    assert!(c.acl_log().is_empty());
}
