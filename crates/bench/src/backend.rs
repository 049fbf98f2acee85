//! The Redis a stack runs on: one redis-server, or a Redis Cluster of several masters (issue #15). Either
//! way the stack sees a URL, the settings the services need on it, and the Redis processes whose CPU and
//! command counts a phase reads ([`RedisNode`]).

use anyhow::Context;
use test_support::cluster::Cluster;
use test_support::redis::RedisServer;
use test_support::resp::{self, Reply};

/// Which Redis a stack starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RedisSpec {
    /// One redis-server, as most deployments run.
    Single,
    /// A Redis Cluster of `masters` masters (at least 3, no replicas), the queue in `shards` queue shards
    /// (`redis.cluster_shards`).
    Cluster { masters: usize, shards: u16 },
}

/// One Redis process: the single node or a cluster master.
#[derive(Clone, Debug)]
pub(crate) struct RedisNode {
    /// `redis-server`, or `redis master <i>` on a cluster (in the harness's start order).
    pub(crate) name: String,
    /// Plain-text client port on loopback.
    pub(crate) port: u16,
    pub(crate) pid: u32,
}

/// A running Redis; its processes are killed on drop.
pub(crate) enum Backend {
    Single(RedisServer),
    Cluster(Cluster),
}

impl Backend {
    /// Starts what `spec` asks for and waits until it serves (on a cluster: every slot covered).
    ///
    /// # Panics
    /// When redis-server (or redis-cli for a cluster) is missing or does not come up (the harness's rule).
    pub(crate) fn start(spec: RedisSpec) -> Self {
        match spec {
            RedisSpec::Single => Self::Single(RedisServer::start()),
            RedisSpec::Cluster { masters, .. } => Self::Cluster(Cluster::start(masters, 0)),
        }
    }

    pub(crate) fn url(&self) -> String {
        match self {
            Self::Single(r) => r.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    /// The settings the services need beyond the URL: the shard count on a cluster. The key prefix stays
    /// the default (empty); the cluster has no ACL users, so nothing else is needed.
    pub(crate) fn extra_env(spec: RedisSpec) -> Vec<(String, String)> {
        match spec {
            RedisSpec::Single => Vec::new(),
            RedisSpec::Cluster { shards, .. } => {
                vec![("HOOKLINE__REDIS__CLUSTER_SHARDS".into(), shards.to_string())]
            }
        }
    }

    /// One command to the node on `port`; `None` when it does not answer.
    fn command(&self, port: u16, args: &[&str]) -> Option<Reply> {
        match self {
            Self::Single(_) => resp::command(port, args),
            Self::Cluster(c) => c.node_command(port, args),
        }
    }

    /// `INFO <section>` of the node on `port`.
    pub(crate) fn info(&self, port: u16, section: &str) -> Option<String> {
        match self.command(port, &["INFO", section])? {
            Reply::Bulk(Some(text)) => Some(text),
            _ => None,
        }
    }

    /// The Redis processes that serve data: the single node, or every master in start order.
    ///
    /// # Errors
    /// A node does not tell its process id.
    pub(crate) fn nodes(&self) -> anyhow::Result<Vec<RedisNode>> {
        let ports: Vec<(String, u16)> = match self {
            Self::Single(r) => vec![("redis-server".into(), r.port())],
            Self::Cluster(c) => c
                .master_ports()
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("redis master {}", i + 1), p))
                .collect(),
        };
        ports
            .into_iter()
            .map(|(name, port)| {
                let pid = self
                    .info(port, "server")
                    .as_deref()
                    .and_then(|i| info_field(i, "process_id"))
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("process_id of {name} (port {port})"))?;
                Ok(RedisNode { name, port, pid })
            })
            .collect()
    }

    /// Client port of the master serving `key` (the single node's port off a cluster).
    pub(crate) fn node_for_key(&self, key: &str) -> u16 {
        match self {
            Self::Single(r) => r.port(),
            Self::Cluster(c) => c.node_for_key(key),
        }
    }
}

/// The value of `name:` in an `INFO` text.
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Commands a node has executed (`INFO commandstats`: every command's `calls=`, commands run inside
/// scripts included), leaving out `INFO` itself: the benchmark's own probes.
pub(crate) fn command_calls(commandstats: &str) -> u64 {
    commandstats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            if name == "info" {
                return None;
            }
            rest.split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_calls_add_up_without_the_probes_info() {
        let text = "# Commandstats\r\n\
            cmdstat_xadd:calls=120,usec=400,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_evalsha:calls=30,usec=900,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_info:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_hset:calls=5,usec=5,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(command_calls(text), 155);
        assert_eq!(command_calls(""), 0);
    }

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let text = "# Server\r\nprocess_id:4242\r\nprocess_supervised:no\r\n";
        assert_eq!(info_field(text, "process_id"), Some("4242"));
        assert_eq!(info_field(text, "process"), None);
        assert_eq!(info_field(text, "missing"), None);
    }
}
