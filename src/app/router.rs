//! The whole HTTP surface: every feature's router, merged once, with the front every request
//! goes through ([`super::front`]: request id, log context and access line, the guard of
//! [`super::guard`], panics answered, metrics).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::front::FrontLayer;
use super::guard::{Guard, refusal};

/// Every route, with its middleware. `with_metrics`: `/metrics` is served here (no
/// `server.metrics_listen`).
pub fn router(state: AppState, g: Guard, with_metrics: bool) -> Router {
    let mut routes = Router::new()
        .merge(crate::ops::router())
        .merge(crate::scim::router())
        .merge(crate::access::routes::router())
        .merge(crate::oauth::routes::router());
    if with_metrics {
        routes = routes.merge(crate::metrics::router());
    }
    let front = FrontLayer::new(g, state.metrics.clone());
    routes
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
        .layer(front)
}

/// 404: a SCIM error body under `/scim`, a small JSON body elsewhere.
async fn fallback(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/scim/") {
        return crate::scim::routes::not_found().await.into_response();
    }
    refusal(
        uri.path(),
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint".to_owned(),
    )
}

/// 405 for a method a route does not take (SCIM routes answer their own).
async fn method_not_allowed(uri: axum::http::Uri) -> Response {
    refusal(
        uri.path(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not support this method".to_owned(),
    )
}
