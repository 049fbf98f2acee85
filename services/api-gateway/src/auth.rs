//! JWT bearer authentication.
//!
//! [`Authenticator`] is built once from `[auth]` and verifies `Authorization: Bearer <jwt>`:
//!
//! - exactly one algorithm, the configured one (HS256 with `jwt_secret`, RS256/ES256 with
//!   `jwt_public_key_pem`); a token whose `alg` differs is rejected, so an HS256 token can never be checked
//!   against a public key;
//! - `exp` is required and, like `nbf`, checked without leeway (golang-jwt's default, which TMI uses);
//! - `iss`/`aud` are checked only when configured (TMI checks neither).
//!
//! TMI looks the caller's internal UUID up in its database; Hookline has no user store, so the caller id is
//! the claim named by `user_id_claim` taken as is, and administrators are recognised from the token
//! (`admin_claim` true, or `admin_group` in `groups`).
//!
//! Handlers ask for a [`Caller`] (any valid, unrevoked token) or an [`Admin`] as an extractor argument; a
//! missing, invalid or revoked token becomes a 401 with `WWW-Authenticate`, a non-admin or a delegation token
//! (one with a `delegation` claim, never admin) on an admin route a 403. The extractors
//! are implemented in [`extract`](crate::extract), which reads the [`Authenticator`] from the app state; this
//! module depends on neither.

use actix_web::http::header::{self, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use service_common::config::AuthSettings;

use crate::error::ApiError;
// Defined with the other error types so that `error` needs nothing from here; re-exported at its old path.
pub use crate::error::AuthConfigError;

/// Claim listing the caller's groups.
const GROUPS_CLAIM: &str = "groups";
/// Claim naming the caller's identity provider (carried into addon delegation tokens).
const IDP_CLAIM: &str = "idp";
/// TMI's security-reviewer flag (carried into addon delegation tokens).
const SECURITY_REVIEWER_CLAIM: &str = "tmi_is_security_reviewer";
/// Claim with the caller's e-mail address.
const EMAIL_CLAIM: &str = "email";
/// Claim with the caller's display name.
const NAME_CLAIM: &str = "name";
/// Claim with the caller's OAuth scopes, space-separated.
const SCOPE_CLAIM: &str = "scope";
/// Claim that marks an add-on delegation token (TMI's `delegation{addon_id,delivery_id,threat_model_id}`).
const DELEGATION_CLAIM: &str = "delegation";

/// Who is calling, as the token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The value of the `user_id_claim` claim (the subscription owner id).
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub admin: bool,
    /// The `scope` claim, split on spaces.
    pub scopes: Vec<String>,
    /// The `idp` claim (the identity provider), when present.
    pub idp: Option<String>,
    /// The `groups` claim (its string members).
    pub groups: Vec<String>,
    /// The `tmi_is_security_reviewer` claim.
    pub security_reviewer: bool,
    /// The token carries a `delegation` claim: it was minted for a third-party add-on, so it never acts as an
    /// administrator, whatever its groups or admin claim say ([`admin`](Self::admin) is then false).
    pub delegated: bool,
}

impl Caller {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        !scope.is_empty() && self.scopes.iter().any(|s| s == scope)
    }
}

/// Verifies bearer tokens as `[auth]` says.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    user_id_claim: String,
    admin_claim: String,
    admin_group: String,
}

