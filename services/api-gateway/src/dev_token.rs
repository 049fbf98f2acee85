//! `api-gateway dev-token`: mints an HS256 bearer token for a development stack (`make token`).
//!
//! It only signs with a secret the caller already has, so it grants nothing the secret does not. The secret
//! must be given explicitly, with `--secret` or `HOOKLINE_DEV_JWT_SECRET` (`make token` passes
//! `config/dev.toml`'s): it never falls back to the configured `auth.jwt_secret`, so a shell on a production
//! host does not turn into an admin token by accident (issue #16). The lifetime is capped at
//! [`MAX_TTL_SECS`]. The configured issuer and audience, when set, are put in the token so the gateway
//! accepts it.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

/// Environment variable holding the secret when `--secret` is not given (the compose stack's).
pub const SECRET_ENV: &str = "HOOKLINE_DEV_JWT_SECRET";

/// Longest lifetime a development token may have, seconds (24 h).
pub const MAX_TTL_SECS: u64 = 86_400;

/// What to put in the token.
#[derive(Clone, Debug)]
pub struct DevClaims {
    pub sub: String,
    pub admin: bool,
    pub scopes: Vec<String>,
    pub ttl_secs: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Signs `claims` with `secret`.
///
/// # Errors
/// An empty secret.
pub fn mint(
    secret: &str,
    claims: &DevClaims,
    now_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut c = Map::new();
    c.insert("sub".into(), json!(claims.sub));
    c.insert("email".into(), json!(format!("{}@localhost", claims.sub)));
    c.insert("name".into(), json!(claims.sub));
    c.insert("tmi_is_administrator".into(), json!(claims.admin));
    c.insert("iat".into(), json!(now_secs));
    c.insert(
        "exp".into(),
        json!(now_secs.saturating_add(i64::try_from(claims.ttl_secs).unwrap_or(i64::MAX))),
    );
    if !claims.scopes.is_empty() {
        c.insert("scope".into(), json!(claims.scopes.join(" ")));
    }
    if let Some(iss) = &claims.issuer {
        c.insert("iss".into(), json!(iss));
    }
    if let Some(aud) = &claims.audience {
        c.insert("aud".into(), json!([aud]));
    }
    let key = EncodingKey::from_secret(secret.as_bytes())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &Value::Object(c), &key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authenticator;

    #[test]
    fn minted_tokens_are_accepted_by_the_gateway() {
        let settings = service_common::config::AuthSettings {
            jwt_algorithm: "HS256".into(),
            jwt_secret: delivery_model::store::Secret::new("dev-secret-0123456789abcdef0123456"),
            jwt_public_key_pem: String::new(),
            jwt_issuer: "http://localhost:8080".into(),
            jwt_audience: "hookline".into(),
            user_id_claim: "sub".into(),
            admin_claim: "tmi_is_administrator".into(),
            admin_group: "administrators".into(),
            events_scope: "hookline:events:write".into(),
            allow_development_secret: false,
        };
        let auth = Authenticator::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
        let claims = DevClaims {
            sub: "dev-admin".into(),
            admin: true,
            scopes: vec!["hookline:events:write".into()],
            ttl_secs: 60,
            issuer: Some(settings.jwt_issuer.clone()),
            audience: Some(settings.jwt_audience.clone()),
        };
        let token = mint(
            settings.jwt_secret.expose(),
            &claims,
            chrono::Utc::now().timestamp(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let caller = auth.verify(&token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(caller.id, "dev-admin");
        assert!(caller.admin);
        assert!(caller.has_scope("hookline:events:write"));
        assert!(mint("", &claims, 0).is_err());
    }
}
