use super::validate::{closest, unknown};
use super::*;
use serde_json::{Map, Value};

fn conns() -> Vec<ConnectionId> {
    ["default", "entra"]
        .iter()
        .map(|c| ConnectionId::parse(c).unwrap())
        .collect()
}

fn load(text: &str) -> Result<AccessModel, ModelError> {
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
        let ModelError { key: k, message: m } = &err;
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
