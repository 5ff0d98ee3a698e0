//! Errors of the OAuth endpoints, mapped to HTTP once: RFC 6749 §5.2 error bodies at the
//! token endpoint, RFC 6750 §3 `WWW-Authenticate` challenges at userinfo. Causes that are
//! pimgate's own faults are logged here, once, and answered without internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::keys::KeyError;
use crate::directory::DirectoryError;
use crate::ephemeral::Unavailable;

/// An RFC 6749 §5.2 error.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }
}

/// Why the token or userinfo endpoint did not answer with tokens or claims.
#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    #[error("{}: {}", .0.error, .0.description)]
    OAuth(OAuthError),
    /// Userinfo: the bearer token is missing, invalid, expired or revoked.
    #[error("{0}")]
    Bearer(&'static str),
    #[error("the store failed: {0}")]
    Store(#[from] DirectoryError),
    #[error(transparent)]
    Flow(#[from] Unavailable),
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The connection's IdP cannot be read now (discovery, keys).
    #[error("the IdP is unavailable: {0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

impl From<OAuthError> for TokenFailure {
    fn from(e: OAuthError) -> Self {
        TokenFailure::OAuth(e)
    }
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

impl IntoResponse for TokenFailure {
    fn into_response(self) -> Response {
        let (status, error, description) = match self {
            TokenFailure::OAuth(e) => {
                let status = if e.error == "invalid_client" {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_REQUEST
                };
                tracing::info!(error = e.error, description = %e.description, "token request refused");
                (status, e.error, e.description)
            }
            TokenFailure::Bearer(why) => {
                let mut resp = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "invalid_token", "error_description": why})),
                )
                    .into_response();
                let challenge =
                    format!("Bearer error=\"invalid_token\", error_description=\"{why}\"");
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                return no_store(resp);
            }
            TokenFailure::Store(DirectoryError::Unavailable(e)) => {
                tracing::warn!(error = %e, "token request: the store is unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "try again shortly".to_owned(),
                )
            }
            TokenFailure::Upstream(e) => {
                tracing::warn!(error = %e, "the IdP is unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the identity provider cannot be reached; try again shortly".to_owned(),
                )
            }
            TokenFailure::Flow(e) => {
                tracing::warn!(error = %e, "token request: the sign-in state store is unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "try again shortly".to_owned(),
                )
            }
            other => {
                tracing::error!(error = %other, "token request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "internal error".to_owned(),
                )
            }
        };
        let mut resp = (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pimgate\""),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        no_store(resp)
    }
}
