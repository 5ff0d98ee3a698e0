//! The directory: the users, groups and memberships that identity providers push into pimgate,
//! scoped per connection. It speaks the domain only: no HTTP, no protocol error codes; the
//! SCIM layer above it and the access model beside it both read it.
//!
//! The rules that protect it live here, below every protocol:
//! - every record belongs to exactly one [`ConnectionId`](crate::connections::ConnectionId);
//!   ids, `userName` uniqueness and `externalId` are scoped to it, and no store function
//!   takes an id without its connection;
//! - membership is stored as rows and changed by set operations ([`MemberOp`]) inside one
//!   transaction, so the cost of a change follows the change, not the size of the group;
//! - every committed change yields a [`DirectoryEvent`](events::DirectoryEvent), after
//!   commit ([`Directory`]).
//!
//! - [`schema`]: the attribute catalogue (RFC 7643 User, enterprise User, Group).
//! - [`kind`]: users and groups as values and as types; [`doc`]: canonical resource
//!   documents; [`model`]: records and values.
//! - [`store`]: the persistence seam, split by role; [`sql`]: SQLite and PostgreSQL. The same
//!   store also keeps what single sign-on must share between replicas: the signing keys and
//!   the OAuth grants ([`KeyStore`], [`GrantStore`]).
//! - [`service`]: [`Directory`], every change with its event; [`events`]: the bus.
//! - [`error`]: [`DirectoryError`], typed domain failures.

pub mod doc;
pub mod error;
pub mod events;
pub mod kind;
pub mod limits;
pub mod model;
pub mod schema;
pub mod service;
pub mod sql;
pub mod store;

pub use doc::{ENTERPRISE_URN, GroupDoc, UserDoc};
pub use error::{DirectoryError, FilterError, StoreFault};
pub use kind::{GroupKind, Kind, MemberKind, ResourceKind, UserKind};
pub use model::{AuditEvent, EndedGrant, GrantRow, SessionRow, SessionSelector, SigningKeyRow};
pub use model::{
    Backend, Change, GroupChange, GroupRecord, GroupRef, IdpGroup, ListSpec, MemberOp, MemberRef,
    MembershipDelta, Page, Removed, TokenRow, UserRecord,
};
pub use service::{Directory, EditError, Records};
pub use store::{
    AuditStore, CredentialStore, GrantStore, GroupStore, KeyStore, SessionStore, StoreHealth,
    Stores, Target, UserStore,
};
