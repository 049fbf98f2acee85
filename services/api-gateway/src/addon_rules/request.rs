//! The `CreateAddonRequest` body of `POST /addons`, checked in TMI's order into a [`ValidAddon`], and the
//! icon and object-type rules it applies.

use std::sync::LazyLock;

use delivery_model::addon::{AddonParameter, OBJECT_TYPES};
use regex::Regex;
use serde::Deserialize;

use super::text::check_text;
use super::{
    MAX_DESCRIPTION_CHARS, MAX_ICON_CHARS, MAX_NAME_CHARS, MAX_OBJECTS, bad, validate_parameters,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::parse_uuid;

const MATERIAL_PREFIX: &str = "material-symbols:";
const FONT_AWESOME_PREFIX: &str = "fa-";

// TMI's icon patterns. Constant and covered by a unit test, so `None` (a pattern that does not compile)
// cannot happen; if it did, every icon would be refused rather than the process panicking.
static MATERIAL_ICON: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^material-symbols:[a-z]([a-z0-9_]*[a-z0-9])?$").ok());
static FONT_AWESOME_ICON: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^fa-[a-z]([a-z]*[a-z])?(\-[a-z]+)? fa-([a-z]+)(-[a-z]+)*$").ok());

/// `CreateAddonRequest` (unknown fields refused, as the schema's `additionalProperties: false`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAddonRequest {
    pub name: String,
    pub webhook_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub objects: Option<Vec<String>>,
    #[serde(default)]
    pub threat_model_id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Vec<AddonParameter>>,
}

/// A create request that passed every rule, normalised (UUIDs lower-case, empty optionals as `None`).
#[derive(Debug, PartialEq)]
pub struct ValidAddon {
    pub name: String,
    pub webhook_id: uuid::Uuid,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub objects: Vec<String>,
    pub threat_model_id: Option<String>,
    pub parameters: Vec<AddonParameter>,
}

fn uuid_field(field: &str, v: &str) -> ApiResult<uuid::Uuid> {
    parse_uuid(v).ok_or_else(|| {
        ApiError::invalid_format(format!(
            "Error at \"/{field}\": string doesn't match the format \"uuid\""
        ))
    })
}

impl CreateAddonRequest {
    /// Applies the schema and TMI's handler rules in TMI's order.
    ///
    /// # Errors
    /// 400 naming the field and the rule it breaks.
    pub fn validate(self) -> ApiResult<ValidAddon> {
        let webhook_id = uuid_field("webhook_id", &self.webhook_id)?;
        let threat_model_id = match self.threat_model_id.as_deref() {
            None | Some("") => None,
            Some(tm) => Some(uuid_field("threat_model_id", tm)?.to_string()),
        };
        check_text(&self.name, "Add-on name", MAX_NAME_CHARS, true, false)?;
        let description = self.description.filter(|d| !d.is_empty());
        if let Some(d) = &description {
            check_text(d, "description", MAX_DESCRIPTION_CHARS, false, true)?;
        }
        let icon = self.icon.filter(|i| !i.is_empty());
        if let Some(i) = &icon {
            validate_icon(i)?;
        }
        let objects = self.objects.unwrap_or_default();
        validate_objects(&objects)?;
        let parameters = self.parameters.unwrap_or_default();
        validate_parameters(&parameters)?;
        Ok(ValidAddon {
            name: self.name,
            webhook_id,
            description,
            icon,
            objects,
            threat_model_id,
            parameters,
        })
    }
}

fn matches(re: &LazyLock<Option<Regex>>, v: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(v))
}

/// `material-symbols:<snake_case>` or `fa-<style> fa-<icon>`, at most 60 characters.
pub fn validate_icon(icon: &str) -> ApiResult<()> {
    let n = icon.chars().count();
    if n > MAX_ICON_CHARS {
        return Err(bad(format!(
            "Icon exceeds maximum length of {MAX_ICON_CHARS} characters (got {n})"
        )));
    }
    if icon.starts_with(MATERIAL_PREFIX) {
        if matches(&MATERIAL_ICON, icon) {
            return Ok(());
        }
        return Err(bad(
            "Invalid Material Symbols icon format. Must be: material-symbols:{name} where name is snake_case (lowercase letters, digits, underscores; no trailing underscore)",
        ));
    }
    if icon.starts_with(FONT_AWESOME_PREFIX) {
        if matches(&FONT_AWESOME_ICON, icon) {
            return Ok(());
        }
        return Err(bad(
            "Invalid FontAwesome icon format. Must be: fa-{style} fa-{icon} where style and icon are lowercase with single hyphens (e.g., 'fa-solid fa-rocket')",
        ));
    }
    Err(bad(
        "Icon must be in Material Symbols format (material-symbols:name) or FontAwesome format (fa-style fa-icon)",
    ))
}

