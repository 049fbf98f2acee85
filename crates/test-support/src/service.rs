//! Runs the real service binaries as child processes, for end-to-end tests.
//!
//! Only separate processes sharing nothing but Redis show what users see: `kill -9`, restarts, two workers
//! racing. Each [`Service`] is spawned with a cleared environment (only `PATH` is kept) plus the test's
//! variables, JSON logs and port 0 listeners; [`Service::start`] returns once the service has logged its
//! `listening` line, whose address the test then uses.
//!
//! A drain thread per pipe keeps the last [`LOG_LINES`] lines of stdout and stderr. When a test panics while
//! a service is alive, the service's lines are printed on drop, so a CI failure shows what the service said.
//! A service still running on drop is killed with SIGKILL.
//!
//! The binaries are not built by `cargo test` for another package: run `cargo build --workspace --bins` first.
//! They are looked up in `HOOKLINE_BIN_DIR` if set, else in the target directory of the running test binary.
//!
//! ```no_run
//! # async fn demo(redis_url: String) {
//! use test_support::service::{Service, ServiceBin};
//!
//! let env = vec![("HOOKLINE__REDIS__URL".to_owned(), redis_url)];
//! let mut worker = Service::start(ServiceBin::DeliveryWorker, &env).await;
//! let health = format!("http://{}/healthz", worker.ops_addr());
//! worker.kill9();
//! worker.restart().await;
//! # }
//! ```
//!
//! - `bin`: the [`ServiceBin`]s and where their executables are.
//! - `output`: spawning the process and draining its pipes into the kept lines and listener addresses.
//! - this module: the [`Service`] handle (start, restart, signals, logs).

mod bin;
mod output;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use bin::{BIN_DIR_ENV, ServiceBin, bin_dir};
pub use output::LOG_LINES;
use output::{ListenerKind, Output, lock, spawn};

/// How long [`Service::start`] waits for the `listening` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Service::terminate`] waits for a graceful exit.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running (or stopped) service process. Killed with SIGKILL on drop if still running.
pub struct Service {
    bin: ServiceBin,
    /// The executable, resolved once at start.
    path: PathBuf,
    /// The full environment given to the process (besides `PATH`), reused by [`restart`](Self::restart).
    env: Vec<(String, String)>,
    child: Child,
    /// Set once the process has been reaped.
    exit: Option<ExitStatus>,
    output: Arc<Mutex<Output>>,
    /// The drain threads of the current process; they end when its pipes close.
    drains: Vec<JoinHandle<()>>,
}

impl Service {
    /// Spawns `bin` with a cleared environment (only `PATH` kept) plus `env`, and waits until it logs that it
    /// is listening.
    ///
    /// Added unless `env` sets them: `HOOKLINE__OPS__LISTEN=127.0.0.1:0`, `HOOKLINE__API__LISTEN=127.0.0.1:0`
    /// and `HOSTNAME=<binary name>-<random>` (the stream consumer name). Always set:
    /// `HOOKLINE__TELEMETRY__LOG_FORMAT=json`, because the startup line is read as JSON.
    ///
    /// # Panics
    /// When the binary is missing or cannot be spawned, or exits or stays silent for [`START_TIMEOUT`] before
    /// logging its `listening` line (the captured output is in the message).
    pub async fn start(bin: ServiceBin, env: &[(String, String)]) -> Self {
        Self::start_at(bin, bin.path(), env).await
    }

    /// [`start`](Self::start) with the executable at `path` (the harness's own tests run scripts).
    async fn start_at(bin: ServiceBin, path: PathBuf, env: &[(String, String)]) -> Self {
        let mut full: Vec<(String, String)> = vec![
            ("HOOKLINE__OPS__LISTEN".into(), "127.0.0.1:0".into()),
            ("HOOKLINE__API__LISTEN".into(), "127.0.0.1:0".into()),
            (
                "HOSTNAME".into(),
                format!(
                    "{}-{}",
                    bin.name(),
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ),
            ),
        ];
        for (k, v) in env {
            match full.iter_mut().find(|(fk, _)| fk == k) {
                Some(slot) => slot.1 = v.clone(),
                None => full.push((k.clone(), v.clone())),
            }
        }
        full.retain(|(k, _)| k != "HOOKLINE__TELEMETRY__LOG_FORMAT");
        full.push(("HOOKLINE__TELEMETRY__LOG_FORMAT".into(), "json".into()));

        let output = Arc::new(Mutex::new(Output::default()));
        let (child, drains) = spawn(bin, &path, &full, &output, 0);
        let mut service = Self {
            bin,
            path,
            env: full,
            child,
            exit: None,
            output,
            drains,
        };
        service.wait_listening().await;
        service
    }

