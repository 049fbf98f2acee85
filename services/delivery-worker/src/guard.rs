//! Outbound address policy (SSRF guard).
//!
//! Subscription URLs are typed by strangers, so every connection is vetted **at connect time**: the host is
//! resolved, every address is checked, and the connection goes to a vetted address itself — a DNS answer
//! that changes between check and connect cannot reach an internal host. Refused: loopback, private
//! (RFC 1918, fc00::/7), link-local (incl. cloud metadata 169.254.169.254), CGNAT (100.64/10), unspecified,
//! "this network" (0/8), multicast, broadcast and reserved ranges — also when written as IPv4-mapped,
//! IPv4-compatible, NAT64, 6to4 or Teredo IPv6, or in decimal/octal/hex IPv4 forms (the resolver turns those
//! into ordinary addresses, which are then checked).
//!
//! An explicit allowlist (host names, `*.domain` patterns, or CIDRs) lets operators reach self-hosted
//! internal receivers; the tests allow loopback only through it. Some addresses no allowlist opens
//! ([`never_allowed`]): link-local and cloud metadata endpoints (credentials live there), and NAT64
//! local-use (64:ff9b:1::/48, whose layout is operator-defined, so its IPv4 target cannot be known).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address or host is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("destination refused: {host} resolves to {ip}, a {range} address")]
    BlockedAddress {
        host: String,
        ip: IpAddr,
        range: &'static str,
    },
    #[error("destination refused: {0}")]
    Policy(String),
}

/// The allowlist and scheme policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allow_http: bool,
    hosts: Vec<String>,
    suffixes: Vec<String>,
    nets: Vec<IpNet>,
}

impl Policy {
    /// Builds the policy from `outbound.allow_http_targets` and `outbound.allowlist`.
    ///
    /// # Errors
    /// A malformed CIDR (config validation catches it first).
    pub fn new(allow_http: bool, allowlist: &[String]) -> Result<Self, ipnet::AddrParseError> {
        let mut p = Self {
            allow_http,
            ..Self::default()
        };
        for entry in allowlist {
            let e = entry.trim().to_ascii_lowercase();
            if e.contains('/') {
                p.nets.push(e.parse()?);
            } else if let Ok(ip) = e
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                p.nets.push(IpNet::from(ip));
            } else if let Some(suffix) = e.strip_prefix("*.") {
                p.suffixes.push(format!(".{suffix}"));
            } else {
                p.hosts.push(e);
            }
        }
        Ok(p)
    }

    /// Checks the URL scheme.
    ///
    /// # Errors
    /// `http` while http targets are not allowed, or any other scheme.
    pub fn check_scheme(&self, scheme: &str) -> Result<(), Refusal> {
        match scheme {
            "https" => Ok(()),
            "http" if self.allow_http => Ok(()),
            "http" => Err(Refusal::Policy(
                "http:// targets are not allowed (outbound.allow_http_targets)".into(),
            )),
            other => Err(Refusal::Policy(format!("scheme {other:?} is not allowed"))),
        }
    }

    /// Whether the host name itself is allowlisted (its addresses then skip every check but
    /// [`never_allowed`]).
    pub fn host_allowed(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&h) || self.suffixes.iter().any(|s| h.ends_with(s.as_str()))
    }

    /// Checks one resolved address of `host`: never an address no allowlist opens; otherwise allowed when
    /// the host name or the address is allowlisted, or the address is not internal.
    ///
    /// # Errors
    /// The address is never allowed, or internal and not allowlisted.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let blocked = |range| Refusal::BlockedAddress {
            host: host.to_owned(),
            ip,
            range,
        };
        if let Some(range) = never_allowed(ip) {
            return Err(blocked(range));
        }
        if self.host_allowed(host) || self.nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(range) => Err(Refusal::BlockedAddress {
                host: host.to_owned(),
                ip,
                range,
            }),
            None => Ok(()),
        }
    }
}

/// The effective policy in one line, for the startup log.
impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nets: Vec<String> = self.nets.iter().map(ToString::to_string).collect();
        let suffixes: Vec<String> = self.suffixes.iter().map(|s| format!("*{s}")).collect();
        write!(
            f,
            "schemes: {}; internal addresses refused except allowlisted hosts [{}], patterns [{}], nets [{}]; \
             always refused: link-local and cloud metadata (169.254.0.0/16, fe80::/10, fd00:ec2::254, \
             100.100.100.200), NAT64 local-use 64:ff9b:1::/48",
            if self.allow_http {
                "https, http"
            } else {
                "https"
            },
            self.hosts.join(", "),
            suffixes.join(", "),
            nets.join(", "),
        )
    }
}

/// Addresses refused whatever the allowlist says, with their range's name: link-local (where cloud
/// metadata services answer with instance credentials), the metadata endpoints outside it, and NAT64
/// local-use, also when written in an IPv6 form that embeds them.
pub fn never_allowed(ip: IpAddr) -> Option<&'static str> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                return Some("NAT64 local-use");
            }
            if s[0] & 0xffc0 == 0xfe80 {
                return Some("link-local");
            }
            // AWS's IPv6 instance metadata endpoint.
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                return Some("cloud metadata");
            }
            embedded_v4(v6)?
        }
    };
    match v4.octets() {
        [169, 254, ..] => Some("link-local"),
        // Alibaba Cloud's metadata endpoint (in the CGNAT range, which an allowlist may open).
        [100, 100, 100, 200] => Some("cloud metadata"),
        _ => None,
    }
}

