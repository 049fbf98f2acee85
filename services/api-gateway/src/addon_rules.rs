//! TMI's add-on rules: what `POST /addons` accepts, and what `POST /addons/{id}/invoke` checks the
//! invocation data against.
//!
//! - [`CreateAddonRequest::validate`]: the `CreateAddonRequest` schema and TMI's handler checks, in TMI's
//!   order (name, description, icon, objects, threat model, parameters). Text fields are refused when they
//!   carry control characters, invisible or direction-changing characters, stacked combining marks, HTML or
//!   template-injection patterns.
//! - [`validate_parameters`]: every rule of TMI's parameter declarations (`addon_validation.go`): at most 20,
//!   names unique case-insensitively and matching `^[a-zA-Z][a-zA-Z0-9_-]*$`, type-specific fields only on
//!   their type, defaults consistent with the declaration, `string_validation_regex` must compile.
//! - [`validate_invocation_data`]: required parameters present, declared ones well-typed; unknown keys pass.
//! - [`go_compact_len`]: the size TMI measures `data` by (Go's compact re-serialisation).
//!
//! Every refusal is a 400 `invalid_input` carrying TMI's sentence (UUID formats use `invalid_id`, as the
//! rest of the gateway does).

use std::sync::LazyLock;

use delivery_model::addon::{AddonParameter, OBJECT_TYPES, ParameterType};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::parse_uuid;

/// Longest add-on name, characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest add-on description, characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Longest icon, characters.
pub const MAX_ICON_CHARS: usize = 60;
/// Most object types one add-on may list.
pub const MAX_OBJECTS: usize = 100;
/// Most parameters one add-on may declare.
pub const MAX_PARAMETERS: usize = 20;
/// Longest parameter name.
pub const MAX_PARAMETER_NAME: usize = 128;
/// Longest parameter description.
pub const MAX_PARAMETER_DESCRIPTION: usize = 512;
/// Most enum values of one parameter.
pub const MAX_ENUM_VALUES: usize = 50;
/// Longest enum value or default value.
pub const MAX_PARAMETER_VALUE: usize = 256;
/// Longest metadata key.
pub const MAX_METADATA_KEY: usize = 256;
/// Longest `string_validation_regex`.
pub const MAX_REGEX_CHARS: usize = 256;
/// Largest `string_max_length`.
pub const MAX_STRING_MAX_LENGTH: i64 = 10_000;
/// Largest invocation `data`, bytes of its compact serialisation.
pub const MAX_DATA_BYTES: usize = 1024;
/// Upper bound on the compiled size of a declared regex, so one declaration cannot cost much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

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

