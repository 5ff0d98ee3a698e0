//! Group membership in a PATCH: every operation on `members` becomes a set operation
//! ([`MemberOp`]) the store applies in the same transaction as the document change, so a
//! one-member change costs the same on a group of ten and of a hundred thousand.

use axum::http::StatusCode;
use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::op::{GroupPatchPlan, OpKind, PatchOperation, at, syntax};
use crate::directory::schema::{AttrDef, AttrHome, Catalogue};
use crate::directory::{MemberOp, ResourceKind};
use crate::scim::error::ScimError;
use crate::scim::matching::{canonicalise_filter, check_filter};
use crate::scim::resource::member_values;

/// Splits a group PATCH into document operations and membership set operations.
///
/// - `add members` → `Add(ids)`;
/// - `replace members` (with a path, or a pathless `members` key) → `RemoveAll`, `Add(ids)`;
/// - `remove members` without a value → `RemoveAll`; with a value list → `Remove(ids)`,
///   only those (Entra ID);
/// - `remove members[value eq "x" or value eq "y"]` → `Remove(ids)`; another filter over
///   `value`/`type` → `RemoveWhere(filter)`;
/// - `replace members[filter]` → `RemoveWhere(filter)`, `Add(ids)`.
///
/// Member sub-attributes are immutable (RFC 7643 §4.2), so paths such as `members.value`
/// are `mutability` errors. Document paths are checked when the operations are applied.
pub fn plan_group_patch(
    ops: Vec<PatchOperation>,
    cat: &Catalogue,
) -> Result<GroupPatchPlan, ScimError> {
    let members_def = cat.group.attr("members").cloned().ok_or_else(|| {
        ScimError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the Group schema has no members",
        )
    })?;
    let mut plan = GroupPatchPlan::default();
    for (i, op) in ops.into_iter().enumerate() {
        plan_one(op, cat, &members_def, &mut plan).map_err(|e| at(i, e))?;
    }
    Ok(plan)
}

fn plan_one(
    op: PatchOperation,
    cat: &Catalogue,
    members_def: &AttrDef,
    plan: &mut GroupPatchPlan,
) -> Result<(), ScimError> {
    match op.path {
        Some(path) if targets_members(&path, cat) => {
            plan_members(op.op, path, op.value, members_def, &mut plan.members)
        }
        Some(path) => {
            plan.doc_ops.push(PatchOperation {
                path: Some(path),
                ..op
            });
            Ok(())
        }
        None => {
            let Some(Value::Object(obj)) = op.value else {
                return Err(syntax(format!(
                    "{} without a path needs an object value",
                    op.op
                )));
            };
            let mut rest = Map::new();
            for (key, v) in obj {
                match key.parse::<PatchPath>() {
                    Ok(PatchPath::Attr(path))
                        if targets_members(&PatchPath::Attr(path.clone()), cat) =>
                    {
                        if path.sub_attr.is_some() {
                            return Err(ScimError::mutability(format!(
                                "{key}: member sub-attributes are immutable; change the member list instead"
                            )));
                        }
                        set_members(op.op, &v, &mut plan.members)?;
                    }
                    Ok(path @ PatchPath::Value(_)) if targets_members(&path, cat) => {
                        return Err(ScimError::invalid_path(format!(
                            "{key}: a pathless value takes the whole member list under \"members\""
                        )));
                    }
                    _ => {
                        rest.insert(key, v);
                    }
                }
            }
            if !rest.is_empty() {
                plan.doc_ops.push(PatchOperation {
                    op: op.op,
                    path: None,
                    value: Some(Value::Object(rest)),
                });
            }
            Ok(())
        }
    }
}

/// Whether a path names the group's `members` (with or without a sub-attribute or filter).
fn targets_members(path: &PatchPath, cat: &Catalogue) -> bool {
    let attr = match path {
        PatchPath::Attr(a) => a,
        PatchPath::Value(vp) => &vp.attr,
    };
    let bare = AttrPath {
        uri: attr.uri.clone(),
        name: attr.name.clone(),
        sub_attr: None,
    };
    cat.resolve(ResourceKind::Group, &bare)
        .is_ok_and(|r| r.home == AttrHome::Core && r.attr.name == "members")
}

