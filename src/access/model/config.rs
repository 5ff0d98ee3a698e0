//! The `[access]` section as written in the config file. Every field has a default, so an
//! empty (or absent) section is a valid model that grants nothing; unknown keys are errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `[access]` section. Every field has a default, so an empty (or absent) section is a
/// valid model that grants nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// The segment dimensions the PIM has (`["market", "channel"]`). Every user group
    /// must grant at least one segment of each.
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Custom permissions of this installation, keyed by a config label.
    #[serde(default)]
    pub permissions: BTreeMap<String, PermissionConfig>,
    /// PIM roles, keyed by the config key rules use.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// PIM user groups, keyed by the config key rules use.
    #[serde(default)]
    pub user_groups: BTreeMap<String, UserGroupConfig>,
    /// Mapping rules per connection (each must be a configured `[connections.<name>]`).
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionAccessConfig>,
}

/// A custom permission (`[access.permissions.<label>]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    /// The permission key roles and claims use (`custom.approve_texts`).
    #[serde(default)]
    pub key: String,
    /// The name the PIM shows.
    #[serde(default)]
    pub name: String,
    /// The PIM's permission group.
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub description: String,
}

/// A PIM role (`[access.roles.<key>]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The role's `Uid` in the PIM.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Permission keys (built-in or custom).
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// Values granted with edit access and values granted read-only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelLists {
    #[serde(default)]
    pub edit: Vec<String>,
    #[serde(default)]
    pub read: Vec<String>,
}

/// A PIM user group (`[access.user_groups.<key>]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserGroupConfig {
    /// The user group's `Uid` in the PIM.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Language codes.
    #[serde(default)]
    pub languages: LevelLists,
    /// Business unit ids.
    #[serde(default)]
    pub business_units: LevelLists,
    /// Segments per dimension.
    #[serde(default)]
    pub segments: BTreeMap<String, LevelLists>,
    /// A dashboard id or name.
    #[serde(default)]
    pub default_dashboard: Option<String>,
    /// Lower wins when several of a user's groups set a dashboard; ties go to the first
    /// user-group key in order. Default [`DEFAULT_DASHBOARD_PRIORITY`](super::DEFAULT_DASHBOARD_PRIORITY).
    #[serde(default)]
    pub dashboard_priority: Option<i64>,
}

/// How the groups of a login token combine with the groups pushed over SCIM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenGroups {
    /// Only SCIM groups count; token groups are ignored.
    #[default]
    Ignore,
    /// SCIM groups and token groups both count.
    Union,
    /// Only token groups count (without a login token, no group matches).
    TokenOnly,
}

/// Roles and user groups granted together.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
}

/// The rules of one connection (`[access.connections.<name>]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAccessConfig {
    #[serde(default)]
    pub token_groups: TokenGroups,
    /// What a user who matches no rule gets.
    #[serde(default)]
    pub on_no_match: GrantConfig,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One mapping rule (`[[access.connections.<name>.rules]]`): exactly one matcher, and the
/// roles and user groups a match grants.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique within the connection; shown in provenance.
    #[serde(default)]
    pub name: String,
    /// pimgate's SCIM id of a group.
    #[serde(default)]
    pub group_id: Option<String>,
    /// The IdP's id of a group (Entra: object id), as in SCIM `externalId` and in tokens.
    #[serde(default)]
    pub group_external_id: Option<String>,
    /// A group display name, compared ignoring case.
    #[serde(default)]
    pub group_name: Option<String>,
    /// A glob over group display names (`*`, `?`), ignoring case.
    #[serde(default)]
    pub group_pattern: Option<String>,
    /// A user attribute path, with `equals` or `pattern`.
    #[serde(default)]
    pub attribute: Option<String>,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
}
