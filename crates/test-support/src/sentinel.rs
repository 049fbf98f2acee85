//! A Sentinel-managed topology on loopback: one primary, one replica (`--replicaof`) and three sentinels
//! (`redis-server sentinel.conf --sentinel`), each on a free port with its files in one temp dir, all killed
//! on drop. [`Topology::kill_primary`] SIGKILLs the primary; [`Topology::wait_for_promotion`] waits until a
//! sentinel names the replica as the new primary.
//!
//! The sentinels decide quickly so a failover test stays short: the primary is down after
//! [`DOWN_AFTER_MS`] without an answer, and a failover may take [`FAILOVER_TIMEOUT_MS`]. A quorum of two of
//! three must agree, as in production.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use delivery_model::store::SentinelOptions;

use crate::redis::{free_port, wait_for_own_server};
pub use crate::resp::{Reply, command, info_field};

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "hookline";
/// `sentinel down-after-milliseconds`: how long the primary may be silent before a sentinel flags it down.
pub const DOWN_AFTER_MS: u64 = 1500;
/// `sentinel failover-timeout`.
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;
const SENTINELS: usize = 3;

/// One redis-server process (data node or sentinel).
struct Node {
    child: Option<Child>,
    port: u16,
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `Child::kill` is SIGKILL: the process gets no chance to hand anything over.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Primary, replica and three sentinels. Killed on drop.
pub struct Topology {
    primary: Node,
    replica: Node,
    sentinels: Vec<Node>,
    dir: tempfile::TempDir,
}

/// Starts `redis-server` with `args` (plus `extra`, the port and files under `dir`) on a free port, trying
/// another port when the one probed is taken meanwhile.
fn spawn(dir: &Path, name: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> Node {
    for _ in 0..5 {
        if let Some(node) = spawn_at(dir, name, free_port(), &args) {
            return node;
        }
    }
    panic!("{name} did not come up on any of 5 free ports");
}

/// Starts `redis-server` with `args` on `port`; `None` when it does not come up there.
fn spawn_at(
    dir: &Path,
    name: &str,
    port: u16,
    args: impl Fn(u16, &Path) -> Vec<String>,
) -> Option<Node> {
    {
        let node_dir = dir.join(format!("{name}-{port}"));
        #[expect(clippy::expect_used, reason = "test harness")]
        std::fs::create_dir_all(&node_dir).expect("node dir");
        #[expect(
            clippy::expect_used,
            reason = "test harness: redis-server must be installed (make test installs it)"
        )]
        let mut child = Command::new("redis-server")
            .args(args(port, &node_dir))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        if wait_for_own_server(&mut child, port, Duration::from_secs(10)) {
            return Some(Node {
                child: Some(child),
                port,
            });
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

fn data_node_args(port: u16, dir: &Path, replica_of: Option<u16>) -> Vec<String> {
    let mut a: Vec<String> = [
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.to_string_lossy(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(p) = replica_of {
        a.extend(["--replicaof".into(), "127.0.0.1".into(), p.to_string()]);
    }
    a
}

fn sentinel_args(port: u16, dir: &Path, primary: u16) -> Vec<String> {
    // Sentinel rewrites its config file (known peers, epochs), so each one gets a writable file of its own.
    let conf = dir.join("sentinel.conf");
    let text = format!(
        "bind 127.0.0.1\nport {port}\ndir {dir}\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n",
        dir = dir.display()
    );
    #[expect(clippy::expect_used, reason = "test harness")]
    std::fs::write(&conf, text).expect("write sentinel.conf");
    vec![conf.to_string_lossy().into_owned(), "--sentinel".into()]
}

impl Topology {
    /// Starts the primary, a replica in sync with it, and three sentinels that know each other and the
    /// replica (so a failover can happen at once).
    ///
    /// # Panics
    /// When redis-server is missing, or the topology is not complete within 30 s.
    pub async fn start() -> Self {
        #[expect(clippy::expect_used, reason = "test harness")]
        let dir = tempfile::tempdir().expect("tempdir");
        let primary = spawn(dir.path(), "primary", |p, d| data_node_args(p, d, None));
        let pp = primary.port;
        let replica = spawn(dir.path(), "replica", |p, d| data_node_args(p, d, Some(pp)));
        let sentinels = (0..SENTINELS)
            .map(|i| {
                spawn(dir.path(), &format!("sentinel{i}"), |p, d| {
                    sentinel_args(p, d, pp)
                })
            })
            .collect();
        let t = Self {
            primary,
            replica,
            sentinels,
            dir,
        };
        let replica_port = t.replica.port;
        crate::wait::until("replica in sync", Duration::from_secs(30), || async {
            info_field(replica_port, "replication", "master_link_status")
                .filter(|s| s == "up")
                .map(|_| ())
        })
        .await;
        // A sentinel learns of the replica from the primary's INFO and of its peers from hello messages
        // (every 2 s); until all know both, a failover could not reach its quorum.
        crate::wait::until(
            "every sentinel knows the replica and the other sentinels",
            Duration::from_secs(30),
            || async {
                t.sentinels
                    .iter()
                    .all(|s| {
                        let m = sentinel_master(s.port);
                        field(&m, "num-slaves") == Some("1")
                            && field(&m, "num-other-sentinels")
                                == Some(&(SENTINELS - 1).to_string()[..])
                    })
                    .then_some(())
            },
        )
        .await;
        t
    }

    /// Port of the primary the topology started with.
    pub fn primary_port(&self) -> u16 {
        self.primary.port
    }

    /// Port of the replica (the primary after a failover).
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// `127.0.0.1:PORT` of each sentinel, as `redis.sentinels` takes them.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// Where the sentinels, the primary and the replica keep their files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Store options that reach the primary through these sentinels only (no credentials).
    pub fn sentinel_options(&self) -> SentinelOptions {
        SentinelOptions {
            hosts: self
                .sentinels
                .iter()
                .map(|s| ("127.0.0.1".to_owned(), s.port))
                .collect(),
            master_name: MASTER_NAME.into(),
            username: None,
            password: None,
        }
    }

    /// SIGKILLs the primary: no shutdown, no last replication of what it acknowledged.
    pub fn kill_primary(&mut self) {
        self.primary.kill();
    }

    /// Starts an empty redis-server again on the killed primary's port, as an operator (or Kubernetes)
    /// would; the sentinels turn it into a replica of the promoted one. Returns once the new primary counts
    /// it as an online replica, so `WAIT 1` can be satisfied again.
    ///
    /// # Panics
    /// When the port cannot be bound again or the replica is not online within `timeout`.
    pub async fn restart_old_primary(&mut self, timeout: Duration) {
        let port = self.primary.port;
        let node = spawn_at(self.dir.path(), "old-primary", port, |p, d| {
            data_node_args(p, d, None)
        });
        let Some(node) = node else {
            panic!("the old primary's port {port} cannot be bound again")
        };
        self.primary = node;
        let new_primary = self.replica.port;
        crate::wait::until(
            "the old primary is back as an online replica",
            timeout,
            || async {
                info_field(new_primary, "replication", "slave0")
                    .is_some_and(|s| s.contains("state=online"))
                    .then_some(())
            },
        )
        .await;
    }

    /// The primary's port as the first sentinel that answers names it (`SENTINEL get-master-addr-by-name`).
    pub fn current_primary(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            match command(
                s.port,
                &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
            )? {
                Reply::Array(a) => match a.get(1) {
                    Some(Reply::Bulk(Some(p))) => p.parse().ok(),
                    _ => None,
                },
                _ => None,
            }
        })
    }

    /// Waits until a sentinel names the replica as the primary and the replica reports `role:master`;
    /// returns how long that took.
    ///
    /// # Panics
    /// When the promotion does not happen within `timeout`.
    pub async fn wait_for_promotion(&self, timeout: Duration) -> Duration {
        let start = Instant::now();
        let replica = self.replica.port;
        crate::wait::until("the replica is promoted", timeout, || async {
            (self.current_primary() == Some(replica)
                && info_field(replica, "replication", "role").as_deref() == Some("master"))
            .then_some(())
        })
        .await;
        start.elapsed()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
        self.primary.kill();
        self.replica.kill();
    }
}

/// `SENTINEL master <name>` as field/value pairs (empty when the sentinel does not answer).
fn sentinel_master(port: u16) -> Vec<(String, String)> {
    let Some(Reply::Array(items)) = command(port, &["SENTINEL", "master", MASTER_NAME]) else {
        return Vec::new();
    };
    items
        .chunks(2)
        .filter_map(|kv| match kv {
            [Reply::Bulk(Some(k)), Reply::Bulk(Some(v))] => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sentinel_promotes_the_replica_when_the_primary_is_killed() {
        let mut t = Topology::start().await;
        assert_eq!(t.current_primary(), Some(t.primary_port()));
        t.kill_primary();
        let took = t
            .wait_for_promotion(Duration::from_millis(DOWN_AFTER_MS + 15_000))
            .await;
        assert_eq!(t.current_primary(), Some(t.replica_port()));
        eprintln!("promotion took {took:?} after the kill");
    }
}
