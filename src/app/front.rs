//! The front of every request, one layer around every route (after routing, so the matched
//! route is known):
//! - the request id: the client's `x-request-id`, or a new UUID; on the request for the
//!   handlers and on the response for the client;
//! - the request's log context (method, matched route, request id; [`crate::logging`]), so
//!   every line logged while serving it says which request it belongs to, and one access line
//!   when answered;
//! - the guard of [`super::guard`]: size limits, concurrency shares, the deadline;
//! - a panic in a handler answered 500 with a body;
//! - the request counted in the metrics by matched route (never the raw path), and SCIM
//!   operations by connection, resource and operation.
//!
//! One layer rather than a stack of five: each layer of a stack costs every request a boxed
//! future and a copy of everything below it.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::FutureExt as _;
use tower::{Layer, Service};

use super::guard::Guard;
use crate::logging::RequestContext;
use crate::metrics::Metrics;
use crate::scim::error::ScimError;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the front layer shares across requests.
struct Shared {
    guard: Guard,
    metrics: Metrics,
}

/// The layer ([`axum::Router::layer`]).
#[derive(Clone)]
pub(super) struct FrontLayer(Arc<Shared>);

impl FrontLayer {
    pub(super) fn new(guard: Guard, metrics: Metrics) -> Self {
        Self(Arc::new(Shared { guard, metrics }))
    }
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Front<S> {
        Front {
            inner,
            shared: self.0.clone(),
        }
    }
}

/// One route's service behind the front.
#[derive(Clone)]
pub(super) struct Front<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for Front<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let started = Instant::now();
        // The service made ready is the one called; a copy stays for the next request.
        let copy = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, copy);
        let shared = self.shared.clone();
        let request_id = request_id(&mut req);
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let route = matched.as_ref().map_or("-", MatchedPath::as_str);
        let method = req.method().clone();
        let scim = scim_operation(route, &method, req.uri().path());
        let context = RequestContext {
            method: method.clone(),
            route: matched.clone(),
            request_id: request_id.clone(),
        };
        let work = async move {
            let mut resp = shared
                .guard
                .serve(req, started, |req| answer(inner, req))
                .await;
            let status = resp.status();
            let elapsed = started.elapsed();
            tracing::info!(
                status = status.as_u16(),
                latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                "finished processing request"
            );
            let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
            shared
                .metrics
                .http_request(route, &method, status.as_u16(), elapsed.as_secs_f64());
            if let Some((connection, resource, operation)) = scim {
                shared
                    .metrics
                    .scim_operation(&connection, resource, operation, status.as_u16());
            }
            resp.headers_mut()
                .entry(&X_REQUEST_ID)
                .or_insert(request_id);
            Ok(resp)
        };
        Box::pin(crate::logging::in_request(context, work))
    }
}

/// The client's request id, or a new one set on the request.
fn request_id(req: &mut Request<Body>) -> HeaderValue {
    if let Some(id) = req.headers().get(&X_REQUEST_ID) {
        return id.clone();
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    let id = HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// The route's answer; a panic while making it is a 500 with a body, never a dropped
/// connection.
async fn answer<S>(mut inner: S, req: Request<Body>) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))) {
        Ok(future) => future,
        Err(_) => return panicked(),
    };
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(resp)) => resp,
        Ok(Err(never)) => match never {},
        Err(_) => panicked(),
    }
}

fn panicked() -> Response {
    tracing::error!("a request handler panicked");
    ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// `(connection, resource, operation)` of a SCIM request: the route is
/// `/scim/{connection}/v2/{Resource}[/{id}]` (or `/.search`); the connection is a configured
/// name (the guard refuses the rest), so it is a bounded label.
fn scim_operation(
    route: &str,
    method: &Method,
    path: &str,
) -> Option<(String, &'static str, &'static str)> {
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
