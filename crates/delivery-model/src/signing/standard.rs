//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, spec v1.0.0), for subscriptions whose
//! scheme is `standard`.
//!
//! The signed content is `<webhook-id>.<webhook-timestamp>.<body>`; `webhook-signature` is a
//! space-separated list of `<version>,<base64>` entries, so several signatures (several live secrets during
//! a rotation, an HMAC and an Ed25519 one) travel in one header and a verifier accepts the header when any
//! entry it understands matches. The secret is shown as `whsec_<base64>` and, unlike TMI's secrets, the HMAC
//! key is its **decoded** bytes: that is what every Standard Webhooks library does with it.
//!
//! Asymmetric signatures (`v1a,`, which the spec prefers) are Ed25519 over the same content. The signing key
//! is `whsk_<base64 of the 32-byte seed>` (kept by Hookline, sealed at rest like a secret); receivers get
//! the public key `whpk_<base64 of the 32-byte public key>` and need no shared secret at all.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use crate::error::{Error, Result};

/// Prefix of a Standard Webhooks symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Version tag of an HMAC-SHA256 signature entry.
pub const HMAC_VERSION: &str = "v1";
/// Version tag of an Ed25519 signature entry.
pub const ASYMMETRIC_VERSION: &str = "v1a";
/// Prefix of an Ed25519 signing (private) key.
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// Prefix of an Ed25519 public key.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
/// Bytes of an Ed25519 seed and of a public key.
const ED25519_LEN: usize = 32;
/// Random bytes in a generated secret (the spec allows 24 to 64).
const SECRET_BYTES: usize = 32;
/// Bounds of the decoded key a given secret may have (the spec's).
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;

/// A fresh `whsec_<base64 of 32 random bytes>` secret from the system CSPRNG.
///
/// # Errors
/// [`Error::Crypto`] when the system random source fails (not expected).
pub fn generate_secret() -> Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Crypto("no random bytes for a secret".into()))?;
    Ok(format!("{SECRET_PREFIX}{}", B64.encode(bytes)))
}

/// The HMAC key of a `whsec_` secret: its decoded bytes, when it is well formed (the prefix, standard
/// base64, 24 to 64 bytes). `None` otherwise; the API refuses such a secret for a `standard` subscription.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let bytes = B64.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    (MIN_KEY_BYTES..=MAX_KEY_BYTES)
        .contains(&bytes.len())
        .then_some(bytes)
}

/// A fresh Ed25519 signing key, `whsk_<base64 of a 32-byte random seed>`.
///
/// # Errors
/// [`Error::Crypto`] when the system random source fails (not expected).
pub fn generate_signing_key() -> Result<String> {
    let mut seed = [0u8; ED25519_LEN];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| Error::Crypto("no random bytes for a signing key".into()))?;
    Ok(format!("{SIGNING_KEY_PREFIX}{}", B64.encode(seed)))
}

fn key_pair(signing_key: &str) -> Option<Ed25519KeyPair> {
    let seed = B64
        .decode(signing_key.strip_prefix(SIGNING_KEY_PREFIX)?)
        .ok()?;
    Ed25519KeyPair::from_seed_unchecked(&seed).ok()
}

/// The `whpk_` public key of a `whsk_` signing key; `None` when the signing key is not well formed.
pub fn public_key(signing_key: &str) -> Option<String> {
    let pair = key_pair(signing_key)?;
    Some(format!(
        "{PUBLIC_KEY_PREFIX}{}",
        B64.encode(pair.public_key().as_ref())
    ))
}

/// The `v1a,<base64 Ed25519 signature>` entry of `signing_key` over the signed content; `None` when the
/// key is not well formed.
pub fn sign_v1a(signing_key: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let sig = key_pair(signing_key)?.sign(&signed_content(msg_id, timestamp, body));
    Some(format!("{ASYMMETRIC_VERSION},{}", B64.encode(sig.as_ref())))
}

/// Whether any `v1a,` entry of a `webhook-signature` value is a valid Ed25519 signature of the content
/// under the `whpk_` public key. Entries of other versions are skipped.
pub fn verify_v1a(
    public_key: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let Some(key) = public_key
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .and_then(|k| B64.decode(k).ok())
        .filter(|k| k.len() == ED25519_LEN)
    else {
        return false;
    };
    let key = UnparsedPublicKey::new(&ED25519, key);
    let content = signed_content(msg_id, timestamp, body);
    header.split(' ').any(|entry| {
        entry
            .strip_prefix(ASYMMETRIC_VERSION)
            .and_then(|r| r.strip_prefix(','))
            .and_then(|b| B64.decode(b).ok())
            .is_some_and(|sig| key.verify(&content, &sig).is_ok())
    })
}

