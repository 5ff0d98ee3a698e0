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

use futures::future::BoxFuture;

use super::doc::{GroupDoc, UserDoc};
use super::error::{DirectoryError, StoreFault};
use super::events::{Change as Event, DirectoryEvent, EventBus};
use super::kind::{GroupKind, Kind, UserKind};
use super::model::{
    Change, GroupChange, GroupRecord, GroupRef, ListSpec, MemberOp, MemberRef, MembershipDelta,
    Page, UserRecord,
};
use super::store::{GroupStore, Stores, Target, UserStore};
use crate::clock::{Clock, Timestamp};
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
#[derive(Debug, Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    users: Arc<dyn UserStore>,
    groups: Arc<dyn GroupStore>,
    clock: Arc<dyn Clock>,
    events: EventBus,
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

    /// A write to record `id` of `conn`, expecting `expect`, made now.
    fn target<'a>(&self, conn: &'a ConnectionId, id: &'a str, expect: Option<i64>) -> Target<'a> {
        Target {
            conn,
            id,
            expect,
            now: self.inner.clock.now(),
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

    /// A record of kind `K` (not found: [`DirectoryError::NotFound`]).
    pub async fn get<K: Records>(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<K::Record, DirectoryError> {
        K::find(self, conn, id)
            .await?
            .ok_or(DirectoryError::NotFound(K::KIND))
    }

    /// A filtered, sorted page of records of kind `K`, and the number of matches.
    pub async fn list<K: Records>(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<K::Record>, DirectoryError> {
        K::page(self, conn, spec).await
    }

    /// Deletes a record of kind `K` (and its memberships).
    pub async fn delete<K: Records>(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
    ) -> Result<(), DirectoryError> {
        K::remove(self, conn, id, expect).await
    }

    // ------------------------------------------------------------------------------- users

    pub async fn create_user(
        &self,
        conn: &ConnectionId,
        doc: UserDoc,
    ) -> Result<UserRecord, DirectoryError> {
        let now = self.inner.clock.now();
        let users = &self.inner.users;
        let rec = once_more(|| users.create_user(conn, doc.clone(), now)).await?;
        self.publish(conn, Event::UserCreated, vec![rec.id.clone()], Vec::new())
            .await;
        Ok(rec)
    }

    /// A user and its direct groups, in one read.
    pub async fn get_user_with_groups(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<(UserRecord, Vec<GroupRef>), DirectoryError> {
        self.inner
            .users
            .get_user_with_groups(conn, id)
            .await?
            .ok_or(DirectoryError::NotFound(UserKind::KIND))
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
        let at = self.target(conn, id, expect);
        let users = &self.inner.users;
        let change = once_more(|| users.update_user(at, doc.clone())).await?;
        Ok(self.user_changed(conn, change).await)
    }

    /// Applies `edit` to the user's current document and stores the result (see the module
    /// documentation for how concurrent edits are resolved).
    pub async fn edit_user<E: Send>(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        edit: impl Fn(&UserDoc) -> Result<UserDoc, E> + Sync,
    ) -> Result<UserRecord, EditError<E>> {
        let edit = &edit;
        optimistic(expect, || {
            Box::pin(async move {
                let current = self.get::<UserKind>(conn, id).await?;
                check_version(expect, current.version)?;
                let doc = edit(&current.doc).map_err(EditError::Edit)?;
                if doc == current.doc {
                    return Ok(current);
                }
                let at = self.target(conn, id, Some(current.version));
                let change = self.inner.users.update_user(at, doc).await?;
                Ok(self.user_changed(conn, change).await)
            })
        })
        .await
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
        let at = self.target(conn, id, expect);
        let removed = once_more(|| self.inner.users.delete_user(at)).await?;
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
        let groups = &self.inner.groups;
        let (rec, delta) =
            once_more(|| groups.create_group(conn, doc.clone(), members, now)).await?;
        self.publish_group(conn, Event::GroupCreated, &rec.id, delta)
            .await;
        Ok(rec)
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
        let at = self.target(conn, id, expect);
        let groups = &self.inner.groups;
        let change = once_more(|| groups.modify_group(at, Some(doc.clone()), &ops)).await?;
        Ok(self.group_changed(conn, change).await)
    }

    /// Applies membership set operations and, when given, `edit` to the group's document, in
    /// one transaction. Without a document edit nothing is read first.
    pub async fn edit_group<E: Send, F>(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        edit: Option<F>,
        members: &[MemberOp],
    ) -> Result<GroupRecord, EditError<E>>
    where
        F: Fn(&GroupDoc) -> Result<GroupDoc, E> + Sync,
    {
        let Some(edit) = &edit else {
            let at = self.target(conn, id, expect);
            let groups = &self.inner.groups;
            let change = once_more(|| groups.modify_group(at, None, members)).await?;
            return Ok(self.group_changed(conn, change).await);
        };
        optimistic(expect, || {
            Box::pin(async move {
                let current = self.get::<GroupKind>(conn, id).await?;
                check_version(expect, current.version)?;
                let doc = edit(&current.doc).map_err(EditError::Edit)?;
                let at = self.target(conn, id, Some(current.version));
                let change = self
                    .inner
                    .groups
                    .modify_group(at, Some(doc), members)
                    .await?;
                Ok(self.group_changed(conn, change).await)
            })
        })
        .await
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
        let at = self.target(conn, id, expect);
        let removed = once_more(|| self.inner.groups.delete_group(at)).await?;
        self.publish_group(conn, Event::GroupDeleted, id, removed.members)
            .await;
        Ok(())
    }
}

/// The operations that are the same for users and groups but for their types: what lets
/// code above the directory be written once for both ([`Directory::get`],
/// [`Directory::list`], [`Directory::delete`]).
pub trait Records: Kind {
    type Record: Send + Sync + 'static;

    fn id(record: &Self::Record) -> &str;
    fn version(record: &Self::Record) -> i64;
    /// When the record was created and last changed.
    fn times(record: &Self::Record) -> (Timestamp, Timestamp);
    fn find<'a>(
        dir: &'a Directory,
        conn: &'a ConnectionId,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Self::Record>, DirectoryError>>;
    fn page<'a>(
        dir: &'a Directory,
        conn: &'a ConnectionId,
        spec: &'a ListSpec,
    ) -> BoxFuture<'a, Result<Page<Self::Record>, DirectoryError>>;
    fn remove<'a>(
        dir: &'a Directory,
        conn: &'a ConnectionId,
        id: &'a str,
        expect: Option<i64>,
    ) -> BoxFuture<'a, Result<(), DirectoryError>>;
}

/// [`Records`] for one kind: its record type, the store role that holds it and the
/// directory operation that deletes it.
macro_rules! records {
    ($kind:ty, $record:ty, $role:ident, $get:ident, $list:ident, $delete:ident) => {
        impl Records for $kind {
            type Record = $record;

            fn id(record: &$record) -> &str {
                &record.id
            }

            fn version(record: &$record) -> i64 {
                record.version
            }

            fn times(record: &$record) -> (Timestamp, Timestamp) {
                (record.created, record.last_modified)
            }

            fn find<'a>(
                dir: &'a Directory,
                conn: &'a ConnectionId,
                id: &'a str,
            ) -> BoxFuture<'a, Result<Option<$record>, DirectoryError>> {
                dir.inner.$role.$get(conn, id)
            }

            fn page<'a>(
                dir: &'a Directory,
                conn: &'a ConnectionId,
                spec: &'a ListSpec,
            ) -> BoxFuture<'a, Result<Page<$record>, DirectoryError>> {
                dir.inner.$role.$list(conn, spec)
            }

            fn remove<'a>(
                dir: &'a Directory,
                conn: &'a ConnectionId,
                id: &'a str,
                expect: Option<i64>,
            ) -> BoxFuture<'a, Result<(), DirectoryError>> {
                Box::pin(dir.$delete(conn, id, expect))
            }
        }
    };
}

