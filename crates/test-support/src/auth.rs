//! Minting HS256 bearer tokens the way TMI's identity provider does, for API tests.
//!
//! The api-gateway takes the caller id from `sub` and treats `tmi_is_administrator: true` as an
//! administrator, so these three helpers cover every caller a test needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

/// How long minted tokens stay valid.
const LIFETIME: Duration = Duration::from_secs(3600);

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs `claims` with HS256 and `secret`, exactly as given (no claim is added).
///
/// # Panics
/// When `secret` is empty (jsonwebtoken refuses an empty HMAC key).
pub fn token(secret: &str, claims: Value) -> String {
    let signed = EncodingKey::from_secret(secret.as_bytes())
        .and_then(|key| jsonwebtoken::encode(&Header::default(), &claims, &key));
    match signed {
        Ok(t) => t,
        Err(e) => panic!("sign HS256 token: {e}"),
    }
}

/// A token for administrator `sub` (`tmi_is_administrator: true`, email `<sub>@example.com`), valid for one
/// hour.
///
/// # Panics
/// When `secret` is empty.
pub fn admin_token(secret: &str, sub: &str) -> String {
    let now = now_secs();
    token(
        secret,
        json!({
            "sub": sub,
            "email": format!("{sub}@example.com"),
            "name": format!("Admin {sub}"),
            "tmi_is_administrator": true,
            "iat": now,
            "exp": now + LIFETIME.as_secs(),
        }),
    )
}

/// A token for ordinary user `sub` with `email` (`tmi_is_administrator: false`), valid for one hour.
///
/// # Panics
/// When `secret` is empty.
pub fn user_token(secret: &str, sub: &str, email: &str) -> String {
    let now = now_secs();
    token(
        secret,
        json!({
            "sub": sub,
            "email": email,
            "name": format!("User {sub}"),
            "tmi_is_administrator": false,
            "iat": now,
            "exp": now + LIFETIME.as_secs(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    fn decode(secret: &str, t: &str) -> Option<Value> {
        let key = DecodingKey::from_secret(secret.as_bytes()).ok()?;
        jsonwebtoken::decode::<Value>(t, &key, &Validation::new(Algorithm::HS256))
            .ok()
            .map(|d| d.claims)
    }

    #[test]
    fn admin_token_carries_admin_claim_and_expiry() {
        let claims = decode("s3cret", &admin_token("s3cret", "alice")).unwrap_or_default();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["tmi_is_administrator"], true);
        assert!(claims["email"].as_str().is_some_and(|e| e.contains('@')));
        let exp = claims["exp"].as_u64().unwrap_or(0);
        assert!(
            exp > now_secs() + 3500 && exp <= now_secs() + 3600,
            "exp {exp}"
        );
    }

    #[test]
    fn user_token_is_not_admin_and_needs_the_right_secret() {
        let t = user_token("s3cret", "bob", "bob@example.com");
        let claims = decode("s3cret", &t).unwrap_or_default();
        assert_eq!(claims["email"], "bob@example.com");
        assert_eq!(claims["tmi_is_administrator"], false);
        assert!(decode("other", &t).is_none());
    }

    #[test]
    fn token_signs_claims_verbatim() {
        let t = token(
            "k",
            json!({"sub": "x", "exp": now_secs() + 60, "scope": "hookline:events:write"}),
        );
        assert_eq!(
            decode("k", &t).unwrap_or_default()["scope"],
            "hookline:events:write"
        );
        assert!(t.starts_with("eyJ"), "a compact JWS: {t}");
    }
}
