//! From the `[access]` section as written to the [`AccessModel`]: every reference is checked,
//! with the key path at fault and the closest existing name ("did you mean ...?"), and
//! Struct's own rules for user groups are enforced, so the PIM never sees a group it would
//! refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::*;
use crate::access::catalogue;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError {
        key: key.into(),
        message: message.into(),
    }
}

/// The candidate closest to `input`, when it is close enough to be a likely typo.
pub(super) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
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
pub(super) fn unknown<'a>(
    what: &str,
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
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
fn check_config_key(key: &str, path: &str) -> Result<(), ModelError> {
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

fn required(value: &str, path: &str, what: &str) -> Result<String, ModelError> {
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
) -> Result<BTreeMap<String, Level>, ModelError> {
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
) -> Result<AccessModel, ModelError> {
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

fn validate_dimensions(raw: &[String]) -> Result<BTreeSet<String>, ModelError> {
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
) -> Result<Vec<Permission>, ModelError> {
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
) -> Result<BTreeMap<String, Role>, ModelError> {
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
) -> Result<BTreeMap<String, UserGroup>, ModelError> {
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
) -> Result<Grants, ModelError> {
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
) -> Result<ConnectionRules, ModelError> {
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

fn rule_matcher(r: &RuleConfig, rpath: &str, context: &str) -> Result<Matcher, ModelError> {
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
    let non_empty = |v: &str, field: &str| -> Result<String, ModelError> {
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
