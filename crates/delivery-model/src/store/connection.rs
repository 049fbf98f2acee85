//! How the store reaches Redis: the fred configuration built from [`StoreOptions`] (URL, ACL credentials,
//! TLS) and the redaction that keeps the password out of logs, errors and `Debug` prints.
//!
//! TLS is rustls on ring (as everywhere in the workspace), always verifying the server's chain and host
//! name: there is deliberately no option that skips either. Trusted roots are the public ones compiled into
//! the binary (webpki-roots, so an image without a CA store behaves like one with) plus the PEM bundle in
//! [`TlsOptions::ca_file`], as for `[migrate] postgres_ca_file`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fred::prelude::*;
use fred::types::config::{ServerConfig, TlsConfig, TlsConnector};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{StoreOptions, cluster};
use crate::error::{Error, Result};

/// The scheme of a plain-text connection.
pub const PLAIN_SCHEME: &str = "redis://";
/// The scheme of a TLS connection.
pub const TLS_SCHEME: &str = "rediss://";
/// What a redacted secret prints as.
const REDACTED: &str = "***";

/// A secret string (a Redis password): used to authenticate, never printed. `Debug` shows `***`, and there
/// is no `Display`, so it cannot end up in a log line or an error message by accident.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it (the AUTH of a new connection).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(REDACTED)
        }
    }
}

/// TLS settings of a `rediss://` connection; all optional. Setting any of them with a plain `redis://` URL
/// is refused, as it would otherwise be silently ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM bundle of CA certificates trusted in addition to the public roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to a server that asks for one (mutual TLS); needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the URL's host (connecting by IP).
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `url` with the password of its user-info replaced by `***` (all of the user-info when it has no `:`, since
/// `redis://secret@host` is a common way to write a password alone). For error messages and `Debug`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_owned(),
    };
    format!("{}{user}{}", &url[..scheme_end], &rest[at..])
}

/// The fred configuration `opts` describe: the URL parsed by fred, credentials from the options where the
/// URL has none, and for `rediss://` this module's rustls connector.
///
/// Public for tools and tests that need a raw fred client reaching Redis as the store does.
///
/// # Errors
/// [`Error::Config`] for a URL fred cannot parse, a password given twice, TLS options with a plain URL, or a
/// CA, certificate or key file that cannot be used.
pub fn fred_config(opts: &StoreOptions) -> Result<Config> {
    let url = opts.url.trim();
    if let Some(problem) = cluster::url_problem(url) {
        return Err(Error::Config(format!(
            "Redis URL {}: {problem}",
            redact_url(url)
        )));
    }
    // fred would build its own TLS connector for `rediss://` (from the platform's CA store); parsing the
    // plain form and adding ours keeps one place that decides what is trusted.
    let (tls, parse_url) = if let Some(rest) = url.strip_prefix(TLS_SCHEME) {
        (true, format!("{PLAIN_SCHEME}{rest}"))
    } else if let Some(rest) = url.strip_prefix(cluster::TLS_CLUSTER_SCHEME) {
        (true, format!("{}{rest}", cluster::CLUSTER_SCHEME))
    } else {
        (false, url.to_owned())
    };
    let mut config = Config::from_url(&parse_url)
        .map_err(|e| Error::Config(format!("Redis URL {}: {}", redact_url(url), e.details())))?;
    let tls = tls || config.uses_tls();
    apply_credentials(&mut config, opts)?;
    cluster::check_options(&config, opts)?;
    if tls {
        config.tls = Some(TlsConfig::from(TlsConnector::from(client_config(
            &opts.tls,
        )?)));
        if let Some(name) = &opts.tls.server_name {
            set_server_name(&mut config, name)?;
        }
    } else if !opts.tls.is_empty() {
        return Err(Error::Config(format!(
            "TLS options are set but the Redis URL does not use {TLS_SCHEME} or {}",
            cluster::TLS_CLUSTER_SCHEME
        )));
    }
    Ok(config)
}

/// Whether `url` asks for TLS: `rediss://` or `rediss-cluster://`.
pub fn is_tls_url(url: &str) -> bool {
    let url = url.trim();
    url.starts_with(TLS_SCHEME) || url.starts_with(cluster::TLS_CLUSTER_SCHEME)
}

/// The error of a failed first connection: where to (password redacted), what failed, and for the two ways
/// of mixing up TLS and plain text, which one it probably was.
pub(crate) fn connect_error(url: &str, tls: bool, cause: &fred::error::Error) -> Error {
    let details = cause.details();
    let hint = if tls && *cause.kind() == fred::error::ErrorKind::Timeout {
        " (over TLS: a server that does not speak TLS leaves the handshake unanswered)"
    } else if !tls && details.contains("Connection reset") {
        " (a TLS-only server resets plain-text connections: use rediss://)"
    } else {
        ""
    };
    Error::Redis(fred::error::Error::new(
        cause.kind().clone(),
        format!("connecting to {}: {details}{hint}", redact_url(url)),
    ))
}

