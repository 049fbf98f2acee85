//! Add-ons: TMI's invocable extensions, each bound to one webhook subscription.
//!
//! An add-on is a hash at [`Keyspace::addon`](crate::keys::Keyspace::addon), indexed by creation time, by
//! threat-model scope (or "unscoped") and by its subscription, so listing and the subscription-delete cascade
//! never scan the keyspace. Invoking an add-on creates an `addon.invoked` delivery record for its subscription
//! (see [`crate::store::Store::invoke_addon`]); there is no separate invocation record, as in TMI's design.
//!
//! Parameters are the typed declarations clients use to build a form; the gateway validates both the
//! declarations (at create) and the invocation data against them (at invoke). They are stored as JSON.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{AddonId, SubscriptionId};
use crate::subscription::num;
use crate::time::Micros;

/// The TMI object types an add-on may declare in `objects` (and an invocation may name in `object_type`).
pub const OBJECT_TYPES: &[&str] = &[
    "threat_model",
    "diagram",
    "asset",
    "threat",
    "document",
    "note",
    "repository",
    "metadata",
    "survey",
    "survey_response",
];

/// Hash field names of a stored add-on.
pub mod field {
    pub const ID: &str = "id";
    pub const CREATED_AT: &str = "created_at";
    pub const NAME: &str = "name";
    pub const WEBHOOK_ID: &str = "webhook_id";
    pub const DESCRIPTION: &str = "description";
    pub const ICON: &str = "icon";
    /// JSON array of object types.
    pub const OBJECTS: &str = "objects";
    pub const THREAT_MODEL_ID: &str = "threat_model_id";
    /// JSON array of [`AddonParameter`](super::AddonParameter).
    pub const PARAMETERS: &str = "parameters";
}

/// The type of a declared parameter: which client control renders it and how invocation values are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterType {
    Enum,
    Boolean,
    String,
    Number,
    MetadataKey,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::Enum => "enum",
            ParameterType::Boolean => "boolean",
            ParameterType::String => "string",
            ParameterType::Number => "number",
            ParameterType::MetadataKey => "metadata_key",
        }
    }
}

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TMI's `AddonParameter`. Fields are in the order TMI serialises them (alphabetical); optional ones are kept
/// exactly as given (`None` when absent) so the API echoes the declaration back unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddonParameter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_key: Option<String>,
    pub name: String,
    /// Kept as the JSON number given, so `1` echoes back as `1` (as Go prints it), not `1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_max: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_min: Option<serde_json::Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_max_length: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_validation_regex: Option<String>,
    #[serde(rename = "type")]
    pub kind: ParameterType,
}

impl AddonParameter {
    /// A parameter of `kind` with nothing but its name.
    pub fn new(name: impl Into<String>, kind: ParameterType) -> Self {
        Self {
            default_value: None,
            description: None,
            enum_values: None,
            metadata_key: None,
            name: name.into(),
            number_max: None,
            number_min: None,
            required: None,
            string_max_length: None,
            string_validation_regex: None,
            kind,
        }
    }

    /// Whether an invocation must supply it (TMI: absent means optional).
    pub fn is_required(&self) -> bool {
        self.required == Some(true)
    }

    /// `number_min` as a float.
    pub fn min(&self) -> Option<f64> {
        self.number_min
            .as_ref()
            .and_then(serde_json::Number::as_f64)
    }

    /// `number_max` as a float.
    pub fn max(&self) -> Option<f64> {
        self.number_max
            .as_ref()
            .and_then(serde_json::Number::as_f64)
    }
}

/// A stored add-on.
#[derive(Clone, Debug, PartialEq)]
pub struct Addon {
    pub id: AddonId,
    pub created_at: Micros,
    pub name: String,
    /// The subscription its invocations are delivered to. Deleting that subscription deletes the add-on.
    pub webhook_id: SubscriptionId,
    pub description: Option<String>,
    pub icon: Option<String>,
    /// Object types it operates on; empty means any.
    pub objects: Vec<String>,
    /// Scope: `None` is offered for every threat model.
    pub threat_model_id: Option<String>,
    pub parameters: Vec<AddonParameter>,
}

fn text<'a>(h: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    h.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

