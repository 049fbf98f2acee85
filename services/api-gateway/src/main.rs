//! The `api-gateway` binary: configuration, telemetry, Redis, listener, then [`api_gateway::run`] until
//! SIGTERM/SIGINT.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (settings, _telemetry) = service_common::startup::init("api-gateway")?;
    let token = service_common::shutdown::token();
    let store = service_common::redis::connect(&settings)
        .await
        .context("connecting to Redis")?;
    let listener = std::net::TcpListener::bind(settings.api.listen)
        .with_context(|| format!("binding api.listen {}", settings.api.listen))?;
    let local = listener.local_addr()?;
    // The e2e harness reads this line to learn the port.
    tracing::info!(addr = %local, kind = "api", "listening");
    let result = api_gateway::run(settings, store.clone(), listener, token).await;
    store.quit().await;
    result.map_err(Into::into)
}
