use super::*;
use crate::directory::{ENTERPRISE_URN, MemberOp};
use crate::scim::resource::{group_from_body, user_from_body};
use scim_v2::filter::ValFilter;
use serde_json::json;

fn cat() -> Catalogue {
    Catalogue::load().unwrap()
}

fn ops(operations: Value) -> Vec<PatchOperation> {
    parse_patch(json!({"schemas": [PATCH_OP_URN], "Operations": operations})).unwrap()
}

fn kind(r: Result<impl std::fmt::Debug, ScimError>) -> (ScimType, String) {
    crate::scim::error::bad_request_parts(r)
}

fn alice() -> Value {
    json!({
        "userName": "alice@example.com",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [
            {"value": "alice@example.com", "type": "work", "primary": true},
            {"value": "alice@home.example", "type": "home"}
        ],
        "active": true,
        ENTERPRISE_URN: {"department": "Sales", "manager": {"value": "m1"}}
    })
}

fn patch(start: Value, operations: Value) -> Result<Value, ScimError> {
    let c = cat();
    let doc = user_from_body(start, &c)?;
    patch_doc(&doc, &ops(operations), &c).map(|d| Value::Object(d.into_attrs()))
}

#[test]
fn parse_accepts_capitalised_ops_and_member_names() {
    let got = parse_patch(json!({"operations": [
        {"Op": "Add", "Path": "title", "Value": "x"},
        {"op": "REPLACE", "value": {"title": "y"}},
        {"op": "Remove", "path": "title"}
    ]}))
    .unwrap();
    let kinds: Vec<OpKind> = got.iter().map(|o| o.op).collect();
    assert_eq!(kinds, vec![OpKind::Add, OpKind::Replace, OpKind::Remove]);
    assert_eq!(got[0].value, Some(json!("x")));
    assert!(got[1].path.is_none());
    assert_eq!(got[2].value, None);
}

#[test]
fn parse_refuses_malformed_bodies() {
    let op = |o: Value| json!({"Operations": [o]});
    let too_many: Vec<Value> = (0..=MAX_OPERATIONS)
        .map(|_| json!({"op": "remove", "path": "title"}))
        .collect();
    let cases: Vec<(Value, ScimType, &str)> = vec![
        (json!("x"), ScimType::InvalidSyntax, "JSON object"),
        (
            json!({"schemas": ["urn:wrong"], "Operations": [{"op": "remove", "path": "title"}]}),
            ScimType::InvalidSyntax,
            PATCH_OP_URN,
        ),
        (
            json!({"schemas": [PATCH_OP_URN]}),
            ScimType::InvalidSyntax,
            "Operations",
        ),
        (
            json!({"Operations": []}),
            ScimType::InvalidSyntax,
            "at least one",
        ),
        (
            json!({"Operations": {"op": "add"}}),
            ScimType::InvalidSyntax,
            "array",
        ),
        (json!({"Operations": too_many}), ScimType::TooMany, "1000"),
        (op(json!("add")), ScimType::InvalidSyntax, "Operations[0]"),
        (
            op(json!({"op": "move", "path": "title"})),
            ScimType::InvalidSyntax,
            "move",
        ),
        (
            op(json!({"path": "title", "value": 1})),
            ScimType::InvalidSyntax,
            "op",
        ),
        (
            op(json!({"op": "remove", "path": "emails[type eq"})),
            ScimType::InvalidPath,
            "emails[type eq",
        ),
        (
            op(json!({"op": "remove", "path": "a.b.c"})),
            ScimType::InvalidPath,
            "a.b.c",
        ),
        (
            op(json!({"op": "remove", "path": 7})),
            ScimType::InvalidSyntax,
            "path",
        ),
        (op(json!({"op": "remove"})), ScimType::NoTarget, "remove"),
        (
            op(json!({"op": "remove", "path": ""})),
            ScimType::NoTarget,
            "remove",
        ),
        (
            op(json!({"op": "add", "value": "x"})),
            ScimType::InvalidSyntax,
            "object value",
        ),
        (
            op(json!({"op": "replace"})),
            ScimType::InvalidSyntax,
            "object value",
        ),
        (
            op(json!({"op": "add", "path": "title"})),
            ScimType::InvalidSyntax,
            "needs a value",
        ),
    ];
    for (body, want, needle) in cases {
        let (got, detail) = kind(parse_patch(body.clone()));
        assert_eq!(got, want, "{body}");
        assert!(detail.contains(needle), "{body}: {detail}");
    }
}

