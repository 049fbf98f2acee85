//! HMAC-SHA256 signatures, as TMI computes them.
//!
//! The key is the subscription secret's UTF-8 bytes (TMI uses the 64-character hex string itself, not its
//! decoded bytes); the message is the exact body bytes; the header value is `sha256=<lowercase hex>`.
//! Verification compares the whole header value in constant time, so an uppercase-hex signature is rejected,
//! as in TMI.
//!
//! [`standard`] holds the Standard Webhooks signatures of subscriptions whose scheme is `standard`.

use ring::hmac;

pub mod standard;

/// The prefix of every signature header value.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// Signs `body` with `secret`, returning the header value `sha256=<hex>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    format!("{SIGNATURE_PREFIX}{}", hex::encode(tag.as_ref()))
}

/// The content of a timestamped signature in TMI's form (issue #17 replay protection): `<timestamp>.<body>`,
/// the timestamp being Unix seconds as sent in `X-Webhook-Timestamp`.
pub fn timestamped(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// Checks a received `sha256=<hex>` header value against `body`, in constant time.
pub fn verify(secret: &str, body: &[u8], header_value: &str) -> bool {
    let Some(hex_part) = header_value.strip_prefix(SIGNATURE_PREFIX) else {
        return false;
    };
    // Lowercase hex only: decoding then re-encoding would accept uppercase, which TMI rejects.
    if hex_part.len() != 64
        || !hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return false;
    }
    let Ok(tag) = hex::decode(hex_part) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, body, &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_and_rejects() {
        let sig = sign("s3cret-s3cret-s3cret", b"{\"a\":1}");
        assert!(verify("s3cret-s3cret-s3cret", b"{\"a\":1}", &sig));
        assert!(!verify("wrong-secret-wrong", b"{\"a\":1}", &sig));
        assert!(!verify("s3cret-s3cret-s3cret", b"{\"a\":2}", &sig));
        assert!(!verify(
            "s3cret-s3cret-s3cret",
            b"{\"a\":1}",
            &sig.to_uppercase()
        ));
        assert!(!verify(
            "s3cret-s3cret-s3cret",
            b"{\"a\":1}",
            sig.trim_start_matches("sha256=")
        ));
        assert!(!verify("s3cret-s3cret-s3cret", b"{\"a\":1}", "sha256=zz"));
    }
}
