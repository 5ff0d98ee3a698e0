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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::catalogue::{self, Permission, PermissionKey};
use super::claims::Level;
use crate::config::ConfigError;
use crate::directory::ConnectionId;

/// Priority of a user group's default dashboard when the config gives none.
pub const DEFAULT_DASHBOARD_PRIORITY: i64 = 100;

// ---------------------------------------------------------------------------------------
// The config as written
// ---------------------------------------------------------------------------------------

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
    /// user-group key in order. Default [`DEFAULT_DASHBOARD_PRIORITY`].
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

// ---------------------------------------------------------------------------------------
// The validated model
// ---------------------------------------------------------------------------------------

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

impl Matcher {
    /// Whether the matcher depends on group display names.
    pub fn uses_group_names(&self) -> bool {
        matches!(self, Matcher::GroupName(_) | Matcher::GroupPattern(_))
    }
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

    /// True when a rule of this connection matches on group names or patterns: renaming a
    /// group can then change its members' claims.
    pub fn rules_use_group_names(&self, conn: &ConnectionId) -> bool {
        self.connections
            .get(conn)
            .is_some_and(|c| c.rules.iter().any(|r| r.matcher.uses_group_names()))
    }
}

// ---------------------------------------------------------------------------------------
// Globs and attribute paths
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    Literal(char),
    One,
    Many,
}

/// A case-insensitive glob: `*` matches any run of characters, `?` one character, and `\`
/// escapes the next character. `[`, `]`, `{` and `}` must be escaped (they are not
/// character classes or alternatives here, and silently treating them literally would
/// surprise someone used to shell globs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<GlobToken>,
}

impl Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl Glob {
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("the pattern is empty".into());
        }
        let mut tokens = Vec::new();
        let mut chars = source.chars().enumerate();
        while let Some((i, c)) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&GlobToken::Many) {
                        tokens.push(GlobToken::Many);
                    }
                }
                '?' => tokens.push(GlobToken::One),
                '\\' => match chars.next() {
                    Some((_, escaped)) => {
                        tokens.extend(escaped.to_lowercase().map(GlobToken::Literal));
                    }
                    None => {
                        return Err(format!(
                            "bad pattern {source:?}: it ends with an unfinished escape '\\'"
                        ));
                    }
                },
                '[' | ']' | '{' | '}' => {
                    return Err(format!(
                        "bad pattern {source:?}: '{c}' at position {i} is not supported (only * and ? are wildcards); write \\{c} to match it literally"
                    ));
                }
                other => tokens.extend(other.to_lowercase().map(GlobToken::Literal)),
            }
        }
        Ok(Self {
            source: source.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches, ignoring case.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
        let pat = &self.tokens;
        let (mut p, mut t) = (0usize, 0usize);
        // Where the last `*` was, and the text position it currently stands for.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pat.get(p) {
                Some(GlobToken::One) => {
                    p += 1;
                    t += 1;
                }
                Some(GlobToken::Literal(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                Some(GlobToken::Many) => {
                    star = Some((p, t));
                    p += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pat[p..].iter().all(|tok| *tok == GlobToken::Many)
    }
}

/// A path to a user attribute: `title`, `name.givenName`, `emails.value`, or an extension
/// attribute by its URN (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`).
/// Names compare ignoring case (RFC 7643 §2.1); multi-valued attributes yield every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    source: String,
    schema: Option<String>,
    parts: Vec<String>,
}

impl Serialize for AttrPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl AttrPath {
    pub fn parse(source: &str) -> Result<Self, String> {
        let hint = "use a name (\"title\"), a dotted sub-attribute (\"name.givenName\") or an extension attribute after its schema URN (\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department\")";
        let is_urn = source
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        let (schema, rest) = if is_urn {
            match source.rsplit_once(':') {
                Some((schema, rest)) if !rest.is_empty() && schema.len() > 4 => {
                    (Some(schema.to_owned()), rest)
                }
                _ => return Err(format!("{source:?} names no attribute: {hint}")),
            }
        } else {
            (None, source)
        };
        let name_ok = |p: &str| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if !parts.iter().all(|p| name_ok(p)) {
            return Err(format!("{source:?} is not an attribute path: {hint}"));
        }
        Ok(Self {
            source: source.to_owned(),
            schema,
            parts,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every value at this path in a user's attributes, as text: strings as they are,
    /// booleans and numbers in JSON form; multi-valued attributes yield each element, and a
    /// complex value yields its `value` sub-attribute.
    pub fn values(&self, attrs: &Map<String, Value>) -> Vec<String> {
        let root = match &self.schema {
            Some(urn) => match get_ignore_case(attrs, urn) {
                Some(Value::Object(ext)) => ext,
                _ => return Vec::new(),
            },
            None => attrs,
        };
        let mut frontier: Vec<&Value> = Vec::new();
        let mut parts = self.parts.iter();
        if let Some(first) = parts.next()
            && let Some(v) = get_ignore_case(root, first)
        {
            frontier.push(v);
        }
        for part in parts {
            let mut next = Vec::new();
            for v in frontier {
                for obj in objects(v) {
                    if let Some(found) = get_ignore_case(obj, part) {
                        next.push(found);
                    }
                }
            }
            frontier = next;
        }
        let mut out = Vec::new();
        for v in frontier {
            scalars(v, &mut out);
        }
        out
    }
}

fn get_ignore_case<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The objects in a value: itself, or the object elements of an array.
fn objects(v: &Value) -> Vec<&Map<String, Value>> {
    match v {
        Value::Object(o) => vec![o],
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    }
}

fn scalars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => {
            for item in items {
                if !item.is_array() {
                    scalars(item, out);
                }
            }
        }
        Value::Object(o) => {
            if let Some(inner) = get_ignore_case(o, "value")
                && !inner.is_object()
                && !inner.is_array()
            {
                scalars(inner, out);
            }
        }
        Value::Null => {}
    }
}

/// Unicode case-insensitive equality (group names, attribute values).
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The candidate closest to `input`, when it is close enough to be a likely typo.
fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = input.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&folded, &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (distance, candidate) = best?;
    let longest = input.chars().count().max(candidate.chars().count());
    (distance <= (longest / 3).max(1)).then_some(candidate)
}

/// `unknown <what> "x" (did you mean "y"?)`, or with the known names when none is close
/// and there are few.
fn unknown<'a>(what: &str, input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let all: Vec<&str> = candidates.into_iter().collect();
    let mut msg = format!("unknown {what} {input:?}");
    if let Some(c) = closest(input, all.iter().copied()) {
        let _ = write!(msg, " (did you mean {c:?}?)");
    } else if all.is_empty() {
        let _ = write!(msg, " (none is defined)");
    } else if all.len() <= 12 {
        let _ = write!(msg, " (known: {})", all.join(", "));
    }
    msg
}

/// Config keys of roles and user groups appear in claims: keep them plain.
fn check_config_key(key: &str, path: &str) -> Result<(), ConfigError> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("{key:?} is not a valid key: use 1-64 ASCII letters, digits, '_' or '-'"),
        ))
    }
}

