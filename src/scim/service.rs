//! SCIM operations on the directory: each function normalises its input with the pure
//! functions of [`resource`](super::resource) and [`patch`](super::patch), runs one store
//! transaction, and publishes the change event after commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;

use super::extract::ListParams;
use super::patch::{self, PatchOperation};
use super::resource;
use crate::app::AppState;
use crate::directory::events::{Change, DirectoryEvent};
use crate::directory::{
    ConnectionId, DirectoryError, GroupRecord, GroupRef, InvalidKind, ListSpec, MemberOp,
    MemberRef, MembershipDelta, Page, ResourceKind, UserRecord,
};

async fn publish(
    state: &AppState,
    conn: &ConnectionId,
    change: Change,
    users: Vec<String>,
    groups: Vec<String>,
) {
    state
        .events
        .publish(DirectoryEvent {
            connection: conn.clone(),
            change,
            users,
            groups,
        })
        .await;
}

async fn membership_event(
    state: &AppState,
    conn: &ConnectionId,
    group: &str,
    delta: MembershipDelta,
) {
    if delta.users.is_empty() && delta.groups.is_empty() {
        return;
    }
    let mut groups = vec![group.to_owned()];
    groups.extend(delta.groups);
    publish(state, conn, Change::MembershipChanged, delta.users, groups).await;
}

/// Turns list parameters into a store query for `kind`.
pub fn list_spec(
    state: &AppState,
    kind: ResourceKind,
    params: &ListParams,
) -> Result<ListSpec, DirectoryError> {
    let sort_by = match &params.sort_by {
        None => None,
        Some(name) => Some(state.catalogue.resolve_name(kind, name).map_err(|e| {
            DirectoryError::invalid(InvalidKind::InvalidValue, format!("sortBy: {e}"))
        })?),
    };
    Ok(ListSpec {
        filter: params.filter.clone(),
        sort_by,
        descending: params.descending,
        start_index: params.effective_start(),
        count: params.effective_count(
            state.scim.settings.default_page_size,
            state.scim.settings.max_page_size,
        ),
    })
}

// ---------------------------------------------------------------- users

pub async fn create_user(
    state: &AppState,
    conn: &ConnectionId,
    body: Value,
) -> Result<UserRecord, DirectoryError> {
    let doc = resource::user_from_body(body, &state.catalogue)?;
    let rec = state
        .store
        .create_user(conn, doc, state.clock.now())
        .await?;
    publish(
        state,
        conn,
        Change::UserCreated,
        vec![rec.id.clone()],
        Vec::new(),
    )
    .await;
    Ok(rec)
}

pub async fn get_user(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
) -> Result<UserRecord, DirectoryError> {
    state
        .store
        .get_user(conn, id)
        .await?
        .ok_or(DirectoryError::NotFound("User"))
}

/// The direct groups of these users (for the read-only `groups` attribute).
pub async fn groups_of(
    state: &AppState,
    conn: &ConnectionId,
    users: &[&UserRecord],
) -> Result<HashMap<String, Vec<GroupRef>>, DirectoryError> {
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    state.store.user_groups(conn, &ids).await
}

pub async fn list_users(
    state: &AppState,
    conn: &ConnectionId,
    params: &ListParams,
) -> Result<Page<UserRecord>, DirectoryError> {
    let spec = list_spec(state, ResourceKind::User, params)?;
    state.store.list_users(conn, &spec).await
}

async fn user_changed(state: &AppState, conn: &ConnectionId, before: i64, rec: &UserRecord) {
    if rec.version != before {
        publish(
            state,
            conn,
            Change::UserUpdated,
            vec![rec.id.clone()],
            Vec::new(),
        )
        .await;
    }
}

/// PUT: replaces every writable attribute (RFC 7644 §3.5.1); read-only ones are ignored.
pub async fn replace_user(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
    expect: Option<i64>,
    body: Value,
) -> Result<UserRecord, DirectoryError> {
    let doc = resource::user_from_body(body, &state.catalogue)?;
    let before = AtomicI64::new(0);
    let rec = state
        .store
        .update_user(conn, id, expect, state.clock.now(), &|cur| {
            before.store(cur.version, Ordering::Relaxed);
            Ok(doc.clone())
        })
        .await?;
    user_changed(state, conn, before.into_inner(), &rec).await;
    Ok(rec)
}

/// PATCH (RFC 7644 §3.5.2): all operations or none.
pub async fn patch_user(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
    expect: Option<i64>,
    body: Value,
) -> Result<UserRecord, DirectoryError> {
    let ops = patch::parse_patch(body)?;
    let cat = &state.catalogue;
    let before = AtomicI64::new(0);
    let rec = state
        .store
        .update_user(conn, id, expect, state.clock.now(), &|cur| {
            before.store(cur.version, Ordering::Relaxed);
            patch::patch_user(&cur.doc, &ops, cat)
        })
        .await?;
    user_changed(state, conn, before.into_inner(), &rec).await;
    Ok(rec)
}

