//! `[redis]` in cluster mode (issue #15): a `redis-cluster://` or `rediss-cluster://` URL selects it, with
//! more seed nodes as `?node=host:port` (see `delivery_model::store::cluster` for why the URL rather than a
//! separate mode key). Credentials and TLS are the standalone keys, checked in `redis_access.rs`.
//!
//! Refused with a cluster URL, naming the key: a database path or other query parameters in `redis.url`
//! (fred would ignore them), any Sentinel key (a cluster fails over by itself, and which of the two would
//! decide where to connect would be a guess), and `redis.wait_replicas` above 0 (`WAIT` cannot yet be sent
//! to the master that took the write).

use delivery_model::store::cluster;

use super::validate::invalid;
use super::{ConfigError, RedisSettings};

impl RedisSettings {
    /// Whether `redis.url` selects a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        cluster::is_cluster_url(&self.url)
    }

    /// The cluster-mode checks; nothing for other URLs. Runs before the Sentinel checks, so that Sentinel
    /// keys with a cluster URL get this error rather than a complaint about the URL.
    pub(super) fn validate_cluster(&self) -> Result<(), ConfigError> {
        if !self.is_cluster() {
            return Ok(());
        }
        if let Some(problem) = cluster::url_problem(&self.url) {
            return Err(invalid("redis.url", problem));
        }
        let sentinel_keys = [
            (
                "redis.sentinels",
                self.sentinels.iter().any(|s| !s.trim().is_empty()),
            ),
            (
                "redis.sentinel_master_name",
                !self.sentinel_master_name.is_empty(),
            ),
            (
                "redis.sentinel_username",
                !self.sentinel_username.is_empty(),
            ),
            (
                "redis.sentinel_password",
                !self.sentinel_password.is_empty(),
            ),
            (
                "redis.sentinel_password_file",
                !self.sentinel_password_file.is_empty(),
            ),
        ];
        if let Some((key, _)) = sentinel_keys.iter().find(|(_, set)| *set) {
            return Err(invalid(
                key,
                "Sentinel settings cannot be combined with a Redis Cluster URL (redis.url is \
                 redis-cluster:// or rediss-cluster://): a cluster fails over by itself; remove \
                 redis.sentinels and every redis.sentinel_* key",
            ));
        }
        if self.wait_replicas > 0 {
            return Err(invalid(
                "redis.wait_replicas",
                "must be 0 with a Redis Cluster URL for now: WAIT must reach the master that took \
                 the write (issue #15, docs/cluster.md)",
            ));
        }
        Ok(())
    }
}
