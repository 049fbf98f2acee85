//! `delivery-worker`: sends deliveries and verification challenges.

use anyhow::Context;
use delivery_model::keys::QUEUE_GROUP;
use service_common::{ops, shutdown, startup};

const SERVICE: &str = "delivery-worker";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (settings, _telemetry) = startup::init(SERVICE)?;
    let store = service_common::redis::connect(&settings)
        .await
        .context("connecting to Redis")?;
    store
        .ensure_queue_group()
        .await
        .context("creating the queue's consumer group")?;
    let token = shutdown::token();
    let registry = prometheus::Registry::new();
    let metrics = delivery_worker::metrics::Metrics::register(&registry)?;

    let listener = ops::bind(settings.ops.listen, SERVICE)
        .await
        .context("binding the ops listener")?;
    let ops_token = tokio_util::sync::CancellationToken::new();
    let ready = ops::group_ready(store.clone(), store.keys().queue_stream(), QUEUE_GROUP);
    let ops_task = tokio::spawn(ops::serve(listener, registry, ready, ops_token.clone()));

    delivery_worker::run(&settings, store.clone(), metrics, token).await?;
    // The ops listener outlives the drain so probes and scrapes keep working while in-flight work finishes.
    ops_token.cancel();
    let _ = ops_task.await;
    store.quit().await;
    tracing::info!("stopped");
    Ok(())
}
