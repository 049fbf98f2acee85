//! `[redis]` credentials and TLS: their checks, the password file, their mapping into the store's options,
//! and the `Debug` of [`RedisSettings`] that keeps the password out of every print.
//!
//! Rules (docs/operations.md, "Redis credentials and TLS"):
//! - the password comes from exactly one place: the URL, `redis.password` or `redis.password_file`; two of
//!   them set is refused rather than one silently winning;
//! - the user comes from the URL or `redis.username`, not both;
//! - every `redis.tls_*` key needs a `rediss://` (or `rediss-cluster://`) URL (without TLS it would be
//!   silently ignored), and the client certificate and key go together.

use std::fmt;
use std::path::{Path, PathBuf};

use delivery_model::store::{Secret, TlsOptions, connection, redact_url};

use super::validate::invalid;
use super::{ConfigError, RedisSettings};

/// The user-info of a URL: (user, whether a password is present). A user-info without `:` is taken as a
/// user name, as fred reads it.
fn url_userinfo(url: &str) -> (Option<&str>, bool) {
    let Some((_, rest)) = url.split_once("://") else {
        return (None, false);
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return (None, false);
    };
    match userinfo.split_once(':') {
        Some((user, password)) => ((!user.is_empty()).then_some(user), !password.is_empty()),
        None => ((!userinfo.is_empty()).then_some(userinfo), false),
    }
}

fn some_path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

/// Refuses a file setting whose file is not there, naming the key (its content is checked at connect).
fn check_file(key: &'static str, value: &str) -> Result<(), ConfigError> {
    if !value.is_empty() && !Path::new(value).is_file() {
        return Err(invalid(key, format!("{value} is not a readable file")));
    }
    Ok(())
}

impl RedisSettings {
    /// The credential and TLS checks (the `[redis]` section's other checks are in `validate.rs`).
    pub(super) fn validate_access(&self) -> Result<(), ConfigError> {
        let (url_user, url_password) = url_userinfo(&self.url);
        if !self.password.is_empty() && !self.password_file.is_empty() {
            return Err(invalid(
                "redis.password_file",
                "set either redis.password or redis.password_file, not both",
            ));
        }
        if url_password && !self.password.is_empty() {
            return Err(invalid(
                "redis.password",
                "redis.url already carries a password: give it in one place",
            ));
        }
        if url_password && !self.password_file.is_empty() {
            return Err(invalid(
                "redis.password_file",
                "redis.url already carries a password: give it in one place",
            ));
        }
        if url_user.is_some() && !self.username.is_empty() {
            return Err(invalid(
                "redis.username",
                "redis.url already names a user: give it in one place",
            ));
        }
        self.validate_tls()
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls_keys = [
            ("redis.tls_ca_file", &self.tls_ca_file),
            ("redis.tls_client_cert_file", &self.tls_client_cert_file),
            ("redis.tls_client_key_file", &self.tls_client_key_file),
            ("redis.tls_server_name", &self.tls_server_name),
        ];
        if !connection::is_tls_url(&self.url) {
            if let Some((key, _)) = tls_keys.iter().find(|(_, v)| !v.is_empty()) {
                return Err(invalid(
                    key,
                    "needs a rediss:// or rediss-cluster:// redis.url (TLS); without TLS it would \
                     be ignored",
                ));
            }
            return Ok(());
        }
        match (
            self.tls_client_cert_file.is_empty(),
            self.tls_client_key_file.is_empty(),
        ) {
            (false, true) => {
                return Err(invalid(
                    "redis.tls_client_key_file",
                    "required with redis.tls_client_cert_file",
                ));
            }
            (true, false) => {
                return Err(invalid(
                    "redis.tls_client_cert_file",
                    "required with redis.tls_client_key_file",
                ));
            }
            _ => {}
        }
        for (key, value) in &tls_keys[..3] {
            check_file(key, value)?;
        }
        if !self.tls_server_name.is_empty()
            && rustls::pki_types::ServerName::try_from(self.tls_server_name.as_str()).is_err()
        {
            return Err(invalid(
                "redis.tls_server_name",
                "must be a DNS name or an IP address",
            ));
        }
        Ok(())
    }

    /// Reads `password_file` into `password` (after [`validate_access`](Self::validate_access), which makes
    /// sure `password` was empty). One trailing newline is dropped: files written by `echo` or an editor
    /// carry one; Kubernetes Secrets usually do not.
    pub(super) fn read_password_file(&mut self) -> Result<(), ConfigError> {
        if self.password_file.is_empty() {
            return Ok(());
        }
        // The I/O error's text names the failure, never the content.
        let text = std::fs::read_to_string(&self.password_file).map_err(|e| {
            invalid(
                "redis.password_file",
                format!("cannot read {}: {e}", self.password_file),
            )
        })?;
        let password = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if password.is_empty() {
            return Err(invalid(
                "redis.password_file",
                format!("{} is empty", self.password_file),
            ));
        }
        self.password = Secret::new(password);
        Ok(())
    }

    pub(super) fn store_username(&self) -> Option<String> {
        (!self.username.is_empty()).then(|| self.username.clone())
    }

    pub(super) fn store_password(&self) -> Option<Secret> {
        (!self.password.is_empty()).then(|| self.password.clone())
    }

    pub(super) fn store_tls(&self) -> TlsOptions {
        TlsOptions {
            ca_file: some_path(&self.tls_ca_file),
            client_cert_file: some_path(&self.tls_client_cert_file),
            client_key_file: some_path(&self.tls_client_key_file),
            server_name: (!self.tls_server_name.is_empty()).then(|| self.tls_server_name.clone()),
        }
    }
}

// By hand rather than derived, so the URL's password is redacted (`password` redacts itself). A new field
// must be added here too.
impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("key_prefix", &self.key_prefix)
            .field("events_stream", &self.events_stream)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client_cert_file", &self.tls_client_cert_file)
            .field("tls_client_key_file", &self.tls_client_key_file)
            .field("tls_server_name", &self.tls_server_name)
            .field("sentinels", &self.sentinels)
            .field("sentinel_master_name", &self.sentinel_master_name)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &self.sentinel_password)
            .field("sentinel_password_file", &self.sentinel_password_file)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout_ms", &self.wait_timeout_ms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::url_userinfo;

    #[test]
    fn userinfo_is_read_as_fred_reads_it() {
        assert_eq!(url_userinfo("redis://u:p@h:1/0"), (Some("u"), true));
        assert_eq!(url_userinfo("redis://:p@h"), (None, true));
        assert_eq!(url_userinfo("redis://u@h"), (Some("u"), false));
        assert_eq!(url_userinfo("redis://h/0?a=b@c"), (None, false));
        assert_eq!(url_userinfo("rediss://h"), (None, false));
    }
}