#[test]
fn entra_pathless_replace_with_dotted_and_urn_keys() {
    let got = patch(
        alice(),
        json!([{"op": "Replace", "value": {
            "displayName": "Alice L",
            "name.givenName": "Alicia",
            "NAME.familyName": "L",
            format!("{ENTERPRISE_URN}:employeeNumber"): "701",
            format!("{ENTERPRISE_URN}:manager"): "m2",
            "active": "False",
            "urn:ietf:params:scim:schemas:core:2.0:User:title": "Boss"
        }}]),
    )
    .unwrap();
    assert_eq!(got["displayName"], json!("Alice L"));
    assert_eq!(got["title"], json!("Boss"));
    assert_eq!(
        got["name"],
        json!({"givenName": "Alicia", "familyName": "L"})
    );
    assert_eq!(got["active"], json!(false));
    assert_eq!(
        got[ENTERPRISE_URN],
        json!({"department": "Sales", "employeeNumber": "701", "manager": {"value": "m2"}})
    );
}

#[test]
fn pathless_values_ignore_server_owned_and_unknown_keys() {
    let got = patch(
        alice(),
        json!([{"op": "replace", "value": {
            "id": "other", "meta": {"version": "W/\"9\""}, "schemas": ["x"],
            "groups": [{"value": "g"}], "shoeSize": 44, "urn:example:custom:thing": 1,
            "http://schemas.microsoft.com/x": 1, "password": "p", "nickName": "Al"
        }}]),
    )
    .unwrap();
    let mut want = user_from_body(alice(), &cat()).unwrap().into_attrs();
    want.insert("nickName".into(), json!("Al"));
    assert_eq!(got, Value::Object(want));
}

#[test]
fn okta_pathless_deactivation_and_entra_path_deactivation() {
    for operations in [
        json!([{"op": "replace", "value": {"active": false}}]),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
        json!([{"op": "Replace", "path": "Active", "value": "false"}]),
    ] {
        let got = patch(alice(), operations.clone()).unwrap();
        assert_eq!(got["active"], json!(false), "{operations}");
    }
}

#[test]
fn add_on_absent_value_path_creates_the_element() {
    let start = json!({"userName": "bob"});
    let got = patch(
        start.clone(),
        json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "bob@work.example"},
            {"op": "Add", "path": "emails[type eq \"work\"].primary", "value": "True"}
        ]),
    )
    .unwrap();
    assert_eq!(
        got["emails"],
        json!([{"type": "work", "value": "bob@work.example", "primary": true}])
    );
    // replace behaves the same when the filter is only eq terms (Entra ID).
    let got = patch(
        start,
        json!([
            {"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1"}
        ]),
    )
    .unwrap();
    assert_eq!(
        got["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1"}])
    );
}

