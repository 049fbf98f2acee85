//! TMI's parameter declaration rules (`addon_validation.go`): at most 20, names unique case-insensitively
//! and well-formed, type-specific fields only on their type, defaults consistent with the declaration,
//! `string_validation_regex` must compile.

use delivery_model::addon::{AddonParameter, ParameterType};
use regex::{Regex, RegexBuilder};

use super::text::check_text;
use super::{
    MAX_ENUM_VALUES, MAX_METADATA_KEY, MAX_PARAMETER_DESCRIPTION, MAX_PARAMETER_NAME,
    MAX_PARAMETER_VALUE, MAX_PARAMETERS, MAX_REGEX_CHARS, MAX_STRING_MAX_LENGTH, bad,
};
use crate::error::ApiResult;

/// Upper bound on the compiled size of a declared regex, so one declaration cannot cost much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

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
pub(super) fn compile(pattern: &str) -> Result<Regex, regex::Error> {
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

/// The rules every declaration follows, then the rules of its type.
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
    let default = p.default_value.as_deref().filter(|d| !d.is_empty());
    match p.kind {
        ParameterType::Enum => validate_enum(p, default),
        ParameterType::Boolean => validate_boolean(p, default),
        ParameterType::String => validate_string(p, default),
        ParameterType::Number => validate_number(p, default),
        ParameterType::MetadataKey => validate_metadata_key(p),
    }
}

/// Refuses a field that only another type may carry.
fn forbid(p: &AddonParameter, present: bool, field: &str) -> ApiResult<()> {
    if present {
        return Err(bad(format!(
            "Parameter '{}' of type '{}' must not have {field}",
            p.name, p.kind
        )));
    }
    Ok(())
}

fn has_enum_values(p: &AddonParameter) -> bool {
    p.enum_values.as_ref().is_some_and(|v| !v.is_empty())
}

/// The number and string constraints, refused on the types they do not apply to.
fn forbid_constraints(p: &AddonParameter) -> ApiResult<()> {
    forbid(p, p.number_min.is_some(), "number_min")?;
    forbid(p, p.number_max.is_some(), "number_max")?;
    forbid(p, p.string_max_length.is_some(), "string_max_length")?;
    forbid(
        p,
        p.string_validation_regex.is_some(),
        "string_validation_regex",
    )
}

/// `enum`: at least one value, each non-empty, safe text; the default is one of them.
fn validate_enum(p: &AddonParameter, default: Option<&str>) -> ApiResult<()> {
    let name = p.name.as_str();
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
    forbid(p, p.metadata_key.is_some(), "metadata_key")?;
    forbid_constraints(p)
}

/// `boolean`: the default is `true` or `false`; no other type's fields.
fn validate_boolean(p: &AddonParameter, default: Option<&str>) -> ApiResult<()> {
    forbid(p, has_enum_values(p), "enum_values")?;
    if let Some(d) = default
        && d != "true"
        && d != "false"
    {
        return Err(bad(format!(
            "Parameter '{}' of type 'boolean' default_value must be 'true' or 'false'",
            p.name
        )));
    }
    forbid(p, p.metadata_key.is_some(), "metadata_key")?;
    forbid_constraints(p)
}

/// `string`: a bounded `string_max_length`, a regex that compiles, and a default that obeys both.
fn validate_string(p: &AddonParameter, default: Option<&str>) -> ApiResult<()> {
    let name = p.name.as_str();
    forbid(p, has_enum_values(p), "enum_values")?;
    forbid(p, p.metadata_key.is_some(), "metadata_key")?;
    forbid(p, p.number_min.is_some(), "number_min")?;
    forbid(p, p.number_max.is_some(), "number_max")?;
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
    let Some(d) = default else { return Ok(()) };
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
    Ok(())
}

/// `number`: `number_min` not above `number_max`, and a finite default between them.
fn validate_number(p: &AddonParameter, default: Option<&str>) -> ApiResult<()> {
    let name = p.name.as_str();
    forbid(p, has_enum_values(p), "enum_values")?;
    forbid(p, p.metadata_key.is_some(), "metadata_key")?;
    forbid(p, p.string_max_length.is_some(), "string_max_length")?;
    forbid(
        p,
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
    let Some(d) = default else { return Ok(()) };
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
    Ok(())
}

/// `metadata_key`: a non-empty, bounded key of the allowed characters; no other type's fields.
fn validate_metadata_key(p: &AddonParameter) -> ApiResult<()> {
    let name = p.name.as_str();
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
    forbid(p, has_enum_values(p), "enum_values")?;
    forbid_constraints(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addon_rules::testing::{code, param, params_err};
    use serde_json::{Value, json};

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
    fn boolean_parameters() {
        let one = |p: Value| validate_parameters(&[param(p)]);
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
    }

    #[test]
    fn string_parameters() {
        let one = |p: Value| validate_parameters(&[param(p)]);
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
    }

    #[test]
    fn number_parameters() {
        let one = |p: Value| validate_parameters(&[param(p)]);
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
    }

    #[test]
    fn metadata_key_parameters() {
        let one = |p: Value| validate_parameters(&[param(p)]);
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
}