impl Authenticator {
    /// Prepares the key and validation rules.
    ///
    /// # Errors
    /// An unknown algorithm, an empty secret or a PEM that is not a key of the algorithm's family.
    pub fn from_settings(s: &AuthSettings) -> Result<Self, AuthConfigError> {
        let (alg, key) = match s.jwt_algorithm.as_str() {
            "HS256" => (
                Algorithm::HS256,
                DecodingKey::from_secret(s.jwt_secret.expose().as_bytes())?,
            ),
            "RS256" => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(s.jwt_public_key_pem.as_bytes())?,
            ),
            "ES256" => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(s.jwt_public_key_pem.as_bytes())?,
            ),
            other => return Err(AuthConfigError::Algorithm(other.to_owned())),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if s.jwt_issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&[s.jwt_issuer.as_str()]);
            required.push("iss");
        }
        if s.jwt_audience.is_empty() {
            // TMI mints an `aud` but never checks it: do not reject tokens for carrying one.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[s.jwt_audience.as_str()]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            user_id_claim: s.user_id_claim.clone(),
            admin_claim: s.admin_claim.clone(),
            admin_group: s.admin_group.clone(),
        })
    }

    /// Verifies one token's signature and claims. Revocation is checked by
    /// [`extract::authenticate`](crate::extract::authenticate), the only way requests are authenticated.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] naming what is wrong (it goes to `WWW-Authenticate`, never to the body).
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| unauthorized(reason_for(e.kind())))?;
        let claims = data.claims;
        let id = claims
            .get(&self.user_id_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| unauthorized(format!("token has no {} claim", self.user_id_claim)))?
            .to_owned();
        let admin_by_claim = claims.get(&self.admin_claim).and_then(Value::as_bool) == Some(true);
        let admin_by_group = !self.admin_group.is_empty()
            && claims
                .get(GROUPS_CLAIM)
                .and_then(Value::as_array)
                .is_some_and(|groups| {
                    groups
                        .iter()
                        .any(|g| g.as_str() == Some(self.admin_group.as_str()))
                });
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let scopes = claims
            .get(SCOPE_CLAIM)
            .and_then(Value::as_str)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let groups = claims
            .get(GROUPS_CLAIM)
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        // A delegation token is sent to an add-on: with `delegation_key = jwt_secret` (TMI's setup) it is signed
        // like a user's token, so it must never grant admin, even if the minting worker let an admin group
        // or flag through.
        let delegated = claims.contains_key(DELEGATION_CLAIM);
        Ok(Caller {
            id,
            email: text(EMAIL_CLAIM),
            name: text(NAME_CLAIM),
            admin: (admin_by_claim || admin_by_group) && !delegated,
            delegated,
            scopes,
            idp: text(IDP_CLAIM),
            groups,
            security_reviewer: claims.get(SECURITY_REVIEWER_CLAIM).and_then(Value::as_bool)
                == Some(true),
        })
    }
}

fn unauthorized(reason: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        reason: reason.into(),
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, as TMI).
///
/// # Errors
/// [`ApiError::Unauthorized`]: no header, several, or not a bearer token.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION);
    let value = values
        .next()
        .ok_or_else(|| unauthorized("missing bearer token"))?;
    if values.next().is_some() {
        return Err(unauthorized("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthorized("malformed Authorization header"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauthorized("malformed Authorization header"));
    }
    Ok(token)
}

/// A short reason for `WWW-Authenticate`; deliberately vague about signatures and keys.
fn reason_for(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not yet valid".into(),
        ErrorKind::InvalidAlgorithm => "unexpected signing algorithm".into(),
        ErrorKind::InvalidSignature => "invalid token signature".into(),
        ErrorKind::InvalidIssuer => "invalid token issuer".into(),
        ErrorKind::InvalidAudience => "invalid token audience".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("token has no {c} claim"),
        _ => "invalid token".into(),
    }
}

