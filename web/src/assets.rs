//! The page and its bundled assets, built into the binary at compile time: `web/assets/` holds the
//! output of `scripts/build_web.sh` (esbuild over `web/ui/`), checked in so that `cargo build`
//! needs no npm. Served with their content types, an ETag (304 on a match) and cache headers:
//! the page is revalidated on every load, the assets after an hour.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Result};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path under `/assets/` (the page: `index.html`, served at `/`).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every embedded file.
pub static ASSETS: &[Asset] = &[
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../assets/index.html"),
    },
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        path: "LICENSES.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../assets/LICENSES.txt"),
    },
    Asset {
        path: "api.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../assets/api.html"),
    },
    Asset {
        path: "swagger-ui-bundle.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/swagger-ui-bundle.js"),
    },
    Asset {
        path: "swagger-ui.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/swagger-ui.css"),
    },
    Asset {
        path: "swagger-ui-LICENSES.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../assets/swagger-ui-LICENSES.txt"),
    },
];

/// The asset at `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

impl Asset {
    /// A strong validator: a hash of the bytes, computed once.
    pub fn etag(&self) -> &'static str {
        static TAGS: OnceLock<Vec<String>> = OnceLock::new();
        let tags = TAGS.get_or_init(|| {
            ASSETS
                .iter()
                .map(|a| {
                    let mut h = DefaultHasher::new();
                    a.body.hash(&mut h);
                    format!("\"{:016x}\"", h.finish())
                })
                .collect()
        });
        let i = ASSETS
            .iter()
            .position(|a| std::ptr::eq(a, self))
            .expect("an embedded asset");
        &tags[i]
    }

    fn respond(&self, headers: &HeaderMap, cache: &'static str) -> Response {
        let etag = self.etag();
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let common = [
            (header::ETAG, HeaderValue::from_static(etag)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ];
        if matches {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        let ty = [(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type))];
        (common, ty, self.body).into_response()
    }
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    find("index.html")
        .expect("index.html is embedded")
        .respond(&headers, "no-cache")
}

/// `GET /api/docs`: the API reference (the vendored Swagger UI over `/openapi.json`).
pub async fn api_docs(headers: HeaderMap) -> Response {
    find("api.html")
        .expect("api.html is embedded")
        .respond(&headers, "no-cache")
}

/// `GET /assets/{*path}`.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Result<Response> {
    let asset = find(&path).ok_or(Error::NoAsset(path))?;
    Ok(asset.respond(&headers, "public, max-age=3600"))
}