#[test]
fn several_ops_on_one_value_path_build_one_element() {
    let got = patch(json!({"userName": "bob"}), json!([
        {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
        {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Springfield"},
        {"op": "Replace", "path": "addresses[type eq \"work\"].postalCode", "value": "12345"},
        {"op": "Add", "path": "addresses[type eq \"home\"].country", "value": "NL"}
    ]))
    .unwrap();
    assert_eq!(
        got["addresses"],
        json!([
            {"type": "work", "streetAddress": "1 Main St", "locality": "Springfield", "postalCode": "12345"},
            {"type": "home", "country": "NL"}
        ])
    );
}

#[test]
fn value_paths_change_only_matching_elements() {
    let cases = [
        (
            json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@new.example"}),
            json!([
                {"value": "a@new.example", "type": "work", "primary": true},
                {"value": "alice@home.example", "type": "home"}
            ]),
        ),
        (
            json!({"op": "replace", "path": "emails[TYPE eq \"HOME\"]", "value": {"display": "Home", "primary": true}}),
            json!([
                {"value": "alice@example.com", "type": "work", "primary": false},
                {"value": "alice@home.example", "type": "home", "display": "Home", "primary": true}
            ]),
        ),
        (
            json!({"op": "remove", "path": "emails[type eq \"home\"]"}),
            json!([{"value": "alice@example.com", "type": "work", "primary": true}]),
        ),
        (
            json!({"op": "remove", "path": "emails[type eq \"work\"].primary"}),
            json!([
                {"value": "alice@example.com", "type": "work"},
                {"value": "alice@home.example", "type": "home"}
            ]),
        ),
        (
            json!({"op": "remove", "path": "emails[type eq \"other\"]"}),
            json!([
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "alice@home.example", "type": "home"}
            ]),
        ),
        (
            json!({"op": "remove", "path": "emails[value ew \"example.com\" or type eq \"home\"]"}),
            Value::Null,
        ),
    ];
    for (op, want) in cases {
        let got = patch(alice(), json!([op.clone()])).unwrap();
        assert_eq!(
            got.get("emails").cloned().unwrap_or(Value::Null),
            want,
            "{op}"
        );
    }
}

#[test]
fn unmatched_non_eq_filter_is_no_target() {
    let (k, detail) = kind(patch(
        alice(),
        json!([
            {"op": "replace", "path": "emails[value co \"nobody\"].value", "value": "x"}
        ]),
    ));
    assert_eq!(k, ScimType::NoTarget);
    assert!(
        detail.contains("emails[value co \"nobody\"].value"),
        "{detail}"
    );
}

#[test]
fn multi_valued_add_replace_remove() {
    let cases = [
        // add appends, skipping values already there; the new primary wins.
        (
            json!({"op": "add", "path": "emails", "value": [
                {"value": "alice@home.example", "type": "home"},
                {"value": "a@other.example", "primary": "true"}
            ]}),
            json!([
                {"value": "alice@example.com", "type": "work", "primary": false},
                {"value": "alice@home.example", "type": "home"},
                {"value": "a@other.example", "primary": true}
            ]),
        ),
        // a single object is one value.
        (
            json!({"op": "add", "value": {"emails": {"value": "x@y"}}}),
            json!([
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "alice@home.example", "type": "home"},
                {"value": "x@y"}
            ]),
        ),
        (
            json!({"op": "replace", "path": "emails", "value": [{"value": "only@x"}]}),
            json!([{"value": "only@x"}]),
        ),
        // remove with a value list removes only the listed values (case-insensitively).
        (
            json!({"op": "Remove", "path": "emails", "value": [{"value": "ALICE@home.example"}]}),
            json!([{"value": "alice@example.com", "type": "work", "primary": true}]),
        ),
        (
            json!({"op": "remove", "path": "emails", "value": []}),
            json!([
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "alice@home.example", "type": "home"}
            ]),
        ),
        (json!({"op": "remove", "path": "emails"}), Value::Null),
        (
            json!({"op": "replace", "path": "emails", "value": []}),
            Value::Null,
        ),
    ];
    for (op, want) in cases {
        let got = patch(alice(), json!([op.clone()])).unwrap();
        assert_eq!(
            got.get("emails").cloned().unwrap_or(Value::Null),
            want,
            "{op}"
        );
    }
}

#[test]
fn single_valued_and_complex_attributes() {
    let cases = [
        (
            json!({"op": "add", "path": "title", "value": "CEO"}),
            "title",
            json!("CEO"),
        ),
        (
            json!({"op": "replace", "path": "name", "value": {"givenName": "Al", "middleName": null}}),
            "name",
            json!({"givenName": "Al", "familyName": "Liddell"}),
        ),
        (
            json!({"op": "add", "path": "name", "value": {"honorificPrefix": "Dr"}}),
            "name",
            json!({"givenName": "Alice", "familyName": "Liddell", "honorificPrefix": "Dr"}),
        ),
        (
            json!({"op": "remove", "path": "name.givenName"}),
            "name",
            json!({"familyName": "Liddell"}),
        ),
        (json!({"op": "remove", "path": "name"}), "name", Value::Null),
        (
            json!({"op": "replace", "path": "name.formatted", "value": "A L"}),
            "name",
            json!({"givenName": "Alice", "familyName": "Liddell", "formatted": "A L"}),
        ),
        (
            json!({"op": "remove", "path": "nickName"}),
            "nickName",
            Value::Null,
        ),
        (
            json!({"op": "replace", "path": "password", "value": "s3cret"}),
            "password",
            Value::Null,
        ),
    ];
    for (op, key, want) in cases {
        let got = patch(alice(), json!([op.clone()])).unwrap();
        assert_eq!(got.get(key).cloned().unwrap_or(Value::Null), want, "{op}");
    }
}

