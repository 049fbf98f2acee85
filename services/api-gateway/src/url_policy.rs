//! The create-time webhook URL policy (TMI's `webhook_url_validator.go`).
//!
//! In order:
//! 1. the URL must start with `https://` (case-insensitive), or `http://` when `outbound.allow_http_targets`;
//! 2. it must parse and name a host;
//! 3. the host, in its IDNA ASCII form (the URL parser applies UTS #46 ToASCII), is at most 253 characters
//!    of dot-separated labels of 1–63 characters, each starting and ending with an ASCII letter or digit
//!    with only letters, digits and hyphens inside (so IPv6 literals, underscores and a trailing dot fail);
//! 4. the lower-cased host must match no deny-list glob (`[subscriptions] deny_globs`, shell-style, lower-
//!    cased) or regular expression (`deny_regexes`).
//!
//! Nothing is resolved here: addresses are checked again at send time by the delivery-worker. Every
//! rejection is a [`UrlRejection`] whose text is TMI's reason, answered as
//! `{"error":"invalid webhook URL: <reason>","error_description":""}`.

use std::fmt;

use delivery_model::store::import::{DenyPatternType, UrlDenyEntry};
use regex::Regex;
use url::{Host, Url};

const HTTPS_PREFIX: &str = "https://";
const HTTP_PREFIX: &str = "http://";
/// Longest host name in ASCII form (RFC 1035).
const MAX_HOST_LEN: usize = 253;
/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;
/// Shown for deny-list entries, which carry no description of their own in the configuration.
const DEFAULT_DENY_DESCRIPTION: &str = "blocked by security policy";

/// Why a URL was refused; the text is TMI's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRejection(pub String);

impl fmt::Display for UrlRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn reject(reason: impl Into<String>) -> UrlRejection {
    UrlRejection(reason.into())
}

enum DenyRule {
    Glob {
        pattern: String,
        glob: glob::Pattern,
    },
    Regex(Regex),
}

/// The compiled policy.
pub struct UrlPolicy {
    allow_http: bool,
    deny: Vec<DenyRule>,
}

impl UrlPolicy {
    /// Compiles the deny list. Like TMI, an entry that is not a valid pattern is skipped (with a warning)
    /// rather than refusing to start; regular expressions were already validated with the configuration.
    pub fn new(allow_http: bool, deny_globs: &[String], deny_regexes: &[String]) -> Self {
        let mut deny = Vec::with_capacity(deny_globs.len() + deny_regexes.len());
        for g in deny_globs {
            match glob::Pattern::new(&g.to_lowercase()) {
                Ok(glob) => deny.push(DenyRule::Glob {
                    pattern: g.clone(),
                    glob,
                }),
                Err(e) => {
                    tracing::warn!(pattern = %g, error = %e, "skipping invalid deny-list glob")
                }
            }
        }
        for r in deny_regexes {
            match Regex::new(r) {
                Ok(re) => deny.push(DenyRule::Regex(re)),
                Err(e) => {
                    tracing::warn!(pattern = %r, error = %e, "skipping invalid deny-list regex")
                }
            }
        }
        Self { allow_http, deny }
    }

    /// Checks `raw` as given in the request.
    ///
    /// # Errors
    /// [`UrlRejection`] with TMI's reason.
    pub fn validate(&self, raw: &str) -> Result<(), UrlRejection> {
        self.validate_with(raw, &[])
    }

    /// [`validate`](Self::validate), then the deny list imported from TMI's `webhook_url_deny_list`
    /// (`webhook:url_deny_list`, read per create so an import applies at once). An imported entry's own
    /// description is the reason shown, as in TMI; a pattern that does not compile is skipped, as above.
    ///
    /// # Errors
    /// [`UrlRejection`] with TMI's reason.
    pub fn validate_with(&self, raw: &str, imported: &[UrlDenyEntry]) -> Result<(), UrlRejection> {
        let prefix_len = self.check_scheme(raw)?;
        check_authority(raw.get(prefix_len..).unwrap_or_default())?;
        let url = Url::parse(raw).map_err(|e| match e {
            url::ParseError::EmptyHost => reject("URL must contain a valid hostname"),
            e => reject(format!("invalid URL format: {e}")),
        })?;
        let host = match url.host() {
            None => return Err(reject("URL must contain a valid hostname")),
            Some(Host::Domain(d)) => d.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            // TMI sees the bare address, whose colons fail the label rules below.
            Some(Host::Ipv6(ip)) => ip.to_string(),
        };
        if host.is_empty() {
            return Err(reject("URL must contain a valid hostname"));
        }
        validate_hostname(&host).map_err(|e| reject(format!("invalid hostname: {e}")))?;
        let host = host.to_lowercase();
        self.check_deny_list(&host)?;
        for entry in imported {
            let hit = match entry.pattern_type {
                DenyPatternType::Glob => glob::Pattern::new(&entry.pattern.to_lowercase())
                    .is_ok_and(|g| g.matches(&host)),
                DenyPatternType::Regex => {
                    Regex::new(&entry.pattern).is_ok_and(|r| r.is_match(&host))
                }
            };
            if hit {
                let why = entry
                    .description
                    .as_deref()
                    .unwrap_or(DEFAULT_DENY_DESCRIPTION);
                return Err(reject(format!(
                    "URL blocked: {why} (pattern: {})",
                    entry.pattern
                )));
            }
        }
        Ok(())
    }

