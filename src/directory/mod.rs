//! The directory: the users, groups and memberships that identity providers push into pimgate,
//! scoped per connection, and the [`Store`] seam that persists them.
//!
//! Everything later (the group → role mapper, claims, SSO) reads this directory, so the rules
//! that protect it live here, below the protocol layer:
//! - every record belongs to exactly one [`ConnectionId`]; ids, `userName` uniqueness and
//!   `externalId` are scoped to it, and no store function takes an id without its connection;
//! - membership is stored as rows and changed by set operations ([`MemberOp`]) inside one
//!   transaction, so the cost of a change follows the change, not the size of the group;
//! - every committed change yields a [`DirectoryEvent`] (see [`events`]) after commit.
//!
//! The SQL backends live in [`sql`]; [`doc`] holds the canonical resource documents.

pub mod doc;
pub mod events;
pub mod sql;

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use scim_v2::filter::{Filter, ValFilter};

pub use doc::{GroupDoc, UserDoc};

use crate::scim::schema::ResolvedAttr;

/// The name of a connection: one IdP tenant pushing into pimgate.
///
/// It appears in URLs (`/scim/{connection}/v2`) and in every key of the store, so it is kept
/// to a URL- and log-safe alphabet: lowercase ASCII letters, digits, `-` and `_`, 1 to 63
/// characters, starting with a letter or digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// Parses a connection name, refusing anything outside the safe alphabet.
    pub fn parse(raw: &str) -> Result<Self, InvalidConnectionId> {
        let ok = !raw.is_empty()
            && raw.len() <= 63
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && raw
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidConnectionId(raw.to_owned()))
        }
    }

    /// The connection name as it appears in URLs and the store.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0)
    }
}

/// A connection name outside the allowed alphabet.
#[derive(Debug, thiserror::Error)]
#[error(
    "connection name {0:?} is not valid: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
)]
pub struct InvalidConnectionId(pub String);

/// The two resource types the directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    /// The SCIM resource type name (`meta.resourceType`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// The collection path segment (`/Users`, `/Groups`).
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
}

/// A point in time, as milliseconds since the Unix epoch (UTC).
///
/// Stored as text in the fixed-width RFC 3339 form `YYYY-MM-DDTHH:MM:SS.mmmZ`, so that text
/// order is time order and `meta.lastModified gt "..."` runs on an index in both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The stored and wire form: RFC 3339, UTC, millisecond precision.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Parses any RFC 3339 date-time into a timestamp.
    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|d| Self(d.timestamp_millis()))
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub doc: UserDoc,
    pub created: Timestamp,
    pub last_modified: Timestamp,
    /// Incremented on every committed change; the ETag is `W/"<version>"`.
    pub version: i64,
}

/// A group as stored. Its members are rows of their own and are loaded only on request.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub id: String,
    pub doc: GroupDoc,
    pub created: Timestamp,
    pub last_modified: Timestamp,
    pub version: i64,
    /// Kept exact by every membership change, so a group's size is known without counting.
    pub member_count: i64,
}

/// What a member of a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::User => "User",
            MemberKind::Group => "Group",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        if raw.eq_ignore_ascii_case("user") {
            Some(MemberKind::User)
        } else if raw.eq_ignore_ascii_case("group") {
            Some(MemberKind::Group)
        } else {
            None
        }
    }
}

/// One member of a group, as read back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberRef {
    pub id: String,
    pub kind: MemberKind,
}

/// One group a user belongs to, as read back into the user's `groups` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: String,
    pub display: String,
}

/// A set operation on a group's membership. Applied in order, inside the transaction that
/// also bumps the group's version, so concurrent changes to one group serialize on its row
/// and lose nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Adds these members (ids of users or groups of the same connection); already-present
    /// members are left alone. An id that names no resource is `invalidValue`.
    Add(Vec<String>),
    /// Removes exactly these members; absent ones are ignored.
    Remove(Vec<String>),
    /// Removes the members matching a filter over `value` and `type` (`members[...]`).
    RemoveWhere(ValFilter),
    /// Removes every member.
    RemoveAll,
}

/// Who a committed change touched, for the change event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    /// Users whose membership of the group changed (added or removed).
    pub users: Vec<String>,
    /// Groups whose membership of the group changed (nested groups).
    pub groups: Vec<String>,
}

/// A list request as the store sees it: a parsed filter, an order and a window.
#[derive(Debug, Clone)]
pub struct ListSpec {
    pub filter: Option<Filter>,
    /// The attribute to sort by, already resolved against the schema; `None` keeps the
    /// stable insertion order.
    pub sort_by: Option<ResolvedAttr>,
    pub descending: bool,
    /// 1-based index of the first result (RFC 7644 §3.4.2.4).
    pub start_index: i64,
    /// Page size; 0 asks for the total only.
    pub count: i64,
}

/// One page of results and the total number of matches.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub total: i64,
    pub items: Vec<T>,
}

