//! Pure resolution: what the IdP says about one user ([`UserFacts`]) and the access model in
//! force become the [`Claims`] the PIM reads. No I/O, no clock: the same inputs always give
//! the same claims, byte for byte, which is what makes them cacheable and explainable.
//!
//! Semantics (`docs/claims.md`): only the rules of the user's connection apply; a rule
//! matches on a SCIM group (direct or nested), a login-token group value (per the
//! connection's `token_groups`) or a user attribute; every matching rule contributes (roles
//! and user groups are unions); a user matching no rule gets the connection's `on_no_match`.
//! Permissions are the union over roles, access the union over user groups with edit
//! winning over read, and the default dashboard comes from the matched user group with the
//! lowest `dashboard_priority`, ties going to the first key. A deactivated user gets nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::claims::{Access, Claims, GrantedBy, GroupRef, NamedRef, Provenance, Source};
use super::model::{AccessModel, Matcher, Rule, TokenGroups, UserGroup, eq_ignore_case};
use super::{IdpGroup, UserFacts};

/// Resolves a user's claims, provenance included (callers strip it unless asked to explain).
pub fn resolve(model: &AccessModel, facts: &UserFacts) -> Claims {
    let mut claims = Claims {
        sub: facts.user_id.clone(),
        connection: facts.connection.to_string(),
        user_name: facts.user_name.clone(),
        external_id: facts.external_id.clone(),
        active: facts.active,
        roles: Vec::new(),
        user_groups: Vec::new(),
        permissions: BTreeSet::new(),
        access: Access::default(),
        default_dashboard: None,
        config_version: model.version().to_owned(),
        provenance: None,
    };
    let mut why = Provenance::default();
    if facts.active
        && let Some(conn) = model.connection(&facts.connection)
    {
        let scim: &[IdpGroup] = match conn.token_groups {
            TokenGroups::TokenOnly => &[],
            TokenGroups::Ignore | TokenGroups::Union => &facts.groups,
        };
        let token: &[String] = match conn.token_groups {
            TokenGroups::Ignore => &[],
            TokenGroups::Union | TokenGroups::TokenOnly => {
                facts.token_groups.as_deref().unwrap_or_default()
            }
        };
        let mut matched = false;
        for rule in &conn.rules {
            let sources = rule_sources(rule, scim, token, facts);
            if sources.is_empty() {
                continue;
            }
            matched = true;
            for role in &rule.grants.roles {
                why.roles
                    .entry(role.clone())
                    .or_default()
                    .extend(sources.iter().cloned());
            }
            for ug in &rule.grants.user_groups {
                why.user_groups
                    .entry(ug.clone())
                    .or_default()
                    .extend(sources.iter().cloned());
            }
        }
        if !matched {
            for role in &conn.on_no_match.roles {
                why.roles
                    .entry(role.clone())
                    .or_default()
                    .push(Source::NoMatchDefault);
            }
            for ug in &conn.on_no_match.user_groups {
                why.user_groups
                    .entry(ug.clone())
                    .or_default()
                    .push(Source::NoMatchDefault);
            }
        }
        // Keys the model does not know cannot occur (validation checks every reference);
        // drop them rather than grant a half-known role.
        why.roles.retain(|k, _| model.role(k).is_some());
        why.user_groups.retain(|k, _| model.user_group(k).is_some());
        for sources in why.roles.values_mut().chain(why.user_groups.values_mut()) {
            sources.sort();
            sources.dedup();
        }
        grant_roles(model, &mut claims, &mut why);
        grant_user_groups(model, &mut claims, &mut why);
    }
    claims.provenance = Some(why);
    claims
}