    /// Stops the process if it is running (SIGTERM, see [`terminate`](Self::terminate)) and starts it again
    /// with the same environment (same consumer name), waiting for its new `listening` line. Addresses are
    /// those of the new process afterwards; the log keeps the old lines.
    ///
    /// # Panics
    /// As [`start`](Self::start) and [`terminate`](Self::terminate).
    pub async fn restart(&mut self) {
        if self.is_running() {
            self.terminate().await;
        }
        let generation = {
            let mut out = lock(&self.output);
            out.generation += 1;
            out.api = None;
            out.ops = None;
            out.lines
                .push_back(format!("---- {} restarted ----", self.bin.name()));
            out.generation
        };
        let (child, drains) = spawn(self.bin, &self.path, &self.env, &self.output, generation);
        self.child = child;
        self.drains = drains;
        self.exit = None;
        self.wait_listening().await;
    }

    async fn wait_listening(&mut self) {
        let kind = self.bin.ready_kind();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if lock(&self.output).addr(kind).is_some() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                self.join_drains(Duration::from_secs(2)).await;
                panic!(
                    "{} exited with {status} before listening:\n{}",
                    self.bin.name(),
                    self.logs().join("\n")
                );
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} logged no {kind:?} `listening` line within {START_TIMEOUT:?}:\n{}",
                    self.bin.name(),
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn bin(&self) -> ServiceBin {
        self.bin
    }

    /// The environment the process got (besides `PATH`).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The API listener's address (api-gateway).
    ///
    /// # Panics
    /// When the current process has not logged an `api` listening line.
    pub fn api_addr(&self) -> SocketAddr {
        self.addr(ListenerKind::Api)
    }

    /// The ops (health and metrics) listener's address.
    ///
    /// # Panics
    /// When the current process has not logged an `ops` listening line.
    pub fn ops_addr(&self) -> SocketAddr {
        self.addr(ListenerKind::Ops)
    }