fn required(value: &str, path: &str, what: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        Err(invalid(path, format!("{what} is required")))
    } else {
        Ok(v.to_owned())
    }
}

/// Turns edit/read lists into value → level, refusing blanks and a value in both lists.
fn levels(
    lists: &LevelLists,
    path: &str,
    what: &str,
) -> Result<BTreeMap<String, Level>, ConfigError> {
    let mut out = BTreeMap::new();
    for (list, level) in [(&lists.edit, Level::Edit), (&lists.read, Level::Read)] {
        for raw in list {
            let v = raw.trim();
            if v.is_empty() {
                return Err(invalid(path, format!("an empty {what}")));
            }
            if let Some(previous) = out.insert(v.to_owned(), level)
                && previous != level
            {
                return Err(invalid(
                    path,
                    format!("{what} {v:?} is listed under both edit and read; keep it in one"),
                ));
            }
        }
    }
    Ok(out)
}

/// Checks the `[access]` section against the configured connections and builds the model.
/// Errors name the key at fault (`access.roles.editor.permissions`).
pub fn validate(
    config: &AccessConfig,
    connections: &[ConnectionId],
) -> Result<AccessModel, ConfigError> {
    let dimensions = validate_dimensions(&config.dimensions)?;
    let permissions = validate_permissions(&config.permissions)?;
    let known: BTreeSet<&str> = permissions.iter().map(|p| p.key.as_str()).collect();
    let roles = validate_roles(&config.roles, &known)?;
    let user_groups = validate_user_groups(&config.user_groups, &dimensions)?;
    let mut conns = BTreeMap::new();
    for (name, c) in &config.connections {
        let path = format!("access.connections.{name}");
        let Some(id) = connections.iter().find(|id| id.as_str() == name) else {
            return Err(invalid(
                &path,
                format!(
                    "{}; add [connections.{name}] or remove this table",
                    unknown(
                        "connection",
                        name,
                        connections.iter().map(ConnectionId::as_str)
                    )
                ),
            ));
        };
        conns.insert(
            id.clone(),
            validate_connection(c, &path, &roles, &user_groups)?,
        );
    }
    Ok(AccessModel::assemble(
        dimensions,
        permissions,
        roles,
        user_groups,
        conns,
    ))
}

