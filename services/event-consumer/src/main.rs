//! `event-consumer`: reads `tmi:events`, matches each event to subscriptions and creates deliveries.

use event_consumer::{SERVICE, readiness, run};

/// One worker thread (`TOKIO_WORKER_THREADS` overrides it): the consumer is one loop waiting on Redis, and a
/// second thread only adds a cross-thread wake-up per reply (see `service_common::service::runtime`). A
/// thread fans out tens of thousands of deliveries a second; scale with replicas beyond that.
fn main() -> anyhow::Result<()> {
    service_common::service::runtime(1)?
        .block_on(service_common::service::main(SERVICE, readiness, run))
}
