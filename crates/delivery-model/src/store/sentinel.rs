//! Reaching a Sentinel-managed primary: which sentinels to ask, for which master, with which credentials.
//!
//! The store's URL still says how to talk to the data nodes (scheme, ACL user and password, database); with
//! [`SentinelOptions`] set, its host and port are replaced by whatever primary the sentinels name. fred asks
//! a sentinel (`SENTINEL get-master-addr-by-name`) on every (re)connection and checks the node's `ROLE`
//! before using it, so after a failover the next reconnect lands on the promoted replica. The reconnect
//! policy set in [`Store::connect`](super::Store::connect) keeps retrying until one answers.

use std::fmt;

use fred::prelude::*;
use fred::types::config::{Server, ServerConfig};

/// The sentinels that know the primary, and how to authenticate to them.
///
/// `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelOptions {
    /// `(host, port)` of each sentinel; fred tries them in turn and refreshes the list from the sentinels.
    pub hosts: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> …`).
    pub master_name: String,
    /// ACL user for the sentinels (their own `requirepass`/ACL, separate from the data nodes').
    pub username: Option<String>,
    /// Password for the sentinels.
    pub password: Option<String>,
}

impl fmt::Debug for SentinelOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelOptions")
            .field("hosts", &self.hosts)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Points `config` at the primary the sentinels name instead of the URL's host, keeping the URL's
/// credentials, database and TLS for the data nodes. `None` leaves `config` as the URL made it.
pub(crate) fn apply(config: &mut Config, sentinel: Option<&SentinelOptions>) {
    if let Some(s) = sentinel {
        config.server = ServerConfig::Sentinel {
            hosts: s
                .hosts
                .iter()
                .map(|(h, p)| Server::new(h.as_str(), *p))
                .collect(),
            service_name: s.master_name.clone(),
            username: s.username.clone(),
            password: s.password.clone(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SentinelOptions {
        SentinelOptions {
            hosts: vec![("127.0.0.1".into(), 26379), ("127.0.0.1".into(), 26380)],
            master_name: "hookline".into(),
            username: Some("sentinel-user".into()),
            password: Some("s3cret-sentinel".into()),
        }
    }

    #[test]
    fn sentinel_replaces_the_url_host_and_keeps_its_credentials() {
        let Ok(mut config) = Config::from_url("redis://app:data-pass@ignored:6379/2") else {
            panic!("url")
        };
        apply(&mut config, Some(&opts()));
        assert_eq!(config.username.as_deref(), Some("app"));
        assert_eq!(config.password.as_deref(), Some("data-pass"));
        assert_eq!(config.database, Some(2));
        let ServerConfig::Sentinel {
            hosts,
            service_name,
            username,
            password,
        } = &config.server
        else {
            panic!("not a sentinel config: {:?}", config.server)
        };
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1].port, 26380);
        assert_eq!(service_name, "hookline");
        assert_eq!(username.as_deref(), Some("sentinel-user"));
        assert_eq!(password.as_deref(), Some("s3cret-sentinel"));
    }

    #[test]
    fn without_sentinels_the_url_decides() {
        let Ok(mut config) = Config::from_url("redis://127.0.0.1:7000") else {
            panic!("url")
        };
        apply(&mut config, None);
        assert!(matches!(config.server, ServerConfig::Centralized { .. }));
    }

    #[test]
    fn debug_hides_the_password() {
        let printed = format!("{:?}", opts());
        assert!(!printed.contains("s3cret-sentinel"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
