//! `delivery-worker`: sends deliveries and verification challenges.

use delivery_worker::{SERVICE, readiness, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_common::service::main(SERVICE, readiness, run).await
}
