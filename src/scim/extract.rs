//! Request extractors for the SCIM routes: the authenticated caller (connection + bearer
//! token), the JSON body (content type, size limit, syntax), `If-Match`, and list/search
//! parameters (RFC 7644 §3.4.2, §3.4.3).

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use scim_v2::filter::Filter;
use secrecy::ExposeSecret;
use serde_json::Value;

use super::error::ScimError;
use crate::app::AppState;
use crate::directory::{ConnectionId, InvalidKind};
use crate::token;

/// The caller of a SCIM route: authenticated for exactly one connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub connection: ConnectionId,
    /// The SCIM base URL of this connection (`https://host/scim/{connection}/v2`), for
    /// `Location` and `meta.location`.
    pub base_url: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
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
        let owner = authenticate(state, &hash).await?;
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
        if !state.scim.connections.iter().any(|c| c.id == owner) {
            return Err(ScimError::new(
                StatusCode::FORBIDDEN,
                format!("connection {requested:?} is not configured"),
            ));
        }
        let base = match &state.scim.public_url {
            Some(url) => url.clone(),
            None => {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                format!("http://{host}")
            }
        };
        Ok(Caller {
            base_url: format!("{base}/scim/{owner}/v2"),
            connection: owner,
        })
    }
}

/// The connection a token hash belongs to: configured tokens first (in memory), then tokens
/// created with `pimgate token create` (in the store, so every replica sees revocations).
async fn authenticate(
    state: &AppState,
    hash: &[u8; 32],
) -> Result<Option<ConnectionId>, ScimError> {
    let mut owner = None;
    for c in &state.scim.connections {
        if token::matches_any(hash, &c.token_hashes) {
            owner = Some(c.id.clone());
        }
    }
    if owner.is_some() {
        return Ok(owner);
    }
    let row = state
        .store
        .find_token(hash)
        .await
        .map_err(ScimError::from)?;
    Ok(row
        .filter(|r| token::matches_any(hash, std::slice::from_ref(&r.hash)))
        .map(|r| r.connection))
}

/// A JSON request body: `application/scim+json`, `application/json` or no content type
/// (Entra and Okta send all three), at most `server.max_body_bytes`.
#[derive(Debug)]
pub struct ScimJson(pub Value);

