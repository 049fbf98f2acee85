//! The connection string: the `sslmode` asked for ([`TlsMode`]) and `sslrootcert` taken out for this
//! module, the rest handed to tokio-postgres (with `require` in place of `verify-ca` / `verify-full`).

use std::ops::Range;
use std::path::PathBuf;

use tokio_postgres::Config;

use super::messages::{chain, redact};
use super::params::{Form, Param, percent_decode, split};
use crate::error::{Error, Result};

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

    /// The mode when the connection string names none (issue #16): `verify-full`, not libpq's `prefer`, so
    /// that an active man-in-the-middle answering "no TLS" cannot get a plaintext session.
    pub const DEFAULT: Self = Self::VerifyFull;

    /// Whether the mode lets the session go on in plaintext.
    pub fn allows_plaintext(self) -> bool {
        matches!(self, Self::Disable | Self::Prefer)
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
    /// The `sslmode` asked for (the last one given, as libpq takes it; [`TlsMode::DEFAULT`] when none is).
    pub mode: TlsMode,
    /// The file `sslrootcert` names (the last one given). `None` when it is not given, empty or `system`.
    pub root_cert: Option<PathBuf>,
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
    let mut mode = None;
    let mut root_cert = None;
    // (what, by what): in the string's order, not overlapping.
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for param in params {
        // A value that is not UTF-8 is left for tokio-postgres to refuse.
        let Some(value) = &param.value else { continue };
        match param.key.as_str() {
            "sslmode" => {
                let asked = TlsMode::from_libpq(value)?;
                mode = Some(asked);
                let name = asked.tokio_postgres_name();
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
    let mut config = rewritten
        .parse::<Config>()
        .map_err(|e| Error::ConnectionString(chain(&e)))?;
    let mode = match mode {
        Some(mode) => mode,
        None => {
            // tokio-postgres would default to `prefer`: hand it the default's own mode.
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            TlsMode::DEFAULT
        }
    };
    Ok(ConnectionString {
        config,
        mode,
        root_cert,
    })
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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;
    use std::time::Duration;

    use tokio_postgres::config::{Host, SslMode};

    use super::*;

    #[test]
    fn every_mode_parses_in_both_forms() {
        for (url, mode, handed) in [
            (
                "postgres://tmi@db/tmi",
                TlsMode::VerifyFull,
                SslMode::Require,
            ),
            ("host=db user=tmi", TlsMode::VerifyFull, SslMode::Require),
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
        let parsed = parse("host=db password='x sslmode=disable' user=tmi").unwrap();
        assert_eq!(parsed.mode, TlsMode::DEFAULT);
        assert_eq!(
            parsed.config.get_password(),
            Some(&b"x sslmode=disable"[..])
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
}
