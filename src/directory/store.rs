//! The persistence seam, split by role: users, groups and their membership, credentials, and
//! the store's own health. Two real implementations (SQLite for the embedded default,
//! PostgreSQL for production) share one SQL implementation ([`super::sql`]), and one test
//! story per role runs against both.
//!
//! Every method is one transaction. Writes take values, not callbacks: a write that depends
//! on what is stored names the version it read ([`Target::expect`]), and the store refuses
//! it with [`DirectoryError::VersionMismatch`](super::DirectoryError::VersionMismatch) when
//! another change came first. Writes return what
//! they changed ([`Change`], [`GroupChange`], [`Removed`]), so callers never have to read a
//! record twice to learn what it was.

use std::collections::HashMap;

use async_trait::async_trait;

use super::doc::{GroupDoc, UserDoc};
use super::error::Result;
use super::model::{AuditEvent, EndedGrant, GrantRow, SessionRow, SessionSelector, SigningKeyRow};
use super::model::{
    Backend, Change, GroupChange, GroupRecord, GroupRef, IdpGroup, ListSpec, MemberOp, MemberRef,
    MembershipDelta, Page, Removed, TokenRow, UserRecord,
};
use crate::clock::Timestamp;
use crate::connections::ConnectionId;

/// Where a write lands: one record of a connection, the version the caller expects it to
/// have (any when `None`), and the time the change is made at.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub conn: &'a ConnectionId,
    pub id: &'a str,
    pub expect: Option<i64>,
    pub now: Timestamp,
}