impl Addon {
    /// Decodes a stored hash (HGETALL). An empty map means the add-on does not exist: callers check that.
    ///
    /// # Errors
    /// [`Error::Decode`] when a required field is missing or malformed.
    pub fn from_hash(h: &HashMap<String, String>) -> Result<Self> {
        let req = |k: &'static str| {
            text(h, k).ok_or_else(|| Error::Decode(format!("add-on field `{k}` missing")))
        };
        let id = req(field::ID)?
            .parse()
            .map_err(|_| Error::Decode("add-on id is not a UUID".into()))?;
        let webhook_id = req(field::WEBHOOK_ID)?
            .parse()
            .map_err(|_| Error::Decode("add-on webhook_id is not a UUID".into()))?;
        let objects = match text(h, field::OBJECTS) {
            Some(v) => serde_json::from_str(v)?,
            None => Vec::new(),
        };
        let parameters = match text(h, field::PARAMETERS) {
            Some(v) => serde_json::from_str(v)?,
            None => Vec::new(),
        };
        Ok(Self {
            id,
            created_at: num(h, field::CREATED_AT)?,
            name: req(field::NAME)?.to_owned(),
            webhook_id,
            description: text(h, field::DESCRIPTION).map(str::to_owned),
            icon: text(h, field::ICON).map(str::to_owned),
            objects,
            threat_model_id: text(h, field::THREAT_MODEL_ID).map(str::to_owned),
            parameters,
        })
    }

    /// The hash fields to store. Absent optional values are not written.
    ///
    /// # Errors
    /// [`Error::Json`] if a parameter cannot be encoded (a non-finite bound; validation refuses those first).
    pub fn to_fields(&self) -> Result<Vec<(&'static str, String)>> {
        let mut v = vec![
            (field::ID, self.id.to_string()),
            (field::CREATED_AT, self.created_at.to_string()),
            (field::NAME, self.name.clone()),
            (field::WEBHOOK_ID, self.webhook_id.to_string()),
            (field::OBJECTS, serde_json::to_string(&self.objects)?),
            (field::PARAMETERS, serde_json::to_string(&self.parameters)?),
        ];
        if let Some(d) = &self.description {
            v.push((field::DESCRIPTION, d.clone()));
        }
        if let Some(i) = &self.icon {
            v.push((field::ICON, i.clone()));
        }
        if let Some(t) = &self.threat_model_id {
            v.push((field::THREAT_MODEL_ID, t.clone()));
        }
        Ok(v)
    }

    /// Whether an invocation may name `object_type` (an add-on without `objects` takes any).
    pub fn supports(&self, object_type: &str) -> bool {
        self.objects.is_empty() || self.objects.iter().any(|o| o == object_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Addon {
        let mut p = AddonParameter::new("mode", ParameterType::Enum);
        p.enum_values = Some(vec!["fast".into(), "deep".into()]);
        p.required = Some(true);
        let mut n = AddonParameter::new("depth", ParameterType::Number);
        n.number_min = serde_json::Number::from_f64(0.5);
        n.number_max = Some(10.into());
        Addon {
            id: AddonId::new_v4(),
            created_at: 1_775_044_800_000_000,
            name: "Scanner".into(),
            webhook_id: SubscriptionId::new_v4(),
            description: Some("scans".into()),
            icon: Some("material-symbols:security".into()),
            objects: vec!["threat_model".into()],
            threat_model_id: None,
            parameters: vec![p, n],
        }
    }

    #[test]
    fn hash_round_trip() {
        let a = sample();
        let h: HashMap<String, String> = a
            .to_fields()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert!(!h.contains_key(field::THREAT_MODEL_ID));
        assert_eq!(Addon::from_hash(&h).ok(), Some(a));
    }

    #[test]
    fn parameters_serialise_in_tmi_order_without_absent_fields() {
        let a = sample();
        assert_eq!(
            serde_json::to_string(&a.parameters[0]).unwrap_or_default(),
            r#"{"enum_values":["fast","deep"],"name":"mode","required":true,"type":"enum"}"#
        );
        assert_eq!(
            serde_json::to_string(&a.parameters[1]).unwrap_or_default(),
            r#"{"name":"depth","number_max":10,"number_min":0.5,"type":"number"}"#
        );
        assert!(
            serde_json::from_str::<AddonParameter>(r#"{"name":"x","type":"string","extra":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<AddonParameter>(r#"{"name":"x","type":"date"}"#).is_err());
    }

    #[test]
    fn keys_keep_tmi_names_for_rate_limits() {
        let k = crate::keys::Keyspace::new("", crate::keys::DEFAULT_EVENTS_STREAM);
        let a: AddonId = "770e8400-e29b-41d4-a716-446655440002"
            .parse()
            .unwrap_or_else(|_| AddonId::new_v4());
        assert_eq!(k.addon_hourly("u1"), "addon:ratelimit:hour:u1");
        assert_eq!(
            k.addon_dedup(a, "u1"),
            "addon:dedup:770e8400-e29b-41d4-a716-446655440002:u1"
        );
        assert_eq!(k.addon_active("u1"), "addon:active:u1");
        assert_eq!(
            k.addon(a),
            "webhook:addon:770e8400-e29b-41d4-a716-446655440002"
        );
        let p = crate::keys::Keyspace::new("t1:", crate::keys::DEFAULT_EVENTS_STREAM);
        assert_eq!(p.addon_hourly("u1"), "t1:addon:ratelimit:hour:u1");
        assert_eq!(p.addons_by_threat_model("tm"), "t1:webhook:addons:tm:tm");
    }

    #[test]
    fn object_support() {
        let mut a = sample();
        assert!(a.supports("threat_model"));
        assert!(!a.supports("diagram"));
        a.objects.clear();
        assert!(a.supports("diagram"));
    }
}
