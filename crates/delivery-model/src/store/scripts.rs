//! The Lua scripts behind every multi-key change, loaded by SHA and reloaded after a Redis restart.
//!
//! Each script has two sources. On one node (standalone, Sentinel) it runs exactly as written, so its SHA
//! and behaviour are today's. On a Redis Cluster it runs with a `#!lua` shebang: a script without one may
//! touch any key of the node it runs on whatever its slot (Redis 7.0 fails only for a key on another node),
//! so a layout mistake would work or fail depending on where the slots sit; with the shebang any second
//! slot fails at once (`Script attempted to access keys that do not hash to the same slot`). The shebang
//! is not used on one node because it changes behaviour there: a shebang script without `allow-oom` is
//! refused as a whole while Redis is over `maxmemory`, even one that only reads or frees memory, where a
//! plain script is refused only at its first memory-growing command. Scripts whose every write frees
//! memory (deletes, trims) therefore carry `flags=allow-oom` in cluster mode, so cleanup can still relieve
//! a full node; the others are refused up front under OOM (on one node they fail at their first write).

use std::sync::LazyLock;

use fred::prelude::*;
use fred::types::{FromValue, Key, Value};

use crate::error::Result;

/// One script: its source and SHA-1 as written (one node) and with its shebang (cluster).
pub(crate) struct Script {
    plain: Source,
    cluster: Source,
}

struct Source {
    src: String,
    sha: String,
}

impl Source {
    fn new(src: String) -> Self {
        let sha = fred::util::sha1_hash(&src);
        Self { src, sha }
    }
}

impl Script {
    /// `flags`: the shebang's flags in cluster mode (`""` for none).
    fn new(src: &'static str, flags: &str) -> Self {
        let shebang = if flags.is_empty() {
            "#!lua".to_owned()
        } else {
            format!("#!lua flags={flags}")
        };
        Self {
            plain: Source::new(src.to_owned()),
            cluster: Source::new(format!("{shebang}\n{src}")),
        }
    }

    /// The source `client` runs: with the shebang on a cluster.
    fn source_for(&self, client: &Client) -> &Source {
        if client.is_clustered() {
            &self.cluster
        } else {
            &self.plain
        }
    }

    /// `EVALSHA`, loading the script first when Redis does not know it (first use, or after a restart).
    pub(crate) async fn run<R: FromValue>(
        &self,
        pool: &Pool,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R> {
        self.run_on(pool.next(), keys, args).await
    }

    /// [`run`](Self::run) on one chosen connection: a write followed by `WAIT` must use the connection that
    /// sent it (see [`AckWait`](super::AckWait)).
    pub(crate) async fn run_on<R: FromValue>(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R> {
        // Shared buffers: the retry after NOSCRIPT needs the arguments again, and cloning these costs a
        // reference count per argument instead of a copy of every payload.
        let keys: Vec<Key> = keys.into_iter().map(Key::from).collect();
        let args: Vec<Value> = args.into_iter().map(Value::from).collect();
        let source = self.source_for(client);
        let v: Value = match client
            .evalsha(source.sha.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                // On a cluster, every master: the shards and the control slot live on different ones.
                let _: String = client.script_load_cluster(source.src.as_str()).await?;
                client.evalsha(source.sha.as_str(), keys, args).await?
            }
            r => r?,
        };
        Ok(v.convert()?)
    }
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        script!($name, $file, "");
    };
    ($name:ident, $file:literal, $flags:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!($file), $flags));
    };
}

/// A script that uses shared Lua functions (`lua/lib/`), prepended to its source: one definition of the
/// circuit breaker and of endpoint health for the scripts that apply them beside an outcome (one node) and
/// those that apply them alone (cluster: `circuit_update`, `fold_outcomes`), of fair sharing for every
/// script that queues or leases a delivery's message, and of an add-on invocation's hourly and duplicate
/// checks for its one-node and cluster scripts.
macro_rules! with_lib {
    ($name:ident, [$($lib:literal),+], $file:literal) => {
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!($(include_str!($lib),)+ include_str!($file)), "")
        });
    };
}

/// The cluster flags of a script whose every write frees memory (see the module doc).
macro_rules! frees_memory {
    ($name:ident, $file:literal) => {
        script!($name, $file, "allow-oom");
    };
}

