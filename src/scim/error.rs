//! SCIM errors (RFC 7644 §3.12), and the one place directory failures become them.
//!
//! Every failure under `/scim` answers an error body with `schemas`, `status` (a string),
//! `detail` and, for 400s, `scimType`: `scim_v2`'s [`ScimHttpError`] and [`ScimType`].
//! Parse errors of the SCIM layer (bodies, PATCH operations, paths, list parameters) are
//! built as [`ScimError`]s where they are found. Store failures answer a 500 or 503 whose
//! detail says nothing about internals; the cause is logged here, once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scim_v2::models::errors::ScimHttpError;
pub use scim_v2::models::errors::ScimType;

use super::render::etag;
use crate::directory::DirectoryError;

pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The media type of every SCIM response (RFC 7644 §3.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// An HTTP-level SCIM error.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<ScimType>,
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

    /// A 400 with its `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }

    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// The same error with its detail prefixed (`Operations[2]: ...`).
    #[must_use]
    pub fn at(mut self, prefix: &str) -> Self {
        self.detail = format!("{prefix}: {}", self.detail);
        self
    }
}

/// The `scimType` and detail of a 400, for tests that check which error a request gets.
#[cfg(test)]
pub(crate) fn bad_request_parts<T: std::fmt::Debug>(r: Result<T, ScimError>) -> (ScimType, String) {
    match r {
        Err(ScimError {
            scim_type: Some(kind),
            detail,
            ..
        }) => (kind, detail),
        other => panic!("expected a 400 error, got {other:?}"),
    }
}

impl From<DirectoryError> for ScimError {
    fn from(err: DirectoryError) -> Self {
        match err {
            DirectoryError::NotFound(kind) => ScimError::not_found(format!("{kind} not found")),
            e @ DirectoryError::Conflict { .. } => ScimError {
                status: StatusCode::CONFLICT,
                scim_type: Some(ScimType::Uniqueness),
                detail: e.to_string(),
            },
            DirectoryError::VersionMismatch { current } => ScimError::new(
                StatusCode::PRECONDITION_FAILED,
                format!(
                    "the resource has changed: its current version is {}",
                    etag(current)
                ),
            ),
            DirectoryError::InvalidValue { detail, .. } => ScimError::invalid_value(detail),
            DirectoryError::InvalidFilter(e) => {
                ScimError::bad_request(ScimType::InvalidFilter, e.to_string())
            }
            DirectoryError::Unsortable(attr) => {
                ScimError::invalid_value(format!("sortBy: {attr} cannot be sorted on"))
            }
            DirectoryError::Unavailable(cause) => {
                tracing::error!(error = %cause, "directory store unavailable");
                ScimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the directory store is unavailable; retry later",
                )
            }
            DirectoryError::Internal(cause) => {
                tracing::error!(error = %cause, "directory store failure");
                ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let body = ScimHttpError {
            schemas: vec![ERROR_URN.to_owned()],
            scim_type: self.scim_type,
            detail: Some(self.detail),
            status: self.status.as_u16().to_string(),
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        let mut resp = (self.status, text).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        match self.status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"pimgate\""),
                );
            }
            // A fault that passes (a database restart, a pool at its limit): the IdP retries.
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}
