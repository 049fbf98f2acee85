//! Reaching a Redis Cluster (issue #15): which URLs select it, what fred would silently ignore in them, and
//! TLS host names for nodes the client discovers.
//!
//! Cluster mode is chosen by the URL's scheme, fred's own syntax: `redis-cluster://[user:password@]host:port`
//! (or `rediss-cluster://` for TLS) with more seed nodes as `?node=host:port&node=…`. One seed that answers
//! is enough; fred asks it `CLUSTER SLOTS` for the rest, follows `MOVED`/`ASK` redirections, and reloads the
//! slot map after a failover or a reshard. A managed service's configuration endpoint is such a seed, so
//! its URL needs only the scheme changed. Credentials and the TLS settings ([`TlsOptions`](super::TlsOptions))
//! are the standalone ones and apply to every node.
//!
//! TLS host names: a node fred discovers is known by the address it announces, usually an IP. Without
//! `tls.server_name` its certificate must name that address (or the host name the node announces, Redis 7's
//! `cluster-announce-hostname`); with `tls.server_name`, every node — seeds and discovered ones — must carry
//! that one name, as with a cluster-wide or wildcard certificate.
//!
//! What cluster mode refuses: a database in the URL (a cluster has only database 0), query parameters other
//! than `node`, and Sentinel settings (the cluster fails over by itself). `WAIT` for replicas
//! (`wait_replicas`) works: each one is routed to the master of a slot just written
//! ([`durability`](super::durability)).

use std::net::IpAddr;
use std::sync::Arc;

use fred::prelude::*;
use fred::types::config::{HostMapping, ServerConfig, TlsHostMapping};

use super::StoreOptions;
use crate::error::{Error, Result};

/// The scheme of a plain-text cluster connection.
pub const CLUSTER_SCHEME: &str = "redis-cluster://";
/// The scheme of a TLS cluster connection.
pub const TLS_CLUSTER_SCHEME: &str = "rediss-cluster://";
/// The one query parameter a cluster URL may carry: another seed node.
const NODE_PARAM: &str = "node";

/// Whether `url` selects cluster mode.
pub fn is_cluster_url(url: &str) -> bool {
    let url = url.trim();
    url.starts_with(CLUSTER_SCHEME) || url.starts_with(TLS_CLUSTER_SCHEME)
}

/// What is wrong with the cluster URL `url`, if anything fred would otherwise ignore silently: a database
/// path, a fragment, or a query parameter other than `node=host:port`. `None` for a usable URL (or one that
/// is not a cluster URL). The reason never holds the URL, so never its password.
pub fn url_problem(url: &str) -> Option<String> {
    if !is_cluster_url(url) {
        return None;
    }
    let rest = url.trim().split_once("://").map_or("", |(_, r)| r);
    if rest.contains('#') {
        return Some("a cluster URL cannot carry a #fragment".into());
    }
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = before_query.find('/').map_or("", |i| &before_query[i..]);
    if !path.is_empty() && path != "/" {
        return Some(
            "a Redis Cluster has only database 0: remove the /database path from the URL".into(),
        );
    }
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let seed = param
            .strip_prefix(NODE_PARAM)
            .and_then(|p| p.strip_prefix('='));
        let valid = seed.and_then(|s| s.rsplit_once(':')).is_some_and(|(h, p)| {
            !h.is_empty() && !h.contains(':') && p.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Some(format!(
                "a cluster URL takes only `{NODE_PARAM}=host:port` query parameters (more seed nodes)"
            ));
        }
    }
    None
}

/// The checks of cluster mode that involve more than the URL; a no-op for other configurations.
///
/// # Errors
/// [`Error::Config`] for Sentinel settings with a cluster (see the module doc).
pub(crate) fn check_options(config: &Config, opts: &StoreOptions) -> Result<()> {
    if !config.server.is_clustered() {
        return Ok(());
    }
    if opts.sentinel.is_some() {
        return Err(Error::Config(
            "Sentinel and Redis Cluster exclude each other: a cluster fails over by itself".into(),
        ));
    }
    Ok(())
}

/// Makes every node of a TLS cluster verify against `name`: the seeds directly, the nodes fred discovers
/// (announced by IP) through a host mapping.
pub(crate) fn set_server_name(config: &mut Config, name: &str) {
    if let ServerConfig::Clustered { hosts, .. } = &mut config.server {
        for host in hosts {
            host.tls_server_name = Some(name.into());
        }
    }
    if let Some(tls) = &mut config.tls {
        tls.hostnames = TlsHostMapping::Custom(Arc::new(OneName(name.to_owned())));
    }
}

