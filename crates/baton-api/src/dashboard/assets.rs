//! The dashboard's static files, compiled into the binary: our stylesheet and scripts,
//! the vendored htmx with its SSE extension, and uPlot (the charts, loaded only by the
//! pages that have some), with their licences (`scripts/vendor-assets.sh` refreshes
//! those from npm).
//!
//! Pages link each file with `?v=VERSION`, a digest of every asset, so a browser may
//! keep them for a year and still gets new ones after an upgrade.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One file: its path below `/ui/assets/`, media type and bytes.
pub struct Asset {
    pub path: &'static str,
    pub media: &'static str,
    pub bytes: &'static [u8],
}

/// Every asset.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "app.css",
        media: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/app.css"),
    },
    Asset {
        path: "app.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/app.js"),
    },
    Asset {
        path: "charts.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/charts.js"),
    },
    Asset {
        path: "icon.svg",
        media: "image/svg+xml",
        bytes: include_bytes!("../../assets/icon.svg"),
    },
    Asset {
        path: "vendor/htmx.min.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/htmx.min.js"),
    },
    Asset {
        path: "vendor/htmx-ext-sse.min.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/htmx-ext-sse.min.js"),
    },
    Asset {
        path: "vendor/uplot.min.js",
        media: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/uplot.min.js"),
    },
    Asset {
        path: "vendor/uplot.min.css",
        media: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/uplot.min.css"),
    },
    Asset {
        path: "vendor/htmx.LICENSE",
        media: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/htmx.LICENSE"),
    },
    Asset {
        path: "vendor/htmx-ext-sse.LICENSE",
        media: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/htmx-ext-sse.LICENSE"),
    },
    Asset {
        path: "vendor/uplot.LICENSE",
        media: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/uplot.LICENSE"),
    },
    Asset {
        path: "vendor/VERSIONS",
        media: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/VERSIONS"),
    },
];

/// A digest of every asset (12 hex digits): the `?v=` of their links.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h = Sha256::new();
        for a in ASSETS {
            h.update(a.path.as_bytes());
            h.update([0]);
            h.update(a.bytes);
        }
        hex::encode(h.finalize())[..12].to_string()
    })
}

/// `GET /ui/assets/{*path}`: the file, cacheable for a year (the link's `?v=` changes
/// with its content), or 404.
pub async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{}\"", version());
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut r = (
        [
            (header::CONTENT_TYPE, asset.media),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.bytes,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_files_come_with_their_licences() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".min.js")) {
            let stem = a.path.trim_end_matches(".min.js");
            assert!(
                ASSETS.iter().any(|l| l.path == format!("{stem}.LICENSE")),
                "{} has no licence beside it",
                a.path
            );
        }
        assert_eq!(version().len(), 12);
    }

    /// What only the pages with charts load (base.html's `head` block, filled by the
    /// service, VM and fleet pages).
    const CHARTS_ONLY: &[&str] = &["charts.js", "vendor/uplot.min.js", "vendor/uplot.min.css"];

    /// What every page loads (its stylesheet, scripts and icon) stays well inside the
    /// first load's budget of 200 KB, leaving room for the page itself. The browser
    /// test measures the real transfer.
    #[test]
    fn the_first_load_fits_its_budget() {
        const BUDGET: usize = 150 * 1024;
        let loaded: usize = ASSETS
            .iter()
            .filter(|a| !a.path.ends_with(".LICENSE") && a.path != "vendor/VERSIONS")
            .filter(|a| !CHARTS_ONLY.contains(&a.path))
            .map(|a| a.bytes.len())
            .sum();
        assert!(loaded > 0);
        assert!(
            loaded <= BUDGET,
            "the assets every page loads are {loaded} bytes, over the budget of {BUDGET}"
        );
    }

    /// The chart files exist, and the overview (whose first load has the budget) does
    /// not link them: only the pages with charts do.
    #[test]
    fn only_pages_with_charts_load_uplot() {
        for path in CHARTS_ONLY {
            assert!(ASSETS.iter().any(|a| a.path == *path), "{path}");
        }
        let base = include_str!("../../templates/base.html");
        let overview = include_str!("../../templates/overview.html");
        for t in [base, overview] {
            assert!(!t.contains("uplot.min.js") && !t.contains("charts.js"));
        }
        for t in [
            include_str!("../../templates/service.html"),
            include_str!("../../templates/vm.html"),
            include_str!("../../templates/fleet.html"),
        ] {
            assert!(t.contains("{% block head %}") && t.contains("m.chart_assets"));
        }
    }
}
