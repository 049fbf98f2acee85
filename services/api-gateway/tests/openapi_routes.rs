//! The OpenAPI document against the router, both ways:
//!
//! - every route the gateway registers (read from `src/routes/*.rs`, where every route goes through the one
//!   `resource(path, allow)` helper) is a path of `openapi/openapi.yaml`, with exactly the methods it serves;
//! - every operation of the document is served by a running gateway: the request reaches a handler (it is
//!   not answered by the app's default service, the "no route" 404, nor by a resource's 405), and the status
//!   it gets is one the operation documents;
//! - on every documented path, a method the document does not list is answered 405 with an `Allow` header
//!   naming exactly the documented methods (so no undocumented method hides on a documented path);
//! - `/openapi.json` and `/openapi.yaml` serve the built-in document.
//!
//! Why the routes are read from the source: actix-web offers no way to list an app's resources, and a
//! hand-kept table of routes next to the router would drift exactly as the document can. The source scan is
//! guarded: it fails when a route is registered any other way than through the helper (see
//! [`registered_routes`]), and the live checks confirm what the scan found.

#![expect(clippy::expect_used, reason = "tests")]

// The integration tests' harness (a gateway on a loopback port with its own redis-server); only part of it
// is used here.
#[allow(dead_code, reason = "the harness serves the `it` tests too")]
#[path = "it/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};

use api_gateway::routes::openapi::{OPENAPI_YAML, yaml_to_json};
use hyper::{Method, StatusCode};
use regex::Regex;
use serde_json::Value;

use crate::harness::TestApp;

/// What the app's default service answers for a path no route matches (`ApiError::RouteNotFound`): a
/// handler's own 404s say what was not found, so this description alone marks "no such route".
const ROUTE_NOT_FOUND: &str = "The requested resource was not found";

/// The value every path parameter gets: all of them are UUIDs. Nothing exists in the fresh store, which
/// suits the check: only routing is under test.
const SOME_ID: &str = "550e8400-e29b-41d4-a716-446655440000";

/// Methods an OpenAPI path item may hold.
const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The document as JSON.
fn spec() -> Value {
    let json = yaml_to_json(OPENAPI_YAML).expect("openapi/openapi.yaml converts to JSON");
    serde_json::from_slice(&json).expect("JSON")
}

