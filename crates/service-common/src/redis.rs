//! Connecting the store from settings.

use delivery_model::store::Store;

use crate::config::Settings;

/// Why a service (and `hookline-migrate`) refuses a Redis Cluster URL for now. The connection itself
/// works in cluster mode, but some of Hookline's multi-key Lua scripts still span hash slots, which a
/// cluster refuses (`CROSSSLOT`, or the `#!lua` shebang's cross-slot error). `docs/cluster.md` is the plan.
pub const CLUSTER_REFUSAL: &str = "cluster mode: the key layout is not yet slot-aware (issue #15)";

/// The services whose every Redis path is slot-safe and tested on a real cluster: they start on one.
/// A service joins this list only with its in-process tests running against `test_support::cluster`.
pub const CLUSTER_READY: &[&str] = &[
    "event-consumer",
    "delivery-worker",
    "cleanup",
    "api-gateway",
];

/// Connects to Redis as configured, failing fast when it cannot be reached or authenticated.
///
/// # Errors
/// A Redis Cluster URL ([`CLUSTER_REFUSAL`], before connecting); bad URL or Redis unreachable within
/// `redis.command_timeout_ms`.
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    connect_as("", settings).await
}

/// [`connect`] for `service`, which may start on a cluster when it is in [`CLUSTER_READY`].
///
/// # Errors
/// As [`connect`], except that a cluster-ready service connects to a cluster.
pub async fn connect_as(service: &str, settings: &Settings) -> anyhow::Result<Store> {
    if settings.redis.is_cluster() && !CLUSTER_READY.contains(&service) {
        anyhow::bail!(CLUSTER_REFUSAL);
    }
    let store = Store::connect(&settings.store_options()).await?;
    match store.secrets().current_id() {
        Some(id) => tracing::info!(
            current_key = id,
            "subscription secrets are encrypted at rest"
        ),
        None => tracing::warn!(
            "no [secret_keys] configured: subscription secrets are stored in Redis in plain text; \
             set secret_keys.current and secret_keys.keys (or keys_file) for production"
        ),
    }
    Ok(store)
}