#[test]
fn enterprise_extension_paths() {
    let ext = |op: Value| {
        patch(alice(), json!([op.clone()]))
            .unwrap()
            .get(ENTERPRISE_URN)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let cases = [
        (
            json!({"op": "replace", "path": format!("{ENTERPRISE_URN}:manager"), "value": "m2"}),
            json!({"department": "Sales", "manager": {"value": "m2"}}),
        ),
        (
            json!({"op": "replace", "path": format!("{ENTERPRISE_URN}:manager"), "value": [{"value": "m3"}]}),
            json!({"department": "Sales", "manager": {"value": "m3"}}),
        ),
        (
            json!({"op": "replace", "path": format!("{ENTERPRISE_URN}:manager.value"), "value": "m4"}),
            json!({"department": "Sales", "manager": {"value": "m4"}}),
        ),
        (
            json!({"op": "replace", "path": format!("{ENTERPRISE_URN}:manager"), "value": {"value": "m5", "displayName": "x"}}),
            json!({"department": "Sales", "manager": {"value": "m5"}}),
        ),
        (
            json!({"op": "remove", "path": format!("{ENTERPRISE_URN}:manager")}),
            json!({"department": "Sales"}),
        ),
        (
            json!({"op": "replace", "path": "department", "value": "Ops"}),
            json!({"department": "Ops", "manager": {"value": "m1"}}),
        ),
        (
            json!({"op": "add", "path": ENTERPRISE_URN.to_lowercase(), "value": {"costCenter": "42", "Department": "HR"}}),
            json!({"department": "HR", "costCenter": "42", "manager": {"value": "m1"}}),
        ),
        (
            json!({"op": "add", "value": {ENTERPRISE_URN: {"division": "EU"}}}),
            json!({"department": "Sales", "division": "EU", "manager": {"value": "m1"}}),
        ),
        (json!({"op": "remove", "path": ENTERPRISE_URN}), Value::Null),
        (
            json!({"op": "remove", "path": format!("{ENTERPRISE_URN}:department")}),
            json!({"manager": {"value": "m1"}}),
        ),
    ];
    for (op, want) in cases {
        assert_eq!(ext(op.clone()), want, "{op}");
    }
    // A new extension object is created when the user has none.
    let got = patch(
        json!({"userName": "bob"}),
        json!([
            {"op": "add", "path": format!("{ENTERPRISE_URN}:employeeNumber"), "value": "7"}
        ]),
    )
    .unwrap();
    assert_eq!(got[ENTERPRISE_URN], json!({"employeeNumber": "7"}));
}

#[test]
fn explicit_paths_are_checked() {
    let cases: &[(Value, ScimType, &str)] = &[
        (
            json!({"op": "replace", "path": "shoeSize", "value": 1}),
            ScimType::InvalidPath,
            "shoeSize",
        ),
        (
            json!({"op": "replace", "path": "name.shoeSize", "value": 1}),
            ScimType::InvalidPath,
            "name.shoeSize",
        ),
        (
            json!({"op": "remove", "path": "members"}),
            ScimType::InvalidPath,
            "members",
        ),
        (
            json!({"op": "remove", "path": "urn:example:custom:thing"}),
            ScimType::InvalidPath,
            "urn:example",
        ),
        (
            json!({"op": "remove", "path": "emails[shoe eq \"x\"]"}),
            ScimType::InvalidPath,
            "shoe",
        ),
        (
            json!({"op": "remove", "path": "name[givenName eq \"x\"]"}),
            ScimType::InvalidPath,
            "single-valued",
        ),
        (
            json!({"op": "replace", "path": "id", "value": "x"}),
            ScimType::Mutability,
            "id",
        ),
        (
            json!({"op": "replace", "path": "meta", "value": {}}),
            ScimType::Mutability,
            "meta",
        ),
        (
            json!({"op": "remove", "path": "meta.created"}),
            ScimType::Mutability,
            "meta.created",
        ),
        (
            json!({"op": "add", "path": "groups", "value": [{"value": "g"}]}),
            ScimType::Mutability,
            "groups",
        ),
        (
            json!({"op": "replace", "path": format!("{ENTERPRISE_URN}:manager.displayName"), "value": "x"}),
            ScimType::Mutability,
            "manager.displayName",
        ),
        (
            json!({"op": "remove", "path": "userName"}),
            ScimType::InvalidValue,
            "userName",
        ),
        (
            json!({"op": "replace", "path": "userName", "value": ""}),
            ScimType::InvalidValue,
            "userName",
        ),
        (
            json!({"op": "replace", "path": "active", "value": "maybe"}),
            ScimType::InvalidValue,
            "active",
        ),
        (
            json!({"op": "replace", "path": "emails[type eq \"work\"]", "value": "x"}),
            ScimType::InvalidValue,
            "emails",
        ),
        (
            json!({"op": "replace", "path": "name", "value": 3}),
            ScimType::InvalidValue,
            "name",
        ),
    ];
    for (op, want, needle) in cases {
        let (got, detail) = kind(patch(alice(), json!([op.clone()])));
        assert_eq!(got, *want, "{op}: {detail}");
        assert!(detail.contains(needle), "{op}: {detail}");
    }
}

#[test]
fn operations_are_all_or_nothing() {
    let c = cat();
    let doc = user_from_body(alice(), &c).unwrap();
    let before = doc.clone();
    let result = patch_doc(
        &doc,
        &ops(json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "id", "value": "x"}
        ])),
        &c,
    );
    let (k, detail) = kind(result);
    assert_eq!(k, ScimType::Mutability);
    assert!(detail.starts_with("Operations[1]"), "{detail}");
    assert_eq!(doc, before);
}