/// Users of a connection.
#[async_trait]
pub trait UserStore: std::fmt::Debug + Send + Sync + 'static {
    async fn create_user(
        &self,
        conn: &ConnectionId,
        doc: UserDoc,
        now: Timestamp,
    ) -> Result<UserRecord>;

    async fn get_user(&self, conn: &ConnectionId, id: &str) -> Result<Option<UserRecord>>;

    /// A user and its direct groups (ordered by display name, ignoring case, then id), in
    /// one read.
    async fn get_user_with_groups(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<Option<(UserRecord, Vec<GroupRef>)>>;

    async fn list_users(&self, conn: &ConnectionId, spec: &ListSpec) -> Result<Page<UserRecord>>;

    /// Replaces a user's document, under a row lock, if it has the expected version. An
    /// unchanged document keeps its version.
    async fn update_user(&self, at: Target<'_>, doc: UserDoc) -> Result<Change<UserRecord>>;

    /// Deletes a user and its memberships; `members.groups` are the groups it left.
    async fn delete_user(&self, at: Target<'_>) -> Result<Removed<UserRecord>>;

    /// The ids of a connection's users, in stable order, `limit` at a time after `after`.
    async fn user_ids_after(
        &self,
        conn: &ConnectionId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>>;
}

/// Groups of a connection and their membership.
#[async_trait]
pub trait GroupStore: std::fmt::Debug + Send + Sync + 'static {
    /// Creates a group with these members (ids that name nothing are skipped).
    async fn create_group(
        &self,
        conn: &ConnectionId,
        doc: GroupDoc,
        members: &[String],
        now: Timestamp,
    ) -> Result<(GroupRecord, MembershipDelta)>;

    async fn get_group(&self, conn: &ConnectionId, id: &str) -> Result<Option<GroupRecord>>;

    async fn list_groups(&self, conn: &ConnectionId, spec: &ListSpec) -> Result<Page<GroupRecord>>;

    /// Replaces the group's document (when `doc` is given) and applies membership set
    /// operations in order, in one transaction, if the group has the expected version; bumps
    /// the version once, and only when something changed.
    async fn modify_group(
        &self,
        at: Target<'_>,
        doc: Option<GroupDoc>,
        members: &[MemberOp],
    ) -> Result<GroupChange>;

    /// Deletes a group, its memberships and its own membership of other groups.
    async fn delete_group(&self, at: Target<'_>) -> Result<Removed<GroupRecord>>;

    /// The members of each of these groups, ordered by member id.
    async fn group_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<HashMap<String, Vec<MemberRef>>>;

    /// The groups each of these users directly belongs to.
    async fn user_groups(
        &self,
        conn: &ConnectionId,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<GroupRef>>>;

    /// The groups a user belongs to, directly or through nested groups (transitively).
    /// `via` names the direct group of an indirect one.
    async fn user_access_groups(&self, conn: &ConnectionId, user_id: &str)
    -> Result<Vec<IdpGroup>>;

    /// The users who belong to these groups, directly or through nested groups.
    async fn group_user_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<Vec<String>>;
}

/// SCIM bearer tokens created with `pimgate token create` (only their hashes).
#[async_trait]
pub trait CredentialStore: std::fmt::Debug + Send + Sync + 'static {
    async fn insert_token(&self, token: &TokenRow) -> Result<()>;
    /// Finds a token by the SHA-256 of its secret.
    async fn find_token(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>>;
    async fn list_tokens(&self, conn: &ConnectionId) -> Result<Vec<TokenRow>>;
    /// Revokes (deletes) a token by id; true when it existed.
    async fn revoke_token(&self, conn: &ConnectionId, id: &str) -> Result<bool>;
}

/// The keys pimgate signs tokens with, shared by every replica.
#[async_trait]
pub trait KeyStore: std::fmt::Debug + Send + Sync + 'static {
    /// Every stored key, oldest generation first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>>;
    /// Adds a key; `false` when its generation is taken (another replica rotated first).
    async fn insert_signing_key(&self, key: &SigningKeyRow) -> Result<bool>;
    /// Moves when a not-yet-signing key starts signing (rotation on demand).
    async fn set_signs_from(&self, kid: &str, signs_from: Timestamp) -> Result<bool>;
    /// Deletes the keys of these ids (keys whose last token has expired).
    async fn delete_signing_keys(&self, kids: &[String]) -> Result<u64>;
}

/// OAuth grants: one per completed sign-in.
#[async_trait]
pub trait GrantStore: std::fmt::Debug + Send + Sync + 'static {
    async fn insert_grant(&self, grant: &GrantRow) -> Result<()>;
    async fn grant(&self, id: &str) -> Result<Option<GrantRow>>;
    /// The grant a refresh token (by hex SHA-256) belongs to.
    async fn grant_by_refresh(&self, refresh_hash: &str) -> Result<Option<GrantRow>>;
    /// Marks a grant revoked; `false` when there is no such grant or it was revoked before.
    async fn revoke_grant(&self, id: &str, at: Timestamp) -> Result<bool>;
    /// Rotates a grant's refresh token from `old` to `new` (hex SHA-256s), keeping `old` as
    /// used, and records the use at `at`. `false` when `old` is not the grant's current token
    /// any more (a concurrent use).
    async fn rotate_refresh(
        &self,
        grant_id: &str,
        old: &str,
        new: &str,
        at: Timestamp,
    ) -> Result<bool>;
    /// The grant a rotated-away refresh token belonged to (a reuse), if any.
    async fn grant_of_used_refresh(&self, refresh_hash: &str) -> Result<Option<String>>;
    /// The user's most recent grant (their last sign-in), if any.
    async fn latest_grant(&self, conn: &ConnectionId, user_id: &str) -> Result<Option<GrantRow>>;
    /// Deletes grants that expired before `before`; how many.
    async fn purge_grants(&self, before: Timestamp) -> Result<u64>;
}

/// pimgate browser sessions.
#[async_trait]
pub trait SessionStore: std::fmt::Debug + Send + Sync + 'static {
    async fn insert_session(&self, session: &SessionRow) -> Result<()>;
    async fn session(&self, id: &str) -> Result<Option<SessionRow>>;
    /// The session a browser cookie (by hex SHA-256) names.
    async fn session_by_cookie(&self, cookie_hash: &str) -> Result<Option<SessionRow>>;
    /// Records that the session signed a client in.
    async fn touch_session(&self, id: &str, at: Timestamp) -> Result<()>;
    /// Ends the selected live sessions and revokes their grants (for
    /// [`SessionSelector::User`], every grant of the user), in one transaction. The grants
    /// revoked now (for back-channel logout) and how many sessions were live until now.
    async fn end_sessions(
        &self,
        which: &SessionSelector,
        at: Timestamp,
        reason: &str,
    ) -> Result<(u64, Vec<EndedGrant>)>;
    /// Deletes sessions that expired or ended before `before`; how many.
    async fn purge_sessions(&self, before: Timestamp) -> Result<u64>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: std::fmt::Debug + Send + Sync + 'static {
    async fn record_audit(&self, event: &AuditEvent) -> Result<()>;
    /// The newest events of a user (by id or user name), newest first.
    async fn audit_of_user(&self, user: &str, limit: u32) -> Result<Vec<AuditEvent>>;
    /// Deletes events older than `before`; how many.
    async fn purge_audit(&self, before: Timestamp) -> Result<u64>;
}

/// The store itself: which database, and whether it answers.
#[async_trait]
pub trait StoreHealth: std::fmt::Debug + Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<()>;
}

/// One handle per role, all served by the same store. Services keep only the roles they use.
#[derive(Debug, Clone)]
pub struct Stores {
    pub users: std::sync::Arc<dyn UserStore>,
    pub groups: std::sync::Arc<dyn GroupStore>,
    pub credentials: std::sync::Arc<dyn CredentialStore>,
    pub keys: std::sync::Arc<dyn KeyStore>,
    pub grants: std::sync::Arc<dyn GrantStore>,
    pub sessions: std::sync::Arc<dyn SessionStore>,
    pub audit: std::sync::Arc<dyn AuditStore>,
    pub health: std::sync::Arc<dyn StoreHealth>,
}

impl Stores {
    /// Every role from one store.
    pub fn of<S>(store: std::sync::Arc<S>) -> Self
    where
        S: UserStore
            + GroupStore
            + CredentialStore
            + KeyStore
            + GrantStore
            + SessionStore
            + AuditStore
            + StoreHealth,
    {
        Self {
            users: store.clone(),
            groups: store.clone(),
            credentials: store.clone(),
            keys: store.clone(),
            grants: store.clone(),
            sessions: store.clone(),
            audit: store.clone(),
            health: store,
        }
    }
}
