//! The `[redis]` keys for a Sentinel-managed primary: `sentinels`, `sentinel_master_name` and the sentinels'
//! own credentials (`sentinel_username`, `sentinel_password` or `sentinel_password_file`).
//!
//! Kept apart from the other `[redis]` checks so that TLS and ACL settings can grow beside it. The password
//! file is read once while validating, so a missing or unreadable file stops the service at start with the
//! key named, and [`Settings::store_options`](super::Settings::store_options) stays infallible.

use delivery_model::store::{Secret, SentinelOptions};

use super::{ConfigError, RedisSettings};

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Splits `host:port` (an IPv6 host in brackets: `[::1]:26379`).
fn host_port(entry: &str) -> Option<(String, u16)> {
    let (host, port) = entry.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
}

impl RedisSettings {
    /// Checks the sentinel keys and reads `sentinel_password_file` into `sentinel_password`.
    ///
    /// # Errors
    /// The key at fault: a malformed sentinel address, no master name with sentinels (or sentinel settings
    /// without sentinels), a URL that names something other than one data node, both a password and a
    /// password file, or a file that cannot be read.
    pub(super) fn validate_sentinel(&mut self) -> Result<(), ConfigError> {
        self.sentinels.retain(|s| !s.trim().is_empty());
        let file = self.sentinel_password_file.trim().to_owned();
        if !file.is_empty() {
            if !self.sentinel_password.is_empty() {
                return Err(invalid(
                    "redis.sentinel_password_file",
                    "set either redis.sentinel_password or redis.sentinel_password_file, not both",
                ));
            }
            let text = std::fs::read_to_string(&file).map_err(|e| {
                invalid(
                    "redis.sentinel_password_file",
                    format!("cannot read {file}: {e}"),
                )
            })?;
            // Secret files written by hand or mounted from a Secret often end in a newline.
            self.sentinel_password = Secret::new(text.trim_end_matches(['\r', '\n']));
        }
        if self.sentinels.is_empty() {
            let unused = if !self.sentinel_master_name.is_empty() {
                Some("redis.sentinel_master_name")
            } else if !self.sentinel_username.is_empty() {
                Some("redis.sentinel_username")
            } else if !self.sentinel_password.is_empty() {
                Some("redis.sentinel_password")
            } else {
                None
            };
            return match unused {
                Some(key) => Err(invalid(key, "is set but redis.sentinels is empty")),
                None => Ok(()),
            };
        }
        for entry in &self.sentinels {
            if host_port(entry).is_none() {
                return Err(invalid(
                    "redis.sentinels",
                    format!("`{entry}` is not host:port"),
                ));
            }
        }
        if self.sentinel_master_name.trim().is_empty() {
            return Err(invalid(
                "redis.sentinel_master_name",
                "is required when redis.sentinels is set",
            ));
        }
        // With sentinels the URL only carries scheme, credentials and database; a cluster, a list of hosts
        // or query options would be silently ignored, so refuse them.
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://"))
            || rest.contains(',')
            || rest.contains('?')
        {
            return Err(invalid(
                "redis.url",
                "with redis.sentinels it must be a plain redis:// or rediss:// URL of one node \
                 (its host is replaced by the primary the sentinels name)",
            ));
        }
        Ok(())
    }

    /// The sentinel options for the store, `None` without sentinels. Call on validated settings.
    pub(super) fn sentinel_options(&self) -> Option<SentinelOptions> {
        if self.sentinels.is_empty() {
            return None;
        }
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Some(SentinelOptions {
            hosts: self.sentinels.iter().filter_map(|s| host_port(s)).collect(),
            master_name: self.sentinel_master_name.trim().to_owned(),
            username: nonempty(&self.sentinel_username),
            password: nonempty(self.sentinel_password.expose()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_names_ips_and_bracketed_ipv6() {
        assert_eq!(host_port("s1:26379"), Some(("s1".into(), 26379)));
        assert_eq!(host_port(" 10.0.0.1:1 "), Some(("10.0.0.1".into(), 1)));
        assert_eq!(host_port("[::1]:26379"), Some(("::1".into(), 26379)));
        assert_eq!(host_port("s1"), None);
        assert_eq!(host_port("s1:0"), None);
        assert_eq!(host_port(":26379"), None);
        assert_eq!(host_port("s1:port"), None);
    }
}
