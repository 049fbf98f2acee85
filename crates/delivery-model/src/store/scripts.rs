//! The Lua scripts behind every multi-key change, loaded by SHA and reloaded after a Redis restart.

use std::sync::LazyLock;

use fred::prelude::*;
use fred::types::{FromValue, Key, Value};

use crate::error::Result;

/// One script: its source and SHA-1.
pub(crate) struct Script {
    src: &'static str,
    sha: String,
}

impl Script {
    fn new(src: &'static str) -> Self {
        Self {
            src,
            sha: fred::util::sha1_hash(src),
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
        let v: Value = match client
            .evalsha(self.sha.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let _: String = client.script_load(self.src).await?;
                client.evalsha(self.sha.as_str(), keys, args).await?
            }
            r => r?,
        };
        Ok(v.convert()?)
    }
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!($file)));
    };
}

script!(CREATE_SUBSCRIPTION, "lua/create_subscription.lua");
script!(DELETE_SUBSCRIPTION, "lua/delete_subscription.lua");
script!(SET_SUBSCRIPTION_STATUS, "lua/set_subscription_status.lua");
script!(CHALLENGE_FAILED, "lua/challenge_failed.lua");
script!(FANOUT, "lua/fanout.lua");
script!(CREATE_DELIVERY, "lua/create_delivery.lua");
script!(BEGIN_ATTEMPTS, "lua/begin_attempts.lua");
script!(FINISH_ATTEMPTS, "lua/finish_attempts.lua");
script!(RENEW_LEASE, "lua/renew_lease.lua");
script!(PROMOTE_DUE, "lua/promote_due.lua");
script!(ROUTE_EXISTING, "lua/route_existing.lua");
script!(CIRCUIT_CHECK, "lua/circuit_check.lua");
script!(CLEANUP_FAIL_STALE, "lua/cleanup_fail_stale.lua");
script!(CLEANUP_LEASE_COMMIT, "lua/cleanup_lease_commit.lua");
script!(CLEANUP_LEASE_RELEASE, "lua/cleanup_lease_release.lua");
script!(CLEANUP_PRUNE_INDEX, "lua/cleanup_prune_index.lua");
script!(CLEANUP_DISCOVER_INDEXES, "lua/cleanup_discover_indexes.lua");
script!(CLEANUP_TRIM_STREAM, "lua/cleanup_trim_stream.lua");
script!(CREATE_ADDON, "lua/create_addon.lua");
script!(DELETE_ADDON, "lua/delete_addon.lua");
script!(LIST_ADDONS, "lua/list_addons.lua");
script!(INVOKE_ADDON, "lua/invoke_addon.lua");
script!(DELIVERY_CALLBACK, "lua/delivery_callback.lua");
script!(RETRY_DELIVERY, "lua/retry_delivery.lua");
script!(QUERY_DELIVERIES, "lua/query_deliveries.lua");
script!(PUT_QUOTA, "lua/put_quota.lua");
script!(DELETE_QUOTA, "lua/delete_quota.lua");
script!(
    CREATE_SUBSCRIPTION_QUOTA,
    "lua/create_subscription_quota.lua"
);
script!(RESEAL_SECRET, "lua/reseal_secret.lua");
script!(ROTATE_SECRET, "lua/rotate_secret.lua");
script!(IMPORT_SUBSCRIPTION, "lua/import_subscription.lua");
script!(IMPORT_DELIVERY, "lua/import_delivery.lua");
script!(IDEMPOTENCY_BEGIN, "lua/idempotency_begin.lua");
script!(IDEMPOTENCY_FINISH, "lua/idempotency_finish.lua");
script!(IDEMPOTENCY_RELEASE, "lua/idempotency_release.lua");
