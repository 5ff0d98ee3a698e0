//! The application: shared state, the router with its middleware, and [`run`], the server as
//! a function of a listener and a shutdown future.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::config::{Connection, ScimSettings};
use crate::directory::Store;
use crate::directory::events::EventBus;
use crate::scim::error::ScimError;
use crate::scim::schema::Catalogue;

/// What the SCIM routes need to know about the configuration.
#[derive(Debug, Clone)]
pub struct ScimConfig {
    pub settings: ScimSettings,
    pub max_body_bytes: usize,
    /// The externally visible base URL, if configured.
    pub public_url: Option<String>,
    pub connections: Vec<Connection>,
}

/// Shared state, built once and cloned into handlers (every field is a cheap handle).
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub catalogue: Arc<Catalogue>,
    pub events: EventBus,
    pub scim: Arc<ScimConfig>,
    /// Claims: resolution, cache and invalidation.
    pub access: Arc<crate::access::service::AccessService>,
    /// SHA-256 hashes of the access API's service credentials.
    pub access_api_tokens: Arc<Vec<[u8; 32]>>,
}

/// Server settings for [`run`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub request_timeout: Duration,
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState, opts: &ServeOptions) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(crate::ops::router())
        .merge(crate::scim::routes::router())
        .merge(crate::access::routes::router())
        .fallback(fallback)
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
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
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        )
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
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

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests.
pub async fn run(
    state: AppState,
    opts: ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let audit = tokio::spawn(crate::directory::events::audit_log(
        state.events.subscribe(),
    ));
    let app = router(state, &opts);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    audit.abort();
    result
}
