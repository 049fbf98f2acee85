//! Starting the cluster's processes: a node on free ports with the variant's arguments, and joining them
//! with `redis-cli --cluster create`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Cluster, ClusterTls, NODE_TIMEOUT_MS, Node, field};
use crate::redis::{ADMIN_PASSWORD, ADMIN_USER, free_port};
use crate::resp::Reply;

impl Cluster {
    /// Starts node `i` on free ports, trying others when a port is taken meanwhile.
    pub(super) fn spawn_node(&self, i: usize) -> Node {
        let node_dir = self.dir.path().join(format!("node{i}"));
        #[expect(clippy::expect_used, reason = "test harness")]
        std::fs::create_dir_all(&node_dir).expect("node dir");
        for _ in 0..5 {
            let port = free_port();
            // The bus port defaults to port + 10000, which may be taken or beyond 65535: pick one.
            let bus_port = free_port();
            let tls_port = self.tls.as_ref().map(|_| free_port());
            if bus_port == port || tls_port.is_some_and(|t| t == port || t == bus_port) {
                continue;
            }
            #[expect(
                clippy::expect_used,
                reason = "test harness: redis-server must be installed (make test installs it)"
            )]
            let mut child = Command::new("redis-server")
                .args(self.node_args(&node_dir, port, bus_port, tls_port))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            if self.wait_for_own_node(&mut child, port) {
                return Node {
                    child: Some(child),
                    port,
                    tls_port,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("cluster node {i} did not come up on any of 5 free ports");
    }

    fn node_args(&self, dir: &Path, port: u16, bus: u16, tls_port: Option<u16>) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        if self.opts.acl_rule.is_some() {
            // The config file must come first.
            a.push(self.dir.path().join("redis.conf").display().to_string());
        }
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
        push(&["--bind", "127.0.0.1", "--port", &port.to_string()]);
        push(&["--save", "", "--appendonly", "no"]);
        push(&["--dir", &dir.display().to_string()]);
        push(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ]);
        push(&["--cluster-port", &bus.to_string()]);
        push(&["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()]);
        push(&["--cluster-replica-validity-factor", "0"]);
        // Redis 7 delays a replica's first full sync by 5 s by default, waiting for more replicas.
        push(&["--repl-diskless-sync-delay", "0"]);
        if let (Some(files), Some(tls_port)) = (&self.tls, tls_port) {
            let path = |p: &Path| p.display().to_string();
            push(&["--tls-port", &tls_port.to_string()]);
            push(&["--tls-cert-file", &path(&files.server_cert)]);
            push(&["--tls-key-file", &path(&files.server_key)]);
            push(&["--tls-ca-cert-file", &path(&files.ca)]);
            let mutual = self.opts.tls == ClusterTls::Mutual;
            push(&["--tls-auth-clients", if mutual { "yes" } else { "no" }]);
            push(&["--tls-cluster", "yes", "--tls-replication", "yes"]);
            // Nodes connect to each other (bus, replication) as TLS clients: with a certificate made for
            // that, since the server certificate is not one a mutual-TLS peer accepts from a client.
            push(&["--tls-client-cert-file", &path(&files.client_cert)]);
            push(&["--tls-client-key-file", &path(&files.client_key)]);
        }
        a
    }

    /// Waits until the process `child` answers on `port`: its `INFO server` names the child's process id.
    fn wait_for_own_node(&self, child: &mut Child, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return false;
            }
            if let Some(Reply::Bulk(Some(info))) = self.probe(port, &["INFO", "server"]) {
                return field(&info, "process_id") == Some(child.id().to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `redis-cli --cluster create` over every node's plain port; the first `masters` it picks are masters.
    pub(super) fn create(&self) {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut cmd = self.redis_cli();
        cmd.arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args([
                "--cluster-replicas",
                &self.opts.replicas_per_master.to_string(),
            ])
            .arg("--cluster-yes");
        #[expect(
            clippy::expect_used,
            reason = "test harness: redis-cli must be installed"
        )]
        let out = cmd.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// redis-cli, authenticated as the admin on an ACL cluster (the password through the environment, so
    /// redis-cli does not warn about one on its command line).
    pub(super) fn redis_cli(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        if self.opts.acl_rule.is_some() {
            cmd.args(["--user", ADMIN_USER])
                .env("REDISCLI_AUTH", ADMIN_PASSWORD);
        }
        cmd
    }
}
