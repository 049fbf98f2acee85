//! TMI's `X-TMI-Delegation-Token`: a short-lived JWT minted per attempt of an addon delivery, so the addon
//! can act back on TMI on the invoker's behalf. Omitted when no delegation key is configured.

use delivery_model::delivery::DeliveryRecord;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// TMI's built-in administrators group, never carried into a delegation token.
const ADMINISTRATORS_GROUP: &str = "administrators";

/// The configured signer.
pub struct Delegation {
    key: EncodingKey,
    issuer: String,
    ttl_secs: i64,
    /// The gateway's `auth.admin_group`: dropped from the invoker's groups as well as TMI's own, because with
    /// `delegation_key = jwt_secret` (TMI's setup) a token carrying it would be a Hookline admin token.
    admin_group: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    email: &'a str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    idp: Option<&'a str>,
    groups: Vec<&'a str>,
    tmi_is_administrator: bool,
    tmi_is_security_reviewer: bool,
    auth_time: i64,
    delegation: DelegationClaim<'a>,
    iss: &'a str,
    aud: [&'a str; 1],
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
}

#[derive(Serialize)]
struct DelegationClaim<'a> {
    addon_id: String,
    delivery_id: String,
    threat_model_id: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct EnvelopeTm {
    threat_model_id: Option<String>,
}

impl Delegation {
    /// `None` when no key is configured (the header is then omitted, as TMI does on any error).
    /// `admin_group` is the gateway's `auth.admin_group`, never carried into a token.
    pub fn new(key: &str, issuer: &str, ttl_secs: u64, admin_group: &str) -> Option<Self> {
        // from_secret rejects only an empty key, which means "not configured" here.
        let key = EncodingKey::from_secret(key.as_bytes()).ok()?;
        Some(Self {
            key,
            issuer: issuer.to_owned(),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(60),
            admin_group: admin_group.to_owned(),
        })
    }

    /// A token for one attempt of `record`; `None` for non-addon deliveries or if signing fails.
    pub fn mint(&self, record: &DeliveryRecord, now_secs: i64) -> Option<String> {
        let addon = record.addon_id?;
        let invoker = record.invoked_by.as_ref()?;
        let tm = serde_json::from_str::<EnvelopeTm>(&record.payload)
            .ok()
            .and_then(|e| e.threat_model_id);
        let claims = Claims {
            sub: &invoker.uuid,
            email: &invoker.email,
            name: format!("[Addon Delegation: {addon}] {}", invoker.name),
            idp: invoker.idp.as_deref(),
            // TMI never delegates administrator rights: the group is dropped and the flag is false. The
            // configured admin group goes too; the admin claim is only ever this fixed `false`.
            groups: invoker
                .groups
                .iter()
                .map(String::as_str)
                .filter(|g| *g != ADMINISTRATORS_GROUP && *g != self.admin_group)
                .collect(),
            tmi_is_administrator: false,
            tmi_is_security_reviewer: invoker.security_reviewer,
            auth_time: 0,
            delegation: DelegationClaim {
                addon_id: addon.to_string(),
                delivery_id: record.id.to_string(),
                threat_model_id: tm.as_deref(),
            },
            iss: &self.issuer,
            aud: [&self.issuer],
            exp: now_secs + self.ttl_secs,
            iat: now_secs,
            nbf: now_secs,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use delivery_model::delivery::Invoker;
    use delivery_model::ids::{AddonId, DeliveryId, SubscriptionId};
    use jsonwebtoken::{DecodingKey, Validation};

    const KEY: &str = "delegation-test-key-delegation-test-key";

    #[test]
    fn neither_admin_group_nor_admin_flag_is_delegated() {
        let d = Delegation::new(KEY, "http://tmi", 60, "ops-admins")
            .unwrap_or_else(|| panic!("a key is configured"));
        let mut record = DeliveryRecord::new_pending(
            DeliveryId(uuid::Uuid::new_v4()),
            SubscriptionId(uuid::Uuid::new_v4()),
            "addon.invoked",
            "{}",
            0,
        );
        record.addon_id = Some(AddonId(uuid::Uuid::new_v4()));
        record.invoked_by = Some(Invoker {
            uuid: "u-1".into(),
            email: "u@example.com".into(),
            name: "U".into(),
            idp: None,
            groups: vec!["ops-admins".into(), "administrators".into(), "team".into()],
            security_reviewer: false,
        });
        let now = chrono::Utc::now().timestamp();
        let token = d
            .mint(&record, now)
            .unwrap_or_else(|| panic!("an addon delivery gets a token"));
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(KEY.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
            &v,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .claims;
        assert_eq!(claims["groups"], serde_json::json!(["team"]));
        assert_eq!(claims["tmi_is_administrator"], serde_json::json!(false));
        assert!(claims["delegation"].is_object());
    }
}