/// Everything that makes one rule match, in a deterministic order.
fn rule_sources(
    rule: &Rule,
    scim: &[IdpGroup],
    token: &[String],
    facts: &UserFacts,
) -> Vec<Source> {
    let mut out = Vec::new();
    if let Matcher::Attribute { path, test } = &rule.matcher {
        for value in path.values(&facts.attributes) {
            if test.matches(&value) {
                out.push(Source::Attribute {
                    rule: rule.name.clone(),
                    path: path.as_str().to_owned(),
                    value,
                });
            }
        }
        return out;
    }
    for g in scim {
        if group_matches(&rule.matcher, g) {
            out.push(Source::ScimGroup {
                rule: rule.name.clone(),
                group: GroupRef {
                    id: g.id.clone(),
                    external_id: g.external_id.clone(),
                    display_name: g.display_name.clone(),
                    via: g.via.clone(),
                },
            });
        }
    }
    for value in token {
        if token_matches(&rule.matcher, value) {
            out.push(Source::TokenGroup {
                rule: rule.name.clone(),
                value: value.clone(),
            });
        }
    }
    out
}

fn group_matches(m: &Matcher, g: &IdpGroup) -> bool {
    match m {
        Matcher::GroupId(id) => g.id == *id,
        Matcher::GroupExternalId(x) => g.external_id.as_deref() == Some(x.as_str()),
        Matcher::GroupName(name) => eq_ignore_case(name, &g.display_name),
        Matcher::GroupPattern(glob) => glob.matches(&g.display_name),
        Matcher::Attribute { .. } => false,
    }
}

/// A token group value is the IdP's group id (Entra) or its name (Okta): it is compared with
/// external-id, name and pattern matchers. It never carries pimgate's own group ids.
fn token_matches(m: &Matcher, value: &str) -> bool {
    match m {
        Matcher::GroupExternalId(x) => value == x,
        Matcher::GroupName(name) => eq_ignore_case(name, value),
        Matcher::GroupPattern(glob) => glob.matches(value),
        Matcher::GroupId(_) | Matcher::Attribute { .. } => false,
    }
}

fn grant_roles(model: &AccessModel, claims: &mut Claims, why: &mut Provenance) {
    for key in why.roles.keys() {
        let Some(role) = model.role(key) else {
            continue;
        };
        claims.roles.push(NamedRef {
            id: role.id.clone(),
            key: role.key.clone(),
            name: role.name.clone(),
        });
        for p in &role.permissions {
            claims.permissions.insert(p.as_str().to_owned());
            why.permissions
                .entry(p.as_str().to_owned())
                .or_default()
                .insert(role.key.clone());
        }
    }
}

fn grant_user_groups(model: &AccessModel, claims: &mut Claims, why: &mut Provenance) {
    let groups: Vec<&UserGroup> = why
        .user_groups
        .keys()
        .filter_map(|k| model.user_group(k))
        .collect();
    for ug in &groups {
        claims.user_groups.push(NamedRef {
            id: ug.id.clone(),
            key: ug.key.clone(),
            name: ug.name.clone(),
        });
        let by = |level| GrantedBy {
            user_group: ug.key.clone(),
            level,
        };
        for (code, level) in &ug.languages {
            raise(&mut claims.access.languages, code, *level);
            why.languages
                .entry(code.clone())
                .or_default()
                .push(by(*level));
        }
        for (dim, segments) in &ug.segments {
            for (seg, level) in segments {
                raise(
                    claims.access.segments.entry(dim.clone()).or_default(),
                    seg,
                    *level,
                );
                why.segments
                    .entry(dim.clone())
                    .or_default()
                    .entry(seg.clone())
                    .or_default()
                    .push(by(*level));
            }
        }
        for (bu, level) in &ug.business_units {
            raise(&mut claims.access.business_units, bu, *level);
            why.business_units
                .entry(bu.clone())
                .or_default()
                .push(by(*level));
        }
    }
    // `groups` is in key order, and min_by_key keeps the first of equal keys.
    if let Some(winner) = groups
        .iter()
        .filter(|ug| ug.default_dashboard.is_some())
        .min_by_key(|ug| (ug.dashboard_priority, ug.key.as_str()))
    {
        claims.default_dashboard = winner.default_dashboard.clone();
        why.default_dashboard = Some(winner.key.clone());
    }
}

