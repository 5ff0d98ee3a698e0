//! The claims read API for the PIM and operators, under `/access/v1`, authenticated by a
//! service credential of its own (`[access_api] tokens`, `PIMGATE_ACCESS_TOKEN`), never a
//! SCIM token.
//!
//! - `GET /access/v1/connections/{connection}/users/{id}/claims[?explain=true]`
//! - `GET /access/v1/connections/{connection}/claims?userName=…|externalId=…[&explain=true]`
//!
//! Answers carry `X-Claims-Cache: hit|miss` and `Cache-Control: no-store`.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::service::{ClaimsRead, UserLookup};
use crate::app::AppState;
use crate::directory::{ConnectionId, DirectoryError};
use crate::token;

pub fn router() -> Router<AppState> {
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

impl IntoResponse for AccessApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.code, "detail": self.detail})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pimgate-access\""),
            );
        }
        resp
    }
}

/// A caller holding an access API credential.
pub struct AccessCaller;

impl FromRequestParts<AppState> for AccessCaller {
    type Rejection = AccessApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = token::bearer(&parts.headers);
        let Some(presented) = presented else {
            return Err(AccessApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <access API token>",
            ));
        };
        if token::matches_any(
            &token::hash(presented.expose_secret()),
            &state.access_api_tokens,
        ) {
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

fn connection(state: &AppState, raw: &str) -> Result<ConnectionId, AccessApiError> {
    ConnectionId::parse(raw)
        .ok()
        .filter(|c| state.scim.connections.iter().any(|k| &k.id == c))
        .ok_or_else(|| {
            AccessApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no connection {raw:?}"),
            )
        })
}

fn respond(read: ClaimsRead) -> Response {
    let mut resp = Json(&read.claims).into_response();
    let h = resp.headers_mut();
    h.insert(
        "x-claims-cache",
        HeaderValue::from_static(read.cache.as_str()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn read(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
    explain: bool,
) -> Result<Response, AccessApiError> {
    state
        .access
        .claims(conn, id, explain)
        .await?
        .map(respond)
        .ok_or_else(|| AccessApiError::new(StatusCode::NOT_FOUND, "not_found", "no such user"))
}

async fn claims_by_id(
    State(state): State<AppState>,
    _caller: AccessCaller,
    Path((conn, id)): Path<(String, String)>,
    Query(q): Query<ClaimsQuery>,
) -> Result<Response, AccessApiError> {
    let conn = connection(&state, &conn)?;
    read(&state, &conn, &id, q.explain()).await
}

async fn claims_lookup(
    State(state): State<AppState>,
    _caller: AccessCaller,
    Path(conn): Path<String>,
    Query(q): Query<ClaimsQuery>,
) -> Result<Response, AccessApiError> {
    let conn = connection(&state, &conn)?;
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
    let id = state
        .access
        .find_user(&conn, &lookup)
        .await?
        .ok_or_else(|| AccessApiError::new(StatusCode::NOT_FOUND, "not_found", "no such user"))?;
    read(&state, &conn, &id, q.explain()).await
}
