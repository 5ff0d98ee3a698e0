//! The SCIM routes under `/scim/{connection}/v2` (RFC 7644 §3.2). Handlers are thin: they
//! extract, call one service function, and render the result. Users and Groups share every
//! handler, generic over [`Resource`].
//!
//! The router works in any application state that holds a [`ScimService`] (`FromRef`), so
//! the SCIM layer never sees the rest of the application.

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::Value;

use super::discovery;
use super::error::{SCIM_CONTENT_TYPE, ScimError};
use super::extract::{Caller, IfMatch, IfNoneMatch, QueryPairs, ResourceId, ScimJson};
use super::params::{ListParams, SelectParams};
use super::render::{etag, list_response};
use super::service::{Resource, ScimService};
use crate::directory::{DirectoryError, FilterError, GroupKind, UserKind};

const BASE: &str = "/scim/{connection}/v2";

/// All SCIM routes.
pub fn router<S>() -> Router<S>
where
    ScimService: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    let r = |path: &str| format!("{BASE}{path}");
    Router::new()
        .route(&r("/Users"), get(list::<UserKind>).post(create::<UserKind>))
        .route(&r("/Users/.search"), post(search::<UserKind>))
        .route(
            &r("/Users/{id}"),
            get(read::<UserKind>)
                .put(update::<UserKind, false>)
                .patch(update::<UserKind, true>)
                .delete(delete::<UserKind>),
        )
        .route(
            &r("/Groups"),
            get(list::<GroupKind>).post(create::<GroupKind>),
        )
        .route(&r("/Groups/.search"), post(search::<GroupKind>))
        .route(
            &r("/Groups/{id}"),
            get(read::<GroupKind>)
                .put(update::<GroupKind, false>)
                .patch(update::<GroupKind, true>)
                .delete(delete::<GroupKind>),
        )
        .route(&r("/.search"), post(search_all))
        .route(&r("/ServiceProviderConfig"), get(service_provider_config))
        .route(&r("/ResourceTypes"), get(resource_types))
        .route(&r("/ResourceTypes/{id}"), get(resource_type))
        .route(&r("/Schemas"), get(schemas))
        .route(&r("/Schemas/{id}"), get(schema))
        .route(&r("/Me"), any(not_implemented))
        .route(&r("/Me/{*rest}"), any(not_implemented))
        .route(&r("/Bulk"), any(not_implemented))
        .method_not_allowed_fallback(method_not_allowed)
}

/// 405 for a method a SCIM endpoint does not take (writes to discovery endpoints included).
pub async fn method_not_allowed() -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not support this method",
    )
}

/// 404 for anything under `/scim` that is no endpoint.
pub async fn not_found() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
}

async fn not_implemented(_caller: Caller) -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not implemented: pimgate supports neither /Me nor /Bulk",
    )
}

/// A SCIM JSON response with optional `ETag` and `Location`.
fn respond(
    status: StatusCode,
    body: &Value,
    version: Option<i64>,
    location: Option<&str>,
) -> Response {
    respond_text(status, body.to_string(), version, location)
}

/// [`respond`] with the body already serialized.
fn respond_text(
    status: StatusCode,
    body: String,
    version: Option<i64>,
    location: Option<&str>,
) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    if let Some(v) = version
        && let Ok(val) = HeaderValue::from_str(&etag(v))
    {
        h.insert(header::ETAG, val);
    }
    if let Some(loc) = location
        && let Ok(val) = HeaderValue::from_str(loc)
    {
        h.insert(header::LOCATION, val);
    }
    resp
}

/// One resource, projected as the query asks, with its `ETag` (and `Location` when created).
async fn one<R: Resource>(
    scim: &ScimService,
    caller: &Caller,
    query: &[(String, String)],
    record: &R::Record,
    status: StatusCode,
    patched: bool,
) -> Result<Response, ScimError> {
    let p = SelectParams::from_query(query);
    let sel = scim.selection::<R>(&p.attributes, &p.excluded);
    let body = R::represent(
        scim,
        &caller.connection,
        &caller.base_url,
        &sel,
        std::slice::from_ref(record),
        patched,
    )
    .await?
    .pop()
    .unwrap_or(Value::Null);
    let location = format!(
        "{}/{}/{}",
        caller.base_url,
        R::KIND.endpoint(),
        R::id(record)
    );
    let location = (status == StatusCode::CREATED).then_some(location.as_str());
    Ok(respond(status, &body, Some(R::version(record)), location))
}

async fn create<R: Resource>(
    State(scim): State<ScimService>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let rec = R::create(&scim, &caller.connection, body).await?;
    one::<R>(&scim, &caller, &q, &rec, StatusCode::CREATED, false).await
}

async fn read<R: Resource>(
    State(scim): State<ScimService>,
    caller: Caller,
    ResourceId(id): ResourceId,
    QueryPairs(q): QueryPairs,
    IfNoneMatch(held): IfNoneMatch,
) -> Result<Response, ScimError> {
    let p = SelectParams::from_query(&q);
    let sel = scim.selection::<R>(&p.attributes, &p.excluded);
    let (version, body) = R::read(&scim, &caller.connection, &caller.base_url, &sel, &id).await?;
    if held.contains(&version) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag(version)) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return Ok(resp);
    }
    Ok(respond_text(StatusCode::OK, body, Some(version), None))
}

