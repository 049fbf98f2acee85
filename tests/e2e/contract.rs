//! Every answer an end-to-end test gets from the API is checked against the OpenAPI document the gateway
//! serves (`/openapi.json`, the same text as `openapi/openapi.yaml`): the status must be documented for the
//! operation, and a JSON body must match the documented schema. So the scenarios double as contract tests
//! on real data (delivered records, in-progress callbacks, quota answers), beyond what the fuzzer reaches.
//!
//! Requests to paths the document does not describe (a test probing an unknown route) are not checked.

use regex::Regex;
use serde_json::Value;

/// The served document, with a matcher per path template.
pub struct Contract {
    spec: Value,
    /// (template, matcher), literal-heavy templates first so `/a/b` wins over `/a/{id}`.
    routes: Vec<(String, Regex)>,
}

impl Contract {
    /// Loads the document from the running gateway.
    pub async fn fetch(spec_url: &str) -> Self {
        let (status, _, body) = test_support::http::request("GET", spec_url, &[], "").await;
        assert_eq!(status, 200, "GET /openapi.json");
        let spec: Value =
            serde_json::from_slice(&body).expect("the served OpenAPI document is JSON");
        let mut routes: Vec<(String, Regex)> = spec["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(|t| {
                let pattern = Regex::new(r"\{[^}/]+\}")
                    .expect("template regex")
                    .replace_all(
                        &regex::escape(t).replace(r"\{", "{").replace(r"\}", "}"),
                        "[^/]+",
                    )
                    .into_owned();
                (
                    t.clone(),
                    Regex::new(&format!("^{pattern}$")).expect("path regex"),
                )
            })
            .collect();
        routes.sort_by_key(|(t, _)| t.matches('{').count());
        Self { spec, routes }
    }

    /// Checks one answer; panics with the reason when it breaks the contract.
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) {
        let path = path.split('?').next().unwrap_or(path);
        let Some((template, _)) = self.routes.iter().find(|(_, re)| re.is_match(path)) else {
            return;
        };
        let Some(op) = self.spec["paths"][template].get(method.to_ascii_lowercase()) else {
            // A method the path does not have: the gateway answers 405 with Allow (its own test covers it).
            assert_eq!(
                status, 405,
                "{method} {path}: undocumented method answered {status}"
            );
            return;
        };
        let responses = &op["responses"];
        let class = format!("{}XX", status / 100);
        let Some(response) = [status.to_string(), class, "default".to_owned()]
            .iter()
            .find_map(|k| responses.get(k))
        else {
            panic!(
                "{method} {template}: status {status} is not documented (documented: {:?})",
                responses
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>())
            );
        };
        let response = self.resolve(response);
        let Some(schema) = response["content"]["application/json"].get("schema") else {
            return;
        };
        assert!(
            content_type.starts_with("application/json"),
            "{method} {template} {status}: content type `{content_type}`, documented application/json"
        );
        let instance: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "{method} {template} {status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        });
        // The schema with the document's components beside it, so `#/components/...` references resolve.
        let mut root = schema.clone();
        if let Some(obj) = root.as_object_mut() {
            obj.insert("components".into(), self.spec["components"].clone());
        }
        let validator = jsonschema::draft202012::new(&root).unwrap_or_else(|e| {
            panic!("{method} {template} {status}: schema does not compile: {e}")
        });
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: body does not match the documented schema:\n  {}\nbody: {instance}",
            errors.join("\n  ")
        );
    }

    /// Follows a `$ref` to a component (responses may be shared components).
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix('#')
                .and_then(|p| self.spec.pointer(p))
                .unwrap_or(v),
            None => v,
        }
    }
}

#[tokio::test]
async fn the_check_refuses_an_undocumented_status_and_a_body_that_breaks_the_schema() {
    let stack = crate::harness::Stack::start().await;
    let contract = stack.contract();
    let refuses = |status: u16, body: &str| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            contract.check(
                "GET",
                "/admin/webhooks/subscriptions/0f6c0000-0000-4000-8000-000000000001",
                status,
                "application/json",
                body.as_bytes(),
            );
        }))
        .is_err()
    };
    assert!(
        refuses(200, r#"{"id": 5}"#),
        "a subscription without its fields"
    );
    assert!(refuses(200, "not json"), "a body that is not JSON");
    assert!(refuses(418, "{}"), "an undocumented status");
    assert!(
        !refuses(
            404,
            r#"{"error": "not_found", "error_description": "no such subscription"}"#
        ),
        "TMI's error body on a documented 404"
    );
}
