//! `[redis]` in cluster mode (issue #15): a `redis-cluster://` or `rediss-cluster://` URL selects it, with
//! more seed nodes as `?node=host:port` (see `delivery_model::store::cluster` for why the URL rather than a
//! separate mode key). Credentials and TLS are the standalone keys, checked in `redis_access.rs`.
//!
//! Refused with a cluster URL, naming the key: a database path or other query parameters in `redis.url`
//! (fred would ignore them), any Sentinel key (a cluster fails over by itself, and which of the two would
//! decide where to connect would be a guess), a `redis.cluster_shards` above the layout's maximum, and a
//! `redis.key_prefix` holding a brace (it would become every key's hash tag). Refused without one:
//! `redis.cluster_shards` other than 0 (it would silently do nothing on one node).

use delivery_model::keys::{DEFAULT_CLUSTER_SHARDS, MAX_CLUSTER_SHARDS};
use delivery_model::store::cluster;

use super::validate::invalid;
use super::{ConfigError, RedisSettings};

impl RedisSettings {
    /// Whether `redis.url` selects a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        cluster::is_cluster_url(&self.url)
    }

    /// The number of queue shards the store lays a cluster out with (`0` in the settings: the default).
    pub fn cluster_shards(&self) -> u16 {
        if self.cluster_shards == 0 {
            DEFAULT_CLUSTER_SHARDS
        } else {
            self.cluster_shards
        }
    }

    /// The cluster-mode checks; for other URLs only that no cluster key is set. Runs before the Sentinel
    /// checks, so that Sentinel keys with a cluster URL get this error rather than a complaint about the URL.
    pub(super) fn validate_cluster(&self) -> Result<(), ConfigError> {
        if !self.is_cluster() {
            if self.cluster_shards != 0 {
                return Err(invalid(
                    "redis.cluster_shards",
                    "applies only to a Redis Cluster URL (redis-cluster:// or rediss-cluster://); \
                     leave it 0 for a single node or Sentinel",
                ));
            }
            return Ok(());
        }
        if self.cluster_shards > MAX_CLUSTER_SHARDS {
            return Err(invalid(
                "redis.cluster_shards",
                format!("must be between 1 and {MAX_CLUSTER_SHARDS} (0: {DEFAULT_CLUSTER_SHARDS})"),
            ));
        }
        if self.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "redis.key_prefix",
                "must not contain '{' or '}' with a Redis Cluster URL: it would become the hash tag \
                 of every key",
            ));
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
        Ok(())
    }
}