/// Maps every node address to the one configured TLS server name.
#[derive(Debug)]
struct OneName(String);

impl HostMapping for OneName {
    fn map(&self, _ip: &IpAddr, _default_host: &str) -> Option<String> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connection::fred_config;
    use crate::store::{Secret, SentinelOptions};

    fn refused(opts: &StoreOptions) -> String {
        match fred_config(opts) {
            Ok(_) => panic!("accepted {opts:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_cluster_url_makes_a_clustered_config_with_the_standalone_credentials_and_tls() {
        let mut opts = StoreOptions::new("rediss-cluster://cfg.example:7000?node=10.0.0.2:7001");
        opts.username = Some("hookline".into());
        opts.password = Some(Secret::new("pw-from-file"));
        opts.tls.server_name = Some("redis.example".into());
        let config = match fred_config(&opts) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let ServerConfig::Clustered { hosts, .. } = &config.server else {
            panic!("not clustered: {:?}", config.server)
        };
        assert_eq!(hosts.len(), 2);
        assert!(
            hosts
                .iter()
                .all(|h| h.tls_server_name.as_deref() == Some("redis.example"))
        );
        assert_eq!(config.username.as_deref(), Some("hookline"));
        assert_eq!(config.password.as_deref(), Some("pw-from-file"));
        let Some(tls) = &config.tls else {
            panic!("no TLS")
        };
        assert!(matches!(tls.hostnames, TlsHostMapping::Custom(_)));
        let Ok(ip) = "10.0.0.9".parse() else {
            panic!("ip")
        };
        let mapping = OneName("redis.example".into());
        assert_eq!(
            mapping.map(&ip, "cfg.example").as_deref(),
            Some("redis.example")
        );

        let plain = fred_config(&StoreOptions::new("redis-cluster://h:7000"));
        assert!(plain.is_ok_and(|c| c.server.is_clustered() && !c.uses_tls()));
    }

    #[test]
    fn what_cluster_mode_cannot_honour_is_refused() {
        let mut opts = StoreOptions::new("redis-cluster://:url-pw@h:7000/3");
        let e = refused(&opts);
        assert!(e.contains("database 0") && !e.contains("url-pw"), "{e}");

        opts.url = "redis-cluster://h:7000".into();
        opts.tls.ca_file = Some("/ca.pem".into());
        assert!(refused(&opts).contains("rediss-cluster://"));

        opts.tls = crate::store::TlsOptions::default();
        opts.sentinel = Some(SentinelOptions {
            hosts: vec![("s1".into(), 26379)],
            master_name: "hookline".into(),
            username: None,
            password: None,
        });
        assert!(refused(&opts).contains("Sentinel and Redis Cluster"));

        // WAIT for replicas works on a cluster: each one goes to the master of a slot just written.
        opts.sentinel = None;
        opts.wait_replicas = 1;
        assert!(fred_config(&opts).is_ok());
    }

    #[test]
    fn cluster_urls_are_recognised_by_scheme() {
        assert!(is_cluster_url("redis-cluster://h:7000"));
        assert!(is_cluster_url(" rediss-cluster://u:p@h:7000?node=g:7001"));
        assert!(!is_cluster_url("redis://h:7000"));
        assert!(!is_cluster_url("rediss://h:7000"));
        assert!(!is_cluster_url("redis-sentinel://h:26379"));
    }

    #[test]
    fn what_fred_would_ignore_is_a_problem() {
        for ok in [
            "redis-cluster://h:7000",
            "redis-cluster://h:7000/",
            "rediss-cluster://u:p@h:7000?node=g:7001&node=10.0.0.3:7002",
            "redis://h:1/2?anything",
        ] {
            assert_eq!(url_problem(ok), None, "{ok}");
        }
        let problem = |url: &str| match url_problem(url) {
            Some(p) => p,
            None => panic!("accepted {url}"),
        };
        assert!(problem("redis-cluster://h:7000/2").contains("database 0"));
        assert!(problem("redis-cluster://:s3cret@h:7000?timeout=5").contains("node=host:port"));
        assert!(problem("redis-cluster://h:7000?node=g").contains("node=host:port"));
        assert!(problem("redis-cluster://h:7000?node=g:0").contains("node=host:port"));
        assert!(problem("redis-cluster://h:7000#x").contains("fragment"));
        assert!(!problem("redis-cluster://:s3cret@h:7000/1").contains("s3cret"));
    }
}
