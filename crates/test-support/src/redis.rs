//! A private redis-server per test (never the machine's shared one on 6379): plain, TLS-only (certificates
//! made by [`crate::certs`]) or with ACL users only (the `default` user off).

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use delivery_model::store::{Secret, StoreOptions};

use crate::certs::{self, TlsFiles};

/// The ACL user that may do anything: the harness's probe and the test's own store and raw client.
pub const ADMIN_USER: &str = "harness-admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "harness-admin-pw";
/// The restricted ACL user the services run as on an [`Access::Acl`] server.
pub const ACL_USER: &str = "hookline";
/// Its password (given to the services through `redis.password_file`).
pub const ACL_PASSWORD: &str = "hookline-acl-pw-0123";

/// The minimal ACL rule Hookline's services and `hookline-migrate` need with the default key prefix and input
/// stream, exactly as `docs/operations.md` gives it (an e2e test checks that the two agree): its keys, the
/// input stream and read-only TMI's token revocations (`blacklist:token:*`, issue #16); reads, writes and streams but nothing dangerous; Lua scripts by EVALSHA with SCRIPT
/// LOAD; and what fred sends on each new connection (`INFO server` for the version, `CLIENT ID` for
/// blocking reads), plus PING.
pub const HOOKLINE_ACL_RULE: &str = "resetkeys ~webhook:* ~hookline:* ~addon:* ~tmi:events %R~blacklist:token:* \
     resetchannels -@all +@read +@write +@stream -@dangerous +evalsha +eval +script|load +ping +info +client|id +wait +role";

/// What a Redis Cluster adds to [`HOOKLINE_ACL_RULE`] (issue #15), as `docs/operations.md` gives it: exactly
/// what fred's cluster client sends besides the commands themselves (read in fred 10.1's source and checked
/// against `ACL LOG` by the cluster tests):
/// - `CLUSTER SLOTS` to learn (and, after `MOVED` or a lost node, relearn) which node serves which slot;
/// - `CLUSTER INFO` on every new connection, which fred refuses to use unless `cluster_state:ok`;
/// - `ASKING` before a command it retries on another node after an `ASK` redirection (a slot migrating).
///
/// Not `CLUSTER NODES`/`CLUSTER SHARDS` (fred discovers nodes with `CLUSTER SLOTS` only) and not `READONLY`
/// (sent only with fred's `replicas` feature: Hookline reads from masters).
///
/// And one key pattern: in the cluster layout Hookline's keys start with their hash tag (`{hl:c}…`,
/// `{hl:s3.11}…`, `docs/cluster.md`), which the standalone patterns do not match.
pub const CLUSTER_ACL_ADDITIONS: &str = "~{hl:* +cluster|slots +cluster|info +asking";

/// [`HOOKLINE_ACL_RULE`] followed by [`CLUSTER_ACL_ADDITIONS`]: the rule of the services' user on a cluster.
pub fn hookline_cluster_acl_rule() -> String {
    format!("{HOOKLINE_ACL_RULE} {CLUSTER_ACL_ADDITIONS}")
}

/// How a test server is reached.
#[derive(Clone, Debug)]
pub enum Access {
    /// Plain TCP, no authentication.
    Plain,
    /// TLS only (`--port 0 --tls-port N`); with `mutual`, clients must present a certificate
    /// (`--tls-auth-clients yes`). The harness itself talks to it over a unix socket in its directory.
    Tls { files: TlsFiles, mutual: bool },
    /// The `default` user is off; [`ADMIN_USER`] may do anything; [`ACL_USER`] is restricted by `rule`.
    Acl { rule: String },
}

