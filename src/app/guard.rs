//! What every request passes before a feature sees it, so no client can take the service (or
//! another tenant) down, and every refusal has a body a client can read:
//! - an over-long URI is 414 and over-large headers are 431;
//! - at most `max_concurrent_requests` requests run at once (`/healthz` and `/readyz` are
//!   exempt, so probes keep answering under a flood); beyond it, 503 with `Retry-After`;
//! - each IdP connection's SCIM requests, and the claims API's, get a share of their own, so
//!   one tenant cannot starve the others (a request waits up to a second for its share);
//! - every request runs under its deadline ([`crate::deadline`]) and is answered 503 when it
//!   passes it.
//!
//! Under `/scim/` refusals are RFC 7644 §3.12 bodies; elsewhere `{"error", "detail"}`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::connections::Registry;
use crate::scim::error::ScimError;

/// The request-level bounds.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub request_timeout: Duration,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub max_concurrent_requests: usize,
    /// Concurrent SCIM requests per IdP connection.
    pub scim_share: usize,
    /// Concurrent claims API requests.
    pub access_share: usize,
}

/// How long a request waits for its tenant's share before it is answered 503.
const SHARE_WAIT: Duration = Duration::from_secs(1);

/// The guard's state: its limits and semaphores.
#[derive(Debug, Clone)]
pub struct Guard {
    limits: Arc<RequestLimits>,
    all: Arc<Semaphore>,
    /// One share per configured connection (and one for the claims API), made at start so
    /// path segments a client invents never grow the map.
    shares: Arc<HashMap<String, Arc<Semaphore>>>,
    access: Arc<Semaphore>,
}

impl Guard {
    pub fn new(limits: RequestLimits, registry: &Registry) -> Self {
        let shares = registry
            .ids()
            .map(|id| {
                (
                    id.as_str().to_owned(),
                    Arc::new(Semaphore::new(limits.scim_share.max(1))),
                )
            })
            .collect();
        Self {
            all: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            access: Arc::new(Semaphore::new(limits.access_share.max(1))),
            shares: Arc::new(shares),
            limits: Arc::new(limits),
        }
    }

    /// The share a request draws from: its IdP connection's, or the claims API's.
    fn share_of(&self, path: &str) -> Option<&Arc<Semaphore>> {
        if let Some(rest) = path.strip_prefix("/scim/") {
            let conn = rest.split('/').next().unwrap_or_default();
            return self.shares.get(conn);
        }
        path.starts_with("/access/").then_some(&self.access)
    }
}

/// A refusal with a body for the path it answers: an RFC 7644 error under `/scim/`, a small
/// JSON error elsewhere; a 503 says when to retry.
pub(super) fn refusal(path: &str, status: StatusCode, code: &str, detail: String) -> Response {
    refuse(path.starts_with("/scim/"), status, code, detail)
}

fn refuse(scim: bool, status: StatusCode, code: &str, detail: String) -> Response {
    if scim {
        // A SCIM error sets its own `Retry-After` on a 503.
        return ScimError::new(status, detail).into_response();
    }
    let mut resp = (status, Json(json!({"error": code, "detail": detail}))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

impl Guard {
    /// Serves `req` with `answer` within the limits, or refuses it. `started`: when the
    /// request arrived (its deadline counts from then).
    pub(super) async fn serve<A, F>(
        &self,
        req: Request<Body>,
        started: Instant,
        answer: A,
    ) -> Response
    where
        A: FnOnce(Request<Body>) -> F,
        F: Future<Output = Response>,
    {
        let path = req.uri().path();
        let scim = path.starts_with("/scim/");
        let l = &self.limits;
        let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri_len > l.max_uri_bytes {
            return refuse(
                scim,
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!("the request URI is longer than {} bytes", l.max_uri_bytes),
            );
        }
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > l.max_header_bytes {
            return refuse(
                scim,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!(
                    "the request headers are larger than {} bytes",
                    l.max_header_bytes
                ),
            );
        }
        let deadline = started + l.request_timeout;
        if is_probe(path) {
            return crate::deadline::scope(deadline, answer(req)).await;
        }
        let Ok(_all) = self.all.try_acquire() else {
            return refuse(
                scim,
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "pimgate is serving its limit of {} requests at once; retry shortly",
                    l.max_concurrent_requests
                ),
            );
        };
        let _share: Option<SemaphorePermit<'_>> = match self.share_of(path) {
            None => None,
            Some(share) => match share.try_acquire() {
                Ok(permit) => Some(permit),
                // Full: wait a little for a permit, then refuse.
                Err(_) => match tokio::time::timeout(SHARE_WAIT, share.acquire()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        return refuse(
                            scim,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "overloaded",
                            "this connection is using its whole share of pimgate; retry shortly"
                                .to_owned(),
                        );
                    }
                },
            },
        };
        let until = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(until, crate::deadline::scope(deadline, answer(req))).await {
            Ok(resp) => resp,
            Err(_) => {
                tracing::warn!(
                    timeout_seconds = l.request_timeout.as_secs(),
                    "request timed out"
                );
                refuse(
                    scim,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    format!(
                        "the request did not finish within {} seconds; retry later",
                        l.request_timeout.as_secs()
                    ),
                )
            }
        }
    }
}
