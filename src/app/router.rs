//! The whole HTTP surface: every feature's router, merged once, with the middleware every
//! request goes through (request id, one trace span per request with the matched route, the
//! guard of [`super::guard`], and a panic catcher).

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use super::AppState;
use super::guard::{Guard, guard, refusal};
use crate::scim::error::ScimError;

/// Every route, with its middleware.
pub fn router(state: AppState, g: Guard) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(crate::ops::router())
        .merge(crate::scim::router())
        .merge(crate::access::routes::router())
        .merge(crate::metrics::router())
        .merge(crate::oauth::routes::router())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(g, guard))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<Body>| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("-", MatchedPath::as_str)
                        .to_owned();
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned();
                    tracing::info_span!("request", method = %req.method(), %route, %request_id)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                // A failure is logged once, with its cause, where it is handled (the error
                // mappers); the response line above still records its status.
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
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

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}