    /// Returns the length of the accepted `scheme://` prefix.
    fn check_scheme(&self, raw: &str) -> Result<usize, UrlRejection> {
        if raw.len() < HTTPS_PREFIX.len() && !(self.allow_http && raw.len() >= HTTP_PREFIX.len()) {
            return Err(reject("URL too short: must start with https://"));
        }
        let starts = |prefix: &str| {
            raw.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        };
        if starts(HTTPS_PREFIX) {
            return Ok(HTTPS_PREFIX.len());
        }
        if self.allow_http && starts(HTTP_PREFIX) {
            return Ok(HTTP_PREFIX.len());
        }
        // TMI shows the first eight bytes; taking characters keeps a multi-byte character whole.
        let found: String = raw.chars().take(HTTPS_PREFIX.len()).collect();
        if self.allow_http {
            Err(reject(format!(
                "URL must start with https:// or http:// (found: {found})"
            )))
        } else {
            Err(reject(format!(
                "URL must start with https:// (found: {found})"
            )))
        }
    }

    fn check_deny_list(&self, host: &str) -> Result<(), UrlRejection> {
        for rule in &self.deny {
            let (hit, pattern) = match rule {
                DenyRule::Glob { pattern, glob } => (glob.matches(host), pattern.as_str()),
                DenyRule::Regex(re) => (re.is_match(host), re.as_str()),
            };
            if hit {
                return Err(reject(format!(
                    "URL blocked: {DEFAULT_DENY_DESCRIPTION} (pattern: {pattern})"
                )));
            }
        }
        Ok(())
    }
}

/// Checks the raw authority (what follows `scheme://` up to the path, query or fragment) before the WHATWG
/// parser sees it. That parser repairs what TMI's Go parser refuses — `https:///x` gets host `x`, a
/// backslash ends the host — and the host checked here must be the host the worker will reach whatever
/// parser it uses, so such URLs are refused. User information is refused too, as TMI's schema does.
fn check_authority(after_scheme: &str) -> Result<(), UrlRejection> {
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = &after_scheme[..end];
    if authority.is_empty() {
        return Err(reject("URL must contain a valid hostname"));
    }
    if authority.contains('@') {
        return Err(reject("URL must not contain user information"));
    }
    if authority.contains('\\') {
        return Err(reject("invalid URL format: backslash in host"));
    }
    Ok(())
}

/// RFC 1035/1123 host rules on the ASCII form.
fn validate_hostname(host: &str) -> Result<(), String> {
    if host.len() > MAX_HOST_LEN {
        return Err(format!(
            "hostname too long (max {MAX_HOST_LEN} characters): {}",
            host.len()
        ));
    }
    for label in host.split('.') {
        validate_label(label).map_err(|e| format!("invalid label '{label}': {e}"))?;
    }
    Ok(())
}

