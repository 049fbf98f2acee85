//! A private PostgreSQL server per test (for `hookline-migrate`'s tests against TMI's tables).
//!
//! The server binaries of Debian's `postgresql` package live in `/usr/lib/postgresql/<version>/bin`, not on
//! `PATH`; the newest version there is used (or the directory named by `HOOKLINE_PG_BIN`). `initdb` and the
//! server refuse to run as root, so as root both run as the `postgres` OS user (`runuser -u postgres --`) on a
//! temporary directory handed to that user. The server listens on a free loopback port and a socket in that
//! directory, with `fsync` off (test data), trusts local connections, and is stopped (`pg_ctl stop -m
//! immediate`) and its directory removed on drop.
//!
//! [`PostgresServer::start_with_tls`] starts one with `ssl=on` and the certificate and key it is given; with
//! [`PostgresTls::hostssl_only`], `pg_hba.conf` accepts TCP connections over TLS only (`hostssl`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::redis::{free_port, wait_for_port};

/// Environment variable naming the directory holding `initdb`, `pg_ctl` and `psql` (optional).
pub const PG_BIN_ENV: &str = "HOOKLINE_PG_BIN";
/// The OS user the server runs as when the tests run as root.
const PG_OS_USER: &str = "postgres";
/// The database role and database the tests use.
pub const PG_USER: &str = "postgres";

/// TLS for [`PostgresServer::start_with_tls`].
pub struct PostgresTls {
    /// The server's certificate chain (PEM), leaf first.
    pub cert_pem: String,
    /// The server certificate's private key (PEM).
    pub key_pem: String,
    /// Refuse plaintext TCP connections: `pg_hba.conf` has `hostssl` lines only (local socket: trust).
    pub hostssl_only: bool,
}

/// A running PostgreSQL server. Stopped and removed on drop.
pub struct PostgresServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Whether commands run as [`PG_OS_USER`] (the tests run as root).
    as_postgres: bool,
    running: bool,
}