fn plan(operations: Value) -> Result<GroupPatchPlan, ScimError> {
    plan_group_patch(ops(operations), &cat())
}

fn ids(raw: &[&str]) -> Vec<String> {
    raw.iter().map(|s| (*s).to_owned()).collect()
}

fn vf(raw: &str) -> ValFilter {
    match format!("members[{raw}]").parse::<PatchPath>() {
        Ok(PatchPath::Value(vp)) => vp.filter,
        other => panic!("{other:?}"),
    }
}

#[test]
fn group_membership_operations_become_set_operations() {
    let cases = [
        (
            json!([{"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]}]),
            vec![MemberOp::Add(ids(&["u1", "u2"]))],
        ),
        // Entra ID: removes only the listed members, never all of them.
        (
            json!([{"op": "Remove", "path": "members", "value": [{"value": "u1"}]}]),
            vec![MemberOp::Remove(ids(&["u1"]))],
        ),
        (
            json!([{"op": "remove", "path": "members", "value": []}]),
            vec![],
        ),
        (
            json!([{"op": "remove", "path": "members"}]),
            vec![MemberOp::RemoveAll],
        ),
        (
            json!([{"op": "replace", "path": "members", "value": [{"value": "u3"}]}]),
            vec![MemberOp::RemoveAll, MemberOp::Add(ids(&["u3"]))],
        ),
        (
            json!([{"op": "replace", "path": "members", "value": []}]),
            vec![MemberOp::RemoveAll],
        ),
        (
            json!([{"op": "replace", "value": {"members": [{"value": "u4"}]}}]),
            vec![MemberOp::RemoveAll, MemberOp::Add(ids(&["u4"]))],
        ),
        (
            json!([{"op": "add", "value": {"Members": {"value": "u5"}}}]),
            vec![MemberOp::Add(ids(&["u5"]))],
        ),
        // Okta: remove by filter, then add.
        (
            json!([
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "add", "path": "members", "value": [{"value": "u2"}]}
            ]),
            vec![MemberOp::Remove(ids(&["u1"])), MemberOp::Add(ids(&["u2"]))],
        ),
        (
            json!([{"op": "remove", "path": "members[VALUE eq \"u1\" or value eq \"u2\"]"}]),
            vec![MemberOp::Remove(ids(&["u1", "u2"]))],
        ),
        (
            json!([{"op": "remove", "path": "members[Type eq \"Group\"]"}]),
            vec![MemberOp::RemoveWhere(vf("type eq \"Group\""))],
        ),
        (
            json!([{"op": "replace", "path": "members[value eq \"u1\"]", "value": [{"value": "u9"}]}]),
            vec![
                MemberOp::RemoveWhere(vf("value eq \"u1\"")),
                MemberOp::Add(ids(&["u9"])),
            ],
        ),
        (
            json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:Group:members", "value": {"value": "u6"}}]),
            vec![MemberOp::Add(ids(&["u6"]))],
        ),
    ];
    for (operations, want) in cases {
        let got = plan(operations.clone()).unwrap();
        assert_eq!(got.members, want, "{operations}");
        assert!(got.doc_ops.is_empty(), "{operations}");
    }
}

#[test]
fn group_membership_paths_are_checked() {
    let cases: &[(Value, ScimType)] = &[
        (
            json!({"op": "replace", "path": "members.value", "value": "x"}),
            ScimType::Mutability,
        ),
        (
            json!({"op": "remove", "path": "members[value eq \"x\"].type"}),
            ScimType::Mutability,
        ),
        (
            json!({"op": "add", "path": "members[value eq \"x\"]", "value": {"value": "y"}}),
            ScimType::InvalidPath,
        ),
        (
            json!({"op": "remove", "path": "members[display eq \"x\"]"}),
            ScimType::InvalidPath,
        ),
        (
            json!({"op": "remove", "path": "members[shoe eq \"x\"]"}),
            ScimType::InvalidPath,
        ),
        (
            json!({"op": "add", "path": "members", "value": ["u1"]}),
            ScimType::InvalidValue,
        ),
        (
            json!({"op": "remove", "path": "members", "value": [{"display": "x"}]}),
            ScimType::InvalidValue,
        ),
    ];
    for (op, want) in cases {
        let (got, detail) = kind(plan(json!([op.clone()])));
        assert_eq!(got, *want, "{op}: {detail}");
    }
}

#[test]
fn okta_rename_with_id_in_value_and_mixed_pathless_value() {
    let c = cat();
    let (doc, _) = group_from_body(json!({"displayName": "Old", "externalId": "e"}), &c).unwrap();
    let p = plan(json!([
        {"op": "replace", "value": {"id": "g1", "displayName": "New", "members": [{"value": "u1"}]}},
        {"op": "Remove", "path": "externalId"}
    ]))
    .unwrap();
    assert_eq!(
        p.members,
        vec![MemberOp::RemoveAll, MemberOp::Add(ids(&["u1"]))]
    );
    assert_eq!(p.doc_ops.len(), 2);
    let got = patch_doc(&doc, &p.doc_ops, &c).unwrap();
    assert_eq!(
        Value::Object(got.into_attrs()),
        json!({"displayName": "New"})
    );
}

#[test]
fn group_document_patches_are_validated() {
    let c = cat();
    let (doc, _) = group_from_body(json!({"displayName": "G"}), &c).unwrap();
    let p = plan(json!([{"op": "remove", "path": "displayName"}])).unwrap();
    let (k, _) = kind(patch_doc(&doc, &p.doc_ops, &c));
    assert_eq!(k, ScimType::InvalidValue);
    let p = plan(json!([{"op": "replace", "path": "userName", "value": "x"}])).unwrap();
    let (k, _) = kind(patch_doc(&doc, &p.doc_ops, &c));
    assert_eq!(k, ScimType::InvalidPath);
    let p = plan(json!([{"op": "add", "path": "EXTERNALID", "value": "e2"}])).unwrap();
    let got = patch_doc(&doc, &p.doc_ops, &c).unwrap();
    assert_eq!(got.external_id(), Some("e2"));
}
