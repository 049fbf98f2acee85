//! The connection to TMI's PostgreSQL, with TLS as the connection string's `sslmode` asks.
//!
//! `sslmode` takes libpq's values, in lower case (libpq compares them case-sensitively):
//!
//! - `disable`: plaintext.
//! - `prefer` (the default): TLS when the server offers it, verified as for `verify-full`; plaintext only when
//!   the server does not offer TLS. A certificate that does not verify fails the connection: it is never a
//!   reason to fall back to plaintext.
//! - `require` and `verify-full`: TLS; the certificate must chain to a trusted root and name the host of the
//!   connection string (DNS name, or IP address in an IP SAN). A server that does not offer TLS fails the
//!   connection. (libpq's own `require` checks no certificate unless it finds a root file; this tool's
//!   `require` always verifies, exactly as `verify-full`.)
//! - `verify-ca`: TLS; the certificate must chain to a trusted root, but need not name the host (for
//!   connecting by an address the certificate does not name). Everything else (issuer, validity dates,
//!   signatures, key usage) is checked as for `verify-full`.
//! - `allow` (plaintext first, TLS only when the server insists) is refused ([`Error::SslMode`]).
//!
//! tokio-postgres parses only `disable`, `prefer` and `require`: [`parse`] hands it `require` in place of
//! `verify-ca` and `verify-full` and keeps the mode asked for in [`ConnectionString::mode`].
//!
//! Trusted roots: Mozilla's (`webpki-roots`, compiled in) plus every certificate in the PEM file `[migrate]
//! postgres_ca_file` and in the PEM file named by the connection string's `sslrootcert` (libpq's parameter).
//! Both may be given; the certificates of both are trusted. `sslrootcert=system` (or an empty value) names
//! the public roots alone, which are always trusted. tokio-postgres does not know `sslrootcert`: [`parse`]
//! takes it out of the string first. There is no switch to accept a certificate that does not chain to a
//! trusted root. Client certificates (`sslcert`, `sslkey`) are not supported.
//!
//! No error message repeats the connection string or its password.

use std::io;
use std::iter::Peekable;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::CharIndices;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// How [`Error::CaFile`] names `[migrate] postgres_ca_file`.
const CA_FILE_SETTING: &str = "[migrate] postgres_ca_file";
/// How [`Error::CaFile`] names the connection string's `sslrootcert`.
const ROOT_CERT_SETTING: &str = "[migrate] postgres_url: sslrootcert";

/// The `sslmode` a connection string asks for (libpq's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext.
    Disable,
    /// TLS when the server offers it (verified as [`TlsMode::VerifyFull`]), else plaintext.
    Prefer,
    /// TLS, verified as [`TlsMode::VerifyFull`].
    Require,
    /// TLS; the chain is verified, the host name is not.
    VerifyCa,
    /// TLS; the chain and the host name are verified.
    VerifyFull,
}

impl TlsMode {
    /// libpq's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate must name the host of the connection string.
    pub fn checks_host_name(self) -> bool {
        self != Self::VerifyCa
    }

    /// The `sslmode` value tokio-postgres is handed: it parses `disable`, `prefer` and `require` only.
    fn tokio_postgres_name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require | Self::VerifyCa | Self::VerifyFull => "require",
        }
    }

    /// The mode named `value` (as libpq spells it: lower case).
    ///
    /// # Errors
    /// [`Error::SslMode`] for `allow`, [`Error::ConnectionString`] for a value libpq does not know (the
    /// message does not repeat it).
    fn from_libpq(value: &str) -> Result<Self> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            "allow" => Err(Error::SslMode("allow".to_owned())),
            _ => Err(Error::ConnectionString(
                "invalid value for option `sslmode`: use one of disable, prefer, require, verify-ca, \
                 verify-full (lower case)"
                    .to_owned(),
            )),
        }
    }
}

