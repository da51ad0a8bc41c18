use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::assets::ASSETS;

fn enabled(dir: Option<PathBuf>) -> Router {
    router(&UiConfig { enabled: true, dir })
}

async fn get_path(app: Router, path: &str) -> (StatusCode, Response<String>) {
    let response = app
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (parts.status, Response::from_parts(parts, text))
}

fn header_of(r: &Response<String>, name: header::HeaderName) -> &str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn client_side_routes_answer_the_index() {
    for path in [
        "/ui/",
        "/ui/dc1/services",
        "/ui/dc1/services/web/instances",
        "/ui/dc1/kv/app/config.json/",
        "/ui/dc1/intentions",
    ] {
        let (status, r) = get_path(enabled(None), path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert!(r.body().contains("<title>Concord</title>"), "{path}");
        assert!(header_of(&r, header::CONTENT_SECURITY_POLICY).contains("default-src 'self'"));
    }
}

#[tokio::test]
async fn bare_ui_moves_to_the_slash() {
    let (status, r) = get_path(enabled(None), "/ui").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header_of(&r, header::LOCATION), "/ui/");
}

#[tokio::test]
async fn assets_have_types_and_missing_ones_are_404() {
    let (status, r) = get_path(enabled(None), "/ui/assets/js/main.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header_of(&r, header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    let (status, _) = get_path(enabled(None), "/ui/assets/app.css").await;
    assert_eq!(status, StatusCode::OK);
    for missing in [
        "/ui/assets/nope.js",
        "/ui/assets/../index.html",
        "/ui/assets/.x",
    ] {
        let (status, _) = get_path(enabled(None), missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn disabled_serves_nothing() {
    let app = router(&UiConfig::default());
    let (status, _) = get_path(app, "/ui/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_directory_overrides_embedded_files_it_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("assets")).expect("mkdir");
    std::fs::write(dir.path().join("assets/app.css"), "body{}").expect("write");
    let app = enabled(Some(dir.path().to_path_buf()));
    let (_, css) = get_path(app.clone(), "/ui/assets/app.css").await;
    assert_eq!(css.body(), "body{}");
    // Files it lacks still come from the binary.
    let (status, js) = get_path(app, "/ui/assets/js/api.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.body().contains("export"));
}

/// Each `import ... from "./x.js"` in an embedded module names an embedded file: a module
/// left out of [`ASSETS`] would only fail in the browser.
#[test]
fn every_imported_module_is_embedded() {
    for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
        let text = std::str::from_utf8(asset.body).expect("modules are UTF-8");
        let base = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
        for spec in text
            .split("from \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
        {
            let mut parts: Vec<&str> = base.split('/').collect();
            for seg in spec.split('/') {
                match seg {
                    "." => {}
                    ".." => {
                        parts.pop();
                    }
                    s => parts.push(s),
                }
            }
            let resolved = parts.join("/");
            assert!(
                crate::assets::embedded(&resolved).is_some(),
                "{} imports {spec} ({resolved}), which is not in ASSETS",
                asset.path
            );
        }
    }
}

#[test]
fn index_loads_only_embedded_assets() {
    let index = std::str::from_utf8(
        crate::assets::embedded("index.html")
            .expect("index embedded")
            .body,
    )
    .expect("utf-8");
    for attr in ["src=\"/ui/", "href=\"/ui/"] {
        for rest in index.split(attr).skip(1) {
            let path = rest.split('"').next().unwrap_or("");
            if !path.starts_with("assets/") {
                continue; // a link to a page, not a file
            }
            assert!(
                crate::assets::embedded(path).is_some(),
                "index.html references /ui/{path}, which is not embedded"
            );
        }
    }
}
