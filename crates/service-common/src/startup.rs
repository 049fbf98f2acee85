//! The first lines of every service's `main`.

use crate::config::Settings;
use crate::telemetry::{self, TelemetryGuard};

/// Installs the rustls crypto provider, loads and validates the configuration, and starts telemetry.
///
/// rustls panics at the first handshake when more than one provider is compiled in and none is installed,
/// so the ring provider is installed explicitly before anything else.
///
/// # Errors
/// Invalid configuration (the error names the key) or telemetry set-up failure.
pub fn init(service: &'static str) -> anyhow::Result<(Settings, TelemetryGuard)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings::load()?;
    let guard = telemetry::init(service, &settings.telemetry)?;
    Ok((settings, guard))
}
