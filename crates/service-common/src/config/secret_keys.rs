//! `[secret_keys]`: the key-encryption keys that seal subscription secrets at rest (issue #16 item 4).
//!
//! Keys come from `secret_keys.keys` (id → base64 of 32 bytes; environment
//! `HOOKLINE__SECRET_KEYS__KEYS__<ID>`) and/or `secret_keys.keys_file` (a mounted Secret: one `id=base64`
//! per line, `#` comments). `secret_keys.current` names the key that seals; every key opens. The checks
//! build the [`SecretBox`] once at load, so a bad key refuses to start with an error naming the key, and
//! nothing here ever prints key material (`Debug` shows ids only).

use std::collections::BTreeMap;
use std::fmt;

use delivery_model::secret_box::SecretBox;
use serde::Deserialize;

use super::ConfigError;
use super::validate::invalid;
use delivery_model::store::Secret;

/// `[secret_keys]`. `Debug` is by hand: ids only.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeySettings {
    /// Id of the key that encrypts; empty with no keys: secrets stay in plain text (a warning at start).
    pub current: String,
    /// Key id → base64 of a 32-byte AES-256 key. Old keys stay here (decrypt only) until re-encrypted.
    #[serde(default)]
    pub keys: BTreeMap<String, Secret>,
    /// A file of `id=base64` lines, merged with `keys` (an id in both is refused); empty: none.
    pub keys_file: String,
    /// Built by validation from the settings above.
    #[serde(skip)]
    secret_box: SecretBox,
}

impl fmt::Debug for SecretKeySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeySettings")
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("keys_file", &self.keys_file)
            .finish_non_exhaustive()
    }
}

/// Parses a keys file: `id=base64` lines; blank lines and `#` comments are skipped.
fn parse_keys_file(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, key) = line.split_once('=').ok_or_else(|| {
            invalid(
                "secret_keys.keys_file",
                format!("line {} is not `id=base64`", n + 1),
            )
        })?;
        out.push((id.trim().to_owned(), key.trim().to_owned()));
    }
    Ok(out)
}

impl SecretKeySettings {
    /// Reads `keys_file`, checks every key and the current id, and builds the [`SecretBox`].
    pub(super) fn validate_and_build(&mut self) -> Result<(), ConfigError> {
        let mut all: Vec<(String, String)> = self
            .keys
            .iter()
            .map(|(id, k)| (id.clone(), k.expose().to_owned()))
            .collect();
        if !self.keys_file.is_empty() {
            let text = std::fs::read_to_string(&self.keys_file).map_err(|e| {
                invalid("secret_keys.keys_file", format!("{}: {e}", self.keys_file))
            })?;
            for (id, key) in parse_keys_file(&text)? {
                if all.iter().any(|(i, _)| *i == id) {
                    return Err(invalid(
                        "secret_keys.keys_file",
                        format!("key id {id:?} is also in secret_keys.keys: give it once"),
                    ));
                }
                all.push((id, key));
            }
        }
        let built = SecretBox::from_base64_keys(
            &self.current,
            all.iter().map(|(i, k)| (i.as_str(), k.as_str())),
        )
        .map_err(|e| {
            let key = match e {
                delivery_model::secret_box::KeyError::UnknownCurrent(_)
                | delivery_model::secret_box::KeyError::NoCurrent => "secret_keys.current",
                _ => "secret_keys.keys",
            };
            invalid(key, e.to_string())
        })?;
        self.secret_box = built;
        Ok(())
    }

    /// The keys as the store takes them.
    pub fn secret_box(&self) -> SecretBox {
        self.secret_box.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn keys_file_lines() -> Result<(), ConfigError> {
        let v = parse_keys_file("# rotated 2026-12\nk1 = abc\n\nk2=def\n")?;
        assert_eq!(
            v,
            vec![("k1".into(), "abc".into()), ("k2".into(), "def".into())]
        );
        assert!(parse_keys_file("no-equals").is_err());
        Ok(())
    }

    #[test]
    fn debug_shows_ids_only() {
        let mut s = SecretKeySettings {
            current: "k1".into(),
            ..Default::default()
        };
        s.keys.insert("k1".into(), Secret::new(K1));
        assert!(s.validate_and_build().is_ok());
        assert!(s.secret_box().is_enabled());
        let d = format!("{s:?}");
        assert!(!d.contains(K1) && d.contains("k1"), "{d}");
    }
}
