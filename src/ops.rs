//! Operations endpoints: `GET /healthz` (the process is alive) and `GET /readyz` (the store
//! answers, so this replica can take traffic). Their state is the store's health alone.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::directory::StoreHealth;

/// What readiness depends on.
#[derive(Clone)]
pub struct Readiness {
    store: Arc<dyn StoreHealth>,
}

impl Readiness {
    pub fn new(store: Arc<dyn StoreHealth>) -> Self {
        Self { store }
    }
}

pub fn router<S>() -> Router<S>
where
    Readiness: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(ready): State<Readiness>) -> (StatusCode, Json<Value>) {
    match ready.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "store unreachable"})),
            )
        }
    }
}