/// Grants `level` on `key`, keeping the higher of what is already there (edit wins).
fn raise<L: Ord + Copy>(map: &mut BTreeMap<String, L>, key: &str, level: L) {
    map.entry(key.to_owned())
        .and_modify(|l| *l = (*l).max(level))
        .or_insert(level);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::claims::Level;
    use crate::access::model::{AccessConfig, validate};
    use crate::connections::ConnectionId;
    use serde_json::{Map, Value, json};

    /// Table rows: what, the user's groups, expected role keys, expected user-group keys.
    type GroupCase = (
        &'static str,
        Vec<IdpGroup>,
        &'static [&'static str],
        &'static [&'static str],
    );
    /// The same, with the user's connection second.
    type ConnCase = (
        &'static str,
        &'static str,
        Vec<IdpGroup>,
        &'static [&'static str],
        &'static [&'static str],
    );
    /// Connection, SCIM groups, token groups, expected role keys.
    type TokenCase = (
        &'static str,
        Vec<IdpGroup>,
        Option<Vec<String>>,
        &'static [&'static str],
    );

    const MODEL: &str = r#"
dimensions = ["market"]

[roles.viewer]
id = "r-viewer"
name = "Viewer"
permissions = ["products.view"]

[roles.editor]
id = "r-editor"
name = "Editor"
permissions = ["products.view", "products.create", "products.delete"]

[roles.publisher]
id = "r-publisher"
name = "Publisher"
permissions = ["products.view", "publications.export"]

[user_groups.denmark]
id = "ug-dk"
name = "Denmark"
languages = { edit = ["da"], read = ["en"] }
business_units = { read = ["bu-1"] }
default_dashboard = "dk-dash"
dashboard_priority = 20
[user_groups.denmark.segments.market]
edit = ["dk"]

[user_groups.marketing]
id = "ug-mkt"
name = "Marketing"
languages = { edit = ["en"] }
business_units = { edit = ["bu-1"] }
default_dashboard = "mkt-dash"
dashboard_priority = 20
[user_groups.marketing.segments.market]
read = ["dk", "se"]

[user_groups.sweden]
id = "ug-se"
name = "Sweden"
languages = { edit = ["sv"] }
default_dashboard = "se-dash"
dashboard_priority = 5
[user_groups.sweden.segments.market]
edit = ["se"]

[user_groups.everyone]
id = "ug-all"
name = "Everyone"
languages = { read = ["en"] }
[user_groups.everyone.segments.market]
read = ["dk"]

[connections.default]
on_no_match = { roles = ["viewer"], user_groups = ["everyone"] }

[[connections.default.rules]]
name = "editors"
group_name = "PIM Editors"
roles = ["editor"]
user_groups = ["denmark"]

[[connections.default.rules]]
name = "publishers"
group_external_id = "ext-pub"
roles = ["publisher"]

[[connections.default.rules]]
name = "editor-pattern"
group_pattern = "PIM-*-Editors"
roles = ["editor"]

[[connections.default.rules]]
name = "by-id"
group_id = "g-sweden"
user_groups = ["sweden"]

[[connections.default.rules]]
name = "marketing-department"
attribute = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
equals = "marketing"
user_groups = ["marketing"]

[[connections.default.rules]]
name = "given-name"
attribute = "name.givenName"
pattern = "ann*"
roles = ["publisher"]

[connections.union]
token_groups = "union"
[[connections.union.rules]]
name = "editors"
group_name = "PIM Editors"
roles = ["editor"]
[[connections.union.rules]]
name = "publishers"
group_external_id = "ext-pub"
roles = ["publisher"]

[connections.token-only]
token_groups = "token_only"
on_no_match = { roles = ["viewer"] }
[[connections.token-only.rules]]
name = "editors"
group_name = "PIM Editors"
roles = ["editor"]
[[connections.token-only.rules]]
name = "publishers"
group_external_id = "ext-pub"
roles = ["publisher"]

