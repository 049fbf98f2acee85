//! Encryption at rest of subscription secrets (issue #16 item 4).
//!
//! A receiver's HMAC secret must be readable by Hookline (the worker signs with it, the gateway checks
//! HMAC reads with it) but not by whoever can read Redis or its backups. The store therefore seals the
//! secret with AES-256-GCM under a key-encryption key (KEK) from configuration before writing it, and
//! opens it after reading. The stored value is a versioned envelope:
//!
//! ```text
//! enc:v1:<key id>:<base64(12-byte random nonce || ciphertext || 16-byte tag)>
//! ```
//!
//! The key id is the associated data, so an envelope cannot be re-labelled to another key. Rotation: every
//! configured key can open, only the current one seals, and a value sealed under another key (or still in
//! plain text from before encryption) is sealed again on its next write or by `hookline-migrate
//! reencrypt-secrets`. A value without the `enc:` prefix is a legacy plain-text secret and is returned as
//! is. Without any key, sealing is the identity (today's behaviour; services warn at start).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// Prefix of every encrypted value; anything else is a legacy plain-text secret.
pub const ENVELOPE_PREFIX: &str = "enc:";
const V1: &str = "enc:v1:";
/// Length of a key-encryption key in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Why a key set was refused; the message names the key id, never the material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key id {0:?} is invalid: use 1-32 characters from [A-Za-z0-9_-]")]
    BadId(String),
    #[error("key {0:?} is not valid base64")]
    NotBase64(String),
    #[error("key {id:?} decodes to {len} bytes; AES-256 needs exactly {KEY_LEN}")]
    BadLength { id: String, len: usize },
    #[error("current key id {0:?} is not among the configured keys")]
    UnknownCurrent(String),
    #[error("keys are configured but no current key id is set")]
    NoCurrent,
}

