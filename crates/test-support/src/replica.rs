//! A private replica of a test's [`RedisServer`]: `redis-server --replicaof 127.0.0.1 PORT` on a free
//! loopback port, killed on drop. For the loss-budget tests (`redis.wait_replicas`, Redis `WAIT`): with the
//! replica up, writes are confirmed; with it killed, `WAIT` times out.
//!
//! The Sentinel failover harness (issue #14) builds its own topology; this one is the smallest: one primary,
//! one replica, no failover.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::{RedisServer, free_port};
use crate::resp::{Reply, command};

/// A replica child process. Killed (and its directory removed) on drop.
pub struct ReplicaServer {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ReplicaServer {
    /// Starts a replica of `primary` and waits until its link to the primary is up (the initial sync done).
    ///
    /// # Panics
    /// When redis-server does not start or the link is not up within 10 s.
    pub fn start(primary: &RedisServer) -> Self {
        #[expect(clippy::expect_used, reason = "test harness")]
        let dir = tempfile::tempdir().expect("tempdir");
        // Redis 7 delays a diskless full sync by 5 s by default, waiting for more replicas to share it.
        assert!(
            command(
                primary.port(),
                &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]
            ) == Some(Reply::Simple("OK".into())),
            "could not configure the primary on 127.0.0.1:{}",
            primary.port()
        );
        for _ in 0..5 {
            let port = free_port();
            #[expect(
                clippy::expect_used,
                reason = "test harness: redis-server must be installed"
            )]
            let mut child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--replicaof", "127.0.0.1", &primary.port().to_string()])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            if wait_link_up(&mut child, port, Duration::from_secs(10))
                && wait_online(primary.port(), port, Duration::from_secs(10))
            {
                return Self {
                    child: Some(child),
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no replica of 127.0.0.1:{} came up", primary.port());
    }

    /// `redis://127.0.0.1:PORT` (read-only: a replica refuses writes).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the replica (SIGKILL): the primary sees its link drop at once.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ReplicaServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the replica on `port` (our `child`, still running) reports `master_link_status:up`.
fn wait_link_up(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if info_replication(port).is_some_and(|i| i.contains("master_link_status:up")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Waits until the primary on `primary` counts the replica on `port` as `online`: only online replicas
/// take part in `WAIT` (after a diskless sync the primary puts a replica online on its first ACK, a moment
/// after the replica itself reports its link up).
fn wait_online(primary: u16, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let wanted = format!("port={port},state=online");
    while Instant::now() < deadline {
        if info_replication(primary).is_some_and(|i| i.contains(&wanted)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `INFO replication` of the server on `127.0.0.1:port`, if one answers.
fn info_replication(port: u16) -> Option<String> {
    match command(port, &["INFO", "replication"])? {
        Reply::Bulk(Some(text)) => Some(text),
        _ => None,
    }
}