    /// `http://<api_addr><path>`.
    ///
    /// # Panics
    /// As [`api_addr`](Self::api_addr).
    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api_addr())
    }

    /// `http://<ops_addr><path>`.
    ///
    /// # Panics
    /// As [`ops_addr`](Self::ops_addr).
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr())
    }

    /// The value of one sample of the service's `/metrics`, e.g.
    /// `hookline_cleanup_items_total{action="stale_failed"}` (0 when absent).
    ///
    /// # Panics
    /// The ops listener does not answer 200.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (status, _, body) =
            crate::http::request("GET", &self.ops_url("/metrics"), &[], "").await;
        assert_eq!(status, 200, "GET /metrics");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn addr(&self, kind: ListenerKind) -> SocketAddr {
        match lock(&self.output).addr(kind) {
            Some(a) => a,
            None => panic!(
                "{} has logged no {kind:?} listening line:\n{}",
                self.bin.name(),
                self.logs().join("\n")
            ),
        }
    }

    /// The process id of the current process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the current process is still running.
    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit
    }

    /// Sends SIGTERM (graceful shutdown) without waiting.
    ///
    /// # Panics
    /// When the `kill` command cannot be run.
    pub fn sigterm(&mut self) {
        if self.poll_exit().is_some() {
            return;
        }
        // The workspace forbids unsafe code, so no libc::kill: the `kill` utility sends the signal.
        #[expect(
            clippy::expect_used,
            reason = "test harness: `kill` is part of every Unix base system"
        )]
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run `kill -TERM`");
        // `kill` fails only if the process is already gone, which poll_exit then reports.
        let _ = status;
    }

    /// Sends SIGTERM and waits for the process to exit.
    ///
    /// # Panics
    /// When it does not exit within [`TERMINATE_TIMEOUT`] (it is then killed, and its output is in the message).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        match self.wait_exit(TERMINATE_TIMEOUT).await {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM:\n{}",
                    self.bin.name(),
                    self.logs().join("\n")
                );
            }
        }
    }

    /// Kills the process with SIGKILL (no cleanup, no graceful drain) and reaps it.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        if self.poll_exit().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running. After an exit, also waits
    /// (briefly) for the drain threads, so [`logs`](Self::logs) holds the process's last lines.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll_exit() {
                self.join_drains(Duration::from_secs(2)).await;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn join_drains(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.drains.iter().any(|d| !d.is_finished()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The latest [`LOG_LINES`] lines of stdout and stderr (stderr lines start with `stderr| `), across restarts.
    pub fn logs(&self) -> Vec<String> {
        lock(&self.output).lines.iter().cloned().collect()
    }

    /// Waits until a kept log line contains `needle` and returns it.
    ///
    /// # Panics
    /// When no such line appears within `timeout` (the output is in the message).
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = lock(&self.output).lines.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} logged no line containing {needle:?} within {timeout:?}:\n{}",
                    self.bin.name(),
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.poll_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let lines = self.logs();
            eprintln!(
                "---- {} (pid {}): last {} output lines ----\n{}\n---- end of {} output ----",
                self.bin.name(),
                self.child.id(),
                lines.len(),
                lines.join("\n"),
                self.bin.name()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A stand-in service: logs its listening line (with a fresh port per process) and what it sees of its
    /// environment, then runs until SIGTERM, on which it logs and exits with 3.
    const FAKE: &str = r#"#!/bin/sh
echo "{\"level\":\"INFO\",\"message\":\"listening\",\"addr\":\"127.0.0.1:$(( $$ % 60000 + 1 ))\",\"kind\":\"ops\",\"host\":\"$HOSTNAME\",\"home\":\"${HOME:-unset}\",\"fmt\":\"$HOOKLINE__TELEMETRY__LOG_FORMAT\",\"ops\":\"$HOOKLINE__OPS__LISTEN\",\"x\":\"$X\"}"
echo "a warning" >&2
trap 'echo "{\"message\":\"shutdown complete\"}"; exit 3' TERM
while true; do sleep 0.05; done
"#;

    fn script(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("write script: {e}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod: {e}"));
        path
    }

    fn field(line: &str, key: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        v[key].as_str().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn runs_a_process_with_a_cleared_environment_and_reads_its_address() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = script(&dir, "delivery-worker", FAKE);
        let env = [
            ("X".to_owned(), "given".to_owned()),
            (
                "HOOKLINE__TELEMETRY__LOG_FORMAT".to_owned(),
                "human".to_owned(),
            ),
        ];
        let mut svc = Service::start_at(ServiceBin::DeliveryWorker, path, &env).await;
        // stdout and stderr are drained by separate threads: their lines interleave in any order.
        let first = svc
            .logs()
            .into_iter()
            .find(|l| !l.starts_with("stderr| "))
            .unwrap_or_default();
        assert_eq!(
            u32::from(svc.ops_addr().port()),
            svc.pid() % 60000 + 1,
            "the address of the line"
        );
        assert_eq!(
            field(&first, "home"),
            "unset",
            "environment not cleared: {first}"
        );
        assert_eq!(field(&first, "x"), "given");
        assert_eq!(field(&first, "fmt"), "json", "JSON logs are forced");
        assert_eq!(field(&first, "ops"), "127.0.0.1:0");
        let host = field(&first, "host");
        assert!(
            host.starts_with("delivery-worker-") && host.len() > "delivery-worker-".len(),
            "{host}"
        );
        svc.wait_for_log("stderr| a warning", Duration::from_secs(5))
            .await;

        // Graceful stop, then a restart with the same environment (same consumer name) and a new address.
        let old_pid = svc.pid();
        let status = svc.terminate().await;
        assert_eq!(status.code(), Some(3));
        assert!(
            svc.logs().iter().any(|l| l.contains("shutdown complete")),
            "{:?}",
            svc.logs()
        );
        svc.restart().await;
        assert_ne!(svc.pid(), old_pid);
        assert_eq!(
            u32::from(svc.ops_addr().port()),
            svc.pid() % 60000 + 1,
            "the new process's address"
        );
        let last = svc
            .logs()
            .into_iter()
            .rev()
            .find(|l| l.contains("listening"))
            .unwrap_or_default();
        assert_eq!(field(&last, "host"), host);

        // kill -9: no shutdown line, a signal instead of an exit code.
        let before = svc
            .logs()
            .iter()
            .filter(|l| l.contains("shutdown complete"))
            .count();
        let status = svc.kill9();
        assert!(status.is_some_and(|s| s.code().is_none()), "{status:?}");
        assert!(!svc.is_running());
        assert_eq!(svc.wait_exit(Duration::from_millis(10)).await, status);
        assert_eq!(
            svc.logs()
                .iter()
                .filter(|l| l.contains("shutdown complete"))
                .count(),
            before
        );
    }

    #[tokio::test]
    async fn start_panics_with_the_output_when_the_process_dies_early() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = script(&dir, "cleanup", "#!/bin/sh\necho bad config >&2\nexit 2\n");
        let started = tokio::spawn(Service::start_at(ServiceBin::Cleanup, path, &[]));
        let err = started
            .await
            .err()
            .unwrap_or_else(|| panic!("start must fail"));
        let msg = err.into_panic();
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("exited with") && msg.contains("stderr| bad config"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn kills_the_process_on_drop() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = script(&dir, "event-consumer", FAKE);
        let svc = Service::start_at(ServiceBin::EventConsumer, path, &[]).await;
        let pid = svc.pid().to_string();
        drop(svc);
        // Reaped on drop, so the pid is gone (not a zombie): `kill -0` fails.
        let alive = Command::new("kill")
            .args(["-0", &pid])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success());
        assert_eq!(alive.ok(), Some(false));
    }
}