script!(CREATE_SUBSCRIPTION, "lua/create_subscription.lua");
script!(DELETE_SUBSCRIPTION, "lua/delete_subscription.lua");
script!(SET_SUBSCRIPTION_STATUS, "lua/set_subscription_status.lua");
script!(CHALLENGE_FAILED, "lua/challenge_failed.lua");
with_lib!(
    FANOUT,
    ["lua/lib/fair.lua", "lua/lib/lane.lua"],
    "lua/fanout.lua"
);
with_lib!(
    FANOUT_SHARD,
    ["lua/lib/fair.lua", "lua/lib/lane.lua"],
    "lua/fanout_shard.lua"
);
script!(CREATE_DELIVERY, "lua/create_delivery.lua");
with_lib!(
    BEGIN_ATTEMPTS,
    ["lua/lib/fair.lua"],
    "lua/begin_attempts.lua"
);
with_lib!(
    FINISH_ATTEMPTS,
    [
        "lua/lib/circuit.lua",
        "lua/lib/health.lua",
        "lua/lib/lane.lua"
    ],
    "lua/finish_attempts.lua"
);
with_lib!(
    CIRCUIT_UPDATE,
    ["lua/lib/circuit.lua"],
    "lua/circuit_update.lua"
);
with_lib!(
    FOLD_OUTCOMES,
    ["lua/lib/health.lua"],
    "lua/fold_outcomes.lua"
);
script!(RENEW_LEASE, "lua/renew_lease.lua");
with_lib!(PROMOTE_DUE, ["lua/lib/fair.lua"], "lua/promote_due.lua");
script!(ROUTE_EXISTING, "lua/route_existing.lua");
script!(ROUTE_EXISTING_SHARD, "lua/route_existing_shard.lua");
script!(CIRCUIT_CHECK, "lua/circuit_check.lua");
with_lib!(
    CLEANUP_FAIL_STALE,
    ["lua/lib/lane.lua"],
    "lua/cleanup_fail_stale.lua"
);
script!(CLEANUP_LEASE_COMMIT, "lua/cleanup_lease_commit.lua");
frees_memory!(CLEANUP_LEASE_RELEASE, "lua/cleanup_lease_release.lua");
frees_memory!(CLEANUP_PRUNE_INDEX, "lua/cleanup_prune_index.lua");
script!(CLEANUP_DISCOVER_INDEXES, "lua/cleanup_discover_indexes.lua");
frees_memory!(CLEANUP_TRIM_STREAM, "lua/cleanup_trim_stream.lua");
with_lib!(FAIR_SWEEP, ["lua/lib/fair.lua"], "lua/fair_sweep.lua");
with_lib!(LANE_SWEEP, ["lua/lib/lane.lua"], "lua/lane_sweep.lua");
with_lib!(LANE_SKIP, ["lua/lib/lane.lua"], "lua/lane_skip.lua");
with_lib!(
    LANE_INPUT_LOW,
    ["lua/lib/lane.lua"],
    "lua/lane_input_low.lua"
);
with_lib!(
    LANE_WATERMARK,
    ["lua/lib/lane.lua"],
    "lua/lane_watermark.lua"
);
script!(CREATE_ADDON, "lua/create_addon.lua");
frees_memory!(DELETE_ADDON, "lua/delete_addon.lua");
script!(LIST_ADDONS, "lua/list_addons.lua");
with_lib!(
    INVOKE_ADDON,
    ["lua/lib/invoke_window.lua"],
    "lua/invoke_addon.lua"
);
with_lib!(
    INVOKE_RESERVE,
    ["lua/lib/invoke_window.lua"],
    "lua/invoke_reserve.lua"
);
script!(ADDON_DELETE_MARK, "lua/addon_delete_mark.lua");
with_lib!(
    DELIVERY_CALLBACK,
    ["lua/lib/lane.lua"],
    "lua/delivery_callback.lua"
);
with_lib!(
    RETRY_DELIVERY,
    ["lua/lib/lane.lua"],
    "lua/retry_delivery.lua"
);
script!(REDRIVE_START, "lua/redrive_start.lua");
script!(REDRIVE_CANCEL, "lua/redrive_cancel.lua");
script!(REDRIVE_STEP, "lua/redrive_step.lua");
script!(STATS_ADD, "lua/stats_add.lua");
script!(FAIL_DISABLED_PENDING, "lua/fail_disabled_pending.lua");
script!(ENABLE_SUBSCRIPTION, "lua/enable_subscription.lua");
script!(LIMIT_ACQUIRE, "lua/limit_acquire.lua");
script!(LIMIT_RELEASE, "lua/limit_release.lua");
script!(LIMIT_WAKE, "lua/limit_wake.lua");
script!(SET_LIMITS, "lua/set_limits.lua");
script!(QUERY_DELIVERIES, "lua/query_deliveries.lua");
script!(INTERSECT_DELIVERIES, "lua/intersect_deliveries.lua");
script!(PUT_QUOTA, "lua/put_quota.lua");
frees_memory!(DELETE_QUOTA, "lua/delete_quota.lua");
script!(
    CREATE_SUBSCRIPTION_QUOTA,
    "lua/create_subscription_quota.lua"
);
script!(RESEAL_SECRET, "lua/reseal_secret.lua");
script!(ROTATE_SECRET, "lua/rotate_secret.lua");
script!(IMPORT_SUBSCRIPTION, "lua/import_subscription.lua");
script!(IMPORT_DELIVERY, "lua/import_delivery.lua");
script!(IMPORT_HASH, "lua/import_hash.lua");
script!(IMPORT_ZSET, "lua/import_zset.lua");
script!(IDEMPOTENCY_BEGIN, "lua/idempotency_begin.lua");
script!(IDEMPOTENCY_FINISH, "lua/idempotency_finish.lua");
frees_memory!(IDEMPOTENCY_RELEASE, "lua/idempotency_release.lua");