fn validate_label(label: &str) -> Result<(), String> {
    let bytes = label.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err(format!(
            "label length must be 1-{MAX_LABEL_LEN} characters: 0"
        ));
    };
    if bytes.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label length must be 1-{MAX_LABEL_LEN} characters: {}",
            bytes.len()
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "label must start with alphanumeric character: '{}'",
            char::from(first)
        ));
    }
    if !last.is_ascii_alphanumeric() {
        return Err(format!(
            "label must end with alphanumeric character: '{}'",
            char::from(last)
        ));
    }
    if let Some(bad) = label
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
    {
        return Err(format!(
            "label contains invalid character: '{bad}' (only alphanumeric and hyphen allowed)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded() -> UrlPolicy {
        let globs: Vec<String> = [
            "localhost",
            "127.*",
            "10.*",
            "169.254.169.254",
            "metadata.google.internal",
            "*.Internal.Example",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        UrlPolicy::new(false, &globs, &[r"^evil\d+\.example\.org$".to_owned()])
    }

    fn reason(p: &UrlPolicy, url: &str) -> String {
        match p.validate(url) {
            Ok(()) => panic!("{url} was accepted"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn accepts_ordinary_https_urls() {
        let p = seeded();
        for ok in [
            "https://example.com/hook",
            "HTTPS://Example.COM:8443/a?b=c",
            "https://hooks.slack.com/services/T0/B0/X",
            "https://xn--bcher-kva.example/hook",
            "https://bücher.example/hook",
            "https://93.184.216.34/hook",
        ] {
            assert_eq!(p.validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn scheme_rules() {
        let p = seeded();
        assert_eq!(
            reason(&p, "https:/"),
            "URL too short: must start with https://"
        );
        assert_eq!(
            reason(&p, "http://example.com"),
            "URL must start with https:// (found: http://e)"
        );
        assert_eq!(
            reason(&p, "ftp://example.com"),
            "URL must start with https:// (found: ftp://ex)"
        );
        let http = UrlPolicy::new(true, &[], &[]);
        assert_eq!(http.validate("http://example.com/x"), Ok(()));
        assert_eq!(http.validate("http://a.b"), Ok(()));
        assert!(
            reason(&http, "ftp://example.com")
                .starts_with("URL must start with https:// or http://")
        );
    }

    #[test]
    fn host_rules() {
        let p = seeded();
        assert_eq!(
            reason(&p, "https:///path"),
            "URL must contain a valid hostname"
        );
        assert_eq!(
            reason(&p, "https://?q"),
            "URL must contain a valid hostname"
        );
        assert_eq!(
            reason(&p, "https://user:pw@example.com/"),
            "URL must not contain user information"
        );
        assert_eq!(
            reason(&p, r"https://good.example\@127.0.0.1/"),
            "URL must not contain user information"
        );
        assert_eq!(
            reason(&p, r"https://127.0.0.1\.good.example/"),
            "invalid URL format: backslash in host"
        );
        assert!(
            reason(&p, "https://example.com./x")
                .starts_with("invalid hostname: invalid label '': label length")
        );
        assert!(reason(&p, "https://under_score.example.com").contains("invalid character: '_'"));
        assert!(reason(&p, "https://-lead.example.com").contains("must start with alphanumeric"));
        assert!(reason(&p, "https://[::1]:8080/").starts_with("invalid hostname"));
        let long = format!("https://{}.com", "a".repeat(64));
        assert!(reason(&p, &long).contains("label length must be 1-63 characters: 64"));
        let too_long = format!("https://{}com", "abcdefghi.".repeat(26));
        assert!(reason(&p, &too_long).contains("hostname too long"));
        assert!(reason(&p, "https://exa mple.com").starts_with("invalid URL format"));
    }

    #[test]
    fn deny_list_matches_lower_cased_host() {
        let p = seeded();
        assert_eq!(
            reason(&p, "https://LOCALHOST/x"),
            "URL blocked: blocked by security policy (pattern: localhost)"
        );
        assert_eq!(
            reason(&p, "https://127.0.0.1:8443/"),
            "URL blocked: blocked by security policy (pattern: 127.*)"
        );
        assert!(
            reason(&p, "https://metadata.google.internal/").contains("metadata.google.internal")
        );
        assert!(reason(&p, "https://a.internal.example/").contains("*.Internal.Example"));
        assert!(
            reason(&p, "https://EVIL42.example.org/").contains(r"pattern: ^evil\d+\.example\.org$")
        );
        // The parser normalises numeric hosts, so other spellings of loopback are caught too.
        assert!(reason(&p, "https://2130706433/").contains("127.*"));
        assert_eq!(p.validate("https://good.example.org/"), Ok(()));
    }

    #[test]
    fn imported_deny_entries_refuse_with_their_own_description() {
        use delivery_model::store::import::{DenyPatternType, UrlDenyEntry};
        let entry = |pattern: &str, pattern_type, description: Option<&str>| UrlDenyEntry {
            id: pattern.to_owned(),
            pattern: pattern.to_owned(),
            pattern_type,
            description: description.map(str::to_owned),
            created_at: 0,
        };
        let imported = [
            entry(
                "*.internal.example.com",
                DenyPatternType::Glob,
                Some("internal hosts"),
            ),
            entry(r"^10\.", DenyPatternType::Regex, None),
        ];
        let p = UrlPolicy::new(false, &[], &[]);
        assert_eq!(
            p.validate_with("https://API.internal.example.com/x", &imported),
            Err(reject(
                "URL blocked: internal hosts (pattern: *.internal.example.com)"
            ))
        );
        assert_eq!(
            p.validate_with("https://10.1.2.3/x", &imported),
            Err(reject(format!(
                "URL blocked: {DEFAULT_DENY_DESCRIPTION} (pattern: ^10\\.)"
            )))
        );
        assert_eq!(p.validate_with("https://example.com/x", &imported), Ok(()));
    }
}
