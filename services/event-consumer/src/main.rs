//! `event-consumer`: reads `tmi:events`, matches each event to subscriptions and creates deliveries.

use anyhow::Context;
use delivery_model::keys::EVENTS_GROUP;
use service_common::{ops, shutdown, startup};

const SERVICE: &str = "event-consumer";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (settings, _telemetry) = startup::init(SERVICE)?;
    let store = service_common::redis::connect(&settings)
        .await
        .context("connecting to Redis")?;
    store
        .ensure_events_group(&settings.consumer.group_start_id)
        .await
        .context("creating the input stream's consumer group")?;
    let token = shutdown::token();
    let registry = prometheus::Registry::new();
    let metrics = event_consumer::metrics::Metrics::register(&registry)?;

    let listener = ops::bind(settings.ops.listen, SERVICE)
        .await
        .context("binding the ops listener")?;
    let ready = ops::group_ready(
        store.clone(),
        store.keys().events_stream().to_owned(),
        EVENTS_GROUP,
    );
    let ops_task = tokio::spawn(ops::serve(listener, registry, ready, token.clone()));

    event_consumer::run(&settings, store.clone(), metrics, token.clone()).await;
    token.cancel();
    let _ = ops_task.await;
    store.quit().await;
    tracing::info!("stopped");
    Ok(())
}