fn plan_members(
    op: OpKind,
    path: PatchPath,
    value: Option<Value>,
    members_def: &AttrDef,
    out: &mut Vec<MemberOp>,
) -> Result<(), ScimError> {
    match path {
        PatchPath::Attr(a) => {
            if let Some(sub) = a.sub_attr {
                return Err(ScimError::mutability(format!(
                    "members.{sub}: member sub-attributes are immutable; add or remove members instead"
                )));
            }
            match op {
                OpKind::Add | OpKind::Replace => {
                    set_members(op, &value.unwrap_or(Value::Null), out)
                }
                OpKind::Remove => {
                    match value {
                        None | Some(Value::Null) => out.push(MemberOp::RemoveAll),
                        Some(v) => {
                            let ids = ids_of(&v)?;
                            if !ids.is_empty() {
                                out.push(MemberOp::Remove(ids));
                            }
                        }
                    }
                    Ok(())
                }
            }
        }
        PatchPath::Value(vp) => {
            let text = format!("{}[{}]", vp.attr, vp.filter);
            if let Some(sub) = vp.sub_attr {
                return Err(ScimError::mutability(format!(
                    "{text}.{sub}: member sub-attributes are immutable; add or remove members instead"
                )));
            }
            let mut filter = vp.filter;
            check_member_filter(&filter, members_def)
                .map_err(|d| ScimError::invalid_path(format!("{text}: {d}")))?;
            canonicalise_filter(&mut filter, members_def);
            match op {
                OpKind::Remove => {
                    out.push(match filtered_ids(&filter) {
                        Some(ids) => MemberOp::Remove(ids),
                        None => MemberOp::RemoveWhere(filter),
                    });
                    Ok(())
                }
                OpKind::Replace => {
                    out.push(MemberOp::RemoveWhere(filter));
                    let ids = match value {
                        None | Some(Value::Null) => Vec::new(),
                        Some(v) => ids_of(&v)?,
                    };
                    if !ids.is_empty() {
                        out.push(MemberOp::Add(ids));
                    }
                    Ok(())
                }
                OpKind::Add => Err(ScimError::invalid_path(format!(
                    "{text}: add cannot target filtered members; add to \"members\""
                ))),
            }
        }
    }
}

/// `add`/`replace` of the whole member list.
fn set_members(op: OpKind, value: &Value, out: &mut Vec<MemberOp>) -> Result<(), ScimError> {
    let ids = match (op, value) {
        (OpKind::Replace, Value::Null) => Vec::new(),
        _ => ids_of(value)?,
    };
    if op == OpKind::Replace {
        out.push(MemberOp::RemoveAll);
    }
    if !ids.is_empty() {
        out.push(MemberOp::Add(ids));
    }
    Ok(())
}

fn ids_of(v: &Value) -> Result<Vec<String>, ScimError> {
    Ok(member_values(v)?.into_iter().map(|m| m.value).collect())
}

/// The store matches `members[...]` on `value` and `type` only.
fn check_member_filter(filter: &ValFilter, members_def: &AttrDef) -> Result<(), String> {
    check_filter(filter, members_def)?;
    let mut bad = None;
    visit_names(filter, &mut |name: &str| {
        if !(name.eq_ignore_ascii_case("value") || name.eq_ignore_ascii_case("type")) {
            bad.get_or_insert_with(|| name.to_owned());
        }
    });
    match bad {
        Some(name) => Err(format!(
            "members can be selected by value and type only, not {name:?}"
        )),
        None => Ok(()),
    }
}

fn visit_names(filter: &ValFilter, f: &mut impl FnMut(&str)) {
    match filter {
        ValFilter::Attr(AttrExp::Present(p) | AttrExp::Comparison(p, _, _)) => f(&p.name),
        ValFilter::Not(inner) => visit_names(inner, f),
        ValFilter::And(items) | ValFilter::Or(items) => {
            for item in items {
                visit_names(item, f);
            }
        }
    }
}

/// The ids of `value eq "x"` or `value eq "x" or value eq "y" ...`; `None` for any other
/// filter.
fn filtered_ids(filter: &ValFilter) -> Option<Vec<String>> {
    fn one(f: &ValFilter) -> Option<String> {
        match f {
            ValFilter::Attr(AttrExp::Comparison(p, CompareOp::Eq, CompValue::Str(s)))
                if p.name == "value" && p.uri.is_none() && p.sub_attr.is_none() =>
            {
                Some(s.clone())
            }
            _ => None,
        }
    }
    match filter {
        ValFilter::Or(items) => items.iter().map(one).collect(),
        single => one(single).map(|id| vec![id]),
    }
}
