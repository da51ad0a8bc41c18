//! The front end's files, compiled in from `ui/web/`. Adding a file there means adding a line
//! here; a test checks that every module a module imports is listed.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path under `ui/web/` (and under `/ui/` in URLs), e.g. `assets/js/api.js`.
    pub path: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, body: include_bytes!(concat!("../web/", $path)) }),*]
    };
}

/// Every embedded file; `index.html` is the app's shell.
pub static ASSETS: &[Asset] = assets![
    "index.html",
    "assets/app.css",
    "assets/favicon.svg",
    "assets/js/main.js",
    "assets/js/api.js",
    "assets/js/dom.js",
    "assets/js/model.js",
    "assets/js/views/services.js",
    "assets/js/views/service.js",
    "assets/js/views/nodes.js",
    "assets/js/views/kv.js",
    "assets/js/views/intentions.js",
    "assets/js/views/topology.js",
];

/// The embedded file at `path`, if any.
pub fn embedded(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The `Content-Type` for a file name, by extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
