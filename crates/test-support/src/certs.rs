//! Certificates for TLS tests, made with rcgen (ring) into a directory: a CA, a server certificate it signs
//! for `127.0.0.1` and [`SERVER_NAME`] (and nothing else, so `localhost` is a name it does not carry), a
//! client certificate it signs, and a second CA that signed none of them (an untrusted CA).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The DNS name the server certificate carries besides `127.0.0.1` (for `tls_server_name`).
pub const SERVER_NAME: &str = "redis.hookline.test";

/// Paths of the PEM files [`generate`] wrote.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub untrusted_ca: PathBuf,
}

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

#[expect(
    clippy::expect_used,
    reason = "test harness: certificate generation cannot fail here"
)]
fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("CA key");
    let pem = params.self_signed(&key).expect("self-signed CA").pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate signed by `ca`: (certificate, key), PEM.
#[expect(
    clippy::expect_used,
    reason = "test harness: certificate generation cannot fail here"
)]
fn leaf(
    ca: &Ca,
    sans: Vec<String>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, &ca.issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

#[expect(clippy::expect_used, reason = "test harness")]
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM file");
    path
}

/// Makes the certificates and writes them as PEM files into `dir`.
///
/// # Panics
/// When a file cannot be written.
pub fn generate(dir: &Path) -> TlsFiles {
    let trusted = ca("hookline test CA");
    let untrusted = ca("some other CA");
    let (server_cert, server_key) = leaf(
        &trusted,
        vec!["127.0.0.1".to_owned(), SERVER_NAME.to_owned()],
        "hookline test redis",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        &trusted,
        Vec::new(),
        "hookline test client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    TlsFiles {
        ca: write(dir, "ca.pem", &trusted.pem),
        server_cert: write(dir, "server.pem", &server_cert),
        server_key: write(dir, "server.key", &server_key),
        client_cert: write(dir, "client.pem", &client_cert),
        client_key: write(dir, "client.key", &client_key),
        untrusted_ca: write(dir, "untrusted-ca.pem", &untrusted.pem),
    }
}
