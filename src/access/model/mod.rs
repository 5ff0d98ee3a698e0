//! The configured access model: the `[access]` section as written ([`AccessConfig`]) and as
//! the server runs it ([`AccessModel`]): permissions (built-in plus custom), roles, user
//! groups, and per connection the rules that map what the IdP says onto roles and user groups.
//!
//! Validation happens once, at load (and on reload): every reference is checked, with the
//! key path at fault and the closest existing name ("did you mean ...?"), and Struct's own
//! rules for user groups are enforced here so the PIM never sees a group it would refuse.
//! The validated model carries a content version (`sha256:` of a canonical form) that keys
//! cached claims: any change of meaning changes it, reformatting or reordering the file
//! does not.
//!
//! - this file: the validated model ([`AccessModel`]) and what it is made of;
//! - [`config`]: the `[access]` section as written; [`validate`]: from one to the other;
//! - [`matchers`]: globs and attribute paths that rules match with.

mod config;
mod matchers;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use self::config::{
    AccessConfig, ConnectionAccessConfig, GrantConfig, LevelLists, PermissionConfig, RoleConfig,
    RuleConfig, TokenGroups, UserGroupConfig,
};
pub use self::matchers::{AttrPath, Glob, eq_ignore_case};
pub use self::validate::validate;
use super::catalogue::{self, Permission, PermissionKey};
use super::claims::Level;
use crate::connections::ConnectionId;

/// Priority of a user group's default dashboard when the config gives none.
pub const DEFAULT_DASHBOARD_PRIORITY: i64 = 100;

/// A mistake in the `[access]` section, naming the key at fault
/// (`access.roles.editor.permissions`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ModelError {
    pub key: String,
    pub message: String,
}

/// A validated role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub key: String,
    /// The PIM's `Uid`.
    pub id: String,
    pub name: String,
    pub permissions: BTreeSet<PermissionKey>,
}

/// A validated user group: what it grants, each value at one level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserGroup {
    pub key: String,
    /// The PIM's `Uid`.
    pub id: String,
    pub name: String,
    pub languages: BTreeMap<String, Level>,
    /// Dimension → segment → level.
    pub segments: BTreeMap<String, BTreeMap<String, Level>>,
    pub business_units: BTreeMap<String, Level>,
    pub default_dashboard: Option<String>,
    pub dashboard_priority: i64,
}

/// Role and user-group keys granted together (all known to the model).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Grants {
    pub roles: BTreeSet<String>,
    pub user_groups: BTreeSet<String>,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub name: String,
    pub matcher: Matcher,
    pub grants: Grants,
}

/// What a rule matches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    /// pimgate's SCIM id of the group (exact).
    GroupId(String),
    /// The IdP's group id (exact): SCIM `externalId`, or a login-token group value.
    GroupExternalId(String),
    /// A group display name (or token group value), ignoring case.
    GroupName(String),
    /// A glob over group display names (or token group values), ignoring case.
    GroupPattern(Glob),
    /// A value of a user attribute.
    Attribute { path: AttrPath, test: ValueTest },
}

/// How an attribute value is tested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTest {
    /// Equal, ignoring case.
    Equals(String),
    /// A glob, ignoring case.
    Pattern(Glob),
}

impl ValueTest {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueTest::Equals(e) => eq_ignore_case(e, value),
            ValueTest::Pattern(g) => g.matches(value),
        }
    }
}

/// The validated rules of one connection. A connection without a `[access.connections]`
/// table has the default: token groups ignored, no rules, nothing on no match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionRules {
    pub token_groups: TokenGroups,
    pub on_no_match: Grants,
    /// Sorted by name (rules are a union: their order carries no meaning).
    pub rules: Vec<Rule>,
}

/// The access model the server runs with. Build it with [`validate`]; share it behind an
/// `Arc` (a reload swaps the whole model).
#[derive(Debug, Clone)]
pub struct AccessModel {
    dimensions: BTreeSet<String>,
    permissions: BTreeMap<PermissionKey, Permission>,
    custom_permissions: BTreeSet<PermissionKey>,
    roles: BTreeMap<String, Role>,
    user_groups: BTreeMap<String, UserGroup>,
    connections: BTreeMap<ConnectionId, ConnectionRules>,
    version: String,
}

impl Default for AccessModel {
    /// The empty model: built-in permissions only, no roles, user groups or rules.
    fn default() -> Self {
        Self::assemble(
            BTreeSet::new(),
            catalogue::builtin(),
            BTreeMap::new(),
            BTreeMap::new(),
            BTreeMap::new(),
        )
    }
}

/// The part of the model that gives claims their meaning, serialized to compute the version.
#[derive(Serialize)]
struct Canonical<'a> {
    format: &'static str,
    dimensions: &'a BTreeSet<String>,
    custom_permissions: Vec<&'a Permission>,
    roles: &'a BTreeMap<String, Role>,
    user_groups: &'a BTreeMap<String, UserGroup>,
    connections: &'a BTreeMap<ConnectionId, ConnectionRules>,
}

impl AccessModel {
    fn assemble(
        dimensions: BTreeSet<String>,
        permissions: Vec<Permission>,
        roles: BTreeMap<String, Role>,
        user_groups: BTreeMap<String, UserGroup>,
        connections: BTreeMap<ConnectionId, ConnectionRules>,
    ) -> Self {
        let builtin: BTreeSet<PermissionKey> =
            catalogue::builtin().into_iter().map(|p| p.key).collect();
        let custom_permissions = permissions
            .iter()
            .map(|p| p.key.clone())
            .filter(|k| !builtin.contains(k))
            .collect();
        let mut model = Self {
            dimensions,
            permissions: permissions
                .into_iter()
                .map(|p| (p.key.clone(), p))
                .collect(),
            custom_permissions,
            roles,
            user_groups,
            connections,
            version: String::new(),
        };
        model.version = model.compute_version();
        model
    }

    fn compute_version(&self) -> String {
        let canonical = Canonical {
            format: "pimgate-access/1",
            dimensions: &self.dimensions,
            custom_permissions: self
                .custom_permissions
                .iter()
                .filter_map(|k| self.permissions.get(k))
                .collect(),
            roles: &self.roles,
            user_groups: &self.user_groups,
            connections: &self.connections,
        };
        // Plain data with string map keys: serializing cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    }

    /// `sha256:<hex>` of the model's canonical form: equal content, equal version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The declared segment dimensions.
    pub fn dimensions(&self) -> &BTreeSet<String> {
        &self.dimensions
    }

    /// A permission (built-in or custom) by key.
    pub fn permission(&self, key: &str) -> Option<&Permission> {
        self.permissions.get(key)
    }

    /// Every permission, by key.
    pub fn permissions(&self) -> impl Iterator<Item = &Permission> {
        self.permissions.values()
    }

    pub fn role(&self, key: &str) -> Option<&Role> {
        self.roles.get(key)
    }

    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    pub fn user_group(&self, key: &str) -> Option<&UserGroup> {
        self.user_groups.get(key)
    }

    pub fn user_groups(&self) -> &BTreeMap<String, UserGroup> {
        &self.user_groups
    }

    /// The rules of a connection; `None` when `[access.connections.<name>]` is absent.
    pub fn connection(&self, conn: &ConnectionId) -> Option<&ConnectionRules> {
        self.connections.get(conn)
    }
}