fn validate_dimensions(raw: &[String]) -> Result<BTreeSet<String>, ConfigError> {
    let mut out = BTreeSet::new();
    for d in raw {
        let d = d.trim();
        if d.is_empty() {
            return Err(invalid("access.dimensions", "an empty dimension name"));
        }
        if !out.insert(d.to_owned()) {
            return Err(invalid(
                "access.dimensions",
                format!("{d:?} is listed twice"),
            ));
        }
    }
    Ok(out)
}

fn validate_permissions(
    custom: &BTreeMap<String, PermissionConfig>,
) -> Result<Vec<Permission>, ConfigError> {
    let mut all = catalogue::builtin();
    let builtin: BTreeSet<PermissionKey> = all.iter().map(|p| p.key.clone()).collect();
    let mut seen: BTreeMap<PermissionKey, &str> = BTreeMap::new();
    for (label, p) in custom {
        let path = format!("access.permissions.{label}");
        let key = PermissionKey::parse(p.key.trim())
            .map_err(|e| invalid(format!("{path}.key"), e.to_string()))?;
        if builtin.contains(&key) {
            return Err(invalid(
                format!("{path}.key"),
                format!(
                    "{key:?} is a built-in permission; custom permissions need a key of their own (e.g. \"custom.{}\")",
                    key.as_str().rsplit('.').next().unwrap_or_default()
                ),
            ));
        }
        if let Some(other) = seen.insert(key.clone(), label) {
            return Err(invalid(
                format!("{path}.key"),
                format!(
                    "{:?} is already defined by access.permissions.{other}",
                    key.as_str()
                ),
            ));
        }
        all.push(Permission {
            key,
            name: required(&p.name, &format!("{path}.name"), "a name")?,
            group: required(&p.group, &format!("{path}.group"), "a group")?,
            description: p.description.trim().to_owned(),
        });
    }
    Ok(all)
}

fn validate_roles(
    roles: &BTreeMap<String, RoleConfig>,
    known: &BTreeSet<&str>,
) -> Result<BTreeMap<String, Role>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut ids: BTreeMap<String, &str> = BTreeMap::new();
    for (key, r) in roles {
        let path = format!("access.roles.{key}");
        check_config_key(key, &path)?;
        let id = required(
            &r.id,
            &format!("{path}.id"),
            "the role's id (its Uid in the PIM)",
        )?;
        if let Some(other) = ids.insert(id.clone(), key) {
            return Err(invalid(
                format!("{path}.id"),
                format!("id {id:?} is already used by role {other:?}"),
            ));
        }
        let name = required(&r.name, &format!("{path}.name"), "a name")?;
        let mut permissions = BTreeSet::new();
        for p in &r.permissions {
            let p = p.trim();
            if !known.contains(p) {
                return Err(invalid(
                    format!("{path}.permissions"),
                    unknown("permission", p, known.iter().copied()),
                ));
            }
            // Known keys are parsed keys.
            if let Ok(k) = PermissionKey::parse(p) {
                permissions.insert(k);
            }
        }
        out.insert(
            key.clone(),
            Role {
                key: key.clone(),
                id,
                name,
                permissions,
            },
        );
    }
    Ok(out)
}

