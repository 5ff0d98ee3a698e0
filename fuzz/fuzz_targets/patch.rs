//! A PATCH body (RFC 7644 §3.5.2) through what `PATCH /Users/{id}` and `PATCH /Groups/{id}`
//! do: `parse_patch`, then `patch_doc` on a realistic user; for a group, `plan_group_patch`
//! then `patch_doc` on the group's document with the plan's document operations.
//!
//! The bytes are the body when they are JSON, else a recipe for a generated body (operations
//! with catalogue paths, value filters, typed values and member lists).
//!
//! Checked beyond "no panic":
//! - every refusal (parse, apply, plan) is a 4xx, and a 400 carries a `scimType`;
//! - a patched document is a normalised one: sent again as a body it normalises to itself,
//!   and it reads back from its stored JSON unchanged;
//! - applying the raw operations to a group document leaves membership out of it;
//! - the plan's membership operations are what the store can run: ids are non-blank, and
//!   every `members[filter]` removal compiles to SQL on both backends, with one placeholder
//!   per bind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pimgate::directory::sql::compile_filter;
use pimgate::directory::{Backend, GroupDoc, MemberOp, ResourceKind, UserDoc};
use pimgate::scim::patch::{parse_patch, patch_doc, plan_group_patch};
use pimgate::scim::resource::{group_from_body, user_from_body};
use pimgate_fuzz::{
    assert_client_error, catalogue, check_sql, generate, group_doc, json_or_generated, user_doc,
};
use scim_v2::filter::{AttrPath, Filter, ValuePath};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some(body) = json_or_generated(data, generate::patch_body) else {
        return;
    };
    let cat = catalogue();
    let ops = match parse_patch(body) {
        Ok(ops) => ops,
        Err(e) => {
            assert_client_error(&e, "parse_patch");
            return;
        }
    };

    // PATCH /Users/{id}
    match patch_doc(user_doc(), &ops, cat) {
        Ok(doc) => check_user(&doc),
        Err(e) => assert_client_error(&e, "patch_doc(user)"),
    }

    // The raw operations on a group document: members never end up in it.
    match patch_doc(group_doc(), &ops, cat) {
        Ok(doc) => check_group(&doc),
        Err(e) => assert_client_error(&e, "patch_doc(group, raw)"),
    }

    // PATCH /Groups/{id}, as the service runs it.
    match plan_group_patch(ops, cat) {
        Ok(plan) => {
            for op in &plan.members {
                match op {
                    MemberOp::Add(ids) | MemberOp::Remove(ids) => {
                        assert!(!ids.is_empty(), "an empty member set operation: {op:?}");
                        for id in ids {
                            assert!(!id.trim().is_empty(), "a blank member id: {op:?}");
                        }
                    }
                    MemberOp::RemoveWhere(f) => {
                        let filter = Filter::ValuePath(ValuePath {
                            attr: AttrPath::with_name("members"),
                            filter: Box::new(f.clone()),
                        });
                        for backend in [Backend::Sqlite, Backend::Postgres] {
                            let (sql, n) = compile_filter(backend, ResourceKind::Group, cat, &filter)
                                .unwrap_or_else(|e| {
                                    panic!("a planned members[{f}] removal does not compile on {backend:?}: {e:?}")
                                });
                            if let Err(why) = check_sql(backend, &sql, n) {
                                panic!("members[{f}] on {backend:?}: {why}\n{sql}");
                            }
                        }
                    }
                    MemberOp::RemoveAll => {}
                }
            }
            if !plan.doc_ops.is_empty() {
                match patch_doc(group_doc(), &plan.doc_ops, cat) {
                    Ok(doc) => check_group(&doc),
                    Err(e) => assert_client_error(&e, "patch_doc(group, planned)"),
                }
            }
        }
        Err(e) => assert_client_error(&e, "plan_group_patch"),
    }
});

fn check_user(doc: &UserDoc) {
    let cat = catalogue();
    let again = user_from_body(Value::Object(doc.attrs().clone()), cat)
        .unwrap_or_else(|e| panic!("a patched user does not normalise again: {e:?}\n{doc:?}"));
    assert_eq!(&again, doc, "a patched user is not normalised");
    let stored = UserDoc::from_stored(&doc.to_json())
        .unwrap_or_else(|e| panic!("a patched user does not read back: {e:?}"));
    assert_eq!(&stored, doc, "a patched user reads back changed");
}

fn check_group(doc: &GroupDoc) {
    let cat = catalogue();
    assert!(
        !doc.attrs().keys().any(|k| k.eq_ignore_ascii_case("members")),
        "members ended up in a group document: {doc:?}"
    );
    let (again, members) = group_from_body(Value::Object(doc.attrs().clone()), cat)
        .unwrap_or_else(|e| panic!("a patched group does not normalise again: {e:?}\n{doc:?}"));
    assert!(members.is_none());
    assert_eq!(&again, doc, "a patched group is not normalised");
    let stored = GroupDoc::from_stored(&doc.to_json())
        .unwrap_or_else(|e| panic!("a patched group does not read back: {e:?}"));
    assert_eq!(&stored, doc, "a patched group reads back changed");
}