pub async fn delete_user(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
    expect: Option<i64>,
) -> Result<(), DirectoryError> {
    let groups = state
        .store
        .delete_user(conn, id, expect, state.clock.now())
        .await?;
    publish(
        state,
        conn,
        Change::UserDeleted,
        vec![id.to_owned()],
        groups,
    )
    .await;
    Ok(())
}

// ---------------------------------------------------------------- groups

pub async fn create_group(
    state: &AppState,
    conn: &ConnectionId,
    body: Value,
) -> Result<GroupRecord, DirectoryError> {
    let (doc, members) = resource::group_from_body(body, &state.catalogue)?;
    let ids: Vec<String> = members
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.value)
        .collect();
    let (rec, delta) = state
        .store
        .create_group(conn, doc, &ids, state.clock.now())
        .await?;
    let mut groups = vec![rec.id.clone()];
    groups.extend(delta.groups);
    publish(state, conn, Change::GroupCreated, delta.users, groups).await;
    Ok(rec)
}

pub async fn get_group(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
) -> Result<GroupRecord, DirectoryError> {
    state
        .store
        .get_group(conn, id)
        .await?
        .ok_or(DirectoryError::NotFound("Group"))
}

pub async fn members_of(
    state: &AppState,
    conn: &ConnectionId,
    groups: &[&GroupRecord],
) -> Result<HashMap<String, Vec<MemberRef>>, DirectoryError> {
    let ids: Vec<String> = groups
        .iter()
        .filter(|g| g.member_count > 0)
        .map(|g| g.id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    state.store.group_members(conn, &ids).await
}

pub async fn list_groups(
    state: &AppState,
    conn: &ConnectionId,
    params: &ListParams,
) -> Result<Page<GroupRecord>, DirectoryError> {
    let spec = list_spec(state, ResourceKind::Group, params)?;
    state.store.list_groups(conn, &spec).await
}

async fn group_changed(
    state: &AppState,
    conn: &ConnectionId,
    before: &GroupRecord,
    after: &GroupRecord,
    delta: MembershipDelta,
) {
    if before.doc != after.doc {
        publish(
            state,
            conn,
            Change::GroupUpdated,
            Vec::new(),
            vec![after.id.clone()],
        )
        .await;
    }
    membership_event(state, conn, &after.id, delta).await;
}

/// PUT: replaces the group's attributes; `members`, when present, replaces the membership
/// (when absent, membership is left as it is: a rename must never empty a group).
pub async fn replace_group(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
    expect: Option<i64>,
    body: Value,
) -> Result<GroupRecord, DirectoryError> {
    let (doc, members) = resource::group_from_body(body, &state.catalogue)?;
    let ops = match members {
        Some(m) => vec![
            MemberOp::RemoveAll,
            MemberOp::Add(m.into_iter().map(|m| m.value).collect()),
        ],
        None => Vec::new(),
    };
    let before = std::sync::Mutex::new(None);
    let (rec, delta) = state
        .store
        .modify_group(
            conn,
            id,
            expect,
            state.clock.now(),
            Some(&|cur: &GroupRecord| {
                if let Ok(mut b) = before.lock() {
                    *b = Some(cur.clone());
                }
                Ok(doc.clone())
            }),
            &ops,
        )
        .await?;
    if let Some(b) = before.into_inner().ok().flatten() {
        group_changed(state, conn, &b, &rec, delta).await;
    }
    Ok(rec)
}

/// PATCH on a group: attribute operations on its document and set operations on its
/// membership, in one transaction.
pub async fn patch_group(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
    expect: Option<i64>,
    body: Value,
) -> Result<GroupRecord, DirectoryError> {
    let ops: Vec<PatchOperation> = patch::parse_patch(body)?;
    let cat = &state.catalogue;
    let plan = patch::plan_group_patch(ops, cat)?;
    let before = std::sync::Mutex::new(None);
    let doc_ops = plan.doc_ops;
    let edit = |cur: &GroupRecord| {
        if let Ok(mut b) = before.lock() {
            *b = Some(cur.clone());
        }
        if doc_ops.is_empty() {
            Ok(cur.doc.clone())
        } else {
            patch::patch_group_doc(&cur.doc, &doc_ops, cat)
        }
    };
    let (rec, delta) = state
        .store
        .modify_group(
            conn,
            id,
            expect,
            state.clock.now(),
            Some(&edit),
            &plan.members,
        )
        .await?;
    if let Some(b) = before.into_inner().ok().flatten() {
        group_changed(state, conn, &b, &rec, delta).await;
    }
    Ok(rec)
}

pub async fn delete_group(
    state: &AppState,
    conn: &ConnectionId,
    id: &str,
    expect: Option<i64>,
) -> Result<(), DirectoryError> {
    let delta = state
        .store
        .delete_group(conn, id, expect, state.clock.now())
        .await?;
    let mut groups = vec![id.to_owned()];
    groups.extend(delta.groups);
    publish(state, conn, Change::GroupDeleted, delta.users, groups).await;
    Ok(())
}
