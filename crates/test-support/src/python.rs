//! Python scripts the tests run with their own pinned tools:
//!
//! - receiver-side verifiers: real deliveries checked with the libraries receivers use (`standardwebhooks`,
//!   `cryptography`), not with Hookline's own code — `.tools/receiver-venv`, set up by
//!   `scripts/receiver-tools.sh`;
//! - the console's browser test: Selenium driving Debian's headless Chromium — `.tools/browser-venv`, set
//!   up by `scripts/browser-tools.sh`.
//!
//! Each setup script is idempotent and runs once per test process. A script run here reads one JSON value
//! on stdin and prints one on stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The repository's root (this crate is `crates/test-support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs setup script `script` (relative to the repository root), which prints its venv's interpreter last.
fn setup(script: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join(script))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

/// The receiver venv's interpreter, installing it on first use.
///
/// # Panics
/// When the tools cannot be installed (no python3, no PyPI): the message says what the script printed.
pub fn receiver_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| setup("scripts/receiver-tools.sh"))
        .clone()
}

/// The browser venv's interpreter (Selenium), installing it and Chromium on first use.
///
/// # Panics
/// As [`receiver_python`].
pub fn browser_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| setup("scripts/browser-tools.sh"))
        .clone()
}

/// Runs verifier `script` (a path relative to the repository root) with `input` on stdin and returns the
/// JSON it prints. Blocking work runs off the async runtime, so in-process receivers keep answering.
///
/// # Panics
/// When the script fails or prints something that is not JSON.
pub async fn run_verifier(script: &str, input: &serde_json::Value) -> serde_json::Value {
    run_script(receiver_python(), script, input).await
}

/// Runs `script` with interpreter `python`, `input` on stdin; returns the JSON it prints (see
/// [`run_verifier`]). A failing script's stdout and stderr are in the panic message.
///
/// # Panics
/// As [`run_verifier`].
pub async fn run_script(
    python: PathBuf,
    script: &str,
    input: &serde_json::Value,
) -> serde_json::Value {
    let script = repo_root().join(script);
    let input = input.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = Command::new(python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("writing to {}: {e}", script.display()));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed: {stdout}{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{} printed {stdout:?}: {e}", script.display()))
    })
    .await
    .unwrap_or_else(|e| panic!("verifier task: {e}"))
}
