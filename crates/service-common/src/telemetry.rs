//! Logs and traces.
//!
//! Logs go to stdout through `tracing-subscriber`, human-readable or one JSON object per line. When
//! `telemetry.otlp_endpoint` is set, spans are also exported over OTLP/gRPC. Log lines carry a readable
//! message plus dotted fields (`delivery.id`, `duration_ms`); never secrets, signatures or payload bodies.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};

/// Keeps the trace exporter alive; flushes it on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Shutting the exporter down blocks; on a current-thread runtime it must not run on the runtime's
            // own thread or it deadlocks and loses the last spans.
            let handle = std::thread::spawn(move || {
                let _ = provider.shutdown();
            });
            let _ = handle.join();
        }
    }
}

/// Installs the global subscriber for `service`.
///
/// # Errors
/// An invalid log filter or OTLP endpoint.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::try_new(f)?,
        _ => EnvFilter::try_new(&settings.log_level)?,
    };
    let fmt = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
        LogFormat::Human => tracing_subscriber::fmt::layer().boxed(),
    };
    let (otel, provider) = if settings.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.otlp_endpoint.clone())
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
        (Some(layer), Some(provider))
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}