/// A subset of TMI's ten object types, at most 100 entries.
pub fn validate_objects(objects: &[String]) -> ApiResult<()> {
    if objects.len() > MAX_OBJECTS {
        return Err(bad(format!(
            "Objects array exceeds maximum size of {MAX_OBJECTS} (got {})",
            objects.len()
        )));
    }
    let invalid: Vec<&str> = objects
        .iter()
        .map(String::as_str)
        .filter(|o| !OBJECT_TYPES.contains(o))
        .collect();
    if invalid.is_empty() {
        return Ok(());
    }
    Err(bad(format!(
        "Invalid object types: {}. Valid types: {}",
        invalid.join(", "),
        OBJECT_TYPES.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addon_rules::testing::code;
    use serde_json::{Value, json};

    fn request(v: Value) -> CreateAddonRequest {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    const HOOK: &str = "550E8400-E29B-41D4-A716-446655440000";

    #[test]
    fn icon_patterns_compile() {
        assert!(MATERIAL_ICON.is_some() && FONT_AWESOME_ICON.is_some());
    }

    #[test]
    fn a_full_request_is_normalised() {
        let v = request(json!({
            "name": "Scanner", "webhook_id": HOOK, "description": "Scans.\nDeeply.", "icon": "fa-solid fa-rocket",
            "objects": ["threat_model", "diagram"], "threat_model_id": "660E8400-E29B-41D4-A716-446655440001",
            "parameters": [{"name": "mode", "type": "enum", "enum_values": ["a", "b"], "default_value": "a", "required": true}]
        }))
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.webhook_id.to_string(), HOOK.to_lowercase());
        assert_eq!(
            v.threat_model_id.as_deref(),
            Some("660e8400-e29b-41d4-a716-446655440001")
        );
        assert_eq!(v.parameters.len(), 1);
        let minimal =
            request(json!({"name": "n", "webhook_id": HOOK, "description": "", "icon": ""}))
                .validate()
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((minimal.description, minimal.icon), (None, None));
    }

    #[test]
    fn request_fields() {
        let with = |k: &str, v: Value| {
            let mut o = json!({"name": "n", "webhook_id": HOOK});
            o[k] = v;
            request(o).validate().map(|_| ())
        };
        assert!(matches!(
            with("webhook_id", json!("nope")),
            Err(ApiError::BadRequest {
                code: "invalid_id",
                ..
            })
        ));
        assert!(matches!(
            with("threat_model_id", json!("nope")),
            Err(ApiError::BadRequest {
                code: "invalid_id",
                ..
            })
        ));
        assert_eq!(code(with("name", json!(""))), "Add-on name is required");
        assert!(code(with("name", json!("x".repeat(256)))).contains("maximum length of 255"));
        assert!(code(with("name", json!("a\u{7}b"))).contains("control characters"));
        assert!(code(with("name", json!("a\u{200B}b"))).contains("zero-width"));
        assert!(code(with("name", json!("a\u{202E}b"))).contains("bidirectional"));
        assert!(code(with("name", json!("a\u{3164}b"))).contains("Hangul"));
        assert!(code(with("name", json!("e\u{301}\u{302}\u{303}"))).contains("combining"));
        assert!(code(with("name", json!("<script>x</script>"))).contains("unsafe content"));
        assert!(code(with("description", json!("<img onerror =x>"))).contains("unsafe content"));
        assert!(code(with("description", json!("{{ secrets }}"))).contains("template expression"));
        assert!(code(with("description", json!("x".repeat(2049)))).contains("2048"));
        // A line break is fine in a description, and "condition = x" is no event handler.
        assert!(with("description", json!("a\nb: condition = x, e\u{301}")).is_ok());
        assert!(with("name", json!("a\nb")).is_err());
        assert!(
            code(with("objects", json!(["threat_model", "widget"])))
                .starts_with("Invalid object types: widget.")
        );
        assert!(code(with("objects", json!(vec!["note"; 101]))).contains("maximum size of 100"));
        assert!(with("objects", json!(OBJECT_TYPES)).is_ok());
    }

    #[test]
    fn icons() {
        for ok in [
            "material-symbols:security",
            "material-symbols:a",
            "material-symbols:shield_2",
            "fa-solid fa-rocket",
            "fa-brands fa-github-alt",
            "fa-sharp-solid fa-a",
        ] {
            assert!(validate_icon(ok).is_ok(), "{ok}");
        }
        for (bad_icon, msg) in [
            ("material-symbols:Security", "Material Symbols"),
            ("material-symbols:shield_", "Material Symbols"),
            ("material-symbols:", "Material Symbols"),
            ("fa-solid", "FontAwesome"),
            ("fa-solid fa-Rocket", "FontAwesome"),
            ("fa-solid  fa-rocket", "FontAwesome"),
            ("https://example.com/i.svg", "Icon must be"),
        ] {
            assert!(code(validate_icon(bad_icon)).contains(msg), "{bad_icon}");
        }
        assert!(
            code(validate_icon(&format!(
                "material-symbols:{}",
                "a".repeat(50)
            )))
            .contains("60")
        );
    }
}
