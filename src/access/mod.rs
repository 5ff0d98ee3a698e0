//! The access model: what Struct PIM understands (roles = sets of permissions, user groups =
//! languages, segments and business units with edit or read-only access, plus a default
//! dashboard), the rules that map what an identity provider says about a person onto it, and
//! the resolved claims the PIM reads, cached and invalidated by directory change events.
//!
//! - [`catalogue`]: the built-in permission catalogue (Struct's role permissions).
//! - [`model`]: the configured model (`[access]` in the config): permissions, roles, user
//!   groups and per-connection mapping rules, validated into an [`model::AccessModel`].
//! - [`claims`]: the claims contract served to the PIM, with provenance.
//! - [`resolve`]: pure resolution of [`UserFacts`] into claims.
//! - [`cache`]: resolved claims cached in Redis or in process, with per-user epochs.
//! - [`service`], [`routes`]: reading claims for the PIM and operators; [`admin`]: the
//!   `explain` and `diff-config` commands.

pub mod admin;
pub mod cache;
pub mod catalogue;
pub mod claims;
pub mod model;
pub mod resolve;
pub mod routes;
pub mod service;

use serde_json::{Map, Value};

use crate::connections::ConnectionId;
pub use crate::directory::IdpGroup;

pub use service::AccessService;

/// Everything resolution needs to know about one user: the input of [`resolve::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct UserFacts {
    pub connection: ConnectionId,
    /// pimgate's id of the user (the SCIM `id`).
    pub user_id: String,
    pub user_name: String,
    pub external_id: Option<String>,
    /// `false` for deactivated users: they resolve to no access.
    pub active: bool,
    /// The user's SCIM attributes (canonical names; the enterprise extension under its URN),
    /// for attribute rules.
    pub attributes: Map<String, Value>,
    /// The groups the user belongs to through SCIM, directly or through nested groups.
    pub groups: Vec<IdpGroup>,
    /// The group values of the login token, when resolving at login; `None` otherwise.
    pub token_groups: Option<Vec<String>>,
}