/// An authenticated administrator: the extractor of every `/admin/...` handler.
#[derive(Clone, Debug)]
pub struct Admin(pub Caller);

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "unit-test-secret-unit-test-secret";

    fn settings() -> AuthSettings {
        AuthSettings {
            jwt_algorithm: "HS256".into(),
            jwt_secret: delivery_model::store::Secret::new(SECRET),
            jwt_public_key_pem: String::new(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            user_id_claim: "sub".into(),
            admin_claim: "tmi_is_administrator".into(),
            admin_group: "administrators".into(),
            events_scope: "hookline:events:write".into(),
            allow_development_secret: false,
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn mint(alg: Algorithm, claims: &Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap_or_else(|e| panic!("{e}"))
    }

    fn auth(s: &AuthSettings) -> Authenticator {
        Authenticator::from_settings(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn reason(r: Result<Caller, ApiError>) -> String {
        match r {
            Err(ApiError::Unauthorized { reason }) => reason,
            other => panic!("expected 401, got {other:?}"),
        }
    }

    #[test]
    fn reads_identity_admin_and_scopes() {
        let a = auth(&settings());
        let t = mint(
            Algorithm::HS256,
            &json!({"sub": "alice", "exp": now() + 60, "email": "a@example.com", "name": "Alice",
                    "groups": ["x", "administrators", 7], "scope": "a hookline:events:write",
                    "idp": "github", "tmi_is_security_reviewer": true}),
        );
        let c = a.verify(&t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.id, "alice");
        assert_eq!(c.idp.as_deref(), Some("github"));
        assert_eq!(c.groups, ["x", "administrators"], "string members only");
        assert!(c.security_reviewer);
        assert!(c.admin);
        assert_eq!(c.email.as_deref(), Some("a@example.com"));
        assert!(c.has_scope("hookline:events:write"));
        assert!(!c.has_scope(""));
        let t = mint(
            Algorithm::HS256,
            &json!({"sub": "bob", "exp": now() + 60, "tmi_is_administrator": false}),
        );
        let bob = a.verify(&t).unwrap_or_else(|e| panic!("{e}"));
        assert!(!bob.admin);
        assert!(bob.idp.is_none() && bob.groups.is_empty() && !bob.security_reviewer);
        let t = mint(
            Algorithm::HS256,
            &json!({"sub": "bob", "exp": now() + 60, "tmi_is_administrator": true}),
        );
        assert!(a.verify(&t).unwrap_or_else(|e| panic!("{e}")).admin);
    }

    #[test]
    fn a_delegation_token_is_never_admin() {
        let a = auth(&settings());
        let t = mint(
            Algorithm::HS256,
            &json!({"sub": "u", "exp": now() + 60, "groups": ["administrators"],
                    "tmi_is_administrator": true, "delegation": {"addon_id": "a"}}),
        );
        let c = a.verify(&t).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.delegated);
        assert!(!c.admin, "neither the group nor the flag counts");
    }

    #[test]
    fn rejects_bad_tokens() {
        let a = auth(&settings());
        assert_eq!(
            reason(a.verify(&mint(
                Algorithm::HS256,
                &json!({"sub": "a", "exp": now() - 5})
            ))),
            "token expired"
        );
        assert_eq!(
            reason(a.verify(&mint(Algorithm::HS256, &json!({"sub": "a"})))),
            "token has no exp claim"
        );
        assert_eq!(
            reason(a.verify(&mint(
                Algorithm::HS256,
                &json!({"sub": "a", "exp": now() + 60, "nbf": now() + 30})
            ))),
            "token not yet valid"
        );
        assert_eq!(
            reason(a.verify(&mint(
                Algorithm::HS384,
                &json!({"sub": "a", "exp": now() + 60})
            ))),
            "unexpected signing algorithm"
        );
        assert_eq!(
            reason(a.verify(&mint(Algorithm::HS256, &json!({"exp": now() + 60})))),
            "token has no sub claim"
        );
        assert_eq!(reason(a.verify("not.a.jwt")), "invalid token");
    }

    #[test]
    fn issuer_and_audience_only_when_configured() {
        let claims =
            json!({"sub": "a", "exp": now() + 60, "iss": "http://tmi", "aud": ["http://tmi"]});
        assert!(
            auth(&settings())
                .verify(&mint(Algorithm::HS256, &claims))
                .is_ok()
        );
        let mut s = settings();
        s.jwt_issuer = "http://other".into();
        assert_eq!(
            reason(auth(&s).verify(&mint(Algorithm::HS256, &claims))),
            "invalid token issuer"
        );
        let mut s = settings();
        s.jwt_audience = "http://tmi".into();
        assert!(auth(&s).verify(&mint(Algorithm::HS256, &claims)).is_ok());
        assert_eq!(
            reason(auth(&s).verify(&mint(
                Algorithm::HS256,
                &json!({"sub": "a", "exp": now() + 60})
            ))),
            "token has no aud claim"
        );
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(
            reason(bearer_token(&h).map(|_| unreachable_caller())),
            "missing bearer token"
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(
            reason(bearer_token(&h).map(|_| unreachable_caller())),
            "malformed Authorization header"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&h).ok(), Some("abc"));
    }

    fn unreachable_caller() -> Caller {
        Caller {
            id: String::new(),
            email: None,
            name: None,
            admin: false,
            scopes: Vec::new(),
            idp: None,
            groups: Vec::new(),
            security_reviewer: false,
            delegated: false,
        }
    }
}
