//! The directory's vocabulary: stored records, membership, list requests, and what a
//! committed write changed.

use scim_v2::filter::{Filter, ValFilter};

use super::doc::{GroupDoc, UserDoc};
use super::kind::MemberKind;
use super::schema::ResolvedAttr;
use crate::clock::Timestamp;
use crate::connections::ConnectionId;

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

/// One group a user belongs to, directly or through nested groups, with the attributes
/// mapping rules match on: what the access model reads about a user's groups.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdpGroup {
    /// pimgate's id of the group.
    pub id: String,
    /// The IdP's own id of the group (Entra: the group object id).
    pub external_id: Option<String>,
    pub display_name: String,
    /// Set when the membership is indirect: the id of the nested group the user is in.
    pub via: Option<String>,
}

/// A set operation on a group's membership. Applied in order, inside the transaction that
/// also bumps the group's version, so concurrent changes to one group serialize on its row
/// and lose nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Adds these members (ids of users or groups of the same connection); already-present
    /// members are left alone; ids that name nothing in the connection are skipped.
    Add(Vec<String>),
    /// Removes exactly these members; absent ones are ignored.
    Remove(Vec<String>),
    /// Removes the members matching a filter over `value` and `type` (`members[...]`).
    RemoveWhere(ValFilter),
    /// Removes every member.
    RemoveAll,
}

/// Who a committed membership change touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    /// Users whose membership of the group changed (added or removed).
    pub users: Vec<String>,
    /// Groups whose membership of the group changed (nested groups).
    pub groups: Vec<String>,
}

impl MembershipDelta {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// A committed change of one record: what it was and what it is. When nothing changed (an
/// IdP re-sending an unchanged resource), `before == after` and no version was spent.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<R> {
    pub before: R,
    pub after: R,
}

/// A committed change of a group: its record before and after, and whose membership changed.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupChange {
    pub record: Change<GroupRecord>,
    pub members: MembershipDelta,
}

/// A deleted record and the memberships its deletion removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed<R> {
    pub before: R,
    pub members: MembershipDelta,
}

/// A list request as the store sees it: a parsed filter, an order and a window.
#[derive(Debug, Clone)]
pub struct ListSpec {
    /// The RFC 7644 §3.4.2.2 filter expression: the directory's query language over the
    /// RFC 7643 attributes it stores.
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

impl ListSpec {
    /// Up to `count` records matching `filter`, in insertion order.
    pub fn filtered(filter: Filter, count: i64) -> Self {
        Self {
            filter: Some(filter),
            sort_by: None,
            descending: false,
            start_index: 1,
            count,
        }
    }
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

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A key pimgate signs its tokens with, as stored: the public half as a JWK, the private
/// half encrypted at rest (see `oauth::keys`).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    /// Keys are ordered by generation; the newest one whose `signs_from` has come signs.
    pub generation: i64,
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// The public JWK (JSON text).
    pub public_jwk: String,
    /// The encrypted private key (base64url of nonce and AES-256-GCM ciphertext).
    pub private_key: String,
    /// Published in the JWKS from this instant.
    pub created: Timestamp,
    /// Signs from this instant (until the next generation starts).
    pub signs_from: Timestamp,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("generation", &self.generation)
            .field("alg", &self.alg)
            .field("created", &self.created)
            .field("signs_from", &self.signs_from)
            .finish_non_exhaustive()
    }
}

/// One completed sign-in of a person to a client (an OAuth grant): what every token issued
/// for it names in `sid`, and what a refresh token (kept as its SHA-256) extends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub connection: ConnectionId,
    pub user_id: String,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The groups the login token carried, when the connection reads them.
    pub token_groups: Option<Vec<String>>,
    pub auth_time: Timestamp,
    pub created: Timestamp,
    /// Refresh tokens of the grant stop working at this instant.
    pub expires: Timestamp,
    /// Hex SHA-256 of the refresh token, when one was issued.
    pub refresh_hash: Option<String>,
    /// Set when the grant was revoked (a replayed authorization code, an operator).
    pub revoked: Option<Timestamp>,
    /// The login token carried an overage marker instead of its groups (Entra, over 200
    /// groups): the SCIM groups were used. `pimgate explain` says so.
    pub groups_overage: bool,
    /// The pimgate session the grant was made in (ending it revokes the grant).
    pub session_id: Option<String>,
    /// When the refresh token was last used (the idle lifetime counts from here).
    pub last_used: Option<Timestamp>,
}

/// A pimgate browser session: one sign-in at a connection's IdP, shared by every client the
/// person signs in to from that browser (one [`GrantRow`] each).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Public: it is the `sid` of back-channel logout tokens and of the audit log.
    pub id: String,
    /// Hex SHA-256 of the browser's session cookie.
    pub cookie_hash: String,
    pub connection: ConnectionId,
    pub user_id: String,
    /// The IdP's subject and session id, for its back-channel logout.
    pub upstream_sub: String,
    pub upstream_sid: Option<String>,
    /// The IdP's ID token, the `id_token_hint` of an upstream logout.
    pub upstream_id_token: Option<String>,
    pub token_groups: Option<Vec<String>>,
    pub groups_overage: bool,
    pub auth_time: Timestamp,
    pub created: Timestamp,
    /// Last time the session signed a client in (the idle lifetime counts from here).
    pub last_seen: Timestamp,
    /// The absolute end of the session.
    pub expires: Timestamp,
    pub ended: Option<Timestamp>,
    pub end_reason: Option<String>,
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("id", &self.id)
            .field("connection", &self.connection)
            .field("user_id", &self.user_id)
            .field("upstream_sid", &self.upstream_sid)
            .field("expires", &self.expires)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Which sessions to end.
#[derive(Debug, Clone)]
pub enum SessionSelector {
    /// One session, by id.
    Id(String),
    /// Every session and grant of a user (deprovisioning).
    User(ConnectionId, String),
    /// The sessions of an IdP session (`sid`) or of an IdP subject (back-channel logout).
    UpstreamSid(ConnectionId, String),
    UpstreamSub(ConnectionId, String),
}

/// A grant revoked because its session ended: whom to tell (back-channel logout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedGrant {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: Option<String>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Timestamp,
    /// `login`, `refresh`, `revoke`, `logout`, `code`, ...
    pub kind: String,
    /// `ok` or `refused`.
    pub outcome: String,
    pub connection: Option<String>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub session_id: Option<String>,
    pub reason: Option<String>,
}
