//! The whole application's routes: the API (`http`), its document
//! (`openapi`), the dev endpoints with `--dev` (`dev`), the static files,
//! and what every response carries. The top of the HTTP layer: nothing
//! imports it but `build`.

use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use tower_http::services::ServeDir;

use crate::http::{self, AppState, HttpError, CONTENT_SECURITY_POLICY};
use crate::{dev, openapi};

/// Builds the application. `static_dir` is served at `/` when given.
pub fn router(state: AppState, dev_enabled: bool, static_dir: Option<&std::path::Path>, body_limit: usize) -> Router {
    let mut api = http::api_routes().merge(openapi::routes());
    if dev_enabled {
        api = api.merge(dev::routes());
    }
    let (mut app, _) = api.split_for_parts();
    // Unknown API paths (and /api/dev/* without --dev) answer in JSON and are
    // never handed to the static files.
    app = app
        .route("/api", any(api_not_found))
        .route("/api/{*rest}", any(api_not_found));
    app = match static_dir {
        Some(dir) => app.fallback_service(ServeDir::new(dir)),
        None => app.fallback(api_not_found),
    };
    app.layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn api_not_found() -> HttpError {
    HttpError::not_found()
}

/// On every response, errors and static files included: the widget must work
/// under this policy, so the reference server enforces it.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}
