//! [`AppState`]: what every handler and extractor shares, built once at startup from the settings.
//!
//! It sits in its own module, below `lib.rs`, so that the extractors and middleware that read it
//! ([`extract`](crate::extract), [`middleware`](crate::middleware)) depend on this module and never on the
//! crate root; it depends only on the pieces it holds.

use prometheus::Registry;
use std::sync::Arc;
use std::time::Duration;

use delivery_model::store::Store;
use delivery_model::store::addons::InvocationLimits;
use service_common::config::{QuotaSettings, Settings};

use crate::auth::Authenticator;
use crate::error::RunError;
use crate::metrics::ApiMetrics;
use crate::url_policy::UrlPolicy;

/// What every handler shares. Built once; handlers get it as `web::Data<AppState>`.
pub struct AppState {
    pub store: Store,
    pub auth: Authenticator,
    pub url_policy: UrlPolicy,
    pub metrics: Arc<ApiMetrics>,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// A request body must arrive within this (`api.body_read_timeout_ms`), or 408.
    pub body_read_timeout: Duration,
    /// The scope that lets a non-admin caller use `POST /events`.
    pub events_scope: String,
    /// Per-invoker limits of `POST /addons/{id}/invoke` (`[addons]`), unless the invoker has an override.
    pub addon_limits: InvocationLimits,
    /// Per-owner webhook quotas (`[quotas]`), unless the owner has an override.
    pub quota_defaults: QuotaSettings,
    /// How long the first answer to an `Idempotency-Key` is replayed (`api.idempotency_window_secs`).
    pub idempotency_window: Duration,
}

impl AppState {
    /// Prepares the state from the settings.
    ///
    /// # Errors
    /// Unusable `[auth]` key material, or a metrics registration failure.
    pub fn new(settings: &Settings, store: Store, registry: Registry) -> Result<Self, RunError> {
        Ok(Self {
            store,
            auth: Authenticator::from_settings(&settings.auth)?,
            url_policy: UrlPolicy::new(
                settings.outbound.allow_http_targets,
                &settings.subscriptions.deny_globs,
                &settings.subscriptions.deny_regexes,
            ),
            metrics: Arc::new(ApiMetrics::register(registry)?),
            max_body_bytes: settings.api.max_body_bytes,
            body_read_timeout: Duration::from_millis(settings.api.body_read_timeout_ms),
            events_scope: settings.auth.events_scope.clone(),
            addon_limits: InvocationLimits {
                max_active: settings.addons.max_active_invocations,
                max_per_hour: settings.addons.max_invocations_per_hour,
                dedup_window: Duration::from_secs(settings.addons.dedup_window_secs),
            },
            quota_defaults: settings.quotas.clone(),
            idempotency_window: Duration::from_secs(settings.api.idempotency_window_secs),
        })
    }
}
