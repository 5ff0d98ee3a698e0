//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format, from a registry of the
//! application's own (part of the application state; no global recorder).
//!
//! This is the skeleton the deployment work fills in (request, SCIM, claims cache, token, IdP
//! and database pool metrics, all prefixed `pimgate_`). Today it reports which build runs:
//! `pimgate_build_info{version="..."} 1`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The metrics registry (a cheap handle).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pimgate");
        registry.register(
            "build",
            "The pimgate build that is running",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry: Arc::new(registry),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn router<S>() -> Router<S>
where
    Metrics: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(m): State<Metrics>) -> Response {
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &m.registry) {
        tracing::error!(error = %e, "metrics could not be encoded");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
