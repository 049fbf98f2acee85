//! Logs and traces.
//!
//! Logs go to stdout through `tracing-subscriber`, human-readable or one JSON object per line. When
//! `telemetry.otlp_endpoint` is set, spans are also exported over OTLP/gRPC (in batches, every
//! `telemetry.export_interval_ms`), and every log line written inside a span carries that span's `trace_id`
//! and `span_id`, so a log search finds the trace and a trace's spans find their logs. Log lines carry a
//! readable message plus dotted fields (`delivery.id`, `duration_ms`); never secrets, signatures or payload
//! bodies. How the context crosses the services: [`crate::trace`].

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(WithTraceIds(json_format(), Style::Json))
            .boxed(),
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format(),
                Style::Human,
            ))
            .boxed(),
    };
    let (otel, provider) = if settings.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.otlp_endpoint.clone())
            .build()?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(settings.export_interval_ms))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
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

/// The JSON lines: one flat object per event, without the span list.
fn json_format() -> tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json> {
    tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(false)
}

/// How [`WithTraceIds`] adds the ids to a formatted line.
#[derive(Clone, Copy)]
enum Style {
    /// `"trace_id":"…","span_id":"…"` as the object's first members.
    Json,
    /// ` trace_id=… span_id=…` at the end of the line.
    Human,
}

/// An event format that adds the active span's `trace_id` and `span_id` to what the inner format writes.
/// The ids are read from the OpenTelemetry context the OpenTelemetry layer makes current on entering a span
/// (not from the dispatcher, which a formatter must not call back into); without export there are none.
struct WithTraceIds<F>(F, Style);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = crate::trace::current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let ids = match self.1 {
            Style::Json => format!(r#""trace_id":"{trace_id}","span_id":"{span_id}","#),
            Style::Human => format!(" trace_id={trace_id} span_id={span_id}"),
        };
        match self.1 {
            Style::Json if line.starts_with('{') => {
                line.insert_str(1, &ids);
            }
            Style::Json => {}
            Style::Human => {
                let end = line.trim_end_matches('\n').len();
                line.insert_str(end, &ids);
            }
        }
        writer.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_inside_a_span_carry_its_trace_and_span_id() {
        let sink = Sink::default();
        let writer = sink.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(WithTraceIds(json_format(), Style::Json))
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let expected = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("hop");
            let _entered = span.enter();
            tracing::info!(delivery.id = "d1", "inside");
            crate::trace::context_of(&span)
        });
        let text = String::from_utf8(sink.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_default())
            .collect();
        let expected = expected.unwrap_or_else(|| panic!("the span has a context"));
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "outside");
        assert_eq!(lines[0].get("trace_id"), None);
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["delivery.id"], "d1");
        assert_eq!(lines[1]["trace_id"], expected.trace_id());
        assert_eq!(lines[1]["span_id"], expected.span_id());
    }
}