fn bad(description: impl AsRef<str>) -> ApiError {
    ApiError::invalid_input(description)
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

// ---- text --------------------------------------------------------------------------------------------------

/// Zero-width characters that can hide text (TMI's list).
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Characters that reorder how text displays (bidirectional embeddings, overrides and isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Hangul fillers: invisible, and used to fake blank names.
fn is_hangul_filler(c: char) -> bool {
    matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

/// Combining marks (the common blocks), for the stacked-diacritics ("Zalgo") check.
fn is_combining(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Three or more combining marks in a row (TMI's threshold: one or two are legitimate diacritics).
fn has_stacked_marks(s: &str) -> bool {
    let mut run = 0;
    for c in s.chars() {
        run = if is_combining(c) { run + 1 } else { 0 };
        if run >= 3 {
            return true;
        }
    }
    false
}

/// HTML that would run script where the text is rendered.
const UNSAFE_MARKUP: &[&str] = &[
    "<script",
    "</script>",
    "<iframe",
    "</iframe>",
    "<object",
    "<embed",
    "<applet",
    "javascript:",
];

/// Server-side template syntax, with TMI's descriptions (`${{` before `${`: the longer match is named).
const TEMPLATE_PATTERNS: &[(&str, &str)] = &[
    ("${{", "GitHub Actions context"),
    ("{{", "template expression"),
    ("}}", "template expression"),
    ("${", "template interpolation"),
    ("<%", "server template tag"),
    ("%>", "server template tag"),
    ("#{", "expression language"),
];

/// Whether `s` holds an inline event handler (`onclick=`, `onerror =` …): a word starting with `on`, then
/// word characters, optional blanks and `=`. Unlike TMI's pattern this needs `on` to start a word, so text
/// such as "condition = x" is not refused.
fn has_event_handler(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (0..b.len().saturating_sub(2)).any(|i| {
        if !b[i].eq_ignore_ascii_case(&b'o')
            || !b[i + 1].eq_ignore_ascii_case(&b'n')
            || (i > 0 && word(b[i - 1]))
        {
            return false;
        }
        let mut j = i + 2;
        let start = j;
        while j < b.len() && word(b[j]) {
            j += 1;
        }
        if j == start {
            return false;
        }
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j < b.len() && b[j] == b'='
    })
}

/// TMI's text-field checks: presence, length (characters), control characters (line breaks and tabs only
/// where `multiline`), problematic Unicode, HTML and template injection.
fn check_text(v: &str, label: &str, max: usize, required: bool, multiline: bool) -> ApiResult<()> {
    if v.is_empty() {
        if required {
            return Err(bad(format!("{label} is required")));
        }
        return Ok(());
    }
    let n = v.chars().count();
    if n > max {
        return Err(bad(format!(
            "{label} exceeds maximum length of {max} characters (got {n})"
        )));
    }
    if v.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(bad(format!("Field '{label}' contains control characters")));
    }
    if v.chars().any(is_zero_width) {
        return Err(bad(format!(
            "Field '{label}' contains zero-width characters"
        )));
    }
    if v.chars().any(is_bidi_control) {
        return Err(bad(format!(
            "Field '{label}' contains bidirectional text control characters"
        )));
    }
    if v.chars().any(is_hangul_filler) {
        return Err(bad(format!(
            "Field '{label}' contains Hangul filler characters"
        )));
    }
    if has_stacked_marks(v) {
        return Err(bad(format!(
            "Field '{label}' contains excessive combining diacritical marks"
        )));
    }
    let lower = v.to_lowercase();
    if UNSAFE_MARKUP.iter().any(|p| lower.contains(p)) || has_event_handler(v) {
        return Err(bad(format!(
            "Field '{label}' contains potentially unsafe content"
        )));
    }
    if let Some((p, what)) = TEMPLATE_PATTERNS.iter().find(|(p, _)| v.contains(p)) {
        return Err(bad(format!(
            "Field '{label}' contains potentially unsafe {what} pattern ({p})"
        )));
    }
    Ok(())
}

// ---- icon and objects -------------------------------------------------------------------------------------

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

// ---- parameter declarations -------------------------------------------------------------------------------

fn is_parameter_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_metadata_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ':' | '-'))
}

/// Compiles a declared `string_validation_regex` (Rust's `regex`, RE2-like as Go's, linear-time).
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Every declaration rule, TMI's messages. Stops at the first broken rule.
///
/// # Errors
/// 400 `invalid_input` naming the parameter and the rule.
pub fn validate_parameters(params: &[AddonParameter]) -> ApiResult<()> {
    if params.len() > MAX_PARAMETERS {
        return Err(bad(format!(
            "Parameters array exceeds maximum size of {MAX_PARAMETERS} (got {})",
            params.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for p in params {
        if !seen.insert(p.name.to_lowercase()) {
            return Err(bad(format!("Duplicate parameter name: {}", p.name)));
        }
        validate_parameter(p)?;
    }
    Ok(())
}

fn validate_parameter(p: &AddonParameter) -> ApiResult<()> {
    let name = p.name.as_str();
    if name.is_empty() {
        return Err(bad("Parameter name is required"));
    }
    if name.chars().count() > MAX_PARAMETER_NAME {
        return Err(bad(format!(
            "Parameter name '{name}' exceeds maximum length of {MAX_PARAMETER_NAME}"
        )));
    }
    if !is_parameter_name(name) {
        return Err(bad(format!(
            "Parameter name '{name}' must start with a letter and contain only letters, digits, hyphens, and underscores"
        )));
    }
    if let Some(d) = &p.description {
        check_text(
            d,
            &format!("parameter '{name}' description"),
            MAX_PARAMETER_DESCRIPTION,
            false,
            true,
        )?;
    }
    if let Some(d) = &p.default_value
        && d.chars().count() > MAX_PARAMETER_VALUE
    {
        return Err(bad(format!(
            "Parameter '{name}' default_value exceeds maximum length of {MAX_PARAMETER_VALUE}"
        )));
    }
    // The fields only one type may carry, checked for every other type.
    let kind = p.kind;
    let forbid = |present: bool, field: &str| -> ApiResult<()> {
        if present {
            return Err(bad(format!(
                "Parameter '{name}' of type '{kind}' must not have {field}"
            )));
        }
        Ok(())
    };
    let has_enum_values = p.enum_values.as_ref().is_some_and(|v| !v.is_empty());
    let default = p.default_value.as_deref().filter(|d| !d.is_empty());
    match kind {
        ParameterType::Enum => {
            let values = p.enum_values.as_deref().unwrap_or_default();
            if values.is_empty() {
                return Err(bad(format!(
                    "Parameter '{name}' of type 'enum' must have enum_values"
                )));
            }
            if values.len() > MAX_ENUM_VALUES {
                return Err(bad(format!(
                    "Parameter '{name}' enum_values exceeds maximum of {MAX_ENUM_VALUES}"
                )));
            }
            for (i, v) in values.iter().enumerate() {
                if v.is_empty() {
                    return Err(bad(format!(
                        "Parameter '{name}' enum_values[{i}] must not be empty"
                    )));
                }
                check_text(
                    v,
                    &format!("parameter '{name}' enum_values[{i}]"),
                    MAX_PARAMETER_VALUE,
                    true,
                    false,
                )?;
            }
            if let Some(d) = default
                && !values.iter().any(|v| v == d)
            {
                return Err(bad(format!(
                    "Parameter '{name}' default_value '{d}' is not in enum_values"
                )));
            }
            forbid(p.metadata_key.is_some(), "metadata_key")?;
            forbid_constraints(p, &forbid)?;
        }
        ParameterType::Boolean => {
            forbid(has_enum_values, "enum_values")?;
            if let Some(d) = default
                && d != "true"
                && d != "false"
            {
                return Err(bad(format!(
                    "Parameter '{name}' of type 'boolean' default_value must be 'true' or 'false'"
                )));
            }
            forbid(p.metadata_key.is_some(), "metadata_key")?;
            forbid_constraints(p, &forbid)?;
        }
        ParameterType::String => {
            forbid(has_enum_values, "enum_values")?;
            forbid(p.metadata_key.is_some(), "metadata_key")?;
            forbid(p.number_min.is_some(), "number_min")?;
            forbid(p.number_max.is_some(), "number_max")?;
            if let Some(m) = p.string_max_length
                && !(1..=MAX_STRING_MAX_LENGTH).contains(&m)
            {
                return Err(bad(format!(
                    "Parameter '{name}' string_max_length must be between 1 and {MAX_STRING_MAX_LENGTH}"
                )));
            }
            let regex = match p.string_validation_regex.as_deref() {
                Some(r) if r.chars().count() > MAX_REGEX_CHARS => {
                    return Err(bad(format!(
                        "Parameter '{name}' string_validation_regex exceeds maximum length of {MAX_REGEX_CHARS}"
                    )));
                }
                Some(r) if !r.is_empty() => Some(compile(r).map_err(|e| {
                    bad(format!(
                        "Parameter '{name}' string_validation_regex is not a valid regular expression: {e}"
                    ))
                })?),
                _ => None,
            };
            if let Some(d) = default {
                check_text(
                    d,
                    &format!("parameter '{name}' default_value"),
                    MAX_PARAMETER_VALUE,
                    false,
                    false,
                )?;
                if let Some(m) = p.string_max_length
                    && i64::try_from(d.len()).unwrap_or(i64::MAX) > m
                {
                    return Err(bad(format!(
                        "Parameter '{name}' default_value exceeds string_max_length of {m}"
                    )));
                }
                if regex.as_ref().is_some_and(|r| !r.is_match(d)) {
                    return Err(bad(format!(
                        "Parameter '{name}' default_value does not match string_validation_regex"
                    )));
                }
            }
        }
        ParameterType::Number => {
            forbid(has_enum_values, "enum_values")?;
            forbid(p.metadata_key.is_some(), "metadata_key")?;
            forbid(p.string_max_length.is_some(), "string_max_length")?;
            forbid(
                p.string_validation_regex.is_some(),
                "string_validation_regex",
            )?;
            if let (Some(min), Some(max)) = (p.min(), p.max())
                && min > max
            {
                return Err(bad(format!(
                    "Parameter '{name}' number_min ({min}) must not exceed number_max ({max})"
                )));
            }
            if let Some(d) = default {
                let Some(v) = d.trim().parse::<f64>().ok().filter(|v| v.is_finite()) else {
                    return Err(bad(format!(
                        "Parameter '{name}' of type 'number' default_value must be a valid number"
                    )));
                };
                if let Some(min) = p.min()
                    && v < min
                {
                    return Err(bad(format!(
                        "Parameter '{name}' default_value {d} is below number_min ({min})"
                    )));
                }
                if let Some(max) = p.max()
                    && v > max
                {
                    return Err(bad(format!(
                        "Parameter '{name}' default_value {d} exceeds number_max ({max})"
                    )));
                }
            }
        }
        ParameterType::MetadataKey => {
            let key = p.metadata_key.as_deref().unwrap_or_default();
            if key.is_empty() {
                return Err(bad(format!(
                    "Parameter '{name}' of type 'metadata_key' must have metadata_key field set"
                )));
            }
            if key.chars().count() > MAX_METADATA_KEY {
                return Err(bad(format!(
                    "Parameter '{name}' metadata_key exceeds maximum length of {MAX_METADATA_KEY}"
                )));
            }
            if !is_metadata_key(key) {
                return Err(bad(format!(
                    "Parameter '{name}' metadata_key must match pattern: alphanumeric, underscores, dots, slashes, colons, hyphens"
                )));
            }
            forbid(has_enum_values, "enum_values")?;
            forbid_constraints(p, &forbid)?;
        }
    }
    Ok(())
}

/// The number and string constraints, refused on the types they do not apply to.
fn forbid_constraints(
    p: &AddonParameter,
    forbid: &dyn Fn(bool, &str) -> ApiResult<()>,
) -> ApiResult<()> {
    forbid(p.number_min.is_some(), "number_min")?;
    forbid(p.number_max.is_some(), "number_max")?;
    forbid(p.string_max_length.is_some(), "string_max_length")?;
    forbid(
        p.string_validation_regex.is_some(),
        "string_validation_regex",
    )
}

// ---- invocation data --------------------------------------------------------------------------------------

/// Checks invocation `data` against the declared parameters: required ones present, declared ones of the
/// right type and within their constraints. Keys that declare nothing pass (TMI keeps them for backward
/// compatibility).
///
/// # Errors
/// 400 `invalid_input` naming the parameter.
pub fn validate_invocation_data(
    data: Option<&Map<String, Value>>,
    params: &[AddonParameter],
) -> ApiResult<()> {
    for p in params.iter().filter(|p| p.is_required()) {
        if !data.is_some_and(|d| d.contains_key(&p.name)) {
            return Err(bad(format!("Required parameter '{}' is missing", p.name)));
        }
    }
    let Some(data) = data else { return Ok(()) };
    for p in params {
        if let Some(v) = data.get(&p.name) {
            validate_value(p, v)?;
        }
    }
    Ok(())
}

fn validate_value(p: &AddonParameter, v: &Value) -> ApiResult<()> {
    let name = &p.name;
    match p.kind {
        ParameterType::Enum => {
            let Value::String(s) = v else {
                return Err(bad(format!("Parameter '{name}' must be a string")));
            };
            if let Some(values) = &p.enum_values
                && !values.contains(s)
            {
                return Err(bad(format!(
                    "Parameter '{name}' value '{s}' is not in allowed values"
                )));
            }
        }
        ParameterType::Boolean => match v {
            Value::Bool(_) => {}
            Value::String(s) if s == "true" || s == "false" => {}
            Value::String(_) => {
                return Err(bad(format!("Parameter '{name}' must be 'true' or 'false'")));
            }
            _ => {
                return Err(bad(format!(
                    "Parameter '{name}' must be a boolean or string 'true'/'false'"
                )));
            }
        },
        ParameterType::String | ParameterType::MetadataKey => {
            let Value::String(s) = v else {
                return Err(bad(format!("Parameter '{name}' must be a string")));
            };
            // TMI measures bytes here.
            if let Some(m) = p.string_max_length
                && i64::try_from(s.len()).unwrap_or(i64::MAX) > m
            {
                return Err(bad(format!(
                    "Parameter '{name}' value exceeds maximum length of {m}"
                )));
            }
            // Declarations were compiled at create; one that no longer compiles checks nothing, as in TMI.
            if let Some(r) = p
                .string_validation_regex
                .as_deref()
                .filter(|r| !r.is_empty())
                && compile(r).is_ok_and(|re| !re.is_match(s))
            {
                return Err(bad(format!(
                    "Parameter '{name}' value does not match validation pattern"
                )));
            }
        }
        ParameterType::Number => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => Some(
                    s.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| bad(format!("Parameter '{name}' must be a valid number")))?,
                ),
                _ => None,
            };
            let Some(n) = n else {
                return Err(bad(format!("Parameter '{name}' must be a number")));
            };
            if let Some(min) = p.min()
                && n < min
            {
                return Err(bad(format!(
                    "Parameter '{name}' value {n} is below minimum of {min}"
                )));
            }
            if let Some(max) = p.max()
                && n > max
            {
                return Err(bad(format!(
                    "Parameter '{name}' value {n} exceeds maximum of {max}"
                )));
            }
        }
    }
    Ok(())
}

/// The length TMI measures `data` by: Go's compact re-serialisation. Whitespace is dropped, and Go escapes
/// `<`, `>`, `&` (as `\u003c`, five bytes more each) and U+2028/U+2029 (three bytes more each). Key order
/// does not change the length. Go prints some numbers differently (`1e+21` vs `1e21`); that is ignored.
///
/// # Errors
/// Only if `raw` is not JSON (the body decoder has checked it is).
pub fn go_compact_len(raw: &RawValue) -> Result<usize, serde_json::Error> {
    let v: Value = serde_json::from_str(raw.get())?;
    let compact = serde_json::to_string(&v)?;
    let extra: usize = compact
        .chars()
        .map(|c| match c {
            '<' | '>' | '&' => 5,
            '\u{2028}' | '\u{2029}' => 3,
            _ => 0,
        })
        .sum();
    Ok(compact.len() + extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(r: ApiResult<()>) -> String {
        match r {
            Err(ApiError::BadRequest { description, .. }) => description,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    fn param(v: Value) -> AddonParameter {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn params_err(v: Value) -> String {
        let ps: Vec<AddonParameter> = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        code(validate_parameters(&ps))
    }

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

    #[test]
    fn parameter_names() {
        assert_eq!(
            params_err(
                json!([{"name": "Mode", "type": "boolean"}, {"name": "mode", "type": "string"}])
            ),
            "Duplicate parameter name: mode"
        );
        assert_eq!(
            params_err(json!([{"name": "", "type": "boolean"}])),
            "Parameter name is required"
        );
        assert!(
            params_err(json!([{"name": "1x", "type": "boolean"}]))
                .contains("must start with a letter")
        );
        assert!(
            params_err(json!([{"name": "a b", "type": "boolean"}]))
                .contains("must start with a letter")
        );
        assert!(
            params_err(json!([{"name": "a".repeat(129), "type": "boolean"}]))
                .contains("maximum length of 128")
        );
        assert!(
            params_err(json!([{"name": "a", "type": "boolean", "description": "x".repeat(513)}]))
                .contains("512")
        );
        let many: Vec<Value> = (0..21)
            .map(|i| json!({"name": format!("p{i}"), "type": "boolean"}))
            .collect();
        assert!(params_err(json!(many)).contains("maximum size of 20 (got 21)"));
        assert!(
            validate_parameters(&[param(json!({"name": "a-b_C9", "type": "boolean"}))]).is_ok()
        );
    }

    #[test]
    fn enum_parameters() {
        let e = |extra: Value| {
            let mut p = json!({"name": "m", "type": "enum", "enum_values": ["a", "b"]});
            if let (Some(o), Some(x)) = (p.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            validate_parameters(&[param(p)])
        };
        assert!(e(json!({"default_value": "b"})).is_ok());
        assert!(code(e(json!({"enum_values": []}))).contains("must have enum_values"));
        assert!(code(e(json!({"enum_values": vec!["v"; 51]}))).contains("exceeds maximum of 50"));
        assert!(
            code(e(json!({"enum_values": ["a", ""]}))).contains("enum_values[1] must not be empty")
        );
        assert!(
            code(e(json!({"enum_values": ["x".repeat(257)]}))).contains("maximum length of 256")
        );
        assert!(
            code(e(json!({"default_value": "c"})))
                .contains("default_value 'c' is not in enum_values")
        );
        assert!(code(e(json!({"metadata_key": "k"}))).contains("must not have metadata_key"));
        assert!(code(e(json!({"number_min": 1}))).contains("must not have number_min"));
        assert!(code(e(json!({"number_max": 1}))).contains("must not have number_max"));
        assert!(
            code(e(json!({"string_max_length": 1}))).contains("must not have string_max_length")
        );
        assert!(
            code(e(json!({"string_validation_regex": "x"})))
                .contains("must not have string_validation_regex")
        );
    }

    #[test]
    fn boolean_string_number_and_metadata_parameters() {
        let one = |p: Value| validate_parameters(&[param(p)]);
        // boolean
        assert!(one(json!({"name": "b", "type": "boolean", "default_value": "false"})).is_ok());
        assert!(
            code(one(
                json!({"name": "b", "type": "boolean", "default_value": "yes"})
            ))
            .contains("'true' or 'false'")
        );
        assert!(
            code(one(
                json!({"name": "b", "type": "boolean", "enum_values": ["x"]})
            ))
            .contains("must not have enum_values")
        );
        assert!(
            code(one(
                json!({"name": "b", "type": "boolean", "metadata_key": "k"})
            ))
            .contains("must not have metadata_key")
        );
        assert!(
            code(one(
                json!({"name": "b", "type": "boolean", "string_max_length": 3})
            ))
            .contains("string_max_length")
        );
        // string
        assert!(one(json!({"name": "s", "type": "string", "string_max_length": 5, "string_validation_regex": "^[a-z]+$", "default_value": "abc"})).is_ok());
        assert!(
            code(one(
                json!({"name": "s", "type": "string", "string_max_length": 0})
            ))
            .contains("between 1 and 10000")
        );
        assert!(
            code(one(
                json!({"name": "s", "type": "string", "string_max_length": 10001})
            ))
            .contains("between 1 and 10000")
        );
        assert!(
            code(one(
                json!({"name": "s", "type": "string", "string_validation_regex": "(["})
            ))
            .contains("not a valid regular expression")
        );
        assert!(
            code(one(
                json!({"name": "s", "type": "string", "string_validation_regex": "a".repeat(257)})
            ))
            .contains("maximum length of 256")
        );
        assert!(code(one(json!({"name": "s", "type": "string", "string_max_length": 2, "default_value": "abc"}))).contains("exceeds string_max_length of 2"));
        assert!(code(one(json!({"name": "s", "type": "string", "string_validation_regex": "^[0-9]+$", "default_value": "abc"}))).contains("does not match string_validation_regex"));
        assert!(
            code(one(json!({"name": "s", "type": "string", "number_min": 1})))
                .contains("must not have number_min")
        );
        assert!(
            code(one(json!({"name": "s", "type": "string", "number_max": 1})))
                .contains("must not have number_max")
        );
        assert!(
            code(one(
                json!({"name": "s", "type": "string", "enum_values": ["a"]})
            ))
            .contains("must not have enum_values")
        );
        assert!(
            code(one(
                json!({"name": "s", "type": "string", "metadata_key": "k"})
            ))
            .contains("must not have metadata_key")
        );
        assert!(
            code(one(
                json!({"name": "s", "type": "string", "default_value": "x".repeat(257)})
            ))
            .contains("default_value exceeds maximum length of 256")
        );
        // number
        assert!(one(json!({"name": "n", "type": "number", "number_min": 1, "number_max": 10, "default_value": "2.5"})).is_ok());
        assert!(
            code(one(
                json!({"name": "n", "type": "number", "number_min": 10, "number_max": 1})
            ))
            .contains("must not exceed number_max")
        );
        assert!(
            code(one(
                json!({"name": "n", "type": "number", "default_value": "ten"})
            ))
            .contains("must be a valid number")
        );
        assert!(
            code(one(
                json!({"name": "n", "type": "number", "number_min": 3, "default_value": "2"})
            ))
            .contains("below number_min")
        );
        assert!(
            code(one(
                json!({"name": "n", "type": "number", "number_max": 3, "default_value": "4"})
            ))
            .contains("exceeds number_max")
        );
        assert!(
            code(one(
                json!({"name": "n", "type": "number", "string_max_length": 3})
            ))
            .contains("must not have string_max_length")
        );
        assert!(
            code(one(
                json!({"name": "n", "type": "number", "string_validation_regex": "x"})
            ))
            .contains("must not have string_validation_regex")
        );
        assert!(
            code(one(
                json!({"name": "n", "type": "number", "enum_values": ["1"]})
            ))
            .contains("must not have enum_values")
        );
        assert!(
            code(one(
                json!({"name": "n", "type": "number", "metadata_key": "k"})
            ))
            .contains("must not have metadata_key")
        );
        // metadata_key
        assert!(one(json!({"name": "k", "type": "metadata_key", "metadata_key": "tmi.io/owner:team_1-a"})).is_ok());
        assert!(
            code(one(json!({"name": "k", "type": "metadata_key"})))
                .contains("must have metadata_key field set")
        );
        assert!(
            code(one(
                json!({"name": "k", "type": "metadata_key", "metadata_key": "a b"})
            ))
            .contains("must match pattern")
        );
        assert!(
            code(one(
                json!({"name": "k", "type": "metadata_key", "metadata_key": "k".repeat(257)})
            ))
            .contains("maximum length of 256")
        );
        assert!(code(one(json!({"name": "k", "type": "metadata_key", "metadata_key": "k", "enum_values": ["a"]}))).contains("must not have enum_values"));
        assert!(
            code(one(
                json!({"name": "k", "type": "metadata_key", "metadata_key": "k", "number_min": 1})
            ))
            .contains("must not have number_min")
        );
    }

    #[test]
    fn invocation_data() {
        let params: Vec<AddonParameter> = serde_json::from_value(json!([
            {"name": "mode", "type": "enum", "enum_values": ["fast", "deep"], "required": true},
            {"name": "verbose", "type": "boolean"},
            {"name": "label", "type": "string", "string_max_length": 3, "string_validation_regex": "^[a-z]+$"},
            {"name": "depth", "type": "number", "number_min": 1, "number_max": 5},
            {"name": "owner", "type": "metadata_key", "metadata_key": "owner"}
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        let check = |d: Value| validate_invocation_data(d.as_object(), &params);
        assert!(check(json!({"mode": "fast", "verbose": "true", "label": "abc", "depth": "2.5", "owner": "x", "extra": [1]})).is_ok());
        assert!(check(json!({"mode": "deep", "verbose": false, "depth": 5})).is_ok());
        assert_eq!(
            code(check(json!({}))),
            "Required parameter 'mode' is missing"
        );
        assert_eq!(
            code(validate_invocation_data(None, &params)),
            "Required parameter 'mode' is missing"
        );
        assert!(code(check(json!({"mode": 1}))).contains("'mode' must be a string"));
        assert!(
            code(check(json!({"mode": "slow"}))).contains("value 'slow' is not in allowed values")
        );
        assert!(
            code(check(json!({"mode": "fast", "verbose": "yes"})))
                .contains("must be 'true' or 'false'")
        );
        assert!(code(check(json!({"mode": "fast", "verbose": 1}))).contains("boolean or string"));
        assert!(
            code(check(json!({"mode": "fast", "label": 7}))).contains("'label' must be a string")
        );
        assert!(
            code(check(json!({"mode": "fast", "label": "abcd"}))).contains("maximum length of 3")
        );
        assert!(
            code(check(json!({"mode": "fast", "label": "AB"})))
                .contains("does not match validation pattern")
        );
        assert!(
            code(check(json!({"mode": "fast", "depth": "deep"})))
                .contains("must be a valid number")
        );
        assert!(code(check(json!({"mode": "fast", "depth": true}))).contains("must be a number"));
        assert!(code(check(json!({"mode": "fast", "depth": 0}))).contains("below minimum of 1"));
        assert!(code(check(json!({"mode": "fast", "depth": 6}))).contains("exceeds maximum of 5"));
        assert!(
            code(check(json!({"mode": "fast", "owner": 1}))).contains("'owner' must be a string")
        );
        assert!(validate_invocation_data(None, &[]).is_ok());
    }

    #[test]
    fn data_is_measured_like_go() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            go_compact_len(&raw(r#"{ "b" : 1,  "a": [1, 2] }"#)).ok(),
            Some(17)
        );
        // `<` becomes `\u003c` in Go's output.
        assert_eq!(go_compact_len(&raw(r#"{"a":"<"}"#)).ok(), Some(14));
        assert_eq!(go_compact_len(&raw("{\"a\":\"\u{2028}\"}")).ok(), Some(14));
        assert_eq!(go_compact_len(&raw(r#"{"a":"é"}"#)).ok(), Some(10));
    }
}
