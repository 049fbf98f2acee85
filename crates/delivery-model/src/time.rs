//! Timestamps.
//!
//! Records store instants as integer **microseconds** since the Unix epoch: Lua scripts compare them as numbers
//! (they fit a double exactly until the year 2255) and TMI's API shows at most six fractional digits. The API
//! renders them as RFC 3339 in UTC with trailing zeros trimmed, as Go's `RFC3339Nano` does.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// The current time in microseconds.
pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// Renders microseconds as RFC 3339 UTC (`2026-04-01T12:00:00.5Z`), trailing fractional zeros trimmed.
pub fn format_micros(us: Micros) -> String {
    let dt = Utc
        .timestamp_micros(us)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let s = dt.to_rfc3339_opts(SecondsFormat::Micros, true);
    // "2026-04-01T12:00:00.500000Z" -> "2026-04-01T12:00:00.5Z"; ".000000Z" -> "Z".
    match s.split_once('.') {
        Some((head, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{digits}Z")
            }
        }
        None => s,
    }
}

/// Parses an RFC 3339 timestamp into microseconds.
pub fn parse_rfc3339(s: &str) -> Option<Micros> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc).timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_trailing_zeros_like_go() {
        assert_eq!(
            format_micros(1_775_044_800_500_000),
            "2026-04-01T12:00:00.5Z"
        );
        assert_eq!(format_micros(1_775_044_800_000_000), "2026-04-01T12:00:00Z");
        assert_eq!(
            format_micros(1_775_044_800_123_456),
            "2026-04-01T12:00:00.123456Z"
        );
    }

    #[test]
    fn round_trips() {
        let us = 1_775_044_800_123_456;
        assert_eq!(parse_rfc3339(&format_micros(us)), Some(us));
        assert_eq!(parse_rfc3339("not a time"), None);
    }
}
