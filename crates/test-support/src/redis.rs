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
        let port = free_port();
        let mut s = Self {
            child: None,
            port,
            dir,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        #[expect(
            clippy::expect_used,
            reason = "test harness: redis-server must be installed (make test installs it)"
        )]
        let child = Command::new("redis-server")
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
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
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
