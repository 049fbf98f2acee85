//! How tests and services reach the cluster: its URL, store options and `HOOKLINE__REDIS__*` settings.

use std::path::{Path, PathBuf};

use delivery_model::store::{Secret, StoreOptions};

use super::{Cluster, ClusterTls, Node};
use crate::certs::TlsFiles;
use crate::redis::{ACL_PASSWORD, ACL_USER, ADMIN_PASSWORD, ADMIN_USER};

impl Cluster {
    /// `redis-cluster://127.0.0.1:P?node=127.0.0.1:Q&…` with every node's client port as a seed (fred
    /// needs one that answers; the rest it learns from `CLUSTER SLOTS`), or `rediss-cluster://…` for TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss-cluster"
        } else {
            "redis-cluster"
        };
        let mut ports = self.nodes.iter().map(Node::client_port);
        let first = ports.next().unwrap_or_default();
        let rest: Vec<String> = ports.map(|p| format!("node=127.0.0.1:{p}")).collect();
        if rest.is_empty() {
            format!("{scheme}://127.0.0.1:{first}")
        } else {
            format!("{scheme}://127.0.0.1:{first}?{}", rest.join("&"))
        }
    }

    /// The certificates of a TLS cluster.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Store options for the test's own store: the URL, the CA (and client certificate) of a TLS cluster,
    /// [`ADMIN_USER`] on an ACL cluster.
    pub fn admin_options(&self) -> StoreOptions {
        let mut opts = StoreOptions::new(self.url());
        if let Some(files) = &self.tls {
            opts.tls.ca_file = Some(files.ca.clone());
            opts.tls.client_cert_file = Some(files.client_cert.clone());
            opts.tls.client_key_file = Some(files.client_key.clone());
        }
        if self.opts.acl_rule.is_some() {
            opts.username = Some(ADMIN_USER.to_owned());
            opts.password = Some(Secret::new(ADMIN_PASSWORD));
        }
        opts
    }

    /// As [`admin_options`](Self::admin_options), as the restricted [`ACL_USER`] on an ACL cluster.
    pub fn service_options(&self) -> StoreOptions {
        let mut opts = self.admin_options();
        if self.opts.acl_rule.is_some() {
            opts.username = Some(ACL_USER.to_owned());
            opts.password = Some(Secret::new(ACL_PASSWORD));
        }
        opts
    }

    /// The `HOOKLINE__REDIS__*` settings a service needs to reach this cluster: the URL; the CA (and client
    /// certificate when mutual); on an ACL cluster [`ACL_USER`] with its password in a file.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        let mut env = vec![("HOOKLINE__REDIS__URL".to_owned(), self.url())];
        if let Some(files) = &self.tls {
            env.push(("HOOKLINE__REDIS__TLS_CA_FILE".into(), path(&files.ca)));
            if self.opts.tls == ClusterTls::Mutual {
                env.push((
                    "HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE".into(),
                    path(&files.client_cert),
                ));
                env.push((
                    "HOOKLINE__REDIS__TLS_CLIENT_KEY_FILE".into(),
                    path(&files.client_key),
                ));
            }
        }
        if self.opts.acl_rule.is_some() {
            env.push(("HOOKLINE__REDIS__USERNAME".into(), ACL_USER.into()));
            env.push((
                "HOOKLINE__REDIS__PASSWORD_FILE".into(),
                path(&self.password_file()),
            ));
        }
        env
    }

    /// The file holding [`ACL_PASSWORD`] (written for ACL clusters).
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("hookline.password")
    }

    /// Where the nodes keep their files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