/// A stored SCIM bearer token (only its hash is ever stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub connection: ConnectionId,
    pub hash: [u8; 32],
    pub label: String,
    pub created: Timestamp,
}

/// The edit applied to a user inside its update transaction: given the stored record, the
/// new document (or why the change is refused).
pub type UserEdit<'a> = &'a (dyn Fn(&UserRecord) -> Result<UserDoc, DirectoryError> + Send + Sync);

/// The edit applied to a group's own attributes inside its update transaction.
pub type GroupEdit<'a> =
    &'a (dyn Fn(&GroupRecord) -> Result<GroupDoc, DirectoryError> + Send + Sync);

/// Why a directory operation did not happen. Mapped to HTTP once, in `scim::error`.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule (RFC 7644 §3.12 `uniqueness`).
    #[error("{0}")]
    Uniqueness(String),
    /// `If-Match` named a version that is no longer current.
    #[error("the resource has changed: its current version is W/\"{current}\"")]
    PreconditionFailed { current: i64 },
    /// The request cannot be applied as sent; the kind picks the `scimType`.
    #[error("{detail}")]
    Invalid { kind: InvalidKind, detail: String },
    /// The store failed. The cause is logged where this is mapped, never sent to a client.
    #[error("store failure: {0}")]
    Store(#[from] sqlx::Error),
    /// A stored record could not be read back (a bug or a damaged row).
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl DirectoryError {
    pub fn invalid(kind: InvalidKind, detail: impl Into<String>) -> Self {
        DirectoryError::Invalid {
            kind,
            detail: detail.into(),
        }
    }
}

/// The RFC 7644 §3.12 `scimType` of a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    InvalidFilter,
    InvalidValue,
    InvalidPath,
    NoTarget,
    Mutability,
    InvalidSyntax,
    TooMany,
}

impl InvalidKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::InvalidFilter => "invalidFilter",
            InvalidKind::InvalidValue => "invalidValue",
            InvalidKind::InvalidPath => "invalidPath",
            InvalidKind::NoTarget => "noTarget",
            InvalidKind::Mutability => "mutability",
            InvalidKind::InvalidSyntax => "invalidSyntax",
            InvalidKind::TooMany => "tooMany",
        }
    }
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The persistence seam. Two real implementations (SQLite for the embedded default,
/// PostgreSQL for production) share one SQL implementation parameterised by dialect, and one
/// test story runs against both.
///
/// Every method is one transaction. Writes that depend on the current state (updates,
/// membership changes) lock the row they change first, so concurrent requests serialize.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), DirectoryError>;

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
    /// Replaces a user's document with what `edit` returns, under a row lock. `expect` is the
    /// `If-Match` version, if any.
    async fn update_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
        edit: UserEdit<'_>,
    ) -> Result<UserRecord, DirectoryError>;
    /// Deletes a user and its memberships; returns the groups it was removed from.
    async fn delete_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
    ) -> Result<Vec<String>, DirectoryError>;
    /// The groups each of these users directly belongs to.
    async fn user_groups(
        &self,
        conn: &ConnectionId,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<GroupRef>>, DirectoryError>;

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
    /// The members of each of these groups, ordered by member id.
    async fn group_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<HashMap<String, Vec<MemberRef>>, DirectoryError>;
    /// Changes a group's attributes (if `edit` is given) and membership (set operations, in
    /// order) in one transaction; bumps its version once.
    async fn modify_group(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
        edit: Option<GroupEdit<'_>>,
        members: &[MemberOp],
    ) -> Result<(GroupRecord, MembershipDelta), DirectoryError>;
    /// Deletes a group, its memberships and its own membership of other groups.
    async fn delete_group(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
    ) -> Result<MembershipDelta, DirectoryError>;

    /// The groups a user belongs to, directly or through nested groups (transitively), with
    /// the attributes mapping rules match on. `via` names the direct group of an indirect one.
    async fn user_access_groups(
        &self,
        conn: &ConnectionId,
        user_id: &str,
    ) -> Result<Vec<crate::access::IdpGroup>, DirectoryError>;
    /// The users who belong to these groups, directly or through nested groups.
    async fn group_user_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<Vec<String>, DirectoryError>;
    /// The ids of a connection's users, in stable order, `limit` at a time after `after`.
    async fn user_ids_after(
        &self,
        conn: &ConnectionId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, DirectoryError>;

    async fn insert_token(&self, token: &TokenRow) -> Result<(), DirectoryError>;
    /// Finds a token by the SHA-256 of its secret.
    async fn find_token(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>, DirectoryError>;
    async fn list_tokens(&self, conn: &ConnectionId) -> Result<Vec<TokenRow>, DirectoryError>;
    /// Revokes (deletes) a token by id; true when it existed.
    async fn revoke_token(&self, conn: &ConnectionId, id: &str) -> Result<bool, DirectoryError>;
}
