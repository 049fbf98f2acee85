//! Connecting the store from settings.

use delivery_model::store::Store;

use crate::config::Settings;

/// Connects to Redis as configured, failing fast when it cannot be reached or authenticated.
///
/// # Errors
/// Bad URL or Redis unreachable within `redis.command_timeout_ms`.
pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.store_options()).await?;
    Ok(store)
}
