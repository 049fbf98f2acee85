//! Invocation `data` of `POST /addons/{id}/invoke` against the add-on's declared parameters, and the size
//! TMI measures that data by.

use delivery_model::addon::{AddonParameter, ParameterType};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::bad;
use super::parameters::compile;
use crate::error::ApiResult;

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
    use crate::addon_rules::testing::code;
    use serde_json::json;

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
