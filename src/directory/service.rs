//! The directory as a service: every change goes through here, runs as one store
//! transaction, and is announced with a [`DirectoryEvent`] after it commits (never before,
//! never for a change that failed). Whatever writes the directory (SCIM today, just-in-time
//! provisioning at sign-in later) gets the same events, and with them the same claims
//! invalidation.
//!
//! Edits that depend on the stored document (a PATCH) are optimistic: read, apply the edit,
//! write back naming the version read. If another change committed in between, the store
//! refuses and the edit runs again on the new state; a caller that named a version itself
//! (`If-Match`) gets [`DirectoryError::VersionMismatch`] instead. Membership changes need no
//! read at all: they are set operations inside the write.

use std::collections::HashMap;
use std::sync::Arc;

use super::doc::{GroupDoc, UserDoc};
use super::error::{DirectoryError, StoreFault};
use super::events::{Change as Event, DirectoryEvent, EventBus};
use super::model::{
    Change, GroupChange, GroupRecord, GroupRef, ListSpec, MemberOp, MemberRef, MembershipDelta,
    Page, ResourceKind, UserRecord,
};
use super::store::{GroupStore, Stores, UserStore};
use crate::clock::Clock;
use crate::connections::ConnectionId;

/// How often an optimistic edit is tried before the record is reported too busy.
const EDIT_ATTEMPTS: u32 = 32;

/// An edit that did not happen: the directory refused it, or the edit itself did.
#[derive(Debug)]
pub enum EditError<E> {
    Directory(DirectoryError),
    Edit(E),
}

impl<E> From<DirectoryError> for EditError<E> {
    fn from(e: DirectoryError) -> Self {
        EditError::Directory(e)
    }
}

/// The directory service (a cheap handle).
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

struct Inner {
    users: Arc<dyn UserStore>,
    groups: Arc<dyn GroupStore>,
    clock: Arc<dyn Clock>,
    events: EventBus,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("events", &self.inner.events)
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub fn new(stores: &Stores, clock: Arc<dyn Clock>, events: EventBus) -> Self {
        Self {
            inner: Arc::new(Inner {
                users: stores.users.clone(),
                groups: stores.groups.clone(),
                clock,
                events,
            }),
        }
    }