/// The key-encryption keys: one current key that seals, and any number of older keys that only open.
/// Cheap to clone; `Debug` shows the key ids only.
#[derive(Clone, Default)]
pub struct SecretBox {
    current: Option<String>,
    keys: BTreeMap<String, std::sync::Arc<LessSafeKey>>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SecretBox {
    /// No key: secrets are stored as given (today's behaviour).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// A key set from base64 key material by id; `current` seals, every key opens.
    ///
    /// # Errors
    /// [`KeyError`] naming the offending key id: a bad id, bad base64, a key that is not 32 bytes, or a
    /// current id that is missing or not configured. An empty `keys` with an empty `current` is
    /// [`SecretBox::disabled`].
    pub fn from_base64_keys<'a>(
        current: &str,
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, KeyError> {
        let mut out = BTreeMap::new();
        for (id, material) in keys {
            if !valid_id(id) {
                return Err(KeyError::BadId(id.to_owned()));
            }
            let bytes = B64
                .decode(material.trim())
                .map_err(|_| KeyError::NotBase64(id.to_owned()))?;
            if bytes.len() != KEY_LEN {
                return Err(KeyError::BadLength {
                    id: id.to_owned(),
                    len: bytes.len(),
                });
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyError::BadLength {
                id: id.to_owned(),
                len: bytes.len(),
            })?;
            out.insert(id.to_owned(), std::sync::Arc::new(LessSafeKey::new(key)));
        }
        if current.is_empty() {
            return if out.is_empty() {
                Ok(Self::disabled())
            } else {
                Err(KeyError::NoCurrent)
            };
        }
        if !out.contains_key(current) {
            return Err(KeyError::UnknownCurrent(current.to_owned()));
        }
        Ok(Self {
            current: Some(current.to_owned()),
            keys: out,
        })
    }

    /// Whether a current key is configured (secrets are encrypted on write).
    pub fn is_enabled(&self) -> bool {
        self.current.is_some()
    }

    /// The id of the key that seals, if any.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Seals `plain` under the current key with a fresh random nonce; without a key, returns it unchanged.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the system random source or the cipher fails (not expected).
    pub fn seal(&self, plain: &str) -> Result<String> {
        let Some((id, key)) = self
            .current
            .as_ref()
            .and_then(|id| self.keys.get(id).map(|k| (id, k)))
        else {
            return Ok(plain.to_owned());
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Crypto("no random nonce".into()))?;
        let mut buf = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(id.as_bytes()),
            &mut buf,
        )
        .map_err(|_| Error::Crypto("seal failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(format!("{V1}{id}:{}", B64.encode(out)))
    }

    /// Opens a stored value: a legacy plain-text value is returned as is, an envelope is decrypted with
    /// the key it names.
    ///
    /// # Errors
    /// [`Error::Crypto`] (without the value) for an unknown version, a key id that is not configured, or a
    /// value that fails authentication (tampered, or sealed under different key material).
    pub fn open(&self, stored: &str) -> Result<String> {
        let Some(rest) = stored.strip_prefix(ENVELOPE_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let rest = rest
            .strip_prefix("v1:")
            .ok_or_else(|| Error::Crypto("unknown secret envelope version".into()))?;
        let (id, body) = rest
            .split_once(':')
            .ok_or_else(|| Error::Crypto("malformed secret envelope".into()))?;
        let key = self.keys.get(id).ok_or_else(|| {
            Error::Crypto(format!(
                "secret sealed under key {id:?}, which is not configured"
            ))
        })?;
        let raw = B64
            .decode(body)
            .map_err(|_| Error::Crypto("malformed secret envelope".into()))?;
        if raw.len() < NONCE_LEN {
            return Err(Error::Crypto("malformed secret envelope".into()));
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::Crypto("malformed secret envelope".into()))?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut sealed)
            .map_err(|_| Error::Crypto(format!("secret under key {id:?} fails authentication")))?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| Error::Crypto("decrypted secret is not UTF-8".into()))
    }

    /// Whether a stored value should be sealed again: it is plain text or under a non-current key while a
    /// current key is configured.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        match &self.current {
            None => false,
            Some(id) => stored
                .strip_prefix(V1)
                .is_none_or(|r| r.split_once(':').is_none_or(|(k, _)| k != id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "HxwdHhscGRoXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    #[test]
    fn seals_with_fresh_nonces_and_opens() -> Result<()> {
        let b = SecretBox::from_base64_keys("k1", [("k1", K1)])
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let a = b.seal("receiver-secret-0123")?;
        let c = b.seal("receiver-secret-0123")?;
        assert!(
            a.starts_with("enc:v1:k1:") && !a.contains("receiver-secret"),
            "{a}"
        );
        assert_ne!(a, c, "nonces must differ");
        assert_eq!(b.open(&a)?, "receiver-secret-0123");
        assert!(!b.needs_reseal(&a));
        assert!(b.needs_reseal("plain"));
        assert_eq!(b.open("legacy-plain")?, "legacy-plain");
        Ok(())
    }

    #[test]
    fn rotation_opens_old_and_seals_new() -> Result<()> {
        let old = SecretBox::from_base64_keys("k1", [("k1", K1)])
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let new = SecretBox::from_base64_keys("k2", [("k1", K1), ("k2", K2)])
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let sealed = old.seal("s3cret-value")?;
        assert_eq!(new.open(&sealed)?, "s3cret-value");
        assert!(new.needs_reseal(&sealed));
        assert!(new.seal("x")?.starts_with("enc:v1:k2:"));
        // Without the old key, the record cannot be opened and the error does not leak anything.
        let only_new = SecretBox::from_base64_keys("k2", [("k2", K2)])
            .map_err(|e| Error::Crypto(e.to_string()))?;
        assert!(only_new.open(&sealed).is_err());
        Ok(())
    }

    #[test]
    fn tampering_and_relabelling_are_refused() -> Result<()> {
        let b = SecretBox::from_base64_keys("k2", [("k1", K1), ("k2", K2)])
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let sealed = b.seal("abc")?;
        let relabelled = sealed.replacen("enc:v1:k2:", "enc:v1:k1:", 1);
        assert!(b.open(&relabelled).is_err());
        assert!(b.open("enc:v9:k2:AAAA").is_err());
        Ok(())
    }

    #[test]
    fn bad_keys_are_refused_naming_the_id() {
        let e = SecretBox::from_base64_keys("k1", [("k1", "c2hvcnQ=")])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("\"k1\"") && e.contains("32")));
        assert!(SecretBox::from_base64_keys("nope", [("k1", K1)]).is_err());
        assert!(SecretBox::from_base64_keys("", [("k1", K1)]).is_err());
        assert!(SecretBox::from_base64_keys("k1", [("k1", "!!")]).is_err());
        assert!(SecretBox::from_base64_keys("", []).is_ok_and(|b| !b.is_enabled()));
        let d = format!("{:?}", SecretBox::from_base64_keys("k1", [("k1", K1)]).ok());
        assert!(!d.contains(K1), "{d}");
    }
}
