//! SCIM errors, mapped to HTTP once (RFC 7644 §3.12).
//!
//! Every failure under `/scim` answers an error body with `schemas`, `status` (a string),
//! `detail` and, for 400s, `scimType`. Store failures answer a bare 500 or 503 whose detail
//! says nothing about internals; the cause is logged here, once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::directory::{DirectoryError, InvalidKind};

pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The media type of every SCIM response (RFC 7644 §3.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// An HTTP-level SCIM error.
#[derive(Debug, Clone)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    pub fn bad_request(kind: InvalidKind, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(kind.as_str()),
            detail: detail.into(),
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
}

impl From<DirectoryError> for ScimError {
    fn from(err: DirectoryError) -> Self {
        match err {
            DirectoryError::NotFound(what) => ScimError::not_found(format!("{what} not found")),
            DirectoryError::Uniqueness(detail) => ScimError {
                status: StatusCode::CONFLICT,
                scim_type: Some("uniqueness"),
                detail,
            },
            e @ DirectoryError::PreconditionFailed { .. } => {
                ScimError::new(StatusCode::PRECONDITION_FAILED, e.to_string())
            }
            DirectoryError::Invalid { kind, detail } => ScimError::bad_request(kind, detail),
            DirectoryError::Store(e) => {
                let unavailable = matches!(
                    e,
                    sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
                );
                tracing::error!(error = %e, "store failure");
                if unavailable {
                    ScimError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the directory store is unavailable; retry later",
                    )
                } else {
                    ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            }
            DirectoryError::Corrupt(detail) => {
                tracing::error!(%detail, "corrupt directory record");
                ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut resp = (self.status, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pimgate\""),
            );
        }
        resp
    }
}
