//! Which binary a [`Service`](super::Service) runs, and where it is found: `$HOOKLINE_BIN_DIR`, else the
//! target directory of the running test binary.

use std::path::{Path, PathBuf};

use super::output::ListenerKind;

/// The environment variable naming the directory that holds the binaries.
pub const BIN_DIR_ENV: &str = "HOOKLINE_BIN_DIR";

/// One of Hookline's four binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceBin {
    ApiGateway,
    EventConsumer,
    DeliveryWorker,
    Cleanup,
    /// `hookline-migrate` (run to exit, e.g. `--reencrypt-secrets`).
    Migrate,
}

impl ServiceBin {
    /// The binary's file name.
    pub fn name(self) -> &'static str {
        match self {
            ServiceBin::ApiGateway => "api-gateway",
            ServiceBin::EventConsumer => "event-consumer",
            ServiceBin::DeliveryWorker => "delivery-worker",
            ServiceBin::Cleanup => "cleanup",
            ServiceBin::Migrate => "hookline-migrate",
        }
    }

    /// The `kind` of the listener whose `listening` line means "started": the gateway's API listener, the
    /// others' ops (health and metrics) listener.
    pub(super) fn ready_kind(self) -> ListenerKind {
        match self {
            ServiceBin::ApiGateway => ListenerKind::Api,
            _ => ListenerKind::Ops,
        }
    }

    /// Where the binary is.
    ///
    /// # Panics
    /// When it has not been built (or `HOOKLINE_BIN_DIR` points elsewhere).
    pub fn path(self) -> PathBuf {
        match locate(&bin_dir(), self) {
            Ok(path) => path,
            Err(msg) => panic!("{msg}"),
        }
    }
}

/// The path of `bin` in `dir`, or why it is not there.
fn locate(dir: &Path, bin: ServiceBin) -> Result<PathBuf, String> {
    let path = dir.join(format!("{}{}", bin.name(), std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "service binary `{}` not found at {}: run `cargo build --workspace --bins` first \
             (or set {BIN_DIR_ENV} to the directory holding the binaries)",
            bin.name(),
            path.display(),
        ))
    }
}

/// The directory holding the service binaries: `$HOOKLINE_BIN_DIR`, else `target/<profile>/` derived from the
/// running test binary (which lives in `target/<profile>/deps/`).
///
/// # Panics
/// When the test binary's own path is unknown.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    #[expect(
        clippy::expect_used,
        reason = "test harness: the running test binary has a path"
    )]
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_build_command() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let err = locate(dir.path(), ServiceBin::ApiGateway)
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("`api-gateway`") && err.contains("cargo build --workspace --bins"),
            "{err}"
        );
        std::fs::write(dir.path().join("api-gateway"), "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            locate(dir.path(), ServiceBin::ApiGateway).ok(),
            Some(dir.path().join("api-gateway"))
        );
    }

    #[test]
    fn bin_dir_is_the_profile_dir_of_the_test_binary() {
        if std::env::var_os(BIN_DIR_ENV).is_some() {
            return;
        }
        let dir = bin_dir();
        assert_ne!(dir.file_name().and_then(|n| n.to_str()), Some("deps"));
        assert!(dir.join("deps").is_dir(), "{}", dir.display());
    }
}