/// The directory holding PostgreSQL's server binaries: `$HOOKLINE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` with an `initdb`.
///
/// # Panics
/// When none is found (`make test` installs the `postgresql` package).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server found in /usr/lib/postgresql/*/bin (install the `postgresql` package: \
             `make deps` does) or set {PG_BIN_ENV}"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PostgresServer {
    /// Creates a cluster in a temporary directory, starts it on a free loopback port and waits until it
    /// accepts connections.
    ///
    /// # Panics
    /// When PostgreSQL is not installed, or `initdb` or the server fails (its output is in the message).
    pub fn start() -> Self {
        Self::start_inner(None, free_port())
    }

    /// As [`PostgresServer::start`], with `ssl=on` and `tls`'s certificate and key (and `pg_hba.conf` as it
    /// says).
    ///
    /// # Panics
    /// As [`PostgresServer::start`]; also when the certificate files cannot be written.
    pub fn start_with_tls(tls: &PostgresTls) -> Self {
        Self::start_inner(Some(tls), free_port())
    }

    /// Starts on `port`, or on another free port when `port` turns out to be taken.
    fn start_inner(tls: Option<&PostgresTls>, port: u16) -> Self {
        let bin = bin_dir();
        #[expect(clippy::expect_used, reason = "test harness")]
        let dir = tempfile::tempdir().expect("tempdir");
        let as_postgres = is_root();
        let mut server = Self {
            bin,
            dir,
            port,
            as_postgres,
            running: false,
        };
        if as_postgres {
            // The directory is root's 0700 temp dir: hand it to the server's user.
            let chown = Command::new("chown")
                .arg("-R")
                .arg(format!("{PG_OS_USER}:"))
                .arg(server.dir.path())
                .status();
            assert!(
                chown.is_ok_and(|s| s.success()),
                "chown the server directory to {PG_OS_USER}"
            );
        }
        let data = server.data_dir().display().to_string();
        let initdb = server.bin.join("initdb").display().to_string();
        server.checked(
            &initdb,
            &[
                "-D".into(),
                data.clone(),
                "-U".into(),
                PG_USER.into(),
                "-A".into(),
                "trust".into(),
                "-E".into(),
                "UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
            ],
        );
        let mut tls_options = String::new();
        if let Some(tls) = tls {
            server.write_tls_files(tls);
            // Relative paths are relative to the data directory.
            tls_options
                .push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        // `pg_ctl -w` waits on the server's own socket directory, so a started server is ours. Parallel tests
        // can still pick the same free port: the loser fails to bind and tries another port.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off{tls_options}",
                server.port,
                server.dir.path().display()
            );
            match server.pg_ctl_start(&data, options) {
                Ok(()) => break,
                Err(log) if attempts < 5 && log.contains("could not bind") => {
                    server.port = free_port();
                }
                Err(log) => panic!("pg_ctl start failed:\n{log}"),
            }
        }
        server.running = true;
        wait_for_port(server.port, Duration::from_secs(10));
        server
    }

    /// Writes `server.crt`, `server.key` (mode 0600, as the server demands) and, for `hostssl_only`,
    /// `pg_hba.conf` into the data directory, owned by the server's OS user.
    fn write_tls_files(&self, tls: &PostgresTls) {
        use std::os::unix::fs::PermissionsExt as _;

        let data = self.data_dir();
        let mut files = vec![
            ("server.crt", tls.cert_pem.clone()),
            ("server.key", tls.key_pem.clone()),
        ];
        if tls.hostssl_only {
            files.push((
                "pg_hba.conf",
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n".to_owned(),
            ));
        }
        for (name, text) in files {
            let path = data.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
            if self.as_postgres {
                let chown = Command::new("chown")
                    .arg(format!("{PG_OS_USER}:"))
                    .arg(&path)
                    .status();
                assert!(
                    chown.is_ok_and(|s| s.success()),
                    "chown {} to {PG_OS_USER}",
                    path.display()
                );
            }
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program args…`, as the server's OS user when running as root.
    fn command(&self, program: &str, args: &[String]) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_OS_USER, "--", program]);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// `pg_ctl start`, waiting until the server accepts connections; on failure, pg_ctl's output and the
    /// server log (which a port conflict fills with "could not bind").
    fn pg_ctl_start(&self, data: &str, options: String) -> Result<(), String> {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let log_path = self.dir.path().join("server.log");
        let args = [
            "-D".into(),
            data.to_owned(),
            "-l".into(),
            log_path.display().to_string(),
            "-o".into(),
            options,
            "-w".into(),
            "-t".into(),
            "30".into(),
            "start".into(),
        ];
        let result = self.run(&pg_ctl, &args).map(drop);
        if result.is_err() {
            // A fresh log per attempt, so the next failure is not mistaken for this one.
            let _ = std::fs::remove_file(&log_path);
        }
        result
    }

    /// `program args…`; on failure, what it printed and the server log.
    fn run(&self, program: &str, args: &[String]) -> Result<Output, String> {
        let out = self
            .command(program, args)
            .output()
            .map_err(|e| format!("run {program}: {e}"))?;
        if out.status.success() {
            return Ok(out);
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        Err(format!(
            "{program} {args:?} failed ({}):\n{}\n{}\nserver log:\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    fn checked(&self, program: &str, args: &[String]) -> Output {
        self.run(program, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication: no password).
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{PG_USER}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `sql` with `psql` (stopping at the first error) and returns its unaligned, tuples-only output.
    ///
    /// # Panics
    /// When `psql` fails (its output is in the message).
    pub fn psql(&self, sql: &str) -> String {
        let psql = self.bin.join("psql").display().to_string();
        let out = self.checked(
            &psql,
            &[
                "-X".into(),
                "-q".into(),
                "-A".into(),
                "-t".into(),
                "-v".into(),
                "ON_ERROR_STOP=1".into(),
                "-d".into(),
                self.url(),
                "-c".into(),
                sql.into(),
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server at once (no checkpoint: the data is thrown away).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.data_dir().display().to_string();
        let _ = self
            .command(
                &pg_ctl,
                &[
                    "-D".into(),
                    data,
                    "-m".into(),
                    "immediate".into(),
                    "-w".into(),
                    "stop".into(),
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_makes_the_server_move_to_another() {
        let Ok(taken) = std::net::TcpListener::bind("127.0.0.1:0") else {
            panic!("bind a loopback port")
        };
        let Ok(addr) = taken.local_addr() else {
            panic!("local addr")
        };
        let server = PostgresServer::start_inner(None, addr.port());
        assert_ne!(server.port(), addr.port(), "the taken port is not ours");
        assert!(
            server.psql("SELECT 1").contains('1'),
            "the server on the new port answers"
        );
    }
}
