//! Connecting the store from settings.

use delivery_model::store::Store;

use crate::config::Settings;

/// Why a service (and `hookline-migrate`) refuses a Redis Cluster URL for now. The connection itself
/// works in cluster mode, but Hookline's multi-key Lua scripts span hash slots, which a cluster refuses
/// (`CROSSSLOT`) — or worse, some would work and others fail mid-pipeline. `docs/cluster.md` is the plan.
pub const CLUSTER_REFUSAL: &str = "cluster mode: the key layout is not yet slot-aware (issue #15)";

/// Connects to Redis as configured, failing fast when it cannot be reached or authenticated.
///
/// # Errors
/// A Redis Cluster URL ([`CLUSTER_REFUSAL`], before connecting); bad URL or Redis unreachable within
/// `redis.command_timeout_ms`.
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    if settings.redis.is_cluster() {
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