/// The name of the blocked range `ip` falls in, if any.
pub fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    if let Some(range) = never_allowed(ip) {
        return Some(range);
    }
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [127, ..] => "loopback",
        [10, ..] => "private",
        [172, b, ..] if (16..=31).contains(&b) => "private",
        [192, 168, ..] => "private",
        [169, 254, ..] => "link-local",
        [100, b, ..] if (64..=127).contains(&b) => "carrier-grade NAT",
        [0, ..] => "unspecified",
        [255, 255, 255, 255] => "broadcast",
        [a, ..] if (224..=239).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved",
        [192, 0, 0, _] => "IETF protocol assignment",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking",
        _ => return None,
    })
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) && !(s[5] == 0 && s[6] == 0) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // SIIT IPv4-translated ::ffff:0:a.b.c.d (RFC 6145)
    if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // NAT64 well-known prefix 64:ff9b::/96 only: local-use 64:ff9b:1::/48 has an operator-chosen layout
    // and is refused outright (see `never_allowed`).
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 6to4 2002:AABB:CCDD::/48
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        // The embedded IPv4 address is where the packets really go.
        return blocked_v4(v4);
    }
    let s = ip.segments();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique local (private)"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if s[0] & 0xffc0 == 0xfec0 {
        "site-local"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo tunnels reach arbitrary IPv4 hosts behind NAT.
        "Teredo"
    } else if s[0] == 0x2001 && s[1] == 0xdb8 {
        "documentation"
    } else if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        "discard-only"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn internal_ranges_are_blocked() {
        for s in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "fec0::1",
        ] {
            assert!(blocked_range(ip(s)).is_some(), "{s} must be blocked");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(blocked_range(ip(s)), None, "{s} must pass");
        }
    }

    #[test]
    fn allowlist_by_cidr_ip_and_name() {
        let p = Policy::new(
            true,
            &[
                "127.0.0.1".into(),
                "10.9.0.0/16".into(),
                "hooks.internal".into(),
                "*.corp.example".into(),
            ],
        )
        .unwrap_or_default();
        assert!(p.check_ip("x", ip("127.0.0.1")).is_ok());
        assert!(p.check_ip("x", ip("127.0.0.2")).is_err());
        assert!(p.check_ip("x", ip("10.9.3.4")).is_ok());
        assert!(p.host_allowed("HOOKS.internal"));
        assert!(p.host_allowed("a.b.corp.example"));
        assert!(!p.host_allowed("corp.example.evil.com"));
    }

    #[test]
    fn metadata_link_local_and_nat64_local_use_are_refused_even_when_allowlisted() {
        let p = Policy::new(
            true,
            &[
                "metadata.internal".into(),
                "169.254.0.0/16".into(),
                "fd00::/8".into(),
                "fe80::/10".into(),
                "100.64.0.0/10".into(),
                "64:ff9b::/32".into(),
                "::ffff:0:0/96".into(),
            ],
        )
        .unwrap_or_default();
        for s in [
            "169.254.169.254",
            "169.254.1.1",
            "fd00:ec2::254",
            "fe80::1",
            "100.100.100.200",
            "::ffff:169.254.169.254",
            "::ffff:0:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a",
            "64:ff9b:1:ffff::",
        ] {
            assert!(
                p.check_ip("metadata.internal", ip(s)).is_err(),
                "{s} must be refused by name"
            );
            assert!(
                p.check_ip("x", ip(s)).is_err(),
                "{s} must be refused by net"
            );
        }
        // What the allowlist opens stays open.
        assert!(p.check_ip("metadata.internal", ip("10.0.0.1")).is_ok());
        assert!(p.check_ip("x", ip("100.64.0.1")).is_ok());
        assert!(p.check_ip("x", ip("fd00::1")).is_ok());
    }

    #[test]
    fn siit_addresses_are_decoded_and_nat64_local_use_is_blocked() {
        assert_eq!(blocked_range(ip("::ffff:0:127.0.0.1")), Some("loopback"));
        assert_eq!(blocked_range(ip("::ffff:0:10.1.2.3")), Some("private"));
        assert_eq!(blocked_range(ip("::ffff:0:8.8.8.8")), None);
        // Local-use NAT64 with a public IPv4 in the /96 position is still refused: its layout is unknown.
        assert_eq!(
            blocked_range(ip("64:ff9b:1::808:808")),
            Some("NAT64 local-use")
        );
        assert_eq!(blocked_range(ip("64:ff9b::808:808")), None);
    }

    #[test]
    fn the_effective_policy_is_described() {
        let p = Policy::new(false, &["hooks.internal".into(), "10.9.0.0/16".into()])
            .unwrap_or_default();
        let line = p.to_string();
        assert!(line.contains("schemes: https;"), "{line}");
        assert!(
            line.contains("hooks.internal") && line.contains("10.9.0.0/16"),
            "{line}"
        );
        assert!(line.contains("169.254.0.0/16"), "{line}");
    }

    #[test]
    fn schemes() {
        let strict = Policy::new(false, &[]).unwrap_or_default();
        assert!(strict.check_scheme("https").is_ok());
        assert!(strict.check_scheme("http").is_err());
        assert!(strict.check_scheme("ftp").is_err());
        let lax = Policy::new(true, &[]).unwrap_or_default();
        assert!(lax.check_scheme("http").is_ok());
    }
}
