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

/// Every route, with its middleware. `with_metrics`: `/metrics` is served here (no
/// `server.metrics_listen`).
pub fn router(state: AppState, g: Guard, with_metrics: bool) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    let mut routes = Router::new()
        .merge(crate::ops::router())
        .merge(crate::scim::router())
        .merge(crate::access::routes::router())
        .merge(crate::oauth::routes::router());
    if with_metrics {
        routes = routes.merge(crate::metrics::router());
    }
    let metrics = state.metrics.clone();
    routes
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(g, guard))
        .layer(axum::middleware::from_fn_with_state(metrics, observe))
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

/// Counts every answered request by matched route (never the raw path, which would let a
/// client grow the label set), and SCIM operations by connection, resource and operation.
async fn observe(
    axum::extract::State(m): axum::extract::State<crate::metrics::Metrics>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    // MatchedPath is a shared string: cloning it allocates nothing.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    let scim = scim_operation(route, &method, req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    m.http_request(
        route,
        method.as_str(),
        status,
        started.elapsed().as_secs_f64(),
    );
    if let Some((connection, resource, operation)) = scim {
        m.scim_operation(&connection, resource, operation, status);
    }
    resp
}

/// `(connection, resource, operation)` of a SCIM request: the route is
/// `/scim/{connection}/v2/{Resource}[/{id}]` (or `/.search`); the connection is a configured
/// name (the guard refuses the rest), so it is a bounded label.
fn scim_operation(
    route: &str,
    method: &axum::http::Method,
    path: &str,
) -> Option<(String, &'static str, &'static str)> {
    use axum::http::Method;
    let rest = route.strip_prefix("/scim/{connection}/v2/")?;
    let connection = path.strip_prefix("/scim/")?.split('/').next()?.to_owned();
    let (resource, with_id) = match rest.split_once('/') {
        Some((r, _)) => (r, true),
        None => (rest, false),
    };
    let resource = match resource {
        "Users" => "Users",
        "Groups" => "Groups",
        ".search" => "search",
        "Bulk" => "Bulk",
        _ => "other",
    };
    let operation = match (method, with_id) {
        (&Method::POST, _) if rest.ends_with(".search") => "search",
        (&Method::POST, false) => "create",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "read",
        (&Method::PUT, _) => "replace",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "other",
    };
    Some((connection, resource, operation))
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
