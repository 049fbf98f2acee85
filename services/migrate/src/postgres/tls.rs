//! The rustls client configuration: the public roots plus the configured CA files, and the `verify-ca`
//! verifier that forgives only a host name the certificate does not name.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use super::conninfo::TlsMode;
use crate::error::{Error, Result};

/// How [`Error::CaFile`] names `[migrate] postgres_ca_file`.
pub(super) const CA_FILE_SETTING: &str = "[migrate] postgres_ca_file";
/// How [`Error::CaFile`] names the connection string's `sslrootcert`.
pub(super) const ROOT_CERT_SETTING: &str = "[migrate] postgres_url: sslrootcert";

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

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    use super::*;

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
