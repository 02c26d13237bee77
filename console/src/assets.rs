//! The console's static files: its stylesheet, and the islands' wasm module, JavaScript glue
//! and loader. The islands are embedded at build time (see build.rs) under a versioned path,
//! so browsers may keep them for a long time and still never run a stale module.

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const GLUE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kinit_console_ui.js"));
const GLUE_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kinit_console_ui.js.gz"));
const WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kinit_console_ui_bg.wasm"));
const WASM_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kinit_console_ui_bg.wasm.gz"));
pub const VERSION: &str = include_str!(concat!(env!("OUT_DIR"), "/islands-version"));

/// Whether this build carries the islands (`scripts/build-console-ui` ran before it).
pub fn islands() -> bool {
    !WASM.is_empty()
}

/// Where pages load the islands from.
pub fn loader_path() -> String {
    format!("/pkg/{VERSION}/islands.js")
}

/// Imports the glue, instantiates the module, then hydrates each island of the page (what
/// Leptos' inline hydration script does, as a file: the CSP allows no inline script).
fn loader() -> String {
    format!(
        "import init, * as islands from \"/pkg/{VERSION}/kinit_console_ui.js\";\n\
         await init({{ module_or_path: \"/pkg/{VERSION}/kinit_console_ui_bg.wasm\" }});\n\
         islands.hydrate();\n\
         for (const island of document.querySelectorAll(\"leptos-island\")) {{\n\
         \x20 const hydrate = islands[island.dataset.component];\n\
         \x20 if (hydrate) hydrate(island); else console.warn(\"no island\", island.dataset.component);\n\
         }}\n"
    )
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/assets/console.css", get(stylesheet))
        .route("/pkg/{version}/{file}", get(island_file))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/console.css"),
    )
}

async fn island_file(
    UrlPath((version, file)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if version != VERSION || !islands() {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let (kind, plain, packed): (&str, Vec<u8>, &[u8]) = match file.as_str() {
        "islands.js" => ("text/javascript; charset=utf-8", loader().into_bytes(), &[]),
        "kinit_console_ui.js" => ("text/javascript; charset=utf-8", GLUE.to_vec(), GLUE_GZ),
        "kinit_console_ui_bg.wasm" => ("application/wasm", WASM.to_vec(), WASM_GZ),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let immutable = (header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    if gzip && !packed.is_empty() {
        (
            [
                (header::CONTENT_TYPE, kind),
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "accept-encoding"),
                immutable,
            ],
            packed,
        )
            .into_response()
    } else {
        (
            [
                (header::CONTENT_TYPE, kind),
                (header::VARY, "accept-encoding"),
                immutable,
            ],
            plain,
        )
            .into_response()
    }
}
