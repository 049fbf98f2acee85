//! A private redis-server per test (never the machine's shared one on 6379).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server child process on a random loopback port. Killed (and its directory removed) on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// Finds a free loopback TCP port.
///
/// # Panics
/// When no port can be bound (the machine is out of ports).
pub fn free_port() -> u16 {
    #[expect(clippy::expect_used, reason = "test harness: no port means no test")]
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    #[expect(clippy::expect_used, reason = "test harness")]
    l.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts a server without persistence and waits until it answers.
    ///
    /// # Panics
    /// When redis-server is not installed or does not come up within 10 s.
    pub fn start() -> Self {
        #[expect(clippy::expect_used, reason = "test harness")]
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self {
            child: None,
            port: 0,
            dir,
        };
        // A free port can be taken by another test's server between our probe and redis-server's bind
        // (tests run in parallel); then ours exits, and we try another port.
        for _ in 0..5 {
            s.port = free_port();
            if s.try_spawn() {
                return s;
            }
        }
        panic!("redis-server did not come up on any of 5 free ports");
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "redis-server did not come up on 127.0.0.1:{}",
            self.port
        );
    }

    /// Starts redis-server on `self.port` and waits until *this* process answers there (not another test's
    /// server that got the same port first).
    fn try_spawn(&mut self) -> bool {
        #[expect(
            clippy::expect_used,
            reason = "test harness: redis-server must be installed (make test installs it)"
        )]
        let mut child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed? `make test` installs it)");
        if wait_for_own_server(&mut child, self.port, Duration::from_secs(10)) {
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (all data is lost: it keeps nothing on disk).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts an empty one on the same port (a Redis restart without persistence).
    pub fn restart_empty(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the redis-server `child` answers on `127.0.0.1:port`: its `INFO server` names the child's
/// process id. False when the child exits first (its port was taken) or another process answers there.
pub(crate) fn wait_for_own_server(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if let Some(pid) = server_pid(port) {
            return pid == child.id();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The process id a Redis server on `127.0.0.1:port` reports, if one answers.
fn server_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(pid) = text
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(pid);
        }
    }
    None
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
///
/// # Panics
/// When nothing listens within `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_answered_by_another_server_is_not_taken_for_ours() {
        let a = RedisServer::start();
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let mut b = RedisServer {
            child: None,
            port: a.port(),
            dir,
        };
        assert!(!b.try_spawn(), "the server answering is a's, not b's");
        assert!(b.child.is_none());
        assert_eq!(server_pid(a.port()), a.child.as_ref().map(Child::id));
    }
}