impl FromRequest<AppState> for ScimJson {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ScimError> {
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
        let limit = state.scim.max_body_bytes;
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
                    ScimError::bad_request(
                        InvalidKind::InvalidSyntax,
                        "the request body could not be read",
                    )
                }
            })?;
        if bytes.is_empty() {
            return Err(ScimError::bad_request(
                InvalidKind::InvalidSyntax,
                "the request body is empty; a JSON object is required",
            ));
        }
        // serde_json refuses nesting deeper than 128 levels, so hostile input cannot
        // exhaust the stack.
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ScimError::bad_request(InvalidKind::InvalidSyntax, format!("malformed JSON: {e}"))
        })?;
        if !value.is_object() {
            return Err(ScimError::bad_request(
                InvalidKind::InvalidSyntax,
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

/// Parses `W/"12"` or `"12"`.
pub fn parse_etag(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    raw.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// The ETag of a version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// List and search parameters, from a query string or a `.search` body.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub filter: Option<Filter>,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub start_index: i64,
    pub count: Option<i64>,
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

fn invalid_value(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request(InvalidKind::InvalidValue, detail)
}

fn parse_filter(raw: &str) -> Result<Filter, ScimError> {
    raw.parse::<Filter>().map_err(|e| {
        ScimError::bad_request(
            InvalidKind::InvalidFilter,
            format!("filter {raw:?} is not valid: {e}"),
        )
    })
}

fn split_names(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_int(name: &str, raw: &str) -> Result<i64, ScimError> {
    raw.trim()
        .parse::<i64>()
        .map_err(|_| invalid_value(format!("{name} must be an integer, got {raw:?}")))
}

fn parse_order(raw: &str) -> Result<bool, ScimError> {
    match raw.to_ascii_lowercase().as_str() {
        "ascending" => Ok(false),
        "descending" => Ok(true),
        _ => Err(invalid_value(format!(
            "sortOrder must be ascending or descending, got {raw:?}"
        ))),
    }
}

impl ListParams {
    /// From URL query pairs; parameter names are matched without regard to case.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, ScimError> {
        let mut p = ListParams {
            start_index: 1,
            ..Default::default()
        };
        for (k, v) in pairs {
            match k.to_ascii_lowercase().as_str() {
                "filter" => p.filter = Some(parse_filter(v)?),
                "sortby" => p.sort_by = Some(v.clone()).filter(|s| !s.is_empty()),
                "sortorder" => p.descending = parse_order(v)?,
                "startindex" => p.start_index = parse_int("startIndex", v)?,
                "count" => p.count = Some(parse_int("count", v)?),
                "attributes" => p.attributes = split_names(v),
                "excludedattributes" => p.excluded = split_names(v),
                _ => {}
            }
        }
        Ok(p)
    }

    /// From a `POST .search` body (RFC 7644 §3.4.3); keys matched without regard to case.
    pub fn from_search(body: &Value) -> Result<Self, ScimError> {
        let mut p = ListParams {
            start_index: 1,
            ..Default::default()
        };
        let Some(obj) = body.as_object() else {
            return Err(ScimError::bad_request(
                InvalidKind::InvalidSyntax,
                "search body must be an object",
            ));
        };
        let names = |key: &str, v: &Value| -> Result<Vec<String>, ScimError> {
            match v {
                Value::String(s) => Ok(split_names(s)),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_owned).ok_or_else(|| {
                            ScimError::bad_request(
                                InvalidKind::InvalidSyntax,
                                format!("{key} must list strings"),
                            )
                        })
                    })
                    .collect(),
                Value::Null => Ok(Vec::new()),
                _ => Err(ScimError::bad_request(
                    InvalidKind::InvalidSyntax,
                    format!("{key} must be an array of strings"),
                )),
            }
        };
        let int = |key: &str, v: &Value| -> Result<i64, ScimError> {
            match v {
                Value::Number(n) => n
                    .as_i64()
                    .ok_or_else(|| invalid_value(format!("{key} must be an integer"))),
                Value::String(s) => parse_int(key, s),
                _ => Err(invalid_value(format!("{key} must be an integer"))),
            }
        };
        for (k, v) in obj {
            match k.to_ascii_lowercase().as_str() {
                "schemas" => {
                    let ok = v.as_array().is_some_and(|a| {
                        a.iter().any(|s| {
                            s.as_str()
                                == Some("urn:ietf:params:scim:api:messages:2.0:SearchRequest")
                        })
                    });
                    if !ok {
                        return Err(ScimError::bad_request(
                            InvalidKind::InvalidSyntax,
                            "schemas must contain urn:ietf:params:scim:api:messages:2.0:SearchRequest",
                        ));
                    }
                }
                "filter" => match v {
                    Value::String(s) => p.filter = Some(parse_filter(s)?),
                    Value::Null => {}
                    _ => {
                        return Err(ScimError::bad_request(
                            InvalidKind::InvalidFilter,
                            "filter must be a string",
                        ));
                    }
                },
                "sortby" => p.sort_by = v.as_str().map(str::to_owned).filter(|s| !s.is_empty()),
                "sortorder" => {
                    if let Some(s) = v.as_str() {
                        p.descending = parse_order(s)?;
                    }
                }
                "startindex" => p.start_index = int("startIndex", v)?,
                "count" => p.count = Some(int("count", v)?),
                "attributes" => p.attributes = names("attributes", v)?,
                "excludedattributes" => p.excluded = names("excludedAttributes", v)?,
                _ => {}
            }
        }
        Ok(p)
    }

    /// The page size to serve: RFC 7644 §3.4.2.4 treats a negative count as 0; larger than
    /// the maximum is capped.
    pub fn effective_count(&self, default: i64, max: i64) -> i64 {
        self.count.unwrap_or(default).clamp(0, max)
    }

    /// RFC 7644 §3.4.2.4: a startIndex below 1 is interpreted as 1.
    pub fn effective_start(&self) -> i64 {
        self.start_index.max(1)
    }
}

/// Selection parameters (`attributes`/`excludedAttributes`) from a query string, for
/// single-resource routes (GET by id, POST, PUT, PATCH).
#[derive(Debug, Clone, Default)]
pub struct SelectParams {
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

impl SelectParams {
    pub fn from_query(pairs: &[(String, String)]) -> Self {
        let mut s = SelectParams::default();
        for (k, v) in pairs {
            match k.to_ascii_lowercase().as_str() {
                "attributes" => s.attributes = split_names(v),
                "excludedattributes" => s.excluded = split_names(v),
                _ => {}
            }
        }
        s
    }
}
