//! A real Redis Cluster on loopback (issue #15): `masters × (1 + replicas)` redis-server processes with
//! `--cluster-enabled yes`, each on free ports with its files in one temp dir, joined by `redis-cli --cluster
//! create`, all killed on drop. Plain, TLS (optionally mutual) or with ACL users only, as
//! [`RedisServer`](crate::redis::RedisServer).
//!
//! Every node also listens in plain text on loopback, whatever the variant: the harness's probes
//! ([`crate::resp`]) and `redis-cli` use that port, clients the [client port](Cluster::master_ports) (the
//! TLS port of a TLS cluster). With `tls-cluster yes` a node announces the port of the connection's kind, so
//! a TLS client is sent only to TLS ports, and the bus and replication run over TLS as in production.
//!
//! The nodes decide quickly so failover tests stay short: a master silent for [`NODE_TIMEOUT_MS`] is failed
//! over, whatever its replica's replication lag (`cluster-replica-validity-factor 0`).
//!
//! Waits poll with deadlines; [`Cluster::start`] is synchronous (before anything runs), the mid-test
//! operations ([`Cluster::kill_master_with_replica`], [`Cluster::reshard`]) are async so that services
//! running in process keep running meanwhile.

mod access;
mod services;
mod spawn;
mod view;

use std::process::Child;
use std::time::{Duration, Instant};

pub use services::OnCluster;
pub use view::{NodeView, SLOTS, key_slot, parse_nodes};

use crate::certs::{self, TlsFiles};
use crate::redis::{ACL_PASSWORD, ADMIN_PASSWORD, ADMIN_USER, acl_users_conf, new_dir, write_file};
use crate::resp::{Reply, command_as};

/// `cluster-node-timeout`: how long a master may be silent before it is failed over.
pub const NODE_TIMEOUT_MS: u64 = 1000;
/// Bound on the cluster coming up, a failover and a reshard settling.
const SETTLE: Duration = Duration::from_secs(30);

/// How clients reach the nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterTls {
    /// Plain text.
    #[default]
    Off,
    /// TLS on the client ports, the bus and replication.
    On,
    /// As `On`, and clients must present a certificate (`tls-auth-clients yes`).
    Mutual,
}

/// What [`Cluster::start_with`] starts.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub masters: usize,
    pub replicas_per_master: usize,
    pub tls: ClusterTls,
    /// `Some(rule)`: the `default` user is off, [`ADMIN_USER`] may do anything, [`ACL_USER`](crate::redis::ACL_USER) is restricted by
    /// `rule` (see [`crate::redis::hookline_cluster_acl_rule`]).
    pub acl_rule: Option<String>,
}

impl ClusterOptions {
    /// `masters` masters with `replicas_per_master` replicas each, plain, no ACL.
    pub fn new(masters: usize, replicas_per_master: usize) -> Self {
        Self {
            masters,
            replicas_per_master,
            tls: ClusterTls::Off,
            acl_rule: None,
        }
    }
}

/// One redis-server process of the cluster.
struct Node {
    child: Option<Child>,
    /// Plain-text port on loopback (the harness's and redis-cli's).
    port: u16,
    /// The TLS port of a TLS cluster.
    tls_port: Option<u16>,
}

impl Node {
    fn client_port(&self) -> u16 {
        self.tls_port.unwrap_or(self.port)
    }