/// A connection string made ready for tokio-postgres.
#[derive(Debug)]
pub struct ConnectionString {
    /// What tokio-postgres parsed: `require` in place of `verify-ca` / `verify-full`, without `sslrootcert`.
    pub config: Config,
    /// The `sslmode` asked for (the last one given, as libpq takes it; `prefer` when none is).
    pub mode: TlsMode,
    /// The file `sslrootcert` names (the last one given). `None` when it is not given, empty or `system`.
    pub root_cert: Option<PathBuf>,
}

/// Connects to `url` (a `postgres://` URL or a `key=value` string), over TLS as its `sslmode` says, trusting
/// the public roots plus the certificates in `ca_file` and in the URL's `sslrootcert` (when given). The
/// connection is driven by a spawned task, which ends when the [`Client`] is dropped; await it to close the
/// connection cleanly.
///
/// # Errors
/// [`Error::SslMode`] or [`Error::ConnectionString`] for a connection string that cannot be used,
/// [`Error::CaFile`] for a CA file that cannot be read or holds no certificate, [`Error::Connect`] when the
/// server cannot be reached or refuses the connection (TLS, `pg_hba.conf`, authentication).
pub async fn connect(url: &str, ca_file: Option<&Path>) -> Result<(Client, JoinHandle<()>)> {
    let parsed = parse(url)?;
    let mut ca_files = Vec::new();
    if let Some(path) = ca_file {
        ca_files.push((CA_FILE_SETTING, path));
    }
    if let Some(path) = &parsed.root_cert {
        ca_files.push((ROOT_CERT_SETTING, path.as_path()));
    }
    let tls = MakeRustlsConnect::new(client_config(parsed.mode, &ca_files)?);
    let (client, connection) = parsed.config.connect(tls).await.map_err(|e| {
        let password = parsed
            .config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Error::Connect {
            target: target(&parsed.config, parsed.mode),
            detail: redact(chain(&e), password.as_slice()),
            hint: match (is_certificate_error(&e), parsed.mode.checks_host_name()) {
                (false, _) => "",
                (true, true) => {
                    " (the server's certificate did not verify: set [migrate] postgres_ca_file or the connection \
                     string's sslrootcert to the CA that signed it, and connect by a host name or IP address the \
                     certificate names)"
                }
                (true, false) => {
                    " (the server's certificate did not verify: set [migrate] postgres_ca_file or the connection \
                     string's sslrootcert to the CA that signed it)"
                }
            },
        }
    })?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %chain(&e), "PostgreSQL connection failed");
        }
    });
    Ok((client, task))
}

/// Parses a connection string: takes `sslmode` and `sslrootcert` out for this module, hands tokio-postgres
/// the rest (with `require` for `verify-ca` / `verify-full`).
///
/// # Errors
/// [`Error::SslMode`] for `sslmode=allow`, [`Error::ConnectionString`] for anything else that does not parse.
/// Neither repeats the string or its password.
pub fn parse(url: &str) -> Result<ConnectionString> {
    let (form, params) = split(url);
    parse_params(url, form, &params).map_err(|e| match e {
        Error::ConnectionString(text) => {
            Error::ConnectionString(redact(text, &passwords(url, form, &params)))
        }
        other => other,
    })
}

/// [`parse`] of `url`, already split into `params`: errors not yet redacted.
fn parse_params(url: &str, form: Form, params: &[Param]) -> Result<ConnectionString> {
    let mut mode = TlsMode::Prefer;
    let mut root_cert = None;
    // (what, by what): in the string's order, not overlapping.
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for param in params {
        // A value that is not UTF-8 is left for tokio-postgres to refuse.
        let Some(value) = &param.value else { continue };
        match param.key.as_str() {
            "sslmode" => {
                mode = TlsMode::from_libpq(value)?;
                let name = mode.tokio_postgres_name();
                if name != value {
                    // key=value form: padded with spaces to the same length, so tokio-postgres' byte
                    // offsets in its messages still point into the string the operator wrote.
                    let width = match form {
                        Form::Url => 0,
                        Form::KeyValue => param.value_at.len(),
                    };
                    edits.push((param.value_at.clone(), format!("{name:<width$}")));
                }
            }
            "sslrootcert" => {
                root_cert = match value.as_str() {
                    "" | "system" => None,
                    path => Some(PathBuf::from(path)),
                };
                let blank = match form {
                    Form::Url => String::new(),
                    Form::KeyValue => " ".repeat(param.whole.len()),
                };
                edits.push((param.whole.clone(), blank));
            }
            _ => {}
        }
    }
    let mut rewritten = url.to_owned();
    for (range, text) in edits.into_iter().rev() {
        rewritten.replace_range(range, &text);
    }
    let config = rewritten
        .parse::<Config>()
        .map_err(|e| Error::ConnectionString(chain(&e)))?;
    Ok(ConnectionString {
        config,
        mode,
        root_cert,
    })
}