    /// The bus changes are published on.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    async fn publish(
        &self,
        conn: &ConnectionId,
        change: Event,
        users: Vec<String>,
        groups: Vec<String>,
    ) {
        self.inner
            .events
            .publish(DirectoryEvent {
                connection: conn.clone(),
                change,
                users,
                groups,
            })
            .await;
    }

    /// Publishes `change` for the group `id`, the users and nested groups in `members`.
    async fn publish_group(
        &self,
        conn: &ConnectionId,
        change: Event,
        id: &str,
        members: MembershipDelta,
    ) {
        let mut groups = vec![id.to_owned()];
        groups.extend(members.groups);
        self.publish(conn, change, members.users, groups).await;
    }

    // ------------------------------------------------------------------------------- users

    pub async fn create_user(
        &self,
        conn: &ConnectionId,
        doc: UserDoc,
    ) -> Result<UserRecord, DirectoryError> {
        let now = self.inner.clock.now();
        let rec = self.inner.users.create_user(conn, doc, now).await?;
        self.publish(conn, Event::UserCreated, vec![rec.id.clone()], Vec::new())
            .await;
        Ok(rec)
    }

    pub async fn user(&self, conn: &ConnectionId, id: &str) -> Result<UserRecord, DirectoryError> {
        self.inner
            .users
            .get_user(conn, id)
            .await?
            .ok_or(DirectoryError::NotFound(ResourceKind::User))
    }

    pub async fn list_users(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<UserRecord>, DirectoryError> {
        self.inner.users.list_users(conn, spec).await
    }

    /// The direct groups of these users.
    pub async fn groups_of(
        &self,
        conn: &ConnectionId,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<GroupRef>>, DirectoryError> {
        if user_ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.inner.groups.user_groups(conn, user_ids).await
    }

    /// Replaces a user's document.
    pub async fn replace_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        doc: UserDoc,
    ) -> Result<UserRecord, DirectoryError> {
        let now = self.inner.clock.now();
        let change = self
            .inner
            .users
            .update_user(conn, id, expect, doc, now)
            .await?;
        Ok(self.user_changed(conn, change).await)
    }

    /// Applies `edit` to the user's current document and stores the result (see the module
    /// documentation for how concurrent edits are resolved).
    pub async fn edit_user<E>(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        edit: impl Fn(&UserDoc) -> Result<UserDoc, E>,
    ) -> Result<UserRecord, EditError<E>> {
        for attempt in 1..=EDIT_ATTEMPTS {
            let current = self.user(conn, id).await?;
            check_version(expect, current.version)?;
            let doc = edit(&current.doc).map_err(EditError::Edit)?;
            if doc == current.doc {
                return Ok(current);
            }
            let now = self.inner.clock.now();
            match self
                .inner
                .users
                .update_user(conn, id, Some(current.version), doc, now)
                .await
            {
                Ok(change) => return Ok(self.user_changed(conn, change).await),
                Err(DirectoryError::VersionMismatch { .. }) if expect.is_none() => {
                    back_off(attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(contended().into())
    }

    async fn user_changed(&self, conn: &ConnectionId, change: Change<UserRecord>) -> UserRecord {
        if change.after.version != change.before.version {
            self.publish(
                conn,
                Event::UserUpdated,
                vec![change.after.id.clone()],
                Vec::new(),
            )
            .await;
        }
        change.after
    }

    pub async fn delete_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
    ) -> Result<(), DirectoryError> {
        let now = self.inner.clock.now();
        let removed = self.inner.users.delete_user(conn, id, expect, now).await?;
        self.publish(
            conn,
            Event::UserDeleted,
            vec![removed.before.id],
            removed.members.groups,
        )
        .await;
        Ok(())
    }

    // ------------------------------------------------------------------------------ groups

    /// Creates a group with these members (ids naming nothing in the connection are skipped).
    pub async fn create_group(
        &self,
        conn: &ConnectionId,
        doc: GroupDoc,
        members: &[String],
    ) -> Result<GroupRecord, DirectoryError> {
        let now = self.inner.clock.now();
        let (rec, delta) = self
            .inner
            .groups
            .create_group(conn, doc, members, now)
            .await?;
        self.publish_group(conn, Event::GroupCreated, &rec.id, delta)
            .await;
        Ok(rec)
    }

    pub async fn group(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<GroupRecord, DirectoryError> {
        self.inner
            .groups
            .get_group(conn, id)
            .await?
            .ok_or(DirectoryError::NotFound(ResourceKind::Group))
    }

    pub async fn list_groups(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<GroupRecord>, DirectoryError> {
        self.inner.groups.list_groups(conn, spec).await
    }

    /// The members of these groups (groups without members are not asked for).
    pub async fn members_of(
        &self,
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
        self.inner.groups.group_members(conn, &ids).await
    }

    /// Replaces a group's document, and its membership when `members` is given (absent,
    /// membership stays as it is: a rename must never empty a group).
    pub async fn replace_group(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        doc: GroupDoc,
        members: Option<Vec<String>>,
    ) -> Result<GroupRecord, DirectoryError> {
        let ops = match members {
            Some(ids) => vec![MemberOp::RemoveAll, MemberOp::Add(ids)],
            None => Vec::new(),
        };
        let now = self.inner.clock.now();
        let change = self
            .inner
            .groups
            .modify_group(conn, id, expect, Some(doc), &ops, now)
            .await?;
        Ok(self.group_changed(conn, change).await)
    }

    /// Applies membership set operations and, when given, `edit` to the group's document, in
    /// one transaction. Without a document edit nothing is read first.
    pub async fn edit_group<E, F>(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        edit: Option<F>,
        members: &[MemberOp],
    ) -> Result<GroupRecord, EditError<E>>
    where
        F: Fn(&GroupDoc) -> Result<GroupDoc, E>,
    {
        let Some(edit) = edit else {
            let now = self.inner.clock.now();
            let change = self
                .inner
                .groups
                .modify_group(conn, id, expect, None, members, now)
                .await?;
            return Ok(self.group_changed(conn, change).await);
        };
        for attempt in 1..=EDIT_ATTEMPTS {
            let current = self.group(conn, id).await?;
            check_version(expect, current.version)?;
            let doc = edit(&current.doc).map_err(EditError::Edit)?;
            let now = self.inner.clock.now();
            match self
                .inner
                .groups
                .modify_group(conn, id, Some(current.version), Some(doc), members, now)
                .await
            {
                Ok(change) => return Ok(self.group_changed(conn, change).await),
                Err(DirectoryError::VersionMismatch { .. }) if expect.is_none() => {
                    back_off(attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(contended().into())
    }

    async fn group_changed(&self, conn: &ConnectionId, change: GroupChange) -> GroupRecord {
        let GroupChange { record, members } = change;
        if record.before.doc != record.after.doc {
            self.publish(
                conn,
                Event::GroupUpdated,
                Vec::new(),
                vec![record.after.id.clone()],
            )
            .await;
        }
        if !members.is_empty() {
            self.publish_group(conn, Event::MembershipChanged, &record.after.id, members)
                .await;
        }
        record.after
    }

    pub async fn delete_group(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
    ) -> Result<(), DirectoryError> {
        let now = self.inner.clock.now();
        let removed = self
            .inner
            .groups
            .delete_group(conn, id, expect, now)
            .await?;
        self.publish_group(conn, Event::GroupDeleted, id, removed.members)
            .await;
        Ok(())
    }
}

fn check_version(expect: Option<i64>, current: i64) -> Result<(), DirectoryError> {
    match expect {
        Some(v) if v != current => Err(DirectoryError::VersionMismatch { current }),
        _ => Ok(()),
    }
}

fn contended() -> DirectoryError {
    DirectoryError::Unavailable(StoreFault::Contention {
        attempts: EDIT_ATTEMPTS,
    })
}

/// After losing a race: wait a little, longer each time, so the writers spread out.
async fn back_off(attempt: u32) {
    let ceiling = u64::from(attempt.min(8)) * 2;
    let ms = rand::random::<u64>() % (ceiling + 1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}