/// The signed content: `<id>.<timestamp>.<body>`.
pub fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + body.len() + 24);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The `v1,<base64 HMAC-SHA256>` entry of `secret` (a `whsec_` secret) over the signed content; `None`
/// when the secret is not well formed (never the case for one Hookline stored: the API checks it).
pub fn sign_v1(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret_key(secret)?);
    let tag = hmac::sign(&key, &signed_content(msg_id, timestamp, body));
    Some(format!("{HMAC_VERSION},{}", B64.encode(tag.as_ref())))
}

/// Whether any `v1,` entry of a `webhook-signature` value is the HMAC of the content under `secret`,
/// compared in constant time. Entries of other versions are skipped, as the spec says.
pub fn verify_v1(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    matching_v1(secret, msg_id, timestamp, body, header).is_some()
}

/// The `v1,` entry of a `webhook-signature` value that verifies under `secret` (see [`verify_v1`]): the
/// one a replay check remembers.
pub fn matching_v1<'h>(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &'h str,
) -> Option<&'h str> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret_key(secret)?);
    let content = signed_content(msg_id, timestamp, body);
    header.split(' ').find(|entry| {
        entry
            .strip_prefix(HMAC_VERSION)
            .and_then(|r| r.strip_prefix(','))
            .and_then(|b| B64.decode(b).ok())
            .is_some_and(|tag| hmac::verify(&key, &content, &tag).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks reference test vector (libraries/python/tests and the other libraries).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_reference_vector() {
        assert_eq!(sign_v1(SECRET, ID, TS, BODY).as_deref(), Some(EXPECTED));
        assert!(verify_v1(SECRET, ID, TS, BODY, EXPECTED));
        assert!(verify_v1(
            SECRET,
            ID,
            TS,
            BODY,
            &format!("v1a,AAAA v1,bm9wZQ== {EXPECTED}")
        ));
    }

    #[test]
    fn rejects_what_differs() {
        assert!(!verify_v1(SECRET, ID, TS + 1, BODY, EXPECTED));
        assert!(!verify_v1(SECRET, "msg_other", TS, BODY, EXPECTED));
        assert!(!verify_v1(
            SECRET,
            ID,
            TS,
            br#"{"test": 2432232315}"#,
            EXPECTED
        ));
        let other = generate_secret().unwrap_or_default();
        assert!(!verify_v1(&other, ID, TS, BODY, EXPECTED));
        assert!(!verify_v1(
            SECRET,
            ID,
            TS,
            BODY,
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
    }

    #[test]
    fn ed25519_signs_and_verifies() {
        let sk = generate_signing_key().unwrap_or_default();
        let pk = public_key(&sk).unwrap_or_default();
        assert!(sk.starts_with(SIGNING_KEY_PREFIX) && pk.starts_with(PUBLIC_KEY_PREFIX));
        let sig = sign_v1a(&sk, ID, TS, BODY).unwrap_or_default();
        assert!(sig.starts_with("v1a,"));
        assert!(verify_v1a(&pk, ID, TS, BODY, &format!("{EXPECTED} {sig}")));
        assert!(!verify_v1a(&pk, ID, TS + 1, BODY, &sig));
        assert!(!verify_v1a(&pk, ID, TS, b"{}", &sig));
        let other = public_key(&generate_signing_key().unwrap_or_default()).unwrap_or_default();
        assert!(!verify_v1a(&other, ID, TS, BODY, &sig));
        // The v1 verifier skips v1a entries, and the other way round.
        assert!(!verify_v1(SECRET, ID, TS, BODY, &sig));
        assert!(!verify_v1a(&pk, ID, TS, BODY, EXPECTED));
        assert_eq!(public_key("whsk_short"), None);
    }

    #[test]
    fn secrets_are_checked() {
        let s = generate_secret().unwrap_or_default();
        assert!(s.starts_with(SECRET_PREFIX) && secret_key(&s).map(|k| k.len()) == Some(32));
        assert!(secret_key("whsec_c2hvcnQ=").is_none(), "too short");
        assert!(
            secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none(),
            "no prefix"
        );
        assert!(secret_key("whsec_!!!!").is_none());
        assert_eq!(sign_v1("not-a-whsec-secret", ID, TS, BODY), None);
    }
}