/// The two syntaxes of a connection string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `postgres://` or `postgresql://`.
    Url,
    /// `key=value key='quoted value' …`.
    KeyValue,
}

/// One parameter of a connection string, found as tokio-postgres' parsers find it.
#[derive(Debug)]
struct Param {
    /// The key: percent-decoded in a URL (empty when that is not UTF-8).
    key: String,
    /// The value: percent-decoded in a URL, unquoted and unescaped in `key=value` form. `None` when it is
    /// not UTF-8 once decoded.
    value: Option<String>,
    /// Where the whole parameter is in the string (in a URL, with the `&` that follows it).
    whole: Range<usize>,
    /// Where its value is, as written (quotes included).
    value_at: Range<usize>,
}

/// The form of `url` and its parameters, split exactly as tokio-postgres 0.7 splits them (`config.rs`:
/// `UrlParser` when the string starts with `postgres://` or `postgresql://`, else `Parser`). Splitting stops
/// at the first syntax error, which tokio-postgres then reports.
fn split(url: &str) -> (Form, Vec<Param>) {
    match ["postgres://", "postgresql://"]
        .iter()
        .find(|prefix| url.starts_with(*prefix))
    {
        Some(prefix) => (Form::Url, url_params(url, prefix.len())),
        None => (Form::KeyValue, key_value_params(url)),
    }
}

/// The query parameters of a URL whose scheme ends at `start`. tokio-postgres takes the credentials up to the
/// first `@` anywhere, then the host up to `/` or `?`, the path up to `?`; then `key=value` pairs, the key up
/// to the next `=` and the value up to the next `&`.
fn url_params(url: &str, start: usize) -> Vec<Param> {
    let after_credentials = url[start..].find('@').map_or(start, |at| start + at + 1);
    let Some(question) = url[after_credentials..].find('?') else {
        return Vec::new();
    };
    let mut params = Vec::new();
    let mut at = after_credentials + question + 1;
    while at < url.len() {
        let Some(equals) = url[at..].find('=') else {
            break;
        };
        let key_end = at + equals;
        let value_start = key_end + 1;
        let (value_end, next) = match url[value_start..].find('&') {
            Some(amp) => (value_start + amp, value_start + amp + 1),
            None => (url.len(), url.len()),
        };
        params.push(Param {
            key: percent_decode(&url[at..key_end]).unwrap_or_default(),
            value: percent_decode(&url[value_start..value_end]),
            whole: at..next,
            value_at: value_start..value_end,
        });
        at = next;
    }
    params
}

/// The parameters of a `key=value` string: whitespace-separated `key = value` with optional spaces around
/// `=`; a value is either `'quoted'` or runs to the next whitespace; `\` escapes the next character in both.
fn key_value_params(s: &str) -> Vec<Param> {
    let mut params = Vec::new();
    let mut it = s.char_indices().peekable();
    loop {
        skip(&mut it, char::is_whitespace);
        let key_start = it.peek().map_or(s.len(), |&(i, _)| i);
        skip(&mut it, |c| !c.is_whitespace() && c != '=');
        let key_end = it.peek().map_or(s.len(), |&(i, _)| i);
        if key_start == key_end {
            break;
        }
        skip(&mut it, char::is_whitespace);
        if it.next_if(|&(_, c)| c == '=').is_none() {
            break;
        }
        skip(&mut it, char::is_whitespace);
        let value_start = it.peek().map_or(s.len(), |&(i, _)| i);
        let mut value = String::new();
        if it.next_if(|&(_, c)| c == '\'').is_some() {
            let mut closed = false;
            while let Some((_, c)) = it.next() {
                match c {
                    '\'' => {
                        closed = true;
                        break;
                    }
                    '\\' => value.extend(it.next().map(|(_, escaped)| escaped)),
                    c => value.push(c),
                }
            }
            if !closed {
                break;
            }
        } else {
            while let Some((_, c)) = it.next_if(|&(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next().map(|(_, escaped)| escaped));
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                break;
            }
        }
        let value_end = it.peek().map_or(s.len(), |&(i, _)| i);
        params.push(Param {
            key: s[key_start..key_end].to_owned(),
            value: Some(value),
            whole: key_start..value_end,
            value_at: value_start..value_end,
        });
    }
    params
}