/// PUT (`PATCH = false`) or PATCH (`PATCH = true`) of one resource.
async fn update<R: Resource, const PATCH: bool>(
    State(scim): State<ScimService>,
    caller: Caller,
    ResourceId(id): ResourceId,
    QueryPairs(q): QueryPairs,
    IfMatch(expect): IfMatch,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let conn = &caller.connection;
    let rec = if PATCH {
        R::patch(&scim, conn, &id, expect, body).await?
    } else {
        R::replace(&scim, conn, &id, expect, body).await?
    };
    one::<R>(&scim, &caller, &q, &rec, StatusCode::OK, PATCH).await
}

async fn delete<R: Resource>(
    State(scim): State<ScimService>,
    caller: Caller,
    ResourceId(id): ResourceId,
    IfMatch(expect): IfMatch,
) -> Result<StatusCode, ScimError> {
    scim.directory()
        .delete::<R>(&caller.connection, &id, expect)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of `R`: its total and the representations of its items. The outer error fails
/// the request; the inner one is an attribute `R` does not know (in a filter or `sortBy`),
/// which the root search skips over.
async fn page<R: Resource>(
    scim: &ScimService,
    caller: &Caller,
    params: &ListParams,
) -> Result<Result<(i64, Vec<Value>), ScimError>, ScimError> {
    let spec = match scim.list_spec::<R>(params) {
        Ok(spec) => spec,
        Err(unknown_sort) => return Ok(Err(unknown_sort)),
    };
    let page = match scim.directory().list::<R>(&caller.connection, &spec).await {
        Ok(p) => p,
        Err(e @ DirectoryError::InvalidFilter(FilterError::UnknownAttribute(_))) => {
            return Ok(Err(e.into()));
        }
        Err(e) => return Err(e.into()),
    };
    let sel = scim.selection::<R>(&params.attributes, &params.excluded);
    let resources = R::represent(
        scim,
        &caller.connection,
        &caller.base_url,
        &sel,
        &page.items,
        false,
    )
    .await?;
    Ok(Ok((page.total, resources)))
}

async fn list_page<R: Resource>(
    scim: &ScimService,
    caller: &Caller,
    params: &ListParams,
) -> Result<Response, ScimError> {
    let (total, resources) = page::<R>(scim, caller, params).await??;
    let body = list_response(total, params.effective_start(), resources);
    Ok(respond(StatusCode::OK, &body, None, None))
}

async fn list<R: Resource>(
    State(scim): State<ScimService>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> Result<Response, ScimError> {
    list_page::<R>(&scim, &caller, &ListParams::from_query(&q)?).await
}

async fn search<R: Resource>(
    State(scim): State<ScimService>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    list_page::<R>(&scim, &caller, &ListParams::from_search(&body)?).await
}

/// `POST /.search` at the root (RFC 7644 §3.4.3): users first, then groups, paged as one
/// list. A resource type whose attributes the request does not know contributes nothing.
async fn search_all(
    State(scim): State<ScimService>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let params = ListParams::from_search(&body)?;
    let o = scim.options();
    let count = params.effective_count(o.default_page_size, o.max_page_size);
    let start = params.effective_start();
    let mut users_params = params.clone();
    users_params.count = Some(count);
    let users = page::<UserKind>(&scim, &caller, &users_params).await?;
    let (users_total, mut resources, unknown) = match users {
        Ok((total, r)) => (total, r, None),
        Err(e) => (0, Vec::new(), Some(e)),
    };
    let shown = resources.len() as i64;
    let mut group_params = params.clone();
    group_params.start_index = (start - users_total).max(1);
    group_params.count = Some(count - shown);
    let groups_total = match page::<GroupKind>(&scim, &caller, &group_params).await? {
        Ok((total, r)) => {
            if count - shown > 0 {
                resources.extend(r);
            }
            total
        }
        // Neither kind knows the attribute: the users' error stands.
        Err(_) => match unknown {
            Some(first) => return Err(first),
            None => 0,
        },
    };
    let body = list_response(users_total + groups_total, start, resources);
    Ok(respond(StatusCode::OK, &body, None, None))
}

// ---------------------------------------------------------------- discovery

async fn service_provider_config(State(scim): State<ScimService>, caller: Caller) -> Response {
    let body = discovery::service_provider_config(&caller.base_url, scim.options().max_page_size);
    respond(StatusCode::OK, &body, None, None)
}

async fn resource_types(caller: Caller) -> Response {
    respond(
        StatusCode::OK,
        &discovery::resource_types(&caller.base_url),
        None,
        None,
    )
}

async fn resource_type(caller: Caller, ResourceId(id): ResourceId) -> Result<Response, ScimError> {
    discovery::resource_type(&caller.base_url, &id)
        .map(|b| respond(StatusCode::OK, &b, None, None))
        .ok_or_else(|| ScimError::not_found(format!("no resource type {id:?}")))
}

async fn schemas(State(scim): State<ScimService>, caller: Caller) -> Response {
    respond(
        StatusCode::OK,
        &discovery::schemas(scim.catalogue(), &caller.base_url),
        None,
        None,
    )
}

async fn schema(
    State(scim): State<ScimService>,
    caller: Caller,
    ResourceId(id): ResourceId,
) -> Result<Response, ScimError> {
    discovery::schema(scim.catalogue(), &caller.base_url, &id)
        .map(|b| respond(StatusCode::OK, &b, None, None))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id:?}")))
}
