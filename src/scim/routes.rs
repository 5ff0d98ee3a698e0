//! The SCIM routes under `/scim/{connection}/v2` (RFC 7644 §3.2). Handlers are thin: they
//! extract, call one service function, and render the result.

use axum::Router;
use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::Value;

use super::discovery;
use super::error::{SCIM_CONTENT_TYPE, ScimError};
use super::extract::{Caller, IfMatch, IfNoneMatch, ListParams, ScimJson, SelectParams, etag};
use super::render::{Selection, group_json, list_response, user_json};
use super::service;
use crate::app::AppState;
use crate::directory::{DirectoryError, GroupRecord, InvalidKind, ResourceKind, UserRecord};

const BASE: &str = "/scim/{connection}/v2";

/// All SCIM routes.
pub fn router() -> Router<AppState> {
    let r = |path: &str| format!("{BASE}{path}");
    Router::new()
        .route(&r("/Users"), get(list_users).post(create_user))
        .route(&r("/Users/.search"), post(search_users))
        .route(
            &r("/Users/{id}"),
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(&r("/Groups"), get(list_groups).post(create_group))
        .route(&r("/Groups/.search"), post(search_groups))
        .route(
            &r("/Groups/{id}"),
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
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

/// The URL query as name/value pairs.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimError> {
        let raw = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(raw)
            .map(QueryPairs)
            .map_err(|e| {
                ScimError::bad_request(
                    InvalidKind::InvalidSyntax,
                    format!("malformed query string: {e}"),
                )
            })
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

/// A SCIM JSON response with optional `ETag` and `Location`.
fn respond(
    status: StatusCode,
    body: &Value,
    version: Option<i64>,
    location: Option<&str>,
) -> Response {
    let mut resp = (status, body.to_string()).into_response();
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

fn not_modified(version: i64) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn selection(state: &AppState, kind: ResourceKind, q: &[(String, String)]) -> Selection {
    let p = SelectParams::from_query(q);
    Selection::parse(kind, &state.catalogue, &p.attributes, &p.excluded)
}

// ---------------------------------------------------------------- users

async fn render_user(
    state: &AppState,
    caller: &Caller,
    sel: &Selection,
    rec: &UserRecord,
    status: StatusCode,
) -> Result<Response, ScimError> {
    let groups = if sel.wants("groups") {
        service::groups_of(state, &caller.connection, &[rec])
            .await?
            .remove(&rec.id)
    } else {
        None
    };
    let full = user_json(rec, groups.as_deref(), &caller.base_url);
    let location = format!("{}/Users/{}", caller.base_url, rec.id);
    let body = sel.apply(ResourceKind::User, &state.catalogue, full);
    let loc = (status == StatusCode::CREATED).then_some(location.as_str());
    Ok(respond(status, &body, Some(rec.version), loc))
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let rec = service::create_user(&state, &caller.connection, body).await?;
    let sel = selection(&state, ResourceKind::User, &q);
    render_user(&state, &caller, &sel, &rec, StatusCode::CREATED).await
}

async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
    QueryPairs(q): QueryPairs,
    IfNoneMatch(held): IfNoneMatch,
) -> Result<Response, ScimError> {
    let rec = service::get_user(&state, &caller.connection, &id).await?;
    if held.contains(&rec.version) {
        return Ok(not_modified(rec.version));
    }
    let sel = selection(&state, ResourceKind::User, &q);
    render_user(&state, &caller, &sel, &rec, StatusCode::OK).await
}

async fn replace_user(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
    QueryPairs(q): QueryPairs,
    IfMatch(expect): IfMatch,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let rec = service::replace_user(&state, &caller.connection, &id, expect, body).await?;
    let sel = selection(&state, ResourceKind::User, &q);
    render_user(&state, &caller, &sel, &rec, StatusCode::OK).await
}

async fn patch_user(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
    QueryPairs(q): QueryPairs,
    IfMatch(expect): IfMatch,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let rec = service::patch_user(&state, &caller.connection, &id, expect, body).await?;
    let sel = selection(&state, ResourceKind::User, &q);
    render_user(&state, &caller, &sel, &rec, StatusCode::OK).await
}

async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
    IfMatch(expect): IfMatch,
) -> Result<StatusCode, ScimError> {
    service::delete_user(&state, &caller.connection, &id, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn users_page(
    state: &AppState,
    caller: &Caller,
    params: &ListParams,
) -> Result<Response, ScimError> {
    let sel = Selection::parse(
        ResourceKind::User,
        &state.catalogue,
        &params.attributes,
        &params.excluded,
    );
    let page = service::list_users(state, &caller.connection, params).await?;
    let resources = user_resources(state, caller, &sel, &page.items).await?;
    let body = list_response(page.total, params.effective_start(), resources);
    Ok(respond(StatusCode::OK, &body, None, None))
}

async fn user_resources(
    state: &AppState,
    caller: &Caller,
    sel: &Selection,
    users: &[UserRecord],
) -> Result<Vec<Value>, ScimError> {
    let mut groups = if sel.wants("groups") {
        let refs: Vec<&UserRecord> = users.iter().collect();
        service::groups_of(state, &caller.connection, &refs).await?
    } else {
        Default::default()
    };
    Ok(users
        .iter()
        .map(|u| {
            let g = groups.remove(&u.id);
            sel.apply(
                ResourceKind::User,
                &state.catalogue,
                user_json(u, g.as_deref(), &caller.base_url),
            )
        })
        .collect())
}

async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> Result<Response, ScimError> {
    let params = ListParams::from_query(&q)?;
    users_page(&state, &caller, &params).await
}

async fn search_users(
    State(state): State<AppState>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let params = ListParams::from_search(&body)?;
    users_page(&state, &caller, &params).await
}

// ---------------------------------------------------------------- groups

async fn render_group(
    state: &AppState,
    caller: &Caller,
    sel: &Selection,
    rec: &GroupRecord,
    status: StatusCode,
    after_patch: bool,
) -> Result<Response, ScimError> {
    // After a PATCH, members are returned only for groups small enough that doing so does
    // not make a one-member change cost the size of the group (unless asked for by name).
    let members_wanted = sel.wants("members")
        && (!after_patch
            || sel.requests("members")
            || rec.member_count <= state.scim.settings.patch_response_members_max);
    let members = if members_wanted {
        service::members_of(state, &caller.connection, &[rec])
            .await?
            .remove(&rec.id)
    } else {
        None
    };
    let full = group_json(rec, members.as_deref(), &caller.base_url);
    let location = format!("{}/Groups/{}", caller.base_url, rec.id);
    let body = sel.apply(ResourceKind::Group, &state.catalogue, full);
    let loc = (status == StatusCode::CREATED).then_some(location.as_str());
    Ok(respond(status, &body, Some(rec.version), loc))
}

async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let rec = service::create_group(&state, &caller.connection, body).await?;
    let sel = selection(&state, ResourceKind::Group, &q);
    render_group(&state, &caller, &sel, &rec, StatusCode::CREATED, false).await
}

async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
    QueryPairs(q): QueryPairs,
    IfNoneMatch(held): IfNoneMatch,
) -> Result<Response, ScimError> {
    let rec = service::get_group(&state, &caller.connection, &id).await?;
    if held.contains(&rec.version) {
        return Ok(not_modified(rec.version));
    }
    let sel = selection(&state, ResourceKind::Group, &q);
    render_group(&state, &caller, &sel, &rec, StatusCode::OK, false).await
}

async fn replace_group(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
    QueryPairs(q): QueryPairs,
    IfMatch(expect): IfMatch,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let rec = service::replace_group(&state, &caller.connection, &id, expect, body).await?;
    let sel = selection(&state, ResourceKind::Group, &q);
    render_group(&state, &caller, &sel, &rec, StatusCode::OK, false).await
}

async fn patch_group(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
    QueryPairs(q): QueryPairs,
    IfMatch(expect): IfMatch,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let rec = service::patch_group(&state, &caller.connection, &id, expect, body).await?;
    let sel = selection(&state, ResourceKind::Group, &q);
    render_group(&state, &caller, &sel, &rec, StatusCode::OK, true).await
}

async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
    IfMatch(expect): IfMatch,
) -> Result<StatusCode, ScimError> {
    service::delete_group(&state, &caller.connection, &id, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn group_resources(
    state: &AppState,
    caller: &Caller,
    sel: &Selection,
    groups: &[GroupRecord],
) -> Result<Vec<Value>, ScimError> {
    let mut members = if sel.wants("members") {
        let refs: Vec<&GroupRecord> = groups.iter().collect();
        service::members_of(state, &caller.connection, &refs).await?
    } else {
        Default::default()
    };
    Ok(groups
        .iter()
        .map(|g| {
            let m = members.remove(&g.id);
            sel.apply(
                ResourceKind::Group,
                &state.catalogue,
                group_json(g, m.as_deref(), &caller.base_url),
            )
        })
        .collect())
}

async fn groups_page(
    state: &AppState,
    caller: &Caller,
    params: &ListParams,
) -> Result<Response, ScimError> {
    let sel = Selection::parse(
        ResourceKind::Group,
        &state.catalogue,
        &params.attributes,
        &params.excluded,
    );
    let page = service::list_groups(state, &caller.connection, params).await?;
    let resources = group_resources(state, caller, &sel, &page.items).await?;
    let body = list_response(page.total, params.effective_start(), resources);
    Ok(respond(StatusCode::OK, &body, None, None))
}

async fn list_groups(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> Result<Response, ScimError> {
    let params = ListParams::from_query(&q)?;
    groups_page(&state, &caller, &params).await
}

async fn search_groups(
    State(state): State<AppState>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let params = ListParams::from_search(&body)?;
    groups_page(&state, &caller, &params).await
}

/// `POST /.search` at the root (RFC 7644 §3.4.3): users first, then groups, paged as one
/// list. A resource type whose attributes the filter does not know contributes nothing.
async fn search_all(
    State(state): State<AppState>,
    caller: Caller,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimError> {
    let params = ListParams::from_search(&body)?;
    let conn = &caller.connection;
    let cat = &state.catalogue;
    let unknown_attr = |e: &DirectoryError| matches!(e, DirectoryError::Invalid { kind: InvalidKind::InvalidFilter | InvalidKind::InvalidValue, detail } if detail.contains("unknown attribute"));
    let count = params.effective_count(
        state.scim.settings.default_page_size,
        state.scim.settings.max_page_size,
    );
    let start = params.effective_start();
    let mut users_params = params.clone();
    users_params.count = Some(count);
    // A kind whose attributes the filter does not know contributes nothing; its error is
    // kept in case no kind knows them.
    let mut unknown = None;
    let users = match service::list_users(&state, conn, &users_params).await {
        Ok(p) => Some(p),
        Err(e) if unknown_attr(&e) => {
            unknown = Some(e);
            None
        }
        Err(e) => return Err(e.into()),
    };
    let users_total = users.as_ref().map_or(0, |p| p.total);
    let users_shown = users.as_ref().map_or(0, |p| p.items.len() as i64);
    let mut group_params = params.clone();
    group_params.start_index = (start - users_total).max(1);
    group_params.count = Some(count - users_shown);
    let groups = match service::list_groups(&state, conn, &group_params).await {
        Ok(p) => Some(p),
        Err(e) if unknown_attr(&e) => {
            if users.is_none() {
                return Err(unknown.unwrap_or(e).into());
            }
            None
        }
        Err(e) => return Err(e.into()),
    };
    let mut resources = Vec::new();
    if let Some(u) = &users {
        let sel = Selection::parse(
            ResourceKind::User,
            cat,
            &params.attributes,
            &params.excluded,
        );
        resources.extend(user_resources(&state, &caller, &sel, &u.items).await?);
    }
    let groups_total = groups.as_ref().map_or(0, |p| p.total);
    if let Some(g) = &groups
        && count - users_shown > 0
    {
        let sel = Selection::parse(
            ResourceKind::Group,
            cat,
            &params.attributes,
            &params.excluded,
        );
        resources.extend(group_resources(&state, &caller, &sel, &g.items).await?);
    }
    let body = list_response(users_total + groups_total, start, resources);
    Ok(respond(StatusCode::OK, &body, None, None))
}

// ---------------------------------------------------------------- discovery

async fn service_provider_config(State(state): State<AppState>, caller: Caller) -> Response {
    let body =
        discovery::service_provider_config(&caller.base_url, state.scim.settings.max_page_size);
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

async fn schemas(State(state): State<AppState>, caller: Caller) -> Response {
    respond(
        StatusCode::OK,
        &discovery::schemas(&state.catalogue, &caller.base_url),
        None,
        None,
    )
}

async fn schema(
    State(state): State<AppState>,
    caller: Caller,
    ResourceId(id): ResourceId,
) -> Result<Response, ScimError> {
    discovery::schema(&state.catalogue, &caller.base_url, &id)
        .map(|b| respond(StatusCode::OK, &b, None, None))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id:?}")))
}
