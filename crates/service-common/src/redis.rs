//! Connecting the store from settings.

use delivery_model::store::Store;

use crate::config::Settings;

/// Connects to Redis as configured (one node, Sentinel, or a Redis Cluster: every binary's Redis paths are
/// slot-safe, issue #15), failing fast when it cannot be reached or authenticated.
///
/// # Errors
/// Bad URL or Redis unreachable within `redis.command_timeout_ms`.
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
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