/// Advances `it` past the characters for which `take` holds.
fn skip(it: &mut Peekable<CharIndices<'_>>, take: impl Fn(char) -> bool) {
    while it.next_if(|&(_, c)| take(c)).is_some() {}
}

/// `%XX` decoded (a `%` not followed by two hex digits stays as it is, as tokio-postgres decodes URLs);
/// `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// Every form of the password `url` holds: a URL's `user:password@` (as written and decoded) and every
/// `password` parameter.
fn passwords(url: &str, form: Form, params: &[Param]) -> Vec<String> {
    let mut found: Vec<String> = params
        .iter()
        .filter(|p| p.key == "password")
        .filter_map(|p| p.value.clone())
        .collect();
    if form == Form::Url {
        let rest = url.split_once("://").map_or("", |(_, rest)| rest);
        if let Some((_, password)) = rest
            .split_once('@')
            .and_then(|(credentials, _)| credentials.split_once(':'))
        {
            found.push(password.to_owned());
            found.extend(percent_decode(password));
        }
    }
    found.retain(|p| !p.is_empty());
    found
}

/// `text` with every occurrence of each of `secrets` replaced by `[redacted]`.
fn redact(mut text: String, secrets: &[String]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "[redacted]");
        }
    }
    text
}

/// The rustls client configuration: ring, TLS 1.2 and 1.3, the public roots plus the certificates in each of
/// `ca_files` (the setting that names it, its path); the host name is checked unless `mode` is `verify-ca`.
///
/// # Errors
/// [`Error::CaFile`], [`Error::Tls`].
pub fn client_config(
    mode: TlsMode,
    ca_files: &[(&'static str, &Path)],
) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for &(setting, path) in ca_files {
        add_pem_file(&mut roots, setting, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = webpki_verifier(roots, &provider)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let config = if mode.checks_host_name() {
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
    };
    Ok(config.with_no_client_auth())
}

/// Adds every certificate of the PEM file `path` to `roots`.
///
/// # Errors
/// [`Error::CaFile`] when it cannot be read, holds no certificate or one that is not a usable trust anchor.
fn add_pem_file(roots: &mut RootCertStore, setting: &'static str, path: &Path) -> Result<()> {
    let ca_error = |reason: String| Error::CaFile {
        setting,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| ca_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_error(
            "no PEM certificate (BEGIN CERTIFICATE) in it".into(),
        ));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    Ok(())
}

/// rustls' WebPKI verifier over `roots`, with `provider`'s signature algorithms and no revocation lists.
///
/// # Errors
/// [`Error::Tls`] (no roots at all: cannot happen, the public roots are always there).
fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| Error::Tls(e.to_string()))
}

/// libpq's `verify-ca`: the certificate is verified by [`WebPkiServerVerifier`], and only its complaint that
/// the certificate does not name the host is forgiven.
///
/// That is sound because `WebPkiServerVerifier::verify_server_cert` (rustls 0.23) checks the chain first
/// (trust anchor, validity dates, signatures, key usage, revocation) and returns its error, and checks the
/// name only once all of that passed: a name error means everything else did. Handshake signatures are
/// verified by the same verifier.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

/// `host:port, … (sslmode=…)` for messages, with the mode asked for; never the user or password.
fn target(config: &Config, mode: TlsMode) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    format!("{} (sslmode={})", hosts.join(", "), mode.name())
}