fn validate_user_groups(
    groups: &BTreeMap<String, UserGroupConfig>,
    dimensions: &BTreeSet<String>,
) -> Result<BTreeMap<String, UserGroup>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut ids: BTreeMap<String, &str> = BTreeMap::new();
    for (key, g) in groups {
        let path = format!("access.user_groups.{key}");
        check_config_key(key, &path)?;
        let id = required(
            &g.id,
            &format!("{path}.id"),
            "the user group's id (its Uid in the PIM)",
        )?;
        if let Some(other) = ids.insert(id.clone(), key) {
            return Err(invalid(
                format!("{path}.id"),
                format!("id {id:?} is already used by user group {other:?}"),
            ));
        }
        let name = required(
            &g.name,
            &format!("{path}.name"),
            "a name (Struct requires one)",
        )?;
        let languages = levels(&g.languages, &format!("{path}.languages"), "language")?;
        if languages.is_empty() {
            return Err(invalid(
                format!("{path}.languages"),
                "a user group needs at least one language (edit or read): Struct requires it",
            ));
        }
        let business_units = levels(
            &g.business_units,
            &format!("{path}.business_units"),
            "business unit",
        )?;
        let mut segments = BTreeMap::new();
        for (dim, lists) in &g.segments {
            let seg_path = format!("{path}.segments.{dim}");
            if !dimensions.contains(dim) {
                return Err(invalid(
                    &seg_path,
                    format!(
                        "{}; declare it in access.dimensions",
                        unknown("dimension", dim, dimensions.iter().map(String::as_str))
                    ),
                ));
            }
            let levels = levels(lists, &seg_path, "segment")?;
            if !levels.is_empty() {
                segments.insert(dim.clone(), levels);
            }
        }
        if let Some(missing) = dimensions.iter().find(|d| !segments.contains_key(*d)) {
            return Err(invalid(
                format!("{path}.segments"),
                format!(
                    "no segment for dimension {missing:?}: Struct requires at least one segment (edit or read) per dimension; add [{path}.segments.{missing}]"
                ),
            ));
        }
        let default_dashboard = match g.default_dashboard.as_deref().map(str::trim) {
            Some("") => {
                return Err(invalid(
                    format!("{path}.default_dashboard"),
                    "must not be empty (omit it for none)",
                ));
            }
            other => other.map(str::to_owned),
        };
        out.insert(
            key.clone(),
            UserGroup {
                key: key.clone(),
                id,
                name,
                languages,
                segments,
                business_units,
                default_dashboard,
                dashboard_priority: g.dashboard_priority.unwrap_or(DEFAULT_DASHBOARD_PRIORITY),
            },
        );
    }
    Ok(out)
}

fn validate_grants(
    g: &GrantConfig,
    path: &str,
    context: &str,
    roles: &BTreeMap<String, Role>,
    user_groups: &BTreeMap<String, UserGroup>,
) -> Result<Grants, ConfigError> {
    let mut out = Grants::default();
    for r in &g.roles {
        if !roles.contains_key(r) {
            return Err(invalid(
                format!("{path}.roles"),
                format!(
                    "{context}{}",
                    unknown("role", r, roles.keys().map(String::as_str))
                ),
            ));
        }
        out.roles.insert(r.clone());
    }
    for u in &g.user_groups {
        if !user_groups.contains_key(u) {
            return Err(invalid(
                format!("{path}.user_groups"),
                format!(
                    "{context}{}",
                    unknown("user group", u, user_groups.keys().map(String::as_str))
                ),
            ));
        }
        out.user_groups.insert(u.clone());
    }
    Ok(out)
}

fn validate_connection(
    c: &ConnectionAccessConfig,
    path: &str,
    roles: &BTreeMap<String, Role>,
    user_groups: &BTreeMap<String, UserGroup>,
) -> Result<ConnectionRules, ConfigError> {
    let on_no_match = validate_grants(
        &c.on_no_match,
        &format!("{path}.on_no_match"),
        "",
        roles,
        user_groups,
    )?;
    let mut rules = Vec::with_capacity(c.rules.len());
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in c.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{i}]");
        let name = required(
            &r.name,
            &format!("{rpath}.name"),
            "a rule name (it appears in provenance)",
        )?;
        if let Some(j) = names.insert(name.clone(), i) {
            return Err(invalid(
                format!("{rpath}.name"),
                format!("rule name {name:?} is already used by rules[{j}]"),
            ));
        }
        let context = format!("rule {name:?}: ");
        let matcher = rule_matcher(r, &rpath, &context)?;
        let grants = validate_grants(
            &GrantConfig {
                roles: r.roles.clone(),
                user_groups: r.user_groups.clone(),
            },
            &rpath,
            &context,
            roles,
            user_groups,
        )?;
        if grants.roles.is_empty() && grants.user_groups.is_empty() {
            return Err(invalid(
                &rpath,
                format!("{context}grants nothing: give it roles or user_groups"),
            ));
        }
        rules.push(Rule {
            name,
            matcher,
            grants,
        });
    }
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ConnectionRules {
        token_groups: c.token_groups,
        on_no_match,
        rules,
    })
}

