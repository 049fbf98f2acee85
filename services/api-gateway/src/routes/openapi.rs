//! `GET /openapi.json` and `GET /openapi.yaml`: Hookline's OpenAPI 3.1 document, served without
//! authentication.
//!
//! The YAML source (`openapi/openapi.yaml` at the repository root) is built into the binary, so a gateway
//! always serves the document of its own routes (`tests/openapi_routes.rs` checks that every registered route
//! is documented and every documented operation is served). The YAML is converted to JSON once: [`configure`]
//! forces the conversion when the app is built, so a document that does not parse is logged at start-up
//! rather than discovered by the first client. It cannot fail in a released binary — the same conversion runs
//! in the tests — but if it did, `/openapi.json` would answer 500 and the rest of the API would stay up.

use std::sync::LazyLock;

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};

use crate::error::{ApiError, ApiResult};
use crate::routes::resource;

/// The document as written: the source of both answers.
pub const OPENAPI_YAML: &str = include_str!("../../../../openapi/openapi.yaml");

/// Media type of the YAML answer (RFC 9512).
const YAML_CONTENT_TYPE: &str = "application/yaml";

/// How long clients may cache the document, seconds: it changes only with the binary.
const MAX_AGE_SECS: u32 = 300;

/// The document as JSON bytes, or why the YAML did not convert.
static OPENAPI_JSON: LazyLock<Result<web::Bytes, String>> = LazyLock::new(|| {
    yaml_to_json(OPENAPI_YAML)
        .map(web::Bytes::from)
        .map_err(|e| {
            tracing::error!(error = %e, "the built-in OpenAPI document is not valid YAML");
            e
        })
});

/// Converts a YAML document to compact JSON.
///
/// # Errors
/// The YAML does not parse, or holds something JSON cannot (a non-string key, a non-finite number).
pub fn yaml_to_json(yaml: &str) -> Result<Vec<u8>, String> {
    let value: serde_json::Value = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

/// Registers both routes, and converts the document now rather than on the first request.
pub fn configure(cfg: &mut web::ServiceConfig) {
    LazyLock::force(&OPENAPI_JSON);
    cfg.service(resource("/openapi.json", "GET").route(web::get().to(openapi_json)))
        .service(resource("/openapi.yaml", "GET").route(web::get().to(openapi_yaml)));
}

fn cache_control() -> CacheControl {
    CacheControl(vec![
        CacheDirective::Public,
        CacheDirective::MaxAge(MAX_AGE_SECS),
    ])
}

/// `GET /openapi.json`
pub async fn openapi_json() -> ApiResult<HttpResponse> {
    match &*OPENAPI_JSON {
        Ok(json) => Ok(HttpResponse::Ok()
            .content_type(header::ContentType::json())
            .insert_header(cache_control())
            .body(json.clone())),
        Err(e) => Err(ApiError::Internal(format!("OpenAPI document: {e}"))),
    }
}

/// `GET /openapi.yaml`
pub async fn openapi_yaml() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(YAML_CONTENT_TYPE)
        .insert_header(cache_control())
        .body(OPENAPI_YAML)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_converts_to_an_openapi_3_1_object() {
        let json = yaml_to_json(OPENAPI_YAML).unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
        assert!(
            v["openapi"].as_str().is_some_and(|s| s.starts_with("3.1.")),
            "{}",
            v["openapi"]
        );
        assert!(v["paths"]["/openapi.json"]["get"].is_object());
    }

    #[test]
    fn yaml_scalars_keep_their_json_types() {
        // Quoted dates stay strings, integers stay integers, `true` is a boolean: what the spec relies on.
        let json = yaml_to_json("a: '2026-04-01T12:00:00Z'\nb: 20\nc: true\nd: ~\ne: 1.5\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&json),
            r#"{"a":"2026-04-01T12:00:00Z","b":20,"c":true,"d":null,"e":1.5}"#
        );
        assert!(yaml_to_json("a: [").is_err());
    }
}