/// The error and its causes, `: `-separated (tokio-postgres' own message is only the kind: "db error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Whether the handshake failed because the server's certificate did not verify.
fn is_certificate_error(e: &tokio_postgres::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        // tokio-rustls hands rustls' error over inside an io::Error.
        let tls = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| err.downcast_ref::<rustls::Error>());
        if matches!(
            tls,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use tokio_postgres::config::SslMode;

    use super::*;

    #[test]
    fn every_mode_parses_in_both_forms() {
        for (url, mode, handed) in [
            ("postgres://tmi@db/tmi", TlsMode::Prefer, SslMode::Prefer),
            ("host=db user=tmi", TlsMode::Prefer, SslMode::Prefer),
            (
                "postgres://tmi@db/tmi?sslmode=disable",
                TlsMode::Disable,
                SslMode::Disable,
            ),
            (
                "postgres://tmi@db/tmi?sslmode=prefer",
                TlsMode::Prefer,
                SslMode::Prefer,
            ),
            (
                "postgres://tmi@db/tmi?sslmode=require",
                TlsMode::Require,
                SslMode::Require,
            ),
            (
                "postgres://tmi@db/tmi?sslmode=verify-ca",
                TlsMode::VerifyCa,
                SslMode::Require,
            ),
            (
                "postgresql://tmi@db/tmi?sslmode=verify-full",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
            (
                "postgres://tmi@db/tmi?connect_timeout=5&sslmode=verify-ca&application_name=m",
                TlsMode::VerifyCa,
                SslMode::Require,
            ),
            // Percent-encoded, as libpq decodes it.
            (
                "postgres://tmi@db/tmi?sslmode=verify%2dfull",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
            // libpq (and tokio-postgres) take the last one.
            (
                "postgres://tmi@db/tmi?sslmode=disable&sslmode=verify-full",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
            (
                "host=db user=tmi sslmode=disable",
                TlsMode::Disable,
                SslMode::Disable,
            ),
            (
                "host=db user=tmi sslmode=prefer",
                TlsMode::Prefer,
                SslMode::Prefer,
            ),
            (
                "host=db user=tmi sslmode=require",
                TlsMode::Require,
                SslMode::Require,
            ),
            (
                "host=db user=tmi sslmode=verify-ca",
                TlsMode::VerifyCa,
                SslMode::Require,
            ),
            (
                "sslmode=verify-full host=db user=tmi",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
            (
                "host=db sslmode = 'verify-full' user=tmi",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
            (
                "host=db sslmode='verify-ca' user=tmi",
                TlsMode::VerifyCa,
                SslMode::Require,
            ),
            (
                "host=db sslmode='require' user=tmi",
                TlsMode::Require,
                SslMode::Require,
            ),
            (
                r"host=db sslmode=verify\-full user=tmi",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
            (
                "host=db sslmode=verify-ca sslmode=disable user=tmi",
                TlsMode::Disable,
                SslMode::Disable,
            ),
            (
                "\thost=db\n  sslmode\t=\t'verify-full'\n",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
        ] {
            let parsed = parse(url).unwrap();
            assert_eq!(parsed.mode, mode, "{url}");
            assert_eq!(parsed.config.get_ssl_mode(), handed, "{url}");
            assert_eq!(
                parsed.config.get_hosts(),
                [Host::Tcp("db".to_owned())],
                "{url}"
            );
            assert_eq!(parsed.root_cert, None, "{url}");
        }
    }

    #[test]
    fn the_rest_of_the_string_is_parsed_as_written() {
        let parsed = parse(
            "postgres://tmi:pa%40ss@db:6432/tmi?application_name=migrate&sslmode=verify-full&connect_timeout=7",
        )
        .unwrap();
        let config = &parsed.config;
        assert_eq!(config.get_user(), Some("tmi"));
        assert_eq!(config.get_password(), Some(&b"pa@ss"[..]));
        assert_eq!(config.get_dbname(), Some("tmi"));
        assert_eq!(config.get_ports(), [6432]);
        assert_eq!(config.get_application_name(), Some("migrate"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(7)));

        // An sslmode inside a quoted value is part of that value, not a parameter.
        let parsed = parse("host=db password='x sslmode=verify-full' user=tmi").unwrap();
        assert_eq!(parsed.mode, TlsMode::Prefer);
        assert_eq!(
            parsed.config.get_password(),
            Some(&b"x sslmode=verify-full"[..])
        );
        assert_eq!(parsed.config.get_user(), Some("tmi"));
    }

    #[test]
    fn key_value_syntax_errors_point_into_the_string_as_written() {
        // The rewritten value is padded to its length: tokio-postgres' byte offset is the operator's.
        let err = parse("sslmode='verify-full' host db").unwrap_err();
        assert!(matches!(err, Error::ConnectionString(_)), "{err}");
        assert!(err.to_string().contains("at byte 27"), "{err}");
        let err = parse("sslrootcert='/etc/ca.pem' host db").unwrap_err();
        assert!(err.to_string().contains("at byte 31"), "{err}");
    }

    #[test]
    fn allow_is_refused_by_name() {
        for url in [
            "postgres://tmi@db/tmi?sslmode=allow",
            "postgresql://db/tmi?connect_timeout=5&sslmode=allow",
            "host=db user=tmi sslmode=allow",
            "host=db sslmode = 'allow' user=tmi",
        ] {
            let err = parse(url).unwrap_err();
            assert!(
                matches!(&err, Error::SslMode(m) if m == "allow"),
                "{url}: {err}"
            );
            let text = err.to_string();
            for needle in [
                "sslmode=allow",
                "plaintext",
                "verify-full",
                "verify-ca",
                "require",
            ] {
                assert!(text.contains(needle), "{needle:?} not in {text}");
            }
        }
    }

    #[test]
    fn values_libpq_does_not_know_are_errors_that_do_not_repeat_them() {
        for url in [
            "postgres://tmi@db/tmi?sslmode=verify-fullx",
            "postgres://tmi@db/tmi?sslmode=verify-full-x",
            "postgres://tmi@db/tmi?sslmode=Verify-Full",
            "postgres://tmi@db/tmi?sslmode=VERIFY-CA",
            "postgres://tmi@db/tmi?sslmode=verify_full",
            "postgres://tmi@db/tmi?sslmode=",
            "postgres://tmi@db/tmi?sslmode=verify-full%20",
            "postgres://tmi@db/tmi?sslmode=verify-full&sslmode=verify-everything",
            "host=db sslmode=verify-fullx",
            "host=db sslmode=Require",
            "host=db sslmode='verify-full '",
            "host=db sslmode=''",
            "host=db sslmode=verify-everything sslmode=require",
        ] {
            let err = parse(url).unwrap_err();
            assert!(matches!(err, Error::ConnectionString(_)), "{url}: {err}");
            let text = err.to_string();
            assert!(text.contains("`sslmode`"), "{url}: {text}");
            for bad in [
                "verify-fullx",
                "Verify-Full",
                "VERIFY-CA",
                "verify_full",
                "verify-everything",
            ] {
                assert!(!text.contains(bad), "{url}: {text}");
            }
        }
    }

    #[test]
    fn sslrootcert_is_taken_out_in_both_forms() {
        for (url, root_cert) in [
            (
                "postgres://tmi@db/tmi?sslrootcert=/etc/tmi/ca.pem",
                Some("/etc/tmi/ca.pem"),
            ),
            (
                "postgres://tmi@db/tmi?sslrootcert=/etc/tmi/ca.pem&sslmode=verify-full",
                Some("/etc/tmi/ca.pem"),
            ),
            (
                "postgres://tmi@db/tmi?sslmode=verify-ca&sslrootcert=/etc/tmi%20db/ca.pem",
                Some("/etc/tmi db/ca.pem"),
            ),
            (
                "postgres://tmi@db/tmi?application_name=m&sslrootcert=ca.pem&connect_timeout=5",
                Some("ca.pem"),
            ),
            (
                "postgres://tmi@db/tmi?sslrootcert=system&sslmode=require",
                None,
            ),
            ("postgres://tmi@db/tmi?sslrootcert=&sslmode=require", None),
            (
                "postgres://tmi@db/tmi?sslrootcert=/a.pem&sslrootcert=/b.pem",
                Some("/b.pem"),
            ),
            (
                "host=db sslrootcert=/etc/tmi/ca.pem user=tmi",
                Some("/etc/tmi/ca.pem"),
            ),
            (
                "sslrootcert = '/etc/tmi db/ca.pem' host=db",
                Some("/etc/tmi db/ca.pem"),
            ),
            (
                r"host=db sslrootcert=/etc/tmi\ db/ca.pem",
                Some("/etc/tmi db/ca.pem"),
            ),
            ("host=db sslrootcert=system sslmode=verify-full", None),
            ("host=db sslrootcert='' sslmode=verify-full", None),
        ] {
            let parsed = parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                parsed.root_cert.as_deref(),
                root_cert.map(Path::new),
                "{url}"
            );
            assert_eq!(
                parsed.config.get_hosts(),
                [Host::Tcp("db".to_owned())],
                "{url}"
            );
        }
        let parsed =
            parse("postgres://tmi@db/tmi?application_name=m&sslrootcert=ca.pem&connect_timeout=5")
                .unwrap();
        assert_eq!(parsed.config.get_application_name(), Some("m"));
        assert_eq!(
            parsed.config.get_connect_timeout(),
            Some(&Duration::from_secs(5))
        );
        assert_eq!(parsed.config.get_dbname(), Some("tmi"));
        // libpq's other TLS parameters are still unknown to tokio-postgres, and refused.
        let err = parse("host=db sslcert=/etc/tmi/client.pem").unwrap_err();
        assert!(err.to_string().contains("sslcert"), "{err}");
    }

    #[test]
    fn no_error_repeats_the_password() {
        for url in [
            "postgres://tmi:hunter2@db/tmi?sslmode=verify-everything",
            "postgres://tmi:hunter2@db/tmi?sslmode=hunter2",
            "postgres://tmi:hunter2@db/tmi?sslmode=allow",
            "postgres://tmi:hunter2@db/tmi?sslrootcert=/etc/ca.pem&sslmode=verify-fullx",
            "postgres://tmi:hunter2@db/tmi?sslrootcert=/etc/ca.pem&port=x",
            // tokio-postgres names an unknown key; here it is the password (decoded from %32).
            "postgres://tmi:hunter%32@db/tmi?sslmode=verify-full&hunter2=1",
            "postgres://db/tmi?password=hunter2&hunter2=1",
            "host=db password=hunter2 sslmode=hunter2",
            "host=db password='hunter2' sslrootcert=/etc/ca.pem hunter2=x",
            "host=db password=hunter2 sslmode='verify-full' hunter2",
        ] {
            let err = parse(url).unwrap_err();
            let text = err.to_string();
            assert!(!text.contains("hunter2"), "{url}: {text}");
            assert!(!format!("{err:?}").contains("hunter2"), "{url}: {err:?}");
            if url.contains("&hunter2=") {
                assert!(
                    text.ends_with("unknown option `[redacted]`"),
                    "{url}: {text}"
                );
            }
        }
    }

    #[test]
    fn target_names_hosts_ports_and_the_mode_asked_for_but_no_credentials() {
        let parsed = parse("postgres://tmi:hunter2@db.example:6432/tmi?sslmode=verify-ca").unwrap();
        assert_eq!(
            target(&parsed.config, parsed.mode),
            "db.example:6432 (sslmode=verify-ca)"
        );
        let parsed =
            parse("host=db.example user=tmi password=hunter2 sslmode='verify-full'").unwrap();
        assert_eq!(
            target(&parsed.config, parsed.mode),
            "db.example:5432 (sslmode=verify-full)"
        );
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("migrate-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(TlsMode::Require, &[(CA_FILE_SETTING, &empty)]).unwrap_err();
        assert!(matches!(err, Error::CaFile { .. }), "{err}");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        assert!(err.to_string().contains("postgres_ca_file"), "{err}");
        let missing = dir.join("missing.pem");
        let err = client_config(TlsMode::VerifyCa, &[(ROOT_CERT_SETTING, &missing)]).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        assert!(err.to_string().contains("sslrootcert"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        for mode in [TlsMode::Prefer, TlsMode::VerifyCa, TlsMode::VerifyFull] {
            assert!(client_config(mode, &[]).is_ok());
        }
    }

    /// A CA: its certificate (DER) and what signs with it.
    fn ca(name: &str) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().der().clone();
        (cert, Issuer::new(params, key))
    }

    /// A server certificate for `names`, signed by `issuer`; `expired`: valid in the year 2000 only.
    fn leaf(
        names: &[&str],
        issuer: &Issuer<'static, KeyPair>,
        expired: bool,
    ) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, issuer).unwrap().der().clone()
    }

    /// (verify-full's verifier, verify-ca's) trusting the public roots plus `ca`.
    fn verifiers(ca: &CertificateDer<'static>) -> (Arc<WebPkiServerVerifier>, ChainOnly) {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        roots.add(ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let full = webpki_verifier(roots, &provider).unwrap();
        (Arc::clone(&full), ChainOnly(full))
    }

    fn verify(
        verifier: &dyn ServerCertVerifier,
        cert: &CertificateDer<'_>,
        name: &str,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
    }

    fn certificate_error(result: Result<ServerCertVerified, rustls::Error>) -> CertificateError {
        match result {
            Err(rustls::Error::InvalidCertificate(e)) => e,
            Err(other) => panic!("not a certificate error: {other}"),
            Ok(_) => panic!("verified"),
        }
    }

    #[test]
    fn verify_ca_forgives_the_host_name_and_nothing_else() {
        let (tmi_ca, tmi) = ca("TMI database CA");
        let (_, other) = ca("Some other CA");
        let (full, chain_only) = verifiers(&tmi_ca);
        let good = leaf(&["127.0.0.1"], &tmi, false);

        // The name it holds: both accept it.
        verify(full.as_ref(), &good, "127.0.0.1").unwrap();
        verify(&chain_only, &good, "127.0.0.1").unwrap();
        // Other names: verify-full refuses, verify-ca accepts.
        for name in ["localhost", "::1"] {
            let err = certificate_error(verify(full.as_ref(), &good, name));
            assert!(
                matches!(
                    err,
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ),
                "{name}: {err:?}"
            );
            verify(&chain_only, &good, name).unwrap();
        }

        // Signed by a CA that is not trusted, with or without the right name: refused.
        let stranger = leaf(&["127.0.0.1"], &other, false);
        for name in ["127.0.0.1", "localhost"] {
            let err = certificate_error(verify(&chain_only, &stranger, name));
            assert_eq!(err, CertificateError::UnknownIssuer, "{name}");
        }

        // Expired: refused, name or not.
        let expired = leaf(&["127.0.0.1"], &tmi, true);
        for name in ["127.0.0.1", "localhost"] {
            let err = certificate_error(verify(&chain_only, &expired, name));
            assert!(
                matches!(
                    err,
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                ),
                "{name}: {err:?}"
            );
        }

        // A signature that does not match: refused.
        let mut forged = good.to_vec();
        if let Some(last) = forged.last_mut() {
            *last ^= 0x01;
        }
        let forged = CertificateDer::from(forged);
        for name in ["127.0.0.1", "localhost"] {
            let err = certificate_error(verify(&chain_only, &forged, name));
            assert_eq!(err, CertificateError::BadSignature, "{name}");
        }

        // Not a certificate at all.
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let err = certificate_error(verify(&chain_only, &garbage, "localhost"));
        assert_eq!(err, CertificateError::BadEncoding);

        // Handshake signatures go to the same verifier.
        assert_eq!(
            chain_only.supported_verify_schemes(),
            full.supported_verify_schemes()
        );
    }
}