/// Path → documented methods (upper case).
fn documented_routes(spec: &Value) -> BTreeMap<String, BTreeSet<String>> {
    spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("path item")
                .keys()
                .filter(|k| HTTP_METHODS.contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// `{name:regex}` → `{name}`: actix's segment syntax to OpenAPI's.
fn openapi_path(actix: &str) -> String {
    let re = Regex::new(r"\{([A-Za-z0-9_]+):[^}]*\}").expect("regex");
    re.replace_all(actix, "{$1}").into_owned()
}

/// Path → served methods, from every `resource("<path>", "<allow>")` call under `src/routes/`.
///
/// `routes::resource` is the only way the gateway registers a route: it gives each path its 405 with
/// `Allow`, and `Allow` is the list of methods the resource serves (the live checks below hold the server to
/// it). To keep the scan honest, the gateway's sources must not register a route any other way: no
/// `web::resource(` outside the helper itself, no `web::scope(`, no path-taking `.route("…")`, no routing
/// macros.
fn registered_routes() -> BTreeMap<String, BTreeSet<String>> {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files: Vec<_> = std::fs::read_dir(format!("{src}/routes"))
        .expect("src/routes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.push(format!("{src}/lib.rs").into());
    files.sort();
    let call = Regex::new(r#"\bresource\(\s*"([^"]+)"\s*,\s*"([^"]+)"\s*,?\s*\)"#).expect("regex");
    let bypass = Regex::new(r#"web::scope\(|\.route\(\s*"|#\[(get|post|put|patch|delete|route)\("#)
        .expect("regex");
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut web_resource_calls = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        web_resource_calls += text.matches("web::resource(").count();
        if let Some(m) = bypass.find(&text) {
            panic!(
                "{}: `{}` registers a route outside routes::resource; extend this scan",
                file.display(),
                m.as_str()
            );
        }
        for c in call.captures_iter(&text) {
            let methods = c[2].split(',').map(|m| m.trim().to_owned()).collect();
            let previous = routes.insert(openapi_path(&c[1]), methods);
            assert!(previous.is_none(), "{} registered twice", &c[1]);
        }
    }
    assert_eq!(
        web_resource_calls, 1,
        "web::resource( should appear only inside routes::resource"
    );
    assert!(
        routes.len() >= 10,
        "the scan found too few routes: {routes:?}"
    );
    routes
}

/// The documented path with every parameter filled in.
fn concrete(path: &str) -> String {
    let re = Regex::new(r"\{[^}]+\}").expect("regex");
    re.replace_all(path, SOME_ID).into_owned()
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("method")
}

/// `error_description` of a JSON error body, if it is one.
fn description(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error_description")?.as_str().map(str::to_owned)
}

#[test]
fn every_registered_route_is_documented_with_its_methods() {
    let documented = documented_routes(&spec());
    let registered = registered_routes();
    let undocumented: Vec<_> = registered
        .iter()
        .filter(|(p, m)| documented.get(*p) != Some(m))
        .collect();
    assert!(
        undocumented.is_empty(),
        "registered but not documented (or with other methods): {undocumented:?}\ndocumented: {documented:?}"
    );
    let unregistered: Vec<_> = documented
        .keys()
        .filter(|p| !registered.contains_key(*p))
        .collect();
    assert!(
        unregistered.is_empty(),
        "documented but not registered: {unregistered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served() {
    let spec = spec();
    // The document describes everything the API port can serve, `/metrics` (behind its setting) included.
    let app = TestApp::start_with(|s| s.api.metrics_on_api_port = true).await;

    // The marker first: an unknown path must get exactly the answer the checks below rule out.
    let res = app.get("/no/such/route").send().await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(description(&res.body).as_deref(), Some(ROUTE_NOT_FOUND));

    let mut checked = 0;
    for (path, methods) in documented_routes(&spec) {
        let url = concrete(&path);
        for m in &methods {
            // No credentials and no body: enough to reach the handler (or its extractors), never enough to
            // change anything.
            let res = app.request(method(m), &url).send().await;
            let what = format!("{m} {path} ({url}) answered {}: {}", res.status, res.text());
            assert!(
                !(res.status == StatusCode::NOT_FOUND
                    && description(&res.body).as_deref() == Some(ROUTE_NOT_FOUND)),
                "no route: {what}"
            );
            assert_ne!(
                res.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "method not served: {what}"
            );
            let documented = &spec["paths"][&path][m.to_lowercase()]["responses"];
            assert!(
                documented.get(res.status.as_str()).is_some(),
                "status not documented: {what}"
            );
            checked += 1;
        }

        // A method the document does not list: 405, and `Allow` is exactly the documented set.
        let other = ["PATCH", "PUT", "DELETE", "POST", "GET"]
            .into_iter()
            .find(|m| !methods.contains(*m))
            .expect("some method is not documented");
        let res = app.request(method(other), &url).send().await;
        assert_eq!(
            res.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{other} {path}: {}",
            res.text()
        );
        let allow: BTreeSet<String> = res
            .header("allow")
            .expect("Allow header")
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        assert_eq!(allow, methods, "Allow of {path}");
    }
    assert!(checked >= 17, "only {checked} operations checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_as_json_and_yaml() {
    // The document describes everything the API port can serve, `/metrics` (behind its setting) included.
    let app = TestApp::start_with(|s| s.api.metrics_on_api_port = true).await;

    let res = app.get("/openapi.json").send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.json(), spec());

    let res = app.get("/openapi.yaml").send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/yaml"));
    assert_eq!(res.text(), OPENAPI_YAML);
}