/// Takes the username and password from the options when set, refusing a password given twice (in the URL
/// and in the options), since which one wins would be a guess.
fn apply_credentials(config: &mut Config, opts: &StoreOptions) -> Result<()> {
    if let Some(password) = opts.password.as_ref().filter(|p| !p.is_empty()) {
        if config.password.is_some() {
            return Err(Error::Config(
                "the Redis password is given both in the URL and separately".into(),
            ));
        }
        config.password = Some(password.expose().to_owned());
    }
    if let Some(username) = opts.username.as_ref().filter(|u| !u.is_empty()) {
        if config.username.as_ref().is_some_and(|u| u != username) {
            return Err(Error::Config(
                "the Redis username is given both in the URL and separately".into(),
            ));
        }
        config.username = Some(username.clone());
    }
    Ok(())
}

/// Sets the TLS server name of a single-server configuration, or of every node of a cluster.
fn set_server_name(config: &mut Config, name: &str) -> Result<()> {
    ServerName::try_from(name.to_owned())
        .map_err(|e| Error::Config(format!("TLS server name {name:?}: {e}")))?;
    match &mut config.server {
        ServerConfig::Centralized { server } => {
            server.tls_server_name = Some(name.into());
            Ok(())
        }
        ServerConfig::Clustered { .. } => {
            cluster::set_server_name(config, name);
            Ok(())
        }
        _ => Err(Error::Config(
            "a TLS server name override applies to a single-server or cluster Redis URL only"
                .into(),
        )),
    }
}

/// The rustls client configuration: ring, TLS 1.2 and 1.3, the public roots plus `tls.ca_file`, and the
/// client certificate when one is configured.
fn client_config(tls: &TlsOptions) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &tls.ca_file {
        for cert in read_certs(path, "CA file")? {
            roots
                .add(cert)
                .map_err(|e| file_error("CA file", path, &e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match (&tls.client_cert_file, &tls.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert_path), Some(key_path)) => {
            let chain = read_certs(cert_path, "client certificate file")?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                file_error(
                    "client key file",
                    key_path,
                    &format!("no usable PEM private key ({e})"),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Config(format!("TLS client certificate and key: {e}")))
        }
        _ => Err(Error::Config(
            "a TLS client certificate and its key go together: set both or neither".into(),
        )),
    }
}

/// Every certificate of the PEM file `path`; at least one.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, &e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, &e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(
            what,
            path,
            "no PEM certificate (BEGIN CERTIFICATE) in it",
        ));
    }
    Ok(certs)
}

fn file_error(what: &str, path: &Path, reason: &str) -> Error {
    Error::Config(format!("TLS {what} {}: {reason}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_the_password_and_keeps_the_rest() {
        assert_eq!(
            redact_url("redis://hookline:s3cr%40t@redis.example:6380/2"),
            "redis://hookline:***@redis.example:6380/2"
        );
        assert_eq!(
            redact_url("rediss://:pw@10.0.0.1"),
            "rediss://:***@10.0.0.1"
        );
        assert_eq!(redact_url("redis://pw@h/0?x=a@b"), "redis://***@h/0?x=a@b");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn secrets_and_options_never_print_the_password() {
        let mut opts = StoreOptions::new("redis://u:url-secret@127.0.0.1:1");
        opts.password = Some(Secret::new("option-secret"));
        let printed = format!("{opts:?}");
        assert!(!printed.contains("url-secret"), "{printed}");
        assert!(!printed.contains("option-secret"), "{printed}");
        assert!(printed.contains("u:***@127.0.0.1:1"), "{printed}");
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let err = |opts: &StoreOptions| match fred_config(opts) {
            Ok(_) => panic!("accepted {opts:?}"),
            Err(e) => e.to_string(),
        };
        let mut opts = StoreOptions::new("redis://:in-url@127.0.0.1:1");
        opts.password = Some(Secret::new("twice"));
        let e = err(&opts);
        assert!(e.contains("both in the URL"), "{e}");
        assert!(!e.contains("in-url") && !e.contains("twice"), "{e}");

        let mut opts = StoreOptions::new("redis://127.0.0.1:1");
        opts.tls.server_name = Some("redis.example".into());
        assert!(err(&opts).contains("rediss://"));

        let mut opts = StoreOptions::new("rediss://127.0.0.1:1");
        opts.tls.client_cert_file = Some("/nonexistent/cert.pem".into());
        assert!(err(&opts).contains("set both or neither"));

        opts.tls.client_cert_file = None;
        opts.tls.ca_file = Some("/nonexistent/ca.pem".into());
        let e = err(&opts);
        assert!(e.contains("CA file /nonexistent/ca.pem"), "{e}");

        let mut opts = StoreOptions::new("rediss://127.0.0.1:1");
        assert!(fred_config(&opts).is_ok_and(|c| c.uses_tls()));
        opts.url = "redis://127.0.0.1:1".into();
        assert!(fred_config(&opts).is_ok_and(|c| !c.uses_tls()));
    }
}
