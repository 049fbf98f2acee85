//! `/console/`: the web console (issue #20), a handful of static files built into the binary from
//! `services/api-gateway/console/` — no separate server, no build step, nothing read from disk at run time.
//!
//! The console is a client of the public API like any other: it holds the caller's bearer token in the
//! browser's `sessionStorage` and can never see more than that token may. These routes need no token
//! themselves (they serve code, never data) and answer every file with a strict Content-Security-Policy:
//! scripts and styles only from the console's own files, requests only to this origin, no framing.

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};

use crate::error::{ApiError, ApiResult};
use crate::routes::resource;

/// The console's Content-Security-Policy: no inline script or style, nothing from another origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/console/`, media type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console. A new file is added here, or it is not served.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("charts.js", JS),
    asset!("signin.js", JS),
    asset!("overview.js", JS),
    asset!("subscriptions.js", JS),
    asset!("subscription.js", JS),
    asset!("actions.js", JS),
    asset!("redrive.js", JS),
    asset!("deliveries.js", JS),
    asset!("delivery.js", JS),
];

/// Registers `/console/` (the page; with the slash, so that its relative URLs resolve under it),
/// `/console/{file}`, and `/console`, which redirects to the page.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/console", "GET").route(web::get().to(to_index)))
        .service(resource("/console/", "GET").route(web::get().to(index)))
        .service(resource("/console/{file}", "GET").route(web::get().to(file)));
}

/// `GET /console`: a typed address without the slash would resolve the page's relative URLs against `/`.
async fn to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

/// `GET /console/`
async fn index() -> ApiResult<HttpResponse> {
    serve("index.html")
}

/// `GET /console/{file}`
async fn file(name: web::Path<String>) -> ApiResult<HttpResponse> {
    serve(&name)
}

fn serve(name: &str) -> ApiResult<HttpResponse> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found("No such file in the console"))?;
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // Files change only with the binary, but a rolled-out gateway must not leave old modules cached.
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .body(asset.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_non_empty_and_unique() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(!a.body.is_empty(), "{}", a.name);
            assert!(ASSETS[..i].iter().all(|b| b.name != a.name), "{}", a.name);
        }
        assert!(serve("../Cargo.toml").is_err());
    }

    #[test]
    fn no_inline_script_or_style_in_the_page() {
        let page = String::from_utf8_lossy(ASSETS[0].body);
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "{page}"
        );
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
