//! Request extractors for the SCIM routes: the authenticated caller (connection + bearer
//! token), the JSON body (content type, size limit, syntax), `If-Match`/`If-None-Match`,
//! the query string and the resource id. They need only the [`ScimService`], reached
//! through `FromRef`, so they work in any application state that holds one.

use axum::extract::{FromRef, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::error::ScimError;
use super::render::parse_etag;
use super::service::ScimService;
use crate::connections::ConnectionId;
use crate::token;

/// The caller of a SCIM route: authenticated for exactly one connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub connection: ConnectionId,
    /// The SCIM base URL of this connection (`https://host/scim/{connection}/v2`), for
    /// `Location` and `meta.location`.
    pub base_url: String,
}

impl<S> FromRequestParts<S> for Caller
where
    ScimService: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ScimError> {
        let scim = ScimService::from_ref(state);
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ScimError::not_found("no such endpoint"))?;
        let requested = params
            .iter()
            .find(|(k, _)| *k == "connection")
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default();
        let presented = token::bearer(&parts.headers).ok_or_else(|| {
            ScimError::unauthorized("missing bearer token: send Authorization: Bearer <token>")
        })?;
        let hash = token::hash(presented.expose_secret());
        let owner = scim.authenticate(&hash).await?;
        let Some(owner) = owner else {
            return Err(ScimError::unauthorized("the bearer token is not valid"));
        };
        if owner.as_str() != requested {
            return Err(ScimError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this token belongs to another connection and cannot access connection {requested:?}"
                ),
            ));
        }
        if !scim.registry().contains(&owner) {
            return Err(ScimError::new(
                StatusCode::FORBIDDEN,
                format!("connection {requested:?} is not configured"),
            ));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let base = scim.options().base_of(host)?;
        Ok(Caller {
            base_url: format!("{base}/scim/{owner}/v2"),
            connection: owner,
        })
    }
}

/// A JSON request body: `application/scim+json`, `application/json` or no content type
/// (Entra and Okta send all three), at most `server.max_body_bytes`.
#[derive(Debug)]
pub struct ScimJson(pub Value);

impl<S> FromRequest<S> for ScimJson
where
    ScimService: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ScimError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            let essence = ct
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if !matches!(
                essence.as_str(),
                "application/scim+json" | "application/json"
            ) {
                return Err(ScimError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "content type {essence:?} is not supported: send application/scim+json or application/json"
                    ),
                ));
            }
        }
        let limit = ScimService::from_ref(state).options().max_body_bytes;
        let too_large = || {
            ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                if is_length_limit(&e) {
                    too_large()
                } else {
                    ScimError::invalid_syntax("the request body could not be read")
                }
            })?;
        if bytes.is_empty() {
            return Err(ScimError::invalid_syntax(
                "the request body is empty; a JSON object is required",
            ));
        }
        // serde_json refuses nesting deeper than 128 levels, so hostile input cannot
        // exhaust the stack.
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ScimError::invalid_syntax(format!("malformed JSON: {e}")))?;
        if !value.is_object() {
            return Err(ScimError::invalid_syntax(
                "the request body must be a JSON object",
            ));
        }
        Ok(ScimJson(value))
    }
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// `If-Match` (RFC 7644 §3.14): the version the client expects, if it sent one. `*` means
/// any version; a value that is not one of our ETags can never match.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimError> {
        let Some(raw) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let raw = raw.to_str().unwrap_or_default().trim();
        if raw == "*" {
            return Ok(IfMatch(None));
        }
        // A list of ETags: match if any is ours; otherwise use an impossible version.
        let versions: Vec<i64> = raw.split(',').filter_map(parse_etag).collect();
        Ok(IfMatch(Some(versions.first().copied().unwrap_or(-1))))
    }
}

/// `If-None-Match` on GET: the client already holds this version.
#[derive(Debug, Clone)]
pub struct IfNoneMatch(pub Vec<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimError> {
        let raw = parts
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Ok(IfNoneMatch(raw.split(',').filter_map(parse_etag).collect()))
    }
}

/// The URL query as name/value pairs.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimError> {
        let raw = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(raw)
            .map(QueryPairs)
            .map_err(|e| ScimError::invalid_syntax(format!("malformed query string: {e}")))
    }
}

/// The `{id}` segment of a resource URL.
pub struct ResourceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ResourceId {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ScimError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ScimError::not_found("no such resource"))?;
        params
            .iter()
            .find(|(k, _)| *k == "id")
            .map(|(_, v)| ResourceId(v.to_owned()))
            .ok_or_else(|| ScimError::not_found("no such resource"))
    }
}