/// A redis-server child process on a random loopback port. Killed (and its directory removed) on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    access: Access,
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
        Self::start_in(new_dir(), |_| Access::Plain)
    }

    /// A TLS-only server with certificates made for it ([`Self::tls_files`]); `mutual` requires a client
    /// certificate.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_tls(mutual: bool) -> Self {
        Self::start_in(new_dir(), |dir| Access::Tls {
            files: certs::generate(dir),
            mutual,
        })
    }

    /// A server whose `default` user is off, with [`ADMIN_USER`] and [`ACL_USER`] restricted by `rule`
    /// (an ACL rule: key patterns, command categories and commands).
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_acl(rule: &str) -> Self {
        Self::start_in(new_dir(), |dir| {
            write_file(&dir.join("redis.conf"), &acl_users_conf(rule));
            write_file(&dir.join("hookline.password"), &format!("{ACL_PASSWORD}\n"));
            Access::Acl {
                rule: rule.to_owned(),
            }
        })
    }

    fn start_in(dir: tempfile::TempDir, access: impl FnOnce(&Path) -> Access) -> Self {
        let access = access(dir.path());
        let mut s = Self {
            child: None,
            port: 0,
            dir,
            access,
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

    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// redis-server's arguments for this access and port.
    fn args(&self) -> Vec<OsString> {
        let dir = self.dir.path();
        let port = self.port.to_string();
        let mut args: Vec<OsString> = Vec::new();
        if matches!(self.access, Access::Acl { .. }) {
            // The config file must come first.
            args.push(dir.join("redis.conf").into());
        }
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        push(&["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        push(&["--dir", &dir.display().to_string()]);
        match &self.access {
            Access::Plain | Access::Acl { .. } => push(&["--port", &port]),
            Access::Tls { files, mutual } => {
                let socket = self.socket_path().display().to_string();
                push(&["--port", "0", "--tls-port", &port]);
                push(&["--tls-cert-file", &files.server_cert.display().to_string()]);
                push(&["--tls-key-file", &files.server_key.display().to_string()]);
                push(&["--tls-ca-cert-file", &files.ca.display().to_string()]);
                push(&["--tls-auth-clients", if *mutual { "yes" } else { "no" }]);
                push(&["--unixsocket", &socket, "--unixsocketperm", "700"]);
            }
        }
        args
    }

    /// Starts redis-server on `self.port` and waits until *this* process answers there (not another test's
    /// server that got the same port first).
    fn try_spawn(&mut self) -> bool {
        #[expect(
            clippy::expect_used,
            reason = "test harness: redis-server must be installed (make test installs it)"
        )]
        let mut child = Command::new("redis-server")
            .args(self.args())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed? `make test` installs it)");
        if self.wait_for_own_server(&mut child, Duration::from_secs(10)) {
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }

    /// Waits until the redis-server `child` answers: its `INFO server` names the child's process id. False
    /// when the child exits first (its port was taken) or another process answers there.
    fn wait_for_own_server(&self, child: &mut Child, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return false;
            }
            if let Some(pid) = self.probe_pid() {
                return pid == child.id();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The process id the server reports: over TCP, or the unix socket for a TLS-only server; as
    /// [`ADMIN_USER`] on an ACL server.
    fn probe_pid(&self) -> Option<u32> {
        let request = match self.access {
            Access::Acl { .. } => format!("AUTH {ADMIN_USER} {ADMIN_PASSWORD}\r\nINFO server\r\n"),
            _ => "INFO server\r\n".to_owned(),
        };
        let timeout = Some(Duration::from_secs(1));
        match self.access {
            Access::Tls { .. } => {
                let s = std::os::unix::net::UnixStream::connect(self.socket_path()).ok()?;
                s.set_read_timeout(timeout).ok()?;
                read_pid(s, &request)
            }
            _ => {
                let s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
                s.set_read_timeout(timeout).ok()?;
                read_pid(s, &request)
            }
        }
    }

    /// How the server is reached.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The certificates of a TLS server.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        match &self.access {
            Access::Tls { files, .. } => Some(files),
            _ => None,
        }
    }

    /// Store options for the test's own store: the URL, the CA (and client certificate) of a TLS server,
    /// [`ADMIN_USER`] on an ACL server.
    pub fn admin_options(&self) -> StoreOptions {
        let mut opts = StoreOptions::new(self.url());
        match &self.access {
            Access::Plain => {}
            Access::Tls { files, .. } => {
                opts.tls.ca_file = Some(files.ca.clone());
                opts.tls.client_cert_file = Some(files.client_cert.clone());
                opts.tls.client_key_file = Some(files.client_key.clone());
            }
            Access::Acl { .. } => {
                opts.username = Some(ADMIN_USER.to_owned());
                opts.password = Some(Secret::new(ADMIN_PASSWORD));
            }
        }
        opts
    }

    /// The `HOOKLINE__REDIS__*` settings a service needs to reach this server: the URL; a TLS server's CA
    /// (and client certificate when mutual); on an ACL server [`ACL_USER`] with its password in a file.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        let mut env = vec![("HOOKLINE__REDIS__URL".to_owned(), self.url())];
        match &self.access {
            Access::Plain => {}
            Access::Tls { files, mutual } => {
                env.push(("HOOKLINE__REDIS__TLS_CA_FILE".into(), path(&files.ca)));
                if *mutual {
                    env.push((
                        "HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE".into(),
                        path(&files.client_cert),
                    ));
                    env.push((
                        "HOOKLINE__REDIS__TLS_CLIENT_KEY_FILE".into(),
                        path(&files.client_key),
                    ));
                }
            }
            Access::Acl { .. } => {
                env.push(("HOOKLINE__REDIS__USERNAME".into(), ACL_USER.into()));
                let file = self.dir.path().join("hookline.password");
                env.push(("HOOKLINE__REDIS__PASSWORD_FILE".into(), path(&file)));
            }
        }
        env
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = match self.access {
            Access::Tls { .. } => "rediss",
            _ => "redis",
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
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

/// The users of an ACL server, as config-file lines: `default` off, [`ADMIN_USER`] with every right,
/// [`ACL_USER`] restricted by `rule`.
pub(crate) fn acl_users_conf(rule: &str) -> String {
    format!(
        "user default off\n\
         user {ADMIN_USER} on >{ADMIN_PASSWORD} ~* &* +@all\n\
         user {ACL_USER} on >{ACL_PASSWORD} {rule}\n"
    )
}

#[expect(clippy::expect_used, reason = "test harness")]
pub(crate) fn new_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[expect(clippy::expect_used, reason = "test harness")]
pub(crate) fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write redis-server file");
}

/// The process id a Redis server reports in answer to `request` (ending in `INFO server`), if one answers.
fn read_pid<S: std::io::Read + std::io::Write>(mut s: S, request: &str) -> Option<u32> {
    s.write_all(request.as_bytes()).ok()?;
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

/// The process id a plain Redis server on `127.0.0.1:port` reports, if one answers.
fn server_pid(port: u16) -> Option<u32> {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    read_pid(s, "INFO server\r\n")
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
            access: Access::Plain,
        };
        assert!(!b.try_spawn(), "the server answering is a's, not b's");
        assert!(b.child.is_none());
        assert_eq!(server_pid(a.port()), a.child.as_ref().map(Child::id));
    }
}