fn rule_matcher(r: &RuleConfig, rpath: &str, context: &str) -> Result<Matcher, ConfigError> {
    let named: Vec<&str> = [
        ("group_id", r.group_id.is_some()),
        ("group_external_id", r.group_external_id.is_some()),
        ("group_name", r.group_name.is_some()),
        ("group_pattern", r.group_pattern.is_some()),
        ("attribute", r.attribute.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    let choices = "group_id, group_external_id, group_name, group_pattern or attribute (with equals or pattern)";
    match named.len() {
        1 => {}
        0 => {
            return Err(invalid(
                rpath,
                format!("{context}names no matcher; give exactly one of {choices}"),
            ));
        }
        n => {
            return Err(invalid(
                rpath,
                format!(
                    "{context}names {n} matchers ({}); give exactly one of {choices}",
                    named.join(", ")
                ),
            ));
        }
    }
    if r.attribute.is_none() && (r.equals.is_some() || r.pattern.is_some()) {
        let which = if r.equals.is_some() {
            "equals"
        } else {
            "pattern"
        };
        return Err(invalid(
            format!("{rpath}.{which}"),
            format!(
                "{context}{which} applies to attribute rules only (use group_name or group_pattern for groups)"
            ),
        ));
    }
    let non_empty = |v: &str, field: &str| -> Result<String, ConfigError> {
        if v.trim().is_empty() {
            Err(invalid(
                format!("{rpath}.{field}"),
                format!("{context}must not be empty"),
            ))
        } else {
            Ok(v.to_owned())
        }
    };
    let glob = |v: &str, field: &str| {
        Glob::parse(v).map_err(|e| invalid(format!("{rpath}.{field}"), format!("{context}{e}")))
    };
    if let Some(v) = &r.group_id {
        return Ok(Matcher::GroupId(non_empty(v, "group_id")?));
    }
    if let Some(v) = &r.group_external_id {
        return Ok(Matcher::GroupExternalId(non_empty(v, "group_external_id")?));
    }
    if let Some(v) = &r.group_name {
        return Ok(Matcher::GroupName(non_empty(v, "group_name")?));
    }
    if let Some(v) = &r.group_pattern {
        return Ok(Matcher::GroupPattern(glob(v, "group_pattern")?));
    }
    let attribute = r.attribute.as_deref().unwrap_or_default();
    let path = AttrPath::parse(attribute.trim())
        .map_err(|e| invalid(format!("{rpath}.attribute"), format!("{context}{e}")))?;
    let test = match (&r.equals, &r.pattern) {
        (Some(e), None) => ValueTest::Equals(e.clone()),
        (None, Some(p)) => ValueTest::Pattern(glob(p, "pattern")?),
        (None, None) => {
            return Err(invalid(
                rpath,
                format!("{context}an attribute rule needs equals or pattern"),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                rpath,
                format!("{context}give equals or pattern, not both"),
            ));
        }
    };
    Ok(Matcher::Attribute { path, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns() -> Vec<ConnectionId> {
        ["default", "entra"]
            .iter()
            .map(|c| ConnectionId::parse(c).unwrap())
            .collect()
    }

    fn load(text: &str) -> Result<AccessModel, ConfigError> {
        let cfg: AccessConfig = toml::from_str(text).unwrap();
        validate(&cfg, &conns())
    }

    const BASE: &str = r#"
dimensions = ["market", "channel"]

[permissions.approve]
key = "custom.approve_texts"
name = "Approve texts"
group = "Custom"

[roles.editor]
id = "r-editor"
name = "Editor"
permissions = ["products.view", "products.create", "custom.approve_texts"]

[roles.viewer]
id = "r-viewer"
name = "Viewer"
permissions = ["products.view"]

[user_groups.nordics]
id = "ug-nordics"
name = "Nordic markets"
languages = { edit = ["da", "sv"], read = ["en"] }
business_units = { edit = ["bu-nordics"] }
default_dashboard = "nordic-dash"
dashboard_priority = 10
[user_groups.nordics.segments.market]
edit = ["dk", "se"]
read = ["no"]
[user_groups.nordics.segments.channel]
read = ["web"]

[connections.default]
token_groups = "union"
on_no_match = { roles = ["viewer"] }

[[connections.default.rules]]
name = "editors-by-name"
group_name = "PIM Editors"
roles = ["editor"]
user_groups = ["nordics"]

[[connections.default.rules]]
name = "marketing-department"
attribute = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
equals = "Marketing"
user_groups = ["nordics"]
"#;

    #[test]
    fn an_empty_section_is_the_empty_model() {
        let m = load("").unwrap();
        assert!(m.roles().is_empty() && m.user_groups().is_empty());
        assert_eq!(m.version(), AccessModel::default().version());
        assert!(m.version().starts_with("sha256:") && m.version().len() == 7 + 64);
        assert_eq!(
            m.permission("products.view").map(|p| p.name.as_str()),
            Some("View products")
        );
    }

    #[test]
    fn the_base_config_validates_into_typed_parts() {
        let m = load(BASE).unwrap();
        let editor = m.role("editor").unwrap();
        assert_eq!(editor.id, "r-editor");
        assert!(editor.permissions.contains("custom.approve_texts"));
        assert_eq!(
            m.permission("custom.approve_texts").unwrap().group,
            "Custom"
        );
        let nordics = m.user_group("nordics").unwrap();
        assert_eq!(nordics.languages["en"], Level::Read);
        assert_eq!(nordics.segments["market"]["dk"], Level::Edit);
        assert_eq!(nordics.dashboard_priority, 10);
        let default = ConnectionId::parse("default").unwrap();
        let rules = m.connection(&default).unwrap();
        assert_eq!(rules.token_groups, TokenGroups::Union);
        assert_eq!(rules.on_no_match.roles, ["viewer".to_owned()].into());
        assert!(m.rules_use_group_names(&default));
        assert!(!m.rules_use_group_names(&ConnectionId::parse("entra").unwrap()));
    }

    #[test]
    fn config_errors_name_their_key_with_suggestions() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "unknown permission",
                r#"[roles.editor]
id = "r1"
name = "Editor"
permissions = ["products.creat"]"#,
                "access.roles.editor.permissions",
                r#"unknown permission "products.creat" (did you mean "products.create"?)"#,
            ),
            (
                "unknown role in a rule",
                r#"[roles.editor]
id = "r1"
name = "Editor"
[connections.default]
[[connections.default.rules]]
name = "eds"
group_name = "PIM Editors"
roles = ["editr"]"#,
                "access.connections.default.rules[0].roles",
                r#"rule "eds": unknown role "editr" (did you mean "editor"?)"#,
            ),
            (
                "unknown user group on no match",
                r#"[connections.default]
on_no_match = { user_groups = ["nordic"] }"#,
                "access.connections.default.on_no_match.user_groups",
                r#"unknown user group "nordic" (none is defined)"#,
            ),
            (
                "rule with two matchers",
                r#"[roles.editor]
id = "r1"
name = "Editor"
[[connections.default.rules]]
name = "two"
group_name = "PIM Editors"
group_pattern = "PIM-*"
roles = ["editor"]"#,
                "access.connections.default.rules[0]",
                r#"rule "two": names 2 matchers (group_name, group_pattern)"#,
            ),
            (
                "rule with no matcher",
                r#"[roles.editor]
id = "r1"
name = "Editor"
[[connections.default.rules]]
name = "none"
roles = ["editor"]"#,
                "access.connections.default.rules[0]",
                "names no matcher",
            ),
            (
                "equals without attribute",
                r#"[roles.editor]
id = "r1"
name = "Editor"
[[connections.default.rules]]
name = "eq"
group_name = "x"
equals = "y"
roles = ["editor"]"#,
                "access.connections.default.rules[0].equals",
                "attribute rules only",
            ),
            (
                "attribute without a test",
                r#"[roles.editor]
id = "r1"
name = "Editor"
[[connections.default.rules]]
name = "attr"
attribute = "title"
roles = ["editor"]"#,
                "access.connections.default.rules[0]",
                "needs equals or pattern",
            ),
            (
                "bad attribute path",
                r#"[roles.editor]
id = "r1"
name = "Editor"
[[connections.default.rules]]
name = "attr"
attribute = 'emails[type eq "work"].value'
equals = "x"
roles = ["editor"]"#,
                "access.connections.default.rules[0].attribute",
                "is not an attribute path",
            ),
            (
                "bad glob",
                r#"[roles.editor]
id = "r1"
name = "Editor"
[[connections.default.rules]]
name = "glob"
group_pattern = "PIM-[a-z]-Editors"
roles = ["editor"]"#,
                "access.connections.default.rules[0].group_pattern",
                "'[' at position 4 is not supported",
            ),
            (
                "rule granting nothing",
                r#"[[connections.default.rules]]
name = "nothing"
group_name = "x""#,
                "access.connections.default.rules[0]",
                "grants nothing",
            ),
            (
                "duplicate rule names",
                r#"[roles.editor]
id = "r1"
name = "Editor"
[[connections.default.rules]]
name = "same"
group_name = "a"
roles = ["editor"]
[[connections.default.rules]]
name = "same"
group_name = "b"
roles = ["editor"]"#,
                "access.connections.default.rules[1].name",
                "already used by rules[0]",
            ),
            (
                "unknown connection",
                "[connections.entr]\n",
                "access.connections.entr",
                r#"unknown connection "entr" (did you mean "entra"?); add [connections.entr]"#,
            ),
            (
                "user group without a segment for a dimension",
                r#"dimensions = ["market", "channel"]
[user_groups.nordics]
id = "u1"
name = "Nordics"
languages = { edit = ["da"] }
[user_groups.nordics.segments.market]
edit = ["dk"]"#,
                "access.user_groups.nordics.segments",
                r#"no segment for dimension "channel""#,
            ),
            (
                "user group with an empty segment list",
                r#"dimensions = ["market"]
[user_groups.nordics]
id = "u1"
name = "Nordics"
languages = { edit = ["da"] }
[user_groups.nordics.segments.market]
edit = []
read = []"#,
                "access.user_groups.nordics.segments",
                r#"no segment for dimension "market""#,
            ),
            (
                "undeclared dimension",
                r#"dimensions = ["market"]
[user_groups.nordics]
id = "u1"
name = "Nordics"
languages = { edit = ["da"] }
[user_groups.nordics.segments.markt]
edit = ["dk"]"#,
                "access.user_groups.nordics.segments.markt",
                r#"unknown dimension "markt" (did you mean "market"?)"#,
            ),
            (
                "user group without a language",
                r#"[user_groups.nordics]
id = "u1"
name = "Nordics""#,
                "access.user_groups.nordics.languages",
                "at least one language",
            ),
            (
                "user group without a name",
                r#"[user_groups.nordics]
id = "u1"
languages = { edit = ["da"] }"#,
                "access.user_groups.nordics.name",
                "a name",
            ),
            (
                "language in both lists",
                r#"[user_groups.nordics]
id = "u1"
name = "N"
languages = { edit = ["da"], read = ["da"] }"#,
                "access.user_groups.nordics.languages",
                r#"language "da" is listed under both edit and read"#,
            ),
            (
                "duplicate role ids",
                r#"[roles.a]
id = "same"
name = "A"
[roles.b]
id = "same"
name = "B""#,
                "access.roles.b.id",
                r#"id "same" is already used by role "a""#,
            ),
            (
                "duplicate user group ids",
                r#"[user_groups.a]
id = "same"
name = "A"
languages = { read = ["en"] }
[user_groups.b]
id = "same"
name = "B"
languages = { read = ["en"] }"#,
                "access.user_groups.b.id",
                r#"id "same" is already used by user group "a""#,
            ),
            (
                "role without id",
                "[roles.a]\nname = \"A\"\n",
                "access.roles.a.id",
                "is required",
            ),
            (
                "bad permission key",
                "[permissions.x]\nkey = \"Approve\"\nname = \"A\"\ngroup = \"G\"\n",
                "access.permissions.x.key",
                "is not a permission key",
            ),
            (
                "custom permission shadowing a built-in",
                "[permissions.x]\nkey = \"products.view\"\nname = \"A\"\ngroup = \"G\"\n",
                "access.permissions.x.key",
                "is a built-in permission",
            ),
            (
                "duplicate dimension",
                "dimensions = [\"market\", \"market\"]\n",
                "access.dimensions",
                "listed twice",
            ),
        ];
        for (what, text, key, message) in cases {
            let err = load(text).expect_err(what);
            let ConfigError::Invalid { key: k, message: m } = &err else {
                panic!("{what}: {err}");
            };
            assert_eq!(k, key, "{what}: {err}");
            assert!(
                m.contains(message),
                "{what}: {m:?} should contain {message:?}"
            );
        }
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(
            closest("products.creat", ["products.create", "products.delete"]),
            Some("products.create")
        );
        assert_eq!(closest("Editor", ["editor"]), Some("editor"));
        assert_eq!(closest("zz", ["editor", "viewer"]), None);
        assert_eq!(
            unknown("role", "zz", ["editor", "viewer"]),
            r#"unknown role "zz" (known: editor, viewer)"#
        );
    }

    #[test]
    fn version_is_stable_under_reordering_and_formatting() {
        let reordered = r#"
# the same model, written differently
dimensions = [ "market",   "channel" ]

[connections.default]
on_no_match = { roles = ["viewer"] }
token_groups = "union"

[[connections.default.rules]]
user_groups = ["nordics"]
equals = "Marketing"
attribute = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
name = "marketing-department"

[[connections.default.rules]]
name = "editors-by-name"
user_groups = ["nordics"]
roles = ["editor"]
group_name = "PIM Editors"

[user_groups.nordics]
name = "Nordic markets"
id = "ug-nordics"
dashboard_priority = 10
default_dashboard = "nordic-dash"
business_units = { read = [], edit = ["bu-nordics"] }
languages = { read = ["en"], edit = ["sv", "da"] }
[user_groups.nordics.segments.channel]
read = ["web"]
[user_groups.nordics.segments.market]
read = ["no"]
edit = ["se", "dk", "se"]

[roles.viewer]
permissions = ["products.view"]
name = "Viewer"
id = "r-viewer"

[roles.editor]
permissions = ["custom.approve_texts", "products.create", "products.view"]
name = "Editor"
id = "r-editor"

[permissions.a-different-label]
group = "Custom"
name = "Approve texts"
key = "custom.approve_texts"
"#;
        let a = load(BASE).unwrap();
        let b = load(reordered).unwrap();
        assert_eq!(a.version(), b.version());
        // Any change of meaning changes it.
        for (from, to) in [
            ("equals = \"Marketing\"", "equals = \"Sales\""),
            ("dashboard_priority = 10", "dashboard_priority = 11"),
            ("read = [\"no\"]", "read = [\"no\", \"fi\"]"),
            ("token_groups = \"union\"", "token_groups = \"ignore\""),
            ("id = \"r-viewer\"", "id = \"r-viewer-2\""),
        ] {
            assert!(BASE.contains(from), "{from}");
            let changed = load(&BASE.replace(from, to)).unwrap();
            assert_ne!(a.version(), changed.version(), "{from} -> {to}");
        }
    }

    #[test]
    fn globs_match_whole_names_ignoring_case() {
        let cases: &[(&str, &str, bool)] = &[
            ("PIM-*-Editors", "PIM-DK-Editors", true),
            ("PIM-*-Editors", "pim-nordics-editors", true),
            ("PIM-*-Editors", "PIM--Editors", true),
            ("PIM-*-Editors", "PIM-Editors", false),
            ("PIM-*-Editors", "PIM-DK-Editors-old", false),
            ("PIM-*-Editors", "xPIM-DK-Editors", false),
            ("PIM-??", "pim-dk", true),
            ("PIM-??", "pim-dkk", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYbc", true),
            ("a*b*c", "aXXbYYb", false),
            (r"\[PIM\] *", "[pim] Editors", true),
            (r"100\*", "100*", true),
            (r"100\*", "1000", false),
            ("ÆBLE*", "æblegrød", true),
        ];
        for (pattern, text, expected) in cases {
            let g = Glob::parse(pattern).unwrap();
            assert_eq!(g.matches(text), *expected, "{pattern} ~ {text}");
        }
        for bad in ["", "PIM-[a-z]", "{a,b}", "trailing\\"] {
            assert!(Glob::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attribute_paths_reach_values() {
        let attrs: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "title": "Buyer",
            "active": true,
            "name": {"givenName": "Ann", "familyName": "Berg"},
            "emails": [{"value": "ann@example.com", "type": "work"}, {"value": "a@home.dk"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "department": "Marketing",
                "manager": {"value": "m-1"}
            }
        }))
        .unwrap();
        let cases: &[(&str, &[&str])] = &[
            ("title", &["Buyer"]),
            ("TITLE", &["Buyer"]),
            ("active", &["true"]),
            ("name.givenName", &["Ann"]),
            ("name.givenname", &["Ann"]),
            ("emails.value", &["ann@example.com", "a@home.dk"]),
            ("emails", &["ann@example.com", "a@home.dk"]),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                &["Marketing"],
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                &["m-1"],
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
                &[],
            ),
            ("nickName", &[]),
            ("name.middleName", &[]),
        ];
        for (path, expected) in cases {
            let p = AttrPath::parse(path).unwrap();
            assert_eq!(p.values(&attrs), expected.to_vec(), "{path}");
        }
        for bad in [
            "",
            "urn:x",
            "urn:",
            "ab€dé",
            "name..givenName",
            "emails[type eq \"work\"]",
            "1abc",
        ] {
            assert!(AttrPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