records!(
    UserKind,
    UserRecord,
    users,
    get_user,
    list_users,
    delete_user
);
records!(
    GroupKind,
    GroupRecord,
    groups,
    get_group,
    list_groups,
    delete_group
);

fn check_version(expect: Option<i64>, current: i64) -> Result<(), DirectoryError> {
    match expect {
        Some(v) if v != current => Err(DirectoryError::VersionMismatch { current }),
        _ => Ok(()),
    }
}

/// Runs one read-edit-write `attempt` until it does not lose a race to another change of
/// the same record. A lost race is a version mismatch the caller did not ask for (it named
/// no version); before each retry it waits a little, longer each time, so writers spread out.
async fn optimistic<'a, T, E>(
    expect: Option<i64>,
    mut attempt: impl FnMut() -> BoxFuture<'a, Result<T, EditError<E>>>,
) -> Result<T, EditError<E>> {
    for n in 1..=EDIT_ATTEMPTS {
        match attempt().await {
            Err(EditError::Directory(DirectoryError::VersionMismatch { .. }))
                if expect.is_none() => {}
            Err(EditError::Directory(e)) if e.is_retryable() => {}
            done => return done,
        }
        let ceiling = u64::from(n.min(8)) * 2;
        let ms = rand::random::<u64>() % (ceiling + 1);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Err(contended())
}

/// Runs a store write once more when the database rolled it back because of a concurrent
/// transaction (a serialization failure or a deadlock): nothing of the first try was kept.
async fn once_more<'a, T>(
    mut write: impl FnMut() -> BoxFuture<'a, Result<T, DirectoryError>>,
) -> Result<T, DirectoryError> {
    match write().await {
        Err(e) if e.is_retryable() => write().await,
        done => done,
    }
}

fn contended<E>() -> EditError<E> {
    EditError::Directory(DirectoryError::Unavailable(StoreFault::Contention {
        attempts: EDIT_ATTEMPTS,
    }))
}
