//! A service process's pipes: spawning it with a cleared environment, the drain threads that read its
//! stdout and stderr line by line, and the [`Output`] they collect (the latest lines, and the addresses its
//! `listening` lines name).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::ServiceBin;

/// How many of the latest output lines each service keeps.
pub const LOG_LINES: usize = 500;

/// The `message` of the startup line that carries a listener's address.
const LISTENING: &str = "listening";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListenerKind {
    Api,
    Ops,
}

impl ListenerKind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(ListenerKind::Api),
            "ops" => Some(ListenerKind::Ops),
            _ => None,
        }
    }
}

/// What the drain threads collect. One per [`Service`](super::Service), kept across restarts.
#[derive(Default)]
pub(super) struct Output {
    pub(super) lines: VecDeque<String>,
    /// Bumped on every (re)start; a line from an older process never sets the current addresses.
    pub(super) generation: u64,
    pub(super) api: Option<SocketAddr>,
    pub(super) ops: Option<SocketAddr>,
}

impl Output {
    pub(super) fn push(&mut self, generation: u64, line: String) {
        if generation == self.generation
            && let Some((kind, addr)) = parse_listening(&line)
        {
            match kind {
                ListenerKind::Api => self.api = Some(addr),
                ListenerKind::Ops => self.ops = Some(addr),
            }
        }
        if self.lines.len() == LOG_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub(super) fn addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        match kind {
            ListenerKind::Api => self.api,
            ListenerKind::Ops => self.ops,
        }
    }
}

/// `{"message":"listening","addr":"127.0.0.1:41234","kind":"ops",…}` → (kind, addr).
fn parse_listening(line: &str) -> Option<(ListenerKind, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != LISTENING {
        return None;
    }
    let kind = ListenerKind::parse(v.get("kind")?.as_str()?)?;
    let addr = v.get("addr")?.as_str()?.parse().ok()?;
    Some((kind, addr))
}

// A poisoned lock only means a drain thread panicked; the lines it kept are still worth showing.
pub(super) fn lock(m: &Mutex<Output>) -> MutexGuard<'_, Output> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Spawns the process and one drain thread per pipe.
pub(super) fn spawn(
    bin: ServiceBin,
    path: &Path,
    env: &[(String, String)],
    output: &Arc<Mutex<Output>>,
    generation: u64,
) -> (Child, Vec<JoinHandle<()>>) {
    let mut cmd = Command::new(path);
    cmd.env_clear();
    if let Some(search) = std::env::var_os("PATH") {
        cmd.env("PATH", search);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut attempts = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            // A binary just written (a fresh build, or a test's script) can be briefly held open for writing by
            // a process forked meanwhile; that clears up at once.
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("spawn {} ({}): {e}", bin.name(), path.display()),
        }
    };
    let mut drains = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        drains.push(drain(out, "", output.clone(), generation));
    }
    if let Some(err) = child.stderr.take() {
        drains.push(drain(err, "stderr| ", output.clone(), generation));
    }
    (child, drains)
}

/// Reads `pipe` line by line into `output` until it closes.
fn drain(
    pipe: impl Read + Send + 'static,
    tag: &'static str,
    output: Arc<Mutex<Output>>,
    generation: u64,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let line = format!("{tag}{}", text.trim_end_matches(['\n', '\r']));
                    lock(&output).push(generation, line);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_lines() {
        let line = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","message":"listening","addr":"127.0.0.1:41234","service":"delivery-worker","kind":"ops"}"#;
        assert_eq!(
            parse_listening(line),
            Some((
                ListenerKind::Ops,
                "127.0.0.1:41234".parse().unwrap_or_else(|_| unreachable!())
            ))
        );
        assert_eq!(
            parse_listening(&line.replace(r#""ops""#, r#""api""#)).map(|p| p.0),
            Some(ListenerKind::Api)
        );
        assert_eq!(parse_listening(&line.replace("listening", "started")), None);
        assert_eq!(parse_listening("listening on 127.0.0.1:1"), None);
    }

    #[test]
    fn output_keeps_the_latest_lines_and_ignores_older_generations() {
        let mut out = Output::default();
        for i in 0..LOG_LINES + 10 {
            out.push(0, format!("line {i}"));
        }
        assert_eq!(out.lines.len(), LOG_LINES);
        assert_eq!(out.lines.front().map(String::as_str), Some("line 10"));
        out.generation = 1;
        out.push(
            0,
            r#"{"message":"listening","addr":"127.0.0.1:1","kind":"api"}"#.into(),
        );
        assert_eq!(out.api, None, "a line of the previous process");
        out.push(
            1,
            r#"{"message":"listening","addr":"127.0.0.1:2","kind":"api"}"#.into(),
        );
        assert_eq!(out.api.map(|a| a.port()), Some(2));
    }
}
