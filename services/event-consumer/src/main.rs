//! `event-consumer`: reads `tmi:events`, matches each event to subscriptions and creates deliveries.

use event_consumer::{SERVICE, readiness, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_common::service::main(SERVICE, readiness, run).await
}
