//! The claims read API for the PIM and operators, under `/access/v1`, authenticated by a
//! service credential of its own (`[access_api] tokens`, `PIMGATE_ACCESS_TOKEN`), never a
//! SCIM token.
//!
//! - `GET /access/v1/connections/{connection}/users/{id}/claims[?explain=true]`
//! - `GET /access/v1/connections/{connection}/claims?userName=…|externalId=…[&explain=true]`
//!
//! Answers carry `X-Claims-Cache: hit|miss` and `Cache-Control: no-store`.
//!
//! The router works in any application state that holds an [`AccessService`] and the
//! [`AccessApiKeys`] (`FromRef`).

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::service::{AccessService, ClaimsRead, UserLookup};
use crate::connections::ConnectionId;
use crate::directory::DirectoryError;
use crate::token;

/// The access API's service credentials: SHA-256 hashes, never the secrets.
#[derive(Clone, Default)]
pub struct AccessApiKeys(Arc<Vec<[u8; 32]>>);

impl AccessApiKeys {
    pub fn new(hashes: Vec<[u8; 32]>) -> Self {
        Self(Arc::new(hashes))
    }
}

impl std::fmt::Debug for AccessApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessApiKeys({} keys)", self.0.len())
    }
}

pub fn router<S>() -> Router<S>
where
    AccessService: FromRef<S>,
    AccessApiKeys: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/access/v1/connections/{connection}/users/{id}/claims",
            get(claims_by_id),
        )
        .route(
            "/access/v1/connections/{connection}/claims",
            get(claims_lookup),
        )
}

/// An error of the access API: a small JSON body with a machine-readable code.
#[derive(Debug)]
pub struct AccessApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl AccessApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }
}

impl From<DirectoryError> for AccessApiError {
    fn from(e: DirectoryError) -> Self {
        tracing::error!(error = %e, "claims could not be read from the directory");
        AccessApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the directory is unavailable; retry later",
        )
    }
}

/// A path the router matched but whose parameters do not decode (bad percent-encoding).
impl From<PathRejection> for AccessApiError {
    fn from(e: PathRejection) -> Self {
        AccessApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text())
    }
}

/// A query string that does not decode.
impl From<QueryRejection> for AccessApiError {
    fn from(e: QueryRejection) -> Self {
        AccessApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text())
    }
}

impl IntoResponse for AccessApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.code, "detail": self.detail})),
        )
            .into_response();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"pimgate-access\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// A caller holding an access API credential.
pub struct AccessCaller;

impl<S> FromRequestParts<S> for AccessCaller
where
    AccessApiKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AccessApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let presented = token::bearer(&parts.headers);
        let Some(presented) = presented else {
            return Err(AccessApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <access API token>",
            ));
        };
        let keys = AccessApiKeys::from_ref(state);
        if token::matches_any(&token::hash(presented.expose_secret()), &keys.0) {
            Ok(AccessCaller)
        } else {
            Err(AccessApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the token is not an access API token",
            ))
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ClaimsQuery {
    #[serde(default)]
    explain: Option<String>,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

impl ClaimsQuery {
    fn explain(&self) -> bool {
        self.explain
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

fn connection(access: &AccessService, raw: &str) -> Result<ConnectionId, AccessApiError> {
    access.connection(raw).ok_or_else(|| {
        AccessApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no connection {raw:?}"),
        )
    })
}

fn respond(read: ClaimsRead) -> Response {
    let cache = read.cache;
    let mut resp = Response::new(axum::body::Body::from(read.into_json()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-claims-cache", HeaderValue::from_static(cache.as_str()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn read(
    access: &AccessService,
    conn: &ConnectionId,
    id: &str,
    explain: bool,
) -> Result<Response, AccessApiError> {
    access
        .claims(conn, id, explain)
        .await?
        .map(respond)
        .ok_or_else(|| AccessApiError::new(StatusCode::NOT_FOUND, "not_found", "no such user"))
}

async fn claims_by_id(
    State(access): State<AccessService>,
    _caller: AccessCaller,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<ClaimsQuery>, QueryRejection>,
) -> Result<Response, AccessApiError> {
    let (Path((conn, id)), Query(q)) = (path?, query?);
    let conn = connection(&access, &conn)?;
    read(&access, &conn, &id, q.explain()).await
}

async fn claims_lookup(
    State(access): State<AccessService>,
    _caller: AccessCaller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ClaimsQuery>, QueryRejection>,
) -> Result<Response, AccessApiError> {
    let (Path(conn), Query(q)) = (path?, query?);
    let conn = connection(&access, &conn)?;
    let lookup = match (&q.id, &q.user_name, &q.external_id) {
        (Some(id), None, None) => UserLookup::Id(id.clone()),
        (None, Some(u), None) => UserLookup::UserName(u.clone()),
        (None, None, Some(e)) => UserLookup::ExternalId(e.clone()),
        _ => {
            return Err(AccessApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give exactly one of id, userName or externalId",
            ));
        }
    };
    let id = access
        .find_user(&conn, &lookup)
        .await?
        .ok_or_else(|| AccessApiError::new(StatusCode::NOT_FOUND, "not_found", "no such user"))?;
    read(&access, &conn, &id, q.explain()).await
}
