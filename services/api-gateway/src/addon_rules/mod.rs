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
//! Submodules, one room per rule set:
//! - `request`: the create request, its normalised form, and the icon and object-type rules.
//! - `text`: the text-field checks every free-text field goes through.
//! - `parameters`: the parameter declarations.
//! - `invocation`: invocation data against the declarations, and the size TMI measures it by.
//!
//! Every refusal is a 400 `invalid_input` carrying TMI's sentence (UUID formats use `invalid_id`, as the
//! rest of the gateway does).

mod invocation;
mod parameters;
mod request;
mod text;

pub use invocation::{go_compact_len, validate_invocation_data};
pub use parameters::validate_parameters;
pub use request::{CreateAddonRequest, ValidAddon, validate_icon, validate_objects};

use crate::error::ApiError;

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

fn bad(description: impl AsRef<str>) -> ApiError {
    ApiError::invalid_input(description)
}

/// Helpers shared by the submodules' unit tests.
#[cfg(test)]
mod testing {
    use delivery_model::addon::AddonParameter;
    use serde_json::Value;

    use super::validate_parameters;
    use crate::error::{ApiError, ApiResult};

    pub(super) fn code(r: ApiResult<()>) -> String {
        match r {
            Err(ApiError::BadRequest { description, .. }) => description,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    pub(super) fn param(v: Value) -> AddonParameter {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) fn params_err(v: Value) -> String {
        let ps: Vec<AddonParameter> = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        code(validate_parameters(&ps))
    }
}
