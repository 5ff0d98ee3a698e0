//! The persistence seam, split by role: users, groups and their membership, credentials, and
//! the store's own health. Two real implementations (SQLite for the embedded default,
//! PostgreSQL for production) share one SQL implementation ([`super::sql`]), and one test
//! story per role runs against both.
//!
//! Every method is one transaction. Writes take values, not callbacks: a write that depends
//! on what is stored names the version it read (`expect`), and the store refuses it with
//! [`DirectoryError::VersionMismatch`] when another change came first. Writes return what
//! they changed ([`Change`], [`GroupChange`], [`Removed`]), so callers never have to read a
//! record twice to learn what it was.

use std::collections::HashMap;

use async_trait::async_trait;

use super::doc::{GroupDoc, UserDoc};
use super::error::DirectoryError;
use super::model::{
    Backend, Change, GroupChange, GroupRecord, GroupRef, IdpGroup, ListSpec, MemberOp, MemberRef,
    MembershipDelta, Page, Removed, TokenRow, UserRecord,
};
use crate::clock::Timestamp;
use crate::connections::ConnectionId;

/// Users of a connection.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn create_user(
        &self,
        conn: &ConnectionId,
        doc: UserDoc,
        now: Timestamp,
    ) -> Result<UserRecord, DirectoryError>;

    async fn get_user(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<Option<UserRecord>, DirectoryError>;

    async fn list_users(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<UserRecord>, DirectoryError>;

    /// Replaces a user's document, under a row lock, if its version is `expect` (any version
    /// when `None`). An unchanged document keeps its version.
    async fn update_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        doc: UserDoc,
        now: Timestamp,
    ) -> Result<Change<UserRecord>, DirectoryError>;

    /// Deletes a user and its memberships; `members.groups` are the groups it left.
    async fn delete_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
    ) -> Result<Removed<UserRecord>, DirectoryError>;

    /// The ids of a connection's users, in stable order, `limit` at a time after `after`.
    async fn user_ids_after(
        &self,
        conn: &ConnectionId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, DirectoryError>;
}

/// Groups of a connection and their membership.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group with these members (ids that name nothing are skipped).
    async fn create_group(
        &self,
        conn: &ConnectionId,
        doc: GroupDoc,
        members: &[String],
        now: Timestamp,
    ) -> Result<(GroupRecord, MembershipDelta), DirectoryError>;

    async fn get_group(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<Option<GroupRecord>, DirectoryError>;

    async fn list_groups(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<GroupRecord>, DirectoryError>;

    /// Replaces the group's document (when `doc` is given) and applies membership set
    /// operations in order, in one transaction, if its version is `expect`; bumps the
    /// version once, and only when something changed.
    async fn modify_group(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        doc: Option<GroupDoc>,
        members: &[MemberOp],
        now: Timestamp,
    ) -> Result<GroupChange, DirectoryError>;

    /// Deletes a group, its memberships and its own membership of other groups.
    async fn delete_group(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
    ) -> Result<Removed<GroupRecord>, DirectoryError>;

    /// The members of each of these groups, ordered by member id.
    async fn group_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<HashMap<String, Vec<MemberRef>>, DirectoryError>;

    /// The groups each of these users directly belongs to.
    async fn user_groups(
        &self,
        conn: &ConnectionId,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<GroupRef>>, DirectoryError>;

    /// The groups a user belongs to, directly or through nested groups (transitively).
    /// `via` names the direct group of an indirect one.
    async fn user_access_groups(
        &self,
        conn: &ConnectionId,
        user_id: &str,
    ) -> Result<Vec<IdpGroup>, DirectoryError>;

    /// The users who belong to these groups, directly or through nested groups.
    async fn group_user_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<Vec<String>, DirectoryError>;
}

/// SCIM bearer tokens created with `pimgate token create` (only their hashes).
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    async fn insert_token(&self, token: &TokenRow) -> Result<(), DirectoryError>;
    /// Finds a token by the SHA-256 of its secret.
    async fn find_token(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>, DirectoryError>;
    async fn list_tokens(&self, conn: &ConnectionId) -> Result<Vec<TokenRow>, DirectoryError>;
    /// Revokes (deletes) a token by id; true when it existed.
    async fn revoke_token(&self, conn: &ConnectionId, id: &str) -> Result<bool, DirectoryError>;
}

/// The store itself: which database, and whether it answers.
#[async_trait]
pub trait StoreHealth: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), DirectoryError>;
}

/// One handle per role, all served by the same store. Services keep only the roles they use.
#[derive(Clone)]
pub struct Stores {
    pub users: std::sync::Arc<dyn UserStore>,
    pub groups: std::sync::Arc<dyn GroupStore>,
    pub credentials: std::sync::Arc<dyn CredentialStore>,
    pub health: std::sync::Arc<dyn StoreHealth>,
}

impl Stores {
    /// Every role from one store.
    pub fn of<S>(store: std::sync::Arc<S>) -> Self
    where
        S: UserStore + GroupStore + CredentialStore + StoreHealth,
    {
        Self {
            users: store.clone(),
            groups: store.clone(),
            credentials: store.clone(),
            health: store,
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("backend", &self.health.backend())
            .finish_non_exhaustive()
    }
}
