//! A private Prometheus server for end-to-end tests: Debian's `prometheus` (2.42) on a free loopback port,
//! its TSDB in a temporary directory, scraping the targets the test names every second and evaluating the
//! rule files it names. Killed on drop.
//!
//! `make test` installs the package (`scripts/install-deps.sh`) and sets [`REQUIRE_ENV`], so a missing
//! binary fails there; elsewhere [`PrometheusServer::binary`] returns `None` and the test skips.
//!
//! ```no_run
//! # async fn demo(ops: std::net::SocketAddr) {
//! use test_support::prometheus::PrometheusServer;
//!
//! let Some(bin) = PrometheusServer::binary() else { return };
//! let prom = PrometheusServer::start(&bin, &[("delivery-worker", ops)], &[]).await;
//! prom.wait_targets_up(1).await;
//! let v = prom.query("sum(hookline_worker_in_flight)").await;
//! # }
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{http, redis::free_port, wait};

/// Set (to anything) when the test run must have Prometheus: `make test` sets it.
pub const REQUIRE_ENV: &str = "HOOKLINE_REQUIRE_PROMETHEUS";
/// The server binary, when not `prometheus` on `PATH`.
pub const BIN_ENV: &str = "HOOKLINE_PROMETHEUS_BIN";
/// How long the server may take to become ready, and targets to be scraped.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running Prometheus server.
pub struct PrometheusServer {
    child: Child,
    port: u16,
    /// Holds the configuration and the TSDB; removed on drop, after the process.
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// The server binary: [`BIN_ENV`] if set, else `prometheus` on `PATH`; `None` when there is none.
    pub fn binary() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(BIN_ENV) {
            return Some(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    }

    /// Whether this run must have Prometheus ([`REQUIRE_ENV`]).
    pub fn required() -> bool {
        std::env::var_os(REQUIRE_ENV).is_some()
    }

    /// The scrape configuration: one job per `(name, ops address)`, every second, and `rules`.
    pub fn config(targets: &[(&str, SocketAddr)], rules: &[PathBuf]) -> String {
        let mut c = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n",
        );
        if !rules.is_empty() {
            c.push_str("rule_files:\n");
            for r in rules {
                let _ = writeln!(c, "  - {:?}", r.display().to_string());
            }
        }
        c.push_str("scrape_configs:\n");
        for (job, addr) in targets {
            let _ = write!(
                c,
                "  - job_name: {job:?}\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"{addr}\"]\n"
            );
        }
        c
    }

    /// Starts `bin` scraping `targets` with `rules`, and waits until it is ready.
    ///
    /// # Panics
    /// When the configuration cannot be written, the server does not start, or it is not ready within
    /// [`WAIT`].
    pub async fn start(bin: &Path, targets: &[(&str, SocketAddr)], rules: &[PathBuf]) -> Self {
        let dir = crate::redis::new_dir();
        let config = dir.path().join("prometheus.yml");
        if let Err(e) = std::fs::write(&config, Self::config(targets, rules)) {
            panic!("write {}: {e}", config.display());
        }
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let ready = server.url("/-/ready");
        wait::until("prometheus is ready", WAIT, || async {
            let r = http::try_request("GET", &ready, &[], "").await.ok()?;
            (r.0 == 200).then_some(())
        })
        .await;
        server
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET path` of the HTTP API as JSON.
    ///
    /// # Panics
    /// When the server does not answer with JSON.
    pub async fn api(&self, path: &str) -> Value {
        let (_, _, body) = http::request("GET", &self.url(path), &[], "").await;
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e})"))
    }

    /// Evaluates `expr` now: `Ok(data)` (`resultType`, `result`) or `Err` with Prometheus's error.
    pub async fn try_query(&self, expr: &str) -> Result<Value, String> {
        let body = format!("query={}", form_encode(expr));
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        let (status, _, bytes) =
            http::try_request("POST", &self.url("/api/v1/query"), &headers, body)
                .await
                .map_err(|e| format!("{e:#}"))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{status}: {e}"))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!("{status}: {} {}", v["errorType"], v["error"]))
        }
    }

    /// The vector `expr` evaluates to now, as `(labels, value)` pairs.
    ///
    /// # Panics
    /// When the query fails or is not an instant vector.
    pub async fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let data = match self.try_query(expr).await {
            Ok(d) => d,
            Err(e) => panic!("query {expr}: {e}"),
        };
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let v = s["value"][1].as_str().and_then(|v| v.parse().ok());
                        (s["metric"].clone(), v.unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The single value of `expr` now, `None` while it is empty.
    ///
    /// # Panics
    /// As [`query`](Self::query), or when it holds more than one series.
    pub async fn value(&self, expr: &str) -> Option<f64> {
        let v = self.query(expr).await;
        assert!(v.len() <= 1, "{expr}: more than one series: {v:?}");
        v.first().map(|(_, x)| *x)
    }

    /// Waits until `n` targets are active and every one is up; returns their job names.
    ///
    /// # Panics
    /// When they are not within [`WAIT`] (the last `/api/v1/targets` answer is in the message).
    pub async fn wait_targets_up(&self, n: usize) -> Vec<String> {
        let targets = self.api("/api/v1/targets?state=active").await;
        let check = |t: &Value| {
            let active = t["data"]["activeTargets"].as_array()?;
            let up = active.len() == n && active.iter().all(|a| a["health"] == "up");
            up.then(|| {
                active
                    .iter()
                    .filter_map(|a| a["labels"]["job"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
        };
        if let Some(jobs) = check(&targets) {
            return jobs;
        }
        let what = format!("{n} scrape targets up (last seen: {targets})");
        wait::until(&what, WAIT, || async {
            check(&self.api("/api/v1/targets?state=active").await)
        })
        .await
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `application/x-www-form-urlencoded` encoding of a value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_everything_but_unreserved_characters() {
        assert_eq!(
            form_encode("sum(rate(x{a=\"b c\"}[1m]))"),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn the_config_names_one_job_per_target_and_the_rule_files() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9464));
        let c = PrometheusServer::config(&[("worker", addr)], &[PathBuf::from("/r/rules.yaml")]);
        assert!(c.contains("job_name: \"worker\""), "{c}");
        assert!(c.contains("targets: [\"127.0.0.1:9464\"]"), "{c}");
        assert!(c.contains("- \"/r/rules.yaml\""), "{c}");
    }
}