    fn alive(&self) -> bool {
        self.child.is_some()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGKILL: no shutdown, nothing handed over.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The cluster's processes. Killed (and their directory removed) on drop.
pub struct Cluster {
    nodes: Vec<Node>,
    tls: Option<TlsFiles>,
    opts: ClusterOptions,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A plain cluster of `masters` masters with `replicas_per_master` replicas each, up and covering every
    /// slot.
    ///
    /// # Panics
    /// When redis-server or redis-cli is missing, or the cluster is not healthy within 30 s.
    pub fn start(masters: usize, replicas_per_master: usize) -> Self {
        Self::start_with(ClusterOptions::new(masters, replicas_per_master))
    }

    /// Starts the cluster `opts` describe and waits until every node reports `cluster_state:ok` with all
    /// slots served, every node agrees on who serves them, and every replica's link is up.
    ///
    /// # Panics
    /// As [`start`](Self::start); also for fewer than 3 masters (`redis-cli --cluster create` needs 3).
    pub fn start_with(opts: ClusterOptions) -> Self {
        assert!(
            opts.masters >= 3,
            "a Redis Cluster needs at least 3 masters"
        );
        let dir = new_dir();
        let tls = (opts.tls != ClusterTls::Off).then(|| certs::generate(dir.path()));
        if let Some(rule) = &opts.acl_rule {
            // Replicas authenticate to their master as the admin: the `default` user is off.
            let conf = format!(
                "{}masteruser {ADMIN_USER}\nmasterauth {ADMIN_PASSWORD}\n",
                acl_users_conf(rule)
            );
            write_file(&dir.path().join("redis.conf"), &conf);
            write_file(
                &dir.path().join("hookline.password"),
                &format!("{ACL_PASSWORD}\n"),
            );
        }
        let mut c = Self {
            nodes: Vec::new(),
            tls,
            opts,
            dir,
        };
        let count = c.opts.masters * (1 + c.opts.replicas_per_master);
        for i in 0..count {
            let node = c.spawn_node(i);
            c.nodes.push(node);
        }
        c.create();
        let deadline = Instant::now() + SETTLE;
        while !c.healthy() {
            assert!(
                Instant::now() < deadline,
                "the cluster is not healthy after {SETTLE:?}: {:?}",
                c.view()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// One command to the node on plain `port`, as the admin on an ACL cluster.
    fn probe(&self, port: u16, args: &[&str]) -> Option<Reply> {
        let auth = self
            .opts
            .acl_rule
            .as_ref()
            .map(|_| (ADMIN_USER, ADMIN_PASSWORD));
        command_as(port, auth, args)
    }

    /// One command to the node whose client port (or plain port) is `port`, as the admin; `None` when it does
    /// not answer. For checks of a particular node (`INFO commandstats`, `DBSIZE`, …).
    pub fn node_command(&self, port: u16, args: &[&str]) -> Option<Reply> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port || n.tls_port == Some(port))?;
        self.probe(node.port, args)
    }

    /// `CLUSTER NODES` as the node on plain `port` sees it.
    fn view_from(&self, port: u16) -> Option<Vec<NodeView>> {
        match self.probe(port, &["CLUSTER", "NODES"])? {
            Reply::Bulk(Some(text)) => Some(parse_nodes(&text)),
            _ => None,
        }
    }

    /// The cluster as the first live node that answers sees it (ports are plain ports).
    pub fn view(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .find_map(|n| self.view_from(n.port))
            .unwrap_or_default()
    }

    /// Who serves which slots, as the node on plain `port` sees it: sorted `(first, last, plain port)`.
    fn slot_map(&self, port: u16) -> Option<Vec<(u16, u16, u16)>> {
        let mut map: Vec<(u16, u16, u16)> = self
            .view_from(port)?
            .iter()
            .filter(|n| n.master && !n.failing)
            .flat_map(|n| n.slots.iter().map(|&(a, b)| (a, b, n.port)))
            .collect();
        map.sort_unstable();
        Some(map)
    }

    /// Every live node: `cluster_state:ok` with all slots served by healthy masters, the same slot map as
    /// the others, and (for a replica) its link to its master up.
    fn healthy(&self) -> bool {
        let mut maps = Vec::new();
        for n in self.nodes.iter().filter(|n| n.alive()) {
            let Some(Reply::Bulk(Some(info))) = self.probe(n.port, &["CLUSTER", "INFO"]) else {
                return false;
            };
            if field(&info, "cluster_state").as_deref() != Some("ok")
                || field(&info, "cluster_slots_ok") != Some(SLOTS.to_string())
            {
                return false;
            }
            let Some(Reply::Bulk(Some(repl))) = self.probe(n.port, &["INFO", "replication"]) else {
                return false;
            };
            if field(&repl, "role").as_deref() == Some("slave")
                && field(&repl, "master_link_status").as_deref() != Some("up")
            {
                return false;
            }
            match self.slot_map(n.port) {
                Some(m) => maps.push(m),
                None => return false,
            }
        }
        maps.windows(2).all(|w| w[0] == w[1])
    }

    /// Waits until [`healthy`](Self::healthy), at most `timeout`.
    async fn wait_healthy(&self, what: &str, timeout: Duration) {
        crate::wait::until(what, timeout, || async { self.healthy().then_some(()) }).await;
    }

    /// Indexes into `nodes` of the current masters (serving slots, not failing), in start order.
    fn master_nodes(&self) -> Vec<usize> {
        let view = self.view();
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive())
            .filter(|(_, n)| {
                view.iter()
                    .any(|v| v.port == n.port && v.master && !v.failing && !v.slots.is_empty())
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn node_id(&self, node: usize) -> String {
        let port = self.nodes[node].port;
        match self.view().into_iter().find(|v| v.port == port) {
            Some(v) => v.id,
            None => panic!("node on port {port} is not in the cluster's view"),
        }
    }

    /// Client ports of the current masters, in the order the harness started their nodes. The indexes of
    /// [`kill_master_with_replica`](Self::kill_master_with_replica) and [`reshard`](Self::reshard) count
    /// this list (so after a failover the promoted replica takes its start position).
    pub fn master_ports(&self) -> Vec<u16> {
        self.master_nodes()
            .into_iter()
            .map(|i| self.nodes[i].client_port())
            .collect()
    }

    /// Client port of the master that serves `slot`.
    ///
    /// # Panics
    /// When no healthy master serves it.
    pub fn node_for_slot(&self, slot: u16) -> u16 {
        let view = self.view();
        let Some(v) = view
            .iter()
            .find(|v| v.master && !v.failing && v.serves(slot))
        else {
            panic!("no master serves slot {slot}: {view:?}")
        };
        self.client_port_of(v.port)
    }

    /// Client port of the master that serves `key`'s slot.
    pub fn node_for_key(&self, key: &str) -> u16 {
        self.node_for_slot(key_slot(key))
    }

    fn client_port_of(&self, plain: u16) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.port == plain)
            .map_or(plain, Node::client_port)
    }

    /// Waits until every live replica has received all its master has written so far (its replication
    /// offset reached the master's). Before a kill, so that a test can tell "lost in the failover" from
    /// "never replicated".
    ///
    /// # Panics
    /// When a replica does not catch up within `timeout`.
    pub async fn wait_replicated(&self, timeout: Duration) {
        let view = self.view();
        let mut targets = Vec::new();
        for replica in view.iter().filter(|v| !v.master && !v.failing) {
            let Some(master) = view
                .iter()
                .find(|m| Some(&m.id) == replica.master_id.as_ref())
            else {
                continue;
            };
            if let Some(offset) = self.repl_offset(master.port, "master_repl_offset") {
                targets.push((replica.port, offset));
            }
        }
        crate::wait::until("every replica caught up", timeout, || async {
            targets
                .iter()
                .all(|&(port, wanted)| {
                    self.repl_offset(port, "slave_repl_offset")
                        .is_some_and(|o| o >= wanted)
                })
                .then_some(())
        })
        .await;
    }

    fn repl_offset(&self, port: u16, name: &str) -> Option<u64> {
        let Some(Reply::Bulk(Some(repl))) = self.probe(port, &["INFO", "replication"]) else {
            return None;
        };
        field(&repl, name)?.parse().ok()
    }

    /// Plain port of a live replica of the master that serves `slot`.
    ///
    /// # Panics
    /// When that master has no live replica.
    pub fn replica_for_slot(&self, slot: u16) -> u16 {
        // Polled: on a busy machine the node asked may not have gossiped the replica's link yet.
        let deadline = Instant::now() + SETTLE;
        loop {
            let view = self.view();
            let master = view
                .iter()
                .find(|v| v.master && !v.failing && v.serves(slot))
                .map(|v| v.id.clone());
            if let Some(v) = view
                .iter()
                .find(|v| !v.master && !v.failing && v.master_id.is_some() && v.master_id == master)
            {
                return v.port;
            }
            assert!(
                Instant::now() < deadline,
                "no live replica of the master of slot {slot}: {view:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether `key` exists on the node on plain `port` (`SCAN … MATCH`: a replica answers it without
    /// `READONLY`, which a one-shot connection cannot keep). `key` must hold no glob characters.
    pub fn node_has_key(&self, port: u16, key: &str) -> bool {
        match self.node_command(port, &["SCAN", "0", "MATCH", key, "COUNT", "1000000"]) {
            Some(Reply::Array(parts)) => {
                matches!(parts.get(1), Some(Reply::Array(keys)) if !keys.is_empty())
            }
            other => panic!("SCAN on {port}: {other:?}"),
        }
    }

    /// SIGKILLs the node on plain `port` (a replica, say, so that its master's `WAIT`s go unanswered).
    pub fn kill_node(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.kill();
        }
    }

    /// SIGKILLs master `index` (of [`master_ports`](Self::master_ports)) and waits until one of its
    /// replicas has taken over its slots and the cluster is healthy again. Returns the promoted replica's
    /// client port and how long the promotion took.
    ///
    /// # Panics
    /// When there is no such master, it has no replica, or the cluster does not recover within 30 s.
    pub async fn kill_master_with_replica(&mut self, index: usize) -> (u16, Duration) {
        let masters = self.master_nodes();
        let Some(&node) = masters.get(index) else {
            panic!("no master {index}: there are {}", masters.len())
        };
        let id = self.node_id(node);
        // The node asked may not have gossiped the replica's link yet on a busy machine: wait for it.
        let port = self.nodes[node].port;
        let replica_ports: Vec<u16> = crate::wait::until(
            &format!("master {index} (port {port}) has a replica to promote"),
            SETTLE,
            || async {
                let ports: Vec<u16> = self
                    .view()
                    .iter()
                    .filter(|v| v.master_id.as_deref() == Some(id.as_str()) && !v.failing)
                    .map(|v| v.port)
                    .collect();
                (!ports.is_empty()).then_some(ports)
            },
        )
        .await;
        let start = Instant::now();
        self.nodes[node].kill();
        let promoted = crate::wait::until("a replica is promoted", SETTLE, || async {
            let view = self.view();
            view.iter()
                .find(|v| replica_ports.contains(&v.port) && v.master && !v.slots.is_empty())
                .map(|v| v.port)
        })
        .await;
        self.wait_healthy("the cluster is healthy after the failover", SETTLE)
            .await;
        (self.client_port_of(promoted), start.elapsed())
    }

    /// Moves `slots` slots from master `from` to master `to` (indexes of
    /// [`master_ports`](Self::master_ports)) with `redis-cli --cluster reshard`, keys included, and waits
    /// until every node agrees on the new owners.
    ///
    /// # Panics
    /// When redis-cli fails or the cluster does not settle within 30 s.
    pub async fn reshard(&self, from: usize, to: usize, slots: u32) {
        let masters = self.master_nodes();
        let (Some(&f), Some(&t)) = (masters.get(from), masters.get(to)) else {
            panic!("no masters {from} and {to}: there are {}", masters.len())
        };
        let (from_id, to_id) = (self.node_id(f), self.node_id(t));
        let mut cmd = tokio::process::Command::from(self.redis_cli());
        cmd.args(["--cluster", "reshard"])
            .arg(format!("127.0.0.1:{}", self.nodes[f].port))
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"]);
        #[expect(
            clippy::expect_used,
            reason = "test harness: redis-cli must be installed"
        )]
        let out = cmd.output().await.expect("run redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_healthy("the cluster agrees on the resharded slots", SETTLE)
            .await;
    }

    /// Entries of `ACL LOG` (what the nodes refused a user) on every live node.
    pub fn acl_log(&self) -> Vec<Reply> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .filter_map(|n| match self.probe(n.port, &["ACL", "LOG"]) {
                Some(Reply::Array(entries)) => Some(entries),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

/// The value of `name:` in an `INFO`/`CLUSTER INFO` text.
fn field(text: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}:");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|v| v.trim().to_owned())
}

#[cfg(test)]
mod tests;