[connections.ignore]
token_groups = "ignore"
[[connections.ignore.rules]]
name = "editors"
group_name = "PIM Editors"
roles = ["editor"]
"#;

    fn model() -> AccessModel {
        let cfg: AccessConfig = toml::from_str(MODEL).unwrap();
        let conns: Vec<ConnectionId> = ["default", "union", "token-only", "ignore", "bare"]
            .iter()
            .map(|c| ConnectionId::parse(c).unwrap())
            .collect();
        validate(&cfg, &conns).unwrap()
    }

    fn group(id: &str, name: &str) -> IdpGroup {
        IdpGroup {
            id: id.into(),
            external_id: Some(format!("ext-{id}")),
            display_name: name.into(),
            via: None,
        }
    }

    fn facts(conn: &str, groups: Vec<IdpGroup>) -> UserFacts {
        UserFacts {
            connection: ConnectionId::parse(conn).unwrap(),
            user_id: "u-1".into(),
            user_name: "ann@example.com".into(),
            external_id: Some("x-1".into()),
            active: true,
            attributes: Map::new(),
            groups,
            token_groups: None,
        }
    }

    fn with_attrs(mut f: UserFacts, attrs: Value) -> UserFacts {
        f.attributes = serde_json::from_value(attrs).unwrap();
        f
    }

    fn keys(refs: &[NamedRef]) -> Vec<&str> {
        refs.iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn union_of_roles() {
        let m = model();
        let cases: &[GroupCase] = &[
            (
                "one rule",
                vec![group("g1", "PIM Editors")],
                &["editor"],
                &["products.create", "products.delete", "products.view"],
            ),
            (
                "two rules, overlapping permissions",
                vec![group("g1", "PIM Editors"), group("pub", "Publishers")],
                &["editor", "publisher"],
                &[
                    "products.create",
                    "products.delete",
                    "products.view",
                    "publications.export",
                ],
            ),
            (
                "two rules granting the same role",
                vec![group("g1", "PIM Editors"), group("g2", "PIM-DK-Editors")],
                &["editor"],
                &["products.create", "products.delete", "products.view"],
            ),
        ];
        for (what, groups, roles, perms) in cases {
            let c = resolve(&m, &facts("default", groups.clone()));
            assert_eq!(keys(&c.roles), *roles, "{what}");
            let got: Vec<&str> = c.permissions.iter().map(String::as_str).collect();
            assert_eq!(got, *perms, "{what}");
        }
        let c = resolve(
            &m,
            &facts(
                "default",
                vec![group("g1", "PIM Editors"), group("pub", "P")],
            ),
        );
        let why = c.provenance.unwrap();
        assert_eq!(
            why.permissions["products.view"],
            ["editor".to_owned(), "publisher".to_owned()].into()
        );
        assert_eq!(
            why.permissions["products.delete"],
            ["editor".to_owned()].into()
        );
        assert_eq!(
            c.roles[0],
            NamedRef {
                id: "r-editor".into(),
                key: "editor".into(),
                name: "Editor".into()
            }
        );
    }

    #[test]
    fn union_of_user_groups() {
        let m = model();
        let f = with_attrs(
            facts(
                "default",
                vec![group("g1", "PIM Editors"), group("g-sweden", "Sweden team")],
            ),
            json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Marketing"}}),
        );
        let c = resolve(&m, &f);
        assert_eq!(keys(&c.user_groups), ["denmark", "marketing", "sweden"]);
        assert_eq!(
            c.access.languages,
            [
                ("da", Level::Edit),
                ("en", Level::Edit),
                ("sv", Level::Edit)
            ]
            .map(|(k, l)| (k.to_owned(), l))
            .into()
        );
        assert_eq!(
            c.access.segments["market"],
            [("dk", Level::Edit), ("se", Level::Edit)]
                .map(|(k, l)| (k.to_owned(), l))
                .into()
        );
        assert_eq!(c.access.business_units["bu-1"], Level::Edit);
        assert_eq!(
            keys(&c.roles),
            ["editor"],
            "an attribute rule granting only a user group adds no role"
        );
    }

    #[test]
    fn edit_wins_over_read_only() {
        let m = model();
        // en: read in denmark, edit in marketing. dk: edit in denmark, read in marketing.
        // bu-1: read in denmark, edit in marketing. se: read only in marketing.
        let f = with_attrs(
            facts("default", vec![group("g1", "PIM Editors")]),
            json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "MARKETING"}}),
        );
        let c = resolve(&m, &f);
        assert_eq!(c.access.languages["en"], Level::Edit);
        assert_eq!(c.access.languages["da"], Level::Edit);
        assert_eq!(c.access.segments["market"]["dk"], Level::Edit);
        assert_eq!(c.access.segments["market"]["se"], Level::Read);
        assert_eq!(c.access.business_units["bu-1"], Level::Edit);
        let why = c.provenance.unwrap();
        let both = |a: Level, b: Level| {
            vec![
                GrantedBy {
                    user_group: "denmark".into(),
                    level: a,
                },
                GrantedBy {
                    user_group: "marketing".into(),
                    level: b,
                },
            ]
        };
        assert_eq!(why.languages["en"], both(Level::Read, Level::Edit));
        assert_eq!(why.segments["market"]["dk"], both(Level::Edit, Level::Read));
        assert_eq!(why.business_units["bu-1"], both(Level::Read, Level::Edit));
    }

    #[test]
    fn defaults_apply_only_when_no_rule_matches() {
        let m = model();
        let cases: &[ConnCase] = &[
            ("no groups", "default", vec![], &["viewer"], &["everyone"]),
            (
                "unrelated groups",
                "default",
                vec![group("g9", "Finance")],
                &["viewer"],
                &["everyone"],
            ),
            (
                "a rule matches",
                "default",
                vec![group("g1", "PIM Editors")],
                &["editor"],
                &["denmark"],
            ),
            (
                "a connection without on_no_match",
                "union",
                vec![],
                &[],
                &[],
            ),
            (
                "a connection without an access table",
                "bare",
                vec![group("g1", "PIM Editors")],
                &[],
                &[],
            ),
        ];
        for (what, conn, groups, roles, ugs) in cases {
            let c = resolve(&m, &facts(conn, groups.clone()));
            assert_eq!(keys(&c.roles), *roles, "{what}");
            assert_eq!(keys(&c.user_groups), *ugs, "{what}");
        }
        let c = resolve(&m, &facts("default", vec![]));
        let why = c.provenance.unwrap();
        assert_eq!(why.roles["viewer"], vec![Source::NoMatchDefault]);
        assert_eq!(why.user_groups["everyone"], vec![Source::NoMatchDefault]);
        assert_eq!(c.permissions, ["products.view".to_owned()].into());
    }

    #[test]
    fn patterns_match_group_names_ignoring_case() {
        let m = model();
        let cases: &[(&str, bool)] = &[
            ("PIM-DK-Editors", true),
            ("pim-nordics-editors", true),
            ("PIM-Editors", false),
            ("PIM-DK-Editors-old", false),
            ("PIM Editors old", false),
            ("pim editors", true), // the group_name rule, ignoring case
        ];
        for (name, editor) in cases {
            let c = resolve(&m, &facts("default", vec![group("g", name)]));
            assert_eq!(
                keys(&c.roles) == ["editor"],
                *editor,
                "{name}: {:?}",
                keys(&c.roles)
            );
        }
    }

    #[test]
    fn attribute_rules() {
        let m = model();
        let dept = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let cases: &[(&str, Value, &[&str], &[&str])] = &[
            (
                "enterprise department",
                json!({dept: {"department": "Marketing"}}),
                &[],
                &["marketing"],
            ),
            (
                "department in other case",
                json!({dept: {"department": "mArKeTiNg"}}),
                &[],
                &["marketing"],
            ),
            (
                "another department",
                json!({dept: {"department": "Finance"}}),
                &["viewer"],
                &["everyone"],
            ),
            (
                "department outside the extension",
                json!({"department": "Marketing"}),
                &["viewer"],
                &["everyone"],
            ),
            (
                "dotted givenName, pattern",
                json!({"name": {"givenName": "Annabel"}}),
                &["publisher"],
                &[],
            ),
            (
                "givenName not matching",
                json!({"name": {"givenName": "Bo"}}),
                &["viewer"],
                &["everyone"],
            ),
            (
                "both",
                json!({"name": {"givenName": "ANN"}, dept: {"department": "Marketing"}}),
                &["publisher"],
                &["marketing"],
            ),
        ];
        for (what, attrs, roles, ugs) in cases {
            let c = resolve(&m, &with_attrs(facts("default", vec![]), attrs.clone()));
            assert_eq!(keys(&c.roles), *roles, "{what}");
            assert_eq!(keys(&c.user_groups), *ugs, "{what}");
        }
    }

    #[test]
    fn provenance_names_rules_and_what_matched() {
        let m = model();
        let mut nested = group("g1", "PIM Editors");
        nested.via = Some("g-child".into());
        let f = with_attrs(
            facts(
                "default",
                vec![
                    nested,
                    group("g2", "PIM-DK-Editors"),
                    group("g9", "Finance"),
                ],
            ),
            json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Marketing"}}),
        );
        let c = resolve(&m, &f);
        let why = serde_json::to_value(c.provenance.as_ref().unwrap()).unwrap();
        assert_eq!(
            why,
            json!({
                "roles": {"editor": [
                    {"kind": "scimGroup", "rule": "editor-pattern", "group":
                        {"id": "g2", "externalId": "ext-g2", "displayName": "PIM-DK-Editors", "via": null}},
                    {"kind": "scimGroup", "rule": "editors", "group":
                        {"id": "g1", "externalId": "ext-g1", "displayName": "PIM Editors", "via": "g-child"}}
                ]},
                "userGroups": {
                    "denmark": [{"kind": "scimGroup", "rule": "editors", "group":
                        {"id": "g1", "externalId": "ext-g1", "displayName": "PIM Editors", "via": "g-child"}}],
                    "marketing": [{"kind": "attribute", "rule": "marketing-department",
                        "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                        "value": "Marketing"}]
                },
                "permissions": {
                    "products.create": ["editor"], "products.delete": ["editor"], "products.view": ["editor"]
                },
                "languages": {
                    "da": [{"userGroup": "denmark", "level": "edit"}],
                    "en": [{"userGroup": "denmark", "level": "read"}, {"userGroup": "marketing", "level": "edit"}]
                },
                "segments": {"market": {
                    "dk": [{"userGroup": "denmark", "level": "edit"}, {"userGroup": "marketing", "level": "read"}],
                    "se": [{"userGroup": "marketing", "level": "read"}]
                }},
                "businessUnits": {
                    "bu-1": [{"userGroup": "denmark", "level": "read"}, {"userGroup": "marketing", "level": "edit"}]
                },
                "defaultDashboard": "denmark"
            })
        );
    }

    #[test]
    fn deactivated_users_get_nothing() {
        let m = model();
        for groups in [vec![], vec![group("g1", "PIM Editors")]] {
            let mut f = facts("default", groups);
            f.active = false;
            let c = resolve(&m, &f);
            assert!(!c.active);
            assert_eq!(
                (c.sub.as_str(), c.user_name.as_str()),
                ("u-1", "ann@example.com")
            );
            assert_eq!(c.external_id.as_deref(), Some("x-1"));
            assert!(c.roles.is_empty() && c.user_groups.is_empty() && c.permissions.is_empty());
            assert!(c.access.is_empty() && c.default_dashboard.is_none());
            assert_eq!(
                c.provenance,
                Some(Provenance::default()),
                "not even the no-match default"
            );
            assert_eq!(c.config_version, m.version());
        }
    }

    #[test]
    fn token_groups_modes() {
        let m = model();
        let editors = || vec![group("g1", "PIM Editors")];
        let token = |v: &[&str]| Some(v.iter().map(ToString::to_string).collect::<Vec<_>>());
        let cases: &[TokenCase] = &[
            ("ignore", editors(), token(&["ext-pub"]), &["editor"]),
            ("ignore", vec![], token(&["PIM Editors"]), &[]),
            (
                "union",
                editors(),
                token(&["ext-pub"]),
                &["editor", "publisher"],
            ),
            ("union", vec![], token(&["pim editors"]), &["editor"]),
            ("union", editors(), None, &["editor"]),
            ("token-only", editors(), token(&["ext-pub"]), &["publisher"]),
            (
                "token-only",
                vec![],
                token(&["PIM Editors", "ext-pub"]),
                &["editor", "publisher"],
            ),
            ("token-only", editors(), None, &["viewer"]),
            ("token-only", editors(), token(&["g1"]), &["viewer"]),
        ];
        for (conn, groups, tg, roles) in cases {
            let mut f = facts(conn, groups.clone());
            f.token_groups = tg.clone();
            let c = resolve(&m, &f);
            assert_eq!(keys(&c.roles), *roles, "{conn} {groups:?} {tg:?}");
        }
        let mut f = facts("union", vec![]);
        f.token_groups = token(&["ext-pub"]);
        let why = resolve(&m, &f).provenance.unwrap();
        assert_eq!(
            why.roles["publisher"],
            vec![Source::TokenGroup {
                rule: "publishers".into(),
                value: "ext-pub".into()
            }]
        );
    }

    #[test]
    fn nested_group_memberships_match_and_name_the_nested_group() {
        let m = model();
        // The user is in "Nordic editors", which is a member of "PIM Editors".
        let direct = IdpGroup {
            id: "g-nordic".into(),
            external_id: None,
            display_name: "Nordic editors".into(),
            via: None,
        };
        let inherited = IdpGroup {
            id: "g1".into(),
            external_id: Some("ext-g1".into()),
            display_name: "PIM Editors".into(),
            via: Some("g-nordic".into()),
        };
        let c = resolve(&m, &facts("default", vec![direct, inherited.clone()]));
        assert_eq!(keys(&c.roles), ["editor"]);
        let why = c.provenance.unwrap();
        let Source::ScimGroup { group, .. } = &why.roles["editor"][0] else {
            panic!("{:?}", why.roles);
        };
        assert_eq!(group.via.as_deref(), Some("g-nordic"));
        assert_eq!(group.id, "g1");
    }

    #[test]
    fn default_dashboard_is_deterministic() {
        let m = model();
        let dept = json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Marketing"}});
        let cases: &[(&str, Vec<IdpGroup>, bool, Option<&str>)] = &[
            (
                "one group",
                vec![group("g1", "PIM Editors")],
                false,
                Some("dk-dash"),
            ),
            // denmark and marketing both priority 20: the first key wins.
            (
                "a tie",
                vec![group("g1", "PIM Editors")],
                true,
                Some("dk-dash"),
            ),
            (
                "lower priority wins",
                vec![group("g1", "PIM Editors"), group("g-sweden", "S")],
                true,
                Some("se-dash"),
            ),
            ("no group sets one", vec![], false, None),
        ];
        for (what, groups, marketing, expected) in cases {
            let mut f = facts("default", groups.clone());
            if *marketing {
                f = with_attrs(f, dept.clone());
            }
            let c = resolve(&m, &f);
            assert_eq!(c.default_dashboard.as_deref(), *expected, "{what}");
            // The order the directory lists groups in changes nothing.
            let mut reversed = f.clone();
            reversed.groups.reverse();
            assert_eq!(resolve(&m, &reversed), c, "{what}");
            assert_eq!(
                serde_json::to_string(&resolve(&m, &reversed)).unwrap(),
                serde_json::to_string(&c).unwrap()
            );
        }
    }

    #[test]
    fn only_the_users_connection_rules_apply() {
        let m = model();
        // "PIM-DK-Editors" matches a pattern rule of `default` only; `ignore` names exact names.
        let c = resolve(&m, &facts("ignore", vec![group("g2", "PIM-DK-Editors")]));
        assert!(c.roles.is_empty());
        assert_eq!(c.connection, "ignore");
        let c = resolve(&m, &facts("default", vec![group("g2", "PIM-DK-Editors")]));
        assert_eq!(keys(&c.roles), ["editor"]);
    }

    /// The user of `docs/claims.md`, resolved under the shipped `config/pimgate.toml`.
    fn documented_example() -> Claims {
        // The shipped file's `[access]` section, against its connections (and `default`).
        let file: toml::Table = toml::from_str(include_str!("../../config/pimgate.toml")).unwrap();
        let access: AccessConfig = file["access"].clone().try_into().unwrap();
        let mut connections = vec![ConnectionId::parse("default").unwrap()];
        if let Some(named) = file.get("connections").and_then(toml::Value::as_table) {
            connections.extend(named.keys().map(|k| ConnectionId::parse(k).unwrap()));
        }
        let model = validate(&access, &connections).unwrap();
        let f = UserFacts {
            connection: ConnectionId::parse("default").unwrap(),
            user_id: "2b9f4c1e-6a7d-4e8f-9b0a-1c2d3e4f5a6b".into(),
            user_name: "ann.berg@example.com".into(),
            external_id: Some("e3c5a7b9-0d1f-4a2b-8c3d-4e5f6a7b8c9d".into()),
            active: true,
            attributes: serde_json::from_value(json!({
                "userName": "ann.berg@example.com",
                "name": {"givenName": "Ann", "familyName": "Berg"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Marketing"}
            }))
            .unwrap(),
            groups: vec![
                IdpGroup {
                    id: "7a1d3c5e-9f2b-4d6a-8c0e-1f3a5b7c9d11".into(),
                    external_id: Some("1c3e5a7b-9d0f-4b2c-8e4a-6c8e0a2b4d61".into()),
                    display_name: "Nordic content team".into(),
                    via: None,
                },
                IdpGroup {
                    id: "7a1d3c5e-9f2b-4d6a-8c0e-1f3a5b7c9d22".into(),
                    external_id: Some("1c3e5a7b-9d0f-4b2c-8e4a-6c8e0a2b4d62".into()),
                    display_name: "PIM Editors".into(),
                    via: Some("7a1d3c5e-9f2b-4d6a-8c0e-1f3a5b7c9d11".into()),
                },
            ],
            token_groups: None,
        };
        resolve(&model, &f)
    }

    /// The JSON block after `<!-- example: NAME -->` in `docs/claims.md`.
    fn documented(name: &str) -> Value {
        let doc = include_str!("../../docs/claims.md");
        let marker = format!("<!-- example: {name} -->");
        let after = &doc[doc.find(&marker).unwrap() + marker.len()..];
        let start = after.find("```json").unwrap() + "```json".len();
        let end = start + after[start..].find("```").unwrap();
        serde_json::from_str(&after[start..end]).unwrap()
    }

    #[test]
    fn the_documented_example_matches_the_shipped_config() {
        let explained = documented_example();
        let mut plain = explained.clone();
        plain.provenance = None;
        for (name, claims) in [("claims", plain), ("explain", explained)] {
            let mut actual = serde_json::to_value(&claims).unwrap();
            let version = actual["configVersion"].as_str().unwrap().to_owned();
            assert!(
                version.starts_with("sha256:") && version.len() == 71,
                "{version}"
            );
            // The version follows every edit of the shipped config; the docs show one.
            actual["configVersion"] = documented(name)["configVersion"].clone();
            assert_eq!(
                actual,
                documented(name),
                "docs/claims.md example {name:?} is out of date; it is now:\n{}",
                serde_json::to_string_pretty(&claims).unwrap()
            );
        }
    }

    #[test]
    fn the_empty_model_grants_nothing() {
        let c = resolve(
            &AccessModel::default(),
            &facts("default", vec![group("g1", "PIM Editors")]),
        );
        assert!(c.roles.is_empty() && c.permissions.is_empty() && c.access.is_empty());
        assert_eq!(c.config_version, AccessModel::default().version());
    }
}
