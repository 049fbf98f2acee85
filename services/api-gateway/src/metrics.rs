//! Every Prometheus metric of the api-gateway, in one struct with its own registry (served at `/metrics`).
//!
//! Labels stay bounded: the route *pattern* (never the concrete path), a fixed set of methods and the status
//! class.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Route label of requests no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The gateway's metrics.
pub struct ApiMetrics {
    registry: Registry,
    /// HTTP requests answered, by method, route pattern and status class.
    pub requests: IntCounterVec,
    /// Time to answer an HTTP request, by method and route pattern, in seconds.
    pub request_duration: HistogramVec,
    /// Webhook subscriptions created.
    pub subscriptions_created: IntCounter,
    /// Test deliveries created and queued.
    pub test_deliveries: IntCounter,
    /// Failed deliveries put back on the queue by an administrator (single and bulk retries).
    pub deliveries_retried: IntCounter,
    /// Events appended to the input stream through `POST /events`.
    pub events_published: IntCounter,
    /// Add-on invocations, by outcome (`accepted`, `active_limit`, `hourly_limit`, `duplicate`).
    pub addon_invocations: IntCounterVec,
    /// Receiver status callbacks, by outcome (`in_progress`, `delivered`, `failed`, `conflict`,
    /// `unauthorized`, `not_found`).
    pub delivery_callbacks: IntCounterVec,
    /// Retries answered with the stored first answer of their `Idempotency-Key`.
    pub idempotent_replays: IntCounter,
    /// SLO: from the event to an async receiver's callback completing its delivery, in seconds. The
    /// worker's histogram of the same name counts the deliveries a 2xx completed
    /// ([`service_common::ops::EVENT_TO_DELIVERED`]); the SLO's queries sum both.
    pub event_to_delivered: Histogram,
}

impl ApiMetrics {
    /// Creates every metric and registers it in `registry` (which `/metrics` renders).
    ///
    /// # Errors
    /// A duplicate or malformed metric name (a bug caught by the unit test), or a registry that already
    /// holds these metrics.
    pub fn register(registry: Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "hookline_api_requests_total",
                "HTTP requests answered, by method, route pattern and status class.",
            ),
            &["method", "route", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "hookline_api_request_duration_seconds",
                "Time to answer an HTTP request, by method and route pattern, in seconds.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        let subscriptions_created = IntCounter::new(
            "hookline_api_subscriptions_created_total",
            "Webhook subscriptions created.",
        )?;
        let test_deliveries = IntCounter::new(
            "hookline_api_test_deliveries_total",
            "Test deliveries created and queued.",
        )?;
        let deliveries_retried = IntCounter::new(
            "hookline_api_deliveries_retried_total",
            "Failed deliveries queued again by an administrator.",
        )?;
        let events_published = IntCounter::new(
            "hookline_api_events_published_total",
            "Events appended to the input stream through POST /events.",
        )?;
        let addon_invocations = IntCounterVec::new(
            Opts::new(
                "hookline_api_addon_invocations_total",
                "Add-on invocations, by outcome (accepted, active_limit, hourly_limit, duplicate).",
            ),
            &["outcome"],
        )?;
        let delivery_callbacks = IntCounterVec::new(
            Opts::new(
                "hookline_api_delivery_callbacks_total",
                "Receiver status callbacks, by outcome (in_progress, delivered, failed, conflict, unauthorized, not_found).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(addon_invocations.clone()))?;
        registry.register(Box::new(delivery_callbacks.clone()))?;
        let event_to_delivered = Histogram::with_opts(
            HistogramOpts::new(
                service_common::ops::EVENT_TO_DELIVERED,
                service_common::ops::EVENT_TO_DELIVERED_HELP,
            )
            .buckets(service_common::ops::SLO_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(event_to_delivered.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(subscriptions_created.clone()))?;
        registry.register(Box::new(test_deliveries.clone()))?;
        registry.register(Box::new(deliveries_retried.clone()))?;
        registry.register(Box::new(events_published.clone()))?;
        let idempotent_replays = IntCounter::new(
            "hookline_api_idempotent_replays_total",
            "Retries answered with the stored first answer of their Idempotency-Key.",
        )?;
        registry.register(Box::new(idempotent_replays.clone()))?;
        Ok(Self {
            registry,
            requests,
            request_duration,
            subscriptions_created,
            test_deliveries,
            deliveries_retried,
            events_published,
            idempotent_replays,
            addon_invocations,
            delivery_callbacks,
            event_to_delivered,
        })
    }

    /// The registry, for rendering.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one answered request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[method, route, status_class(status)])
            .inc();
        self.request_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }
}

/// Methods outside the usual set share one label value, so a client cannot grow the label set.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        let m = ApiMetrics::register(Registry::new()).unwrap_or_else(|e| panic!("{e}"));
        m.observe_request("GET", "/healthz", 200, Duration::from_millis(3));
        m.observe_request("BREW", "/healthz", 503, Duration::from_millis(3));
        let text = service_common::ops::render_metrics(m.registry());
        assert!(
            text.contains(
                r#"hookline_api_requests_total{method="GET",route="/healthz",status="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"hookline_api_requests_total{method="other",route="/healthz",status="5xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("hookline_api_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
