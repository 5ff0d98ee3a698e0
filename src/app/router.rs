//! The whole HTTP surface: every feature's router, merged once, with the middleware every
//! request goes through (request id, one trace span per request with the matched route,
//! the request timeout, and a panic catcher).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use super::AppState;
use crate::scim::error::ScimError;

/// Server settings for the router.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub request_timeout: Duration,
}

/// Every route, with its middleware.
pub fn router(state: AppState, opts: &ServeOptions) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(crate::ops::router())
        .merge(crate::scim::router())
        .merge(crate::access::routes::router())
        .merge(crate::metrics::router())
        .fallback(fallback)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            opts.request_timeout,
            with_deadline,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            opts.request_timeout,
        ))
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

/// Serves the request under its deadline, so the statements it runs stop when it does.
async fn with_deadline(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    crate::deadline::scope(std::time::Instant::now() + timeout, next.run(req)).await
}

/// 404: a SCIM error body under `/scim`, a small JSON body elsewhere.
async fn fallback(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/scim/") {
        return crate::scim::routes::not_found().await.into_response();
    }
    (
        StatusCode::NOT_FOUND,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"error":"not found"}"#,
    )
        .into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}
