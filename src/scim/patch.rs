//! SCIM PATCH (RFC 7644 §3.5.2): parsing a `PatchOp` body and applying its operations to a
//! user's document or planning them for a group, all or nothing.
//!
//! Paths are parsed by `scim_v2`'s grammar ([`PatchPath`]) and resolved against the
//! catalogue, case-insensitively and with or without the schema URN (RFC 7644 §3.10).
//! Operations apply in request order to a working copy, and the request is atomic
//! (RFC 7644 §3.5.2: "If a single operation encounters an error condition, the original SCIM
//! resource MUST be restored"): any failure discards the copy. The result goes through the
//! same normalisation as a POST body ([`super::resource`]).
//!
//! Where identity providers and the RFC part ways, this module follows the providers, as
//! documented on each rule:
//! - a pathless `add`/`replace` value's keys are paths (`name.givenName`,
//!   `urn:...:enterprise:2.0:User:employeeNumber`), not literal names (Microsoft Entra ID);
//!   server-owned and unknown keys in it (`id`, sent by Okta) are ignored;
//! - `add`/`replace` on `emails[type eq "work"].value` with no matching element creates one
//!   from the filter's `eq` terms (Entra ID expects it; for `replace`, RFC 7644 §3.5.2.3
//!   would answer `noTarget`, which is kept for filters that do not pin an element down);
//! - `remove` on a multi-valued attribute with a `value` list removes only the listed values
//!   (Entra ID's membership removal; read literally, RFC 7644 §3.5.2.2 removes them all,
//!   which for a group is a privilege incident).
//!
//! Group membership is not part of the group's document: [`plan_group_patch`] turns every
//! operation on `members` into set operations ([`MemberOp`]) the store applies in the same
//! transaction.

use std::fmt;

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use crate::directory::{DirectoryError, GroupDoc, InvalidKind, MemberOp, ResourceKind, UserDoc};

use super::matching::{canonicalise_filter, check_filter, element_matches, eq_terms};
use super::resource::{
    get_ci, group_from_attrs, kind_of, member_values, normalise_attr, normalise_value,
    user_from_attrs, writable,
};
use super::schema::{AttrDef, AttrHome, AttrType, Catalogue, Mutability, SchemaDef};

/// The URN a PATCH body declares (RFC 7644 §3.5.2).
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most operations one PATCH request may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// RFC 7644 §3.5.2 `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Replace => "replace",
            OpKind::Remove => "remove",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed PATCH operation. `parse_patch` guarantees: `remove` has a path; a pathless
/// `add`/`replace` has an object value; an `add`/`replace` with a path has a value.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    /// `None` when the operation had no `value` member; `Some(Value::Null)` when it was `null`.
    pub value: Option<Value>,
}

/// A group PATCH, split into what changes the group's document and what changes its
/// membership. Both keep the request's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupPatchPlan {
    /// Operations on the group's own attributes, for [`patch_group_doc`].
    pub doc_ops: Vec<PatchOperation>,
    /// Membership set operations, in request order.
    pub members: Vec<MemberOp>,
}

/// Parses a PATCH body (RFC 7644 §3.5.2). Member names (`Operations`, `op`, `path`,
/// `value`) and `op` values are matched case-insensitively (Entra ID sends `"Replace"`).
pub fn parse_patch(body: Value) -> Result<Vec<PatchOperation>, DirectoryError> {
    let Value::Object(mut body) = body else {
        return Err(syntax(format!(
            "a PATCH body must be a JSON object, got {}",
            kind_of(&body)
        )));
    };
    if let Some(schemas) = take_ci(&mut body, "schemas").filter(|v| !v.is_null()) {
        let declares = |v: &Value| {
            v.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_URN))
        };
        let ok = match &schemas {
            Value::Array(items) => items.iter().any(declares),
            single => declares(single),
        };
        if !ok {
            return Err(syntax(format!(
                "a PATCH body's schemas must contain {PATCH_OP_URN}"
            )));
        }
    }
    let ops = match take_ci(&mut body, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        Some(Value::Array(_)) => {
            return Err(syntax("Operations must hold at least one operation".into()));
        }
        Some(other) => {
            return Err(syntax(format!(
                "Operations must be an array of operations, got {}",
                kind_of(&other)
            )));
        }
        None => return Err(syntax("a PATCH body needs an \"Operations\" array".into())),
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(DirectoryError::invalid(
            InvalidKind::TooMany,
            format!(
                "a PATCH request may carry at most {MAX_OPERATIONS} operations; this one has {}",
                ops.len()
            ),
        ));
    }
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| parse_operation(i, op))
        .collect()
}

fn parse_operation(i: usize, op: Value) -> Result<PatchOperation, DirectoryError> {
    let Value::Object(mut obj) = op else {
        return Err(syntax(format!(
            "Operations[{i}] must be an object, got {}",
            kind_of(&op)
        )));
    };
    let kind = match take_ci(&mut obj, "op") {
        Some(Value::String(s)) if s.eq_ignore_ascii_case("add") => OpKind::Add,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
        Some(Value::String(s)) => {
            return Err(syntax(format!(
                "Operations[{i}].op {s:?} is not add, replace or remove"
            )));
        }
        _ => {
            return Err(syntax(format!(
                "Operations[{i}] needs an \"op\": add, replace or remove"
            )));
        }
    };
    let path = match take_ci(&mut obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.parse::<PatchPath>().map_err(|e| {
            DirectoryError::invalid(
                InvalidKind::InvalidPath,
                format!("Operations[{i}].path {s:?} is not a valid SCIM path: {e}"),
            )
        })?),
        Some(other) => {
            return Err(syntax(format!(
                "Operations[{i}].path must be a string, got {}",
                kind_of(&other)
            )));
        }
    };
    let value = take_ci(&mut obj, "value");
    match (kind, &path, &value) {
        (OpKind::Remove, None, _) => Err(DirectoryError::invalid(
            InvalidKind::NoTarget,
            format!("Operations[{i}]: remove needs a path naming what to remove"),
        )),
        (OpKind::Add | OpKind::Replace, None, Some(Value::Object(_))) => Ok(()),
        (OpKind::Add | OpKind::Replace, None, _) => Err(syntax(format!(
            "Operations[{i}]: {kind} without a path needs an object value whose keys are the attributes to change"
        ))),
        (OpKind::Add | OpKind::Replace, Some(_), None) => {
            Err(syntax(format!("Operations[{i}]: {kind} needs a value")))
        }
        _ => Ok(()),
    }?;
    Ok(PatchOperation {
        op: kind,
        path,
        value,
    })
}

/// Applies operations to a copy of a user's document, then normalises and validates the
/// result like a PUT body. Any failure leaves `doc` as it was and returns the error.
pub fn patch_user(
    doc: &UserDoc,
    ops: &[PatchOperation],
    cat: &Catalogue,
) -> Result<UserDoc, DirectoryError> {
    let mut work = doc.attrs().clone();
    let engine = Engine {
        kind: ResourceKind::User,
        cat,
    };
    for (i, op) in ops.iter().enumerate() {
        engine.apply(&mut work, op).map_err(|e| at(i, e))?;
    }
    user_from_attrs(work, cat)
}

/// Applies a group's document operations (from [`plan_group_patch`]) to a copy of its
/// document, then normalises and validates the result. Operations on `members` have no
/// effect here: they are planned as [`MemberOp`]s.
pub fn patch_group_doc(
    doc: &GroupDoc,
    ops: &[PatchOperation],
    cat: &Catalogue,
) -> Result<GroupDoc, DirectoryError> {
    let mut work = doc.attrs().clone();
    let engine = Engine {
        kind: ResourceKind::Group,
        cat,
    };
    for (i, op) in ops.iter().enumerate() {
        engine.apply(&mut work, op).map_err(|e| at(i, e))?;
    }
    group_from_attrs(work, cat)
}

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
) -> Result<GroupPatchPlan, DirectoryError> {
    let members_def = cat
        .group
        .attr("members")
        .cloned()
        .ok_or_else(|| DirectoryError::Corrupt("the Group schema has no members".into()))?;
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
) -> Result<(), DirectoryError> {
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
                            return Err(mutability(format!(
                                "{key}: member sub-attributes are immutable; change the member list instead"
                            )));
                        }
                        set_members(op.op, &v, &mut plan.members)?;
                    }
                    Ok(path @ PatchPath::Value(_)) if targets_members(&path, cat) => {
                        return Err(invalid_path(format!(
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
) -> Result<(), DirectoryError> {
    match path {
        PatchPath::Attr(a) => {
            if let Some(sub) = a.sub_attr {
                return Err(mutability(format!(
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
                return Err(mutability(format!(
                    "{text}.{sub}: member sub-attributes are immutable; add or remove members instead"
                )));
            }
            let mut filter = vp.filter;
            check_member_filter(&filter, members_def)
                .map_err(|d| invalid_path(format!("{text}: {d}")))?;
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
                OpKind::Add => Err(invalid_path(format!(
                    "{text}: add cannot target filtered members; add to \"members\""
                ))),
            }
        }
    }
}

/// `add`/`replace` of the whole member list.
fn set_members(op: OpKind, value: &Value, out: &mut Vec<MemberOp>) -> Result<(), DirectoryError> {
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

fn ids_of(v: &Value) -> Result<Vec<String>, DirectoryError> {
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

/// Where an operation lands, resolved against the catalogue.
enum Target<'c> {
    /// The whole object of an extension (the path is the extension's URN).
    Extension(&'c SchemaDef),
    Attr(Box<AttrTarget>),
    /// An attribute pimgate never stores (`password`, `writeOnly`): accepted, no effect.
    Ignored,
}

struct AttrTarget {
    /// `None` for a top-level attribute; the URN for one inside an extension object.
    ext: Option<&'static str>,
    attr: AttrDef,
    sub: Option<AttrDef>,
    /// The value filter of a `valuePath`; `None` selects every element.
    filter: Option<ValFilter>,
    /// The path as the client wrote it, for error details.
    text: String,
}

/// Why a path did not resolve; explicit paths turn these into errors, pathless keys ignore
/// the first two.
enum Unresolved {
    Unknown(String),
    ReadOnly(String),
    Malformed(String),
}

impl Unresolved {
    fn into_error(self) -> DirectoryError {
        match self {
            Unresolved::Unknown(d) | Unresolved::Malformed(d) => invalid_path(d),
            Unresolved::ReadOnly(d) => mutability(d),
        }
    }
}

struct Engine<'c> {
    kind: ResourceKind,
    cat: &'c Catalogue,
}

impl<'c> Engine<'c> {
    fn apply(
        &self,
        work: &mut Map<String, Value>,
        op: &PatchOperation,
    ) -> Result<(), DirectoryError> {
        match &op.path {
            Some(path) => {
                let target = self.resolve(path).map_err(Unresolved::into_error)?;
                self.apply_target(work, op.op, &target, op.value.clone())
            }
            None => {
                let Some(Value::Object(obj)) = &op.value else {
                    return Err(syntax(format!(
                        "{} without a path needs an object value",
                        op.op
                    )));
                };
                for (key, v) in obj {
                    // Keys are paths (Entra ID); what does not resolve, or is the server's
                    // (`id`, `meta`, `schemas`), is ignored (Okta sends `id` in a rename).
                    let Ok(path) = key.parse::<PatchPath>() else {
                        continue;
                    };
                    let target = match self.resolve(&path) {
                        Ok(t) => t,
                        Err(Unresolved::Unknown(_) | Unresolved::ReadOnly(_)) => continue,
                        Err(e @ Unresolved::Malformed(_)) => return Err(e.into_error()),
                    };
                    self.apply_target(work, op.op, &target, Some(v.clone()))?;
                }
                Ok(())
            }
        }
    }

    fn resolve(&self, path: &PatchPath) -> Result<Target<'c>, Unresolved> {
        let text = path.to_string();
        let (attr_path, filter, vsub) = match path {
            PatchPath::Attr(a) => (a, None, None),
            PatchPath::Value(vp) => (&vp.attr, Some(&vp.filter), vp.sub_attr.as_deref()),
        };
        // The crate reads `urn:...:enterprise:2.0:User` as uri `urn:...:2.0`, name `User`.
        if let (None, None, Some(uri)) = (filter, &attr_path.sub_attr, &attr_path.uri)
            && let Some(ext) = self
                .cat
                .extension(self.kind, &format!("{uri}:{}", attr_path.name))
        {
            return Ok(Target::Extension(ext));
        }
        let r = self
            .cat
            .resolve(self.kind, attr_path)
            .map_err(|e| Unresolved::Unknown(format!("{text}: {e}")))?;
        let sub = match (r.sub, vsub) {
            (Some(_), Some(_)) => {
                return Err(Unresolved::Malformed(format!(
                    "{text}: a filter applies to an attribute, not a sub-attribute"
                )));
            }
            (Some(sub), None) => Some(sub),
            (None, Some(name)) => Some(r.attr.sub(name).cloned().ok_or_else(|| {
                Unresolved::Unknown(format!(
                    "{text}: {} has no sub-attribute {name:?}",
                    r.attr.name
                ))
            })?),
            (None, None) => None,
        };
        if let Some(f) = filter {
            if !r.attr.multi_valued {
                return Err(Unresolved::Malformed(format!(
                    "{text}: {} is single-valued; a [filter] selects values of a multi-valued attribute",
                    r.attr.name
                )));
            }
            check_filter(f, &r.attr).map_err(|d| Unresolved::Malformed(format!("{text}: {d}")))?;
        }
        let read_only = r.attr.mutability == Mutability::ReadOnly
            || sub
                .as_ref()
                .is_some_and(|s| s.mutability == Mutability::ReadOnly);
        if read_only {
            return Err(Unresolved::ReadOnly(format!(
                "{text} is readOnly: the service provider sets it (RFC 7643 §7)"
            )));
        }
        if r.attr.mutability == Mutability::WriteOnly {
            return Ok(Target::Ignored);
        }
        Ok(Target::Attr(Box::new(AttrTarget {
            ext: match r.home {
                AttrHome::Extension(urn) => Some(urn),
                AttrHome::Common | AttrHome::Core => None,
            },
            attr: r.attr,
            sub,
            filter: filter.cloned(),
            text,
        })))
    }

    fn apply_target(
        &self,
        work: &mut Map<String, Value>,
        op: OpKind,
        target: &Target<'_>,
        value: Option<Value>,
    ) -> Result<(), DirectoryError> {
        match target {
            Target::Ignored => Ok(()),
            Target::Extension(ext) => apply_extension(work, op, ext, value),
            // Membership is planned as set operations, never stored in the document.
            Target::Attr(t) if self.kind == ResourceKind::Group && t.attr.name == "members" => {
                Ok(())
            }
            Target::Attr(t) => apply_attr(work, op, t, value),
        }
    }
}

fn apply_extension(
    work: &mut Map<String, Value>,
    op: OpKind,
    ext: &SchemaDef,
    value: Option<Value>,
) -> Result<(), DirectoryError> {
    let obj = match (op, value) {
        (OpKind::Remove, _) | (OpKind::Replace, Some(Value::Null)) => {
            work.remove(ext.urn);
            return Ok(());
        }
        (_, None | Some(Value::Null)) => return Ok(()),
        (_, Some(Value::Object(obj))) => obj,
        (_, Some(other)) => {
            return Err(invalid_value(format!(
                "{}: expected an object of extension attributes, got {}",
                ext.urn,
                kind_of(&other)
            )));
        }
    };
    for (key, v) in obj {
        let Some(def) = ext.attr(&key) else { continue };
        if !writable(def) {
            continue;
        }
        let target = AttrTarget {
            ext: Some(ext.urn),
            attr: def.clone(),
            sub: None,
            filter: None,
            text: format!("{}:{}", ext.urn, def.name),
        };
        apply_attr(work, op, &target, Some(v))?;
    }
    Ok(())
}

/// The object an attribute lives in: the document, or its extension's object.
fn container<'w>(
    work: &'w mut Map<String, Value>,
    ext: Option<&str>,
    create: bool,
) -> Option<&'w mut Map<String, Value>> {
    let Some(urn) = ext else { return Some(work) };
    let slot_ok = work.get(urn).is_some_and(Value::is_object);
    if !slot_ok {
        if !create {
            return None;
        }
        work.insert(urn.to_owned(), Value::Object(Map::new()));
    }
    work.get_mut(urn).and_then(Value::as_object_mut)
}

fn apply_attr(
    work: &mut Map<String, Value>,
    op: OpKind,
    t: &AttrTarget,
    value: Option<Value>,
) -> Result<(), DirectoryError> {
    let create = op != OpKind::Remove;
    let Some(home) = container(work, t.ext, create) else {
        return Ok(());
    };
    if t.attr.multi_valued {
        return apply_multi(home, op, t, value);
    }
    let name = t.attr.name.as_str();
    match (op, &t.sub, value.unwrap_or(Value::Null)) {
        (OpKind::Remove, None, _) => {
            home.remove(name);
        }
        // A complex attribute given sub-attributes: merge them (those not given stay).
        (_, None, Value::Object(given)) if t.attr.ty == AttrType::Complex => {
            let mut obj = take_object(home, name);
            merge(&mut obj, &t.attr, given, &t.text)?;
            put_object(home, name, obj);
        }
        (OpKind::Add | OpKind::Replace, None, other) => {
            set_or_remove(home, name, normalise_attr(&t.attr, other, &t.text)?);
        }
        (op, Some(sub), v) => {
            let v = match op {
                OpKind::Remove => None,
                OpKind::Add | OpKind::Replace => normalise_attr(sub, v, &t.text)?,
            };
            if op != OpKind::Remove || home.contains_key(name) {
                let mut obj = take_object(home, name);
                set_or_remove(&mut obj, &sub.name, v);
                put_object(home, name, obj);
            }
        }
    }
    Ok(())
}

fn apply_multi(
    home: &mut Map<String, Value>,
    op: OpKind,
    t: &AttrTarget,
    value: Option<Value>,
) -> Result<(), DirectoryError> {
    let name = t.attr.name.as_str();
    let selective = t.filter.is_some() || t.sub.is_some();
    let value = value.unwrap_or(Value::Null);
    if op == OpKind::Replace && !selective {
        set_or_remove(home, name, normalise_attr(&t.attr, value, &t.text)?);
        return Ok(());
    }
    if op == OpKind::Remove && !selective && value.is_null() {
        home.remove(name);
        return Ok(());
    }
    let mut list = take_array(home, name);
    match op {
        OpKind::Add if !selective => {
            if let Some(Value::Array(new)) = normalise_attr(&t.attr, value, &t.text)? {
                let mut added = Vec::new();
                for item in new {
                    if !list.contains(&item) {
                        added.push(list.len());
                        list.push(item);
                    }
                }
                settle_primary(&mut list, &added);
            }
        }
        OpKind::Remove if !selective => {
            // Only the listed values go (Entra ID); never all of them.
            let listed = match value {
                Value::Array(items) => items,
                single => vec![single],
            };
            list.retain(|el| !listed.iter().any(|l| same_value(&t.attr, el, l)));
        }
        OpKind::Remove => match &t.sub {
            Some(sub) => {
                for el in list.iter_mut().filter(|el| selects(t, el)) {
                    if let Some(obj) = el.as_object_mut() {
                        obj.remove(&sub.name);
                    }
                }
            }
            None => list.retain(|el| !selects(t, el)),
        },
        OpKind::Add | OpKind::Replace => {
            let matched: Vec<usize> = (0..list.len()).filter(|&i| selects(t, &list[i])).collect();
            if matched.is_empty() {
                if let Some(el) = new_element(t, value)? {
                    let at = list.len();
                    list.push(el);
                    settle_primary(&mut list, &[at]);
                }
            } else {
                match &t.sub {
                    Some(sub) => {
                        let v = normalise_attr(sub, value, &t.text)?;
                        for &i in &matched {
                            if let Some(obj) = list[i].as_object_mut() {
                                set_or_remove(obj, &sub.name, v.clone());
                            }
                        }
                    }
                    None => {
                        let Value::Object(given) = value else {
                            return Err(invalid_value(format!(
                                "{}: expected an object of sub-attributes for the selected values, got {}",
                                t.text,
                                kind_of(&value)
                            )));
                        };
                        for &i in &matched {
                            if let Some(obj) = list[i].as_object_mut() {
                                merge(obj, &t.attr, given.clone(), &t.text)?;
                            }
                        }
                    }
                }
                settle_primary(&mut list, &matched);
            }
        }
    }
    list.retain(|el| el.as_object().is_none_or(|o| !o.is_empty()));
    if !list.is_empty() {
        home.insert(name.to_owned(), Value::Array(list));
    }
    Ok(())
}

/// Builds the element an `add`/`replace` on a value path creates when nothing matches: the
/// filter's `eq` terms plus the value (Entra ID). `noTarget` when the filter does not pin
/// the element down (RFC 7644 §3.5.2.3).
fn new_element(t: &AttrTarget, value: Value) -> Result<Option<Value>, DirectoryError> {
    let terms = match &t.filter {
        None => Map::new(),
        Some(f) => eq_terms(f).ok_or_else(|| {
            DirectoryError::invalid(
                InvalidKind::NoTarget,
                format!(
                    "{}: no value matches the filter, and a filter other than \"eq\" terms joined by \"and\" cannot say what a new value would hold",
                    t.text
                ),
            )
        })?,
    };
    let mut el = Map::new();
    for (k, v) in terms {
        let key = t.attr.sub(&k).map_or(k, |s| s.name.clone());
        el.insert(key, v);
    }
    match (&t.sub, value) {
        (_, Value::Null) => return Ok(None),
        (Some(sub), v) => {
            el.insert(sub.name.clone(), v);
        }
        (None, Value::Object(given)) => {
            for (k, v) in given {
                let key = t.attr.sub(&k).map_or(k, |s| s.name.clone());
                el.insert(key, v);
            }
        }
        (None, other) => {
            return Err(invalid_value(format!(
                "{}: expected an object of sub-attributes for the new value, got {}",
                t.text,
                kind_of(&other)
            )));
        }
    }
    normalise_value(&t.attr, Value::Object(el), &t.text)
}

/// Whether an element is selected by the target's filter (no filter selects all).
fn selects(t: &AttrTarget, el: &Value) -> bool {
    t.filter
        .as_ref()
        .is_none_or(|f| element_matches(f, el, &t.attr))
}

/// Whether an element equals a value listed in a `remove` (on its `value` sub-attribute for
/// complex values, or on every sub-attribute given when `value` is not).
fn same_value(def: &AttrDef, el: &Value, listed: &Value) -> bool {
    if def.ty != AttrType::Complex {
        return scalar_eq(def, Some(el), listed);
    }
    let value_def = def.sub("value");
    match listed {
        Value::Object(given) => match get_ci(given, "value") {
            Some(v) => scalar_eq_sub(value_def, el.get("value"), v),
            None => {
                !given.is_empty()
                    && given.iter().all(|(k, v)| {
                        let have = el.as_object().and_then(|o| get_ci(o, k));
                        scalar_eq_sub(def.sub(k), have, v)
                    })
            }
        },
        bare => scalar_eq_sub(value_def, el.get("value"), bare),
    }
}

fn scalar_eq_sub(def: Option<&AttrDef>, have: Option<&Value>, want: &Value) -> bool {
    match def {
        Some(d) => scalar_eq(d, have, want),
        None => have == Some(want),
    }
}

/// Equality under the attribute's `caseExact` (RFC 7643 §2.2).
fn scalar_eq(def: &AttrDef, have: Option<&Value>, want: &Value) -> bool {
    match (have, want) {
        (Some(Value::String(a)), Value::String(b)) if !def.case_exact => {
            a.to_lowercase() == b.to_lowercase()
        }
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

/// Merges given sub-attributes into a complex value: `null` clears one, readOnly and
/// unknown ones are ignored.
fn merge(
    obj: &mut Map<String, Value>,
    def: &AttrDef,
    given: Map<String, Value>,
    text: &str,
) -> Result<(), DirectoryError> {
    for (key, v) in given {
        let Some(sub) = def.sub(&key) else { continue };
        if !writable(sub) {
            continue;
        }
        let v = normalise_attr(sub, v, &format!("{text}.{}", sub.name))?;
        set_or_remove(obj, &sub.name, v);
    }
    Ok(())
}

/// After values were set or added at `chosen`, keeps RFC 7643 §2.4's single primary: the
/// last chosen primary wins over every other value.
fn settle_primary(list: &mut [Value], chosen: &[usize]) {
    let is_primary = |v: &Value| v.get("primary") == Some(&Value::Bool(true));
    let Some(&keep) = chosen
        .iter()
        .rev()
        .find(|&&i| list.get(i).is_some_and(is_primary))
    else {
        return;
    };
    for (i, el) in list.iter_mut().enumerate() {
        if i != keep
            && let Some(p) = el.get_mut("primary").filter(|p| **p == Value::Bool(true))
        {
            *p = Value::Bool(false);
        }
    }
}

fn set_or_remove(obj: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    match v {
        Some(v) => {
            obj.insert(key.to_owned(), v);
        }
        None => {
            obj.remove(key);
        }
    }
}

/// Takes the object at `key` out of `map` (a fresh one if absent or not an object); put it
/// back with [`put_object`]. Taking keeps the borrow simple; an error in between discards
/// the whole working copy anyway.
fn take_object(map: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match map.remove(key) {
        Some(Value::Object(obj)) => obj,
        _ => Map::new(),
    }
}

/// Puts an object back under `key`, or leaves the key absent when it is empty.
fn put_object(map: &mut Map<String, Value>, key: &str, obj: Map<String, Value>) {
    if !obj.is_empty() {
        map.insert(key.to_owned(), Value::Object(obj));
    }
}

/// Takes the array at `key` out of `map` (empty if absent; a lone value becomes one element).
fn take_array(map: &mut Map<String, Value>, key: &str) -> Vec<Value> {
    match map.remove(key) {
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) => Vec::new(),
        Some(lone) => vec![lone],
    }
}

fn take_ci(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = obj.keys().find(|k| k.eq_ignore_ascii_case(name))?.clone();
    obj.remove(&key)
}

/// Prefixes an error's detail with the operation it came from.
fn at(i: usize, e: DirectoryError) -> DirectoryError {
    match e {
        DirectoryError::Invalid { kind, detail } => DirectoryError::Invalid {
            kind,
            detail: format!("Operations[{i}]: {detail}"),
        },
        other => other,
    }
}

fn syntax(detail: String) -> DirectoryError {
    DirectoryError::invalid(InvalidKind::InvalidSyntax, detail)
}

fn invalid_path(detail: String) -> DirectoryError {
    DirectoryError::invalid(InvalidKind::InvalidPath, detail)
}

fn invalid_value(detail: String) -> DirectoryError {
    DirectoryError::invalid(InvalidKind::InvalidValue, detail)
}

fn mutability(detail: String) -> DirectoryError {
    DirectoryError::invalid(InvalidKind::Mutability, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::resource::{group_from_body, user_from_body};
    use crate::scim::schema::ENTERPRISE_URN;
    use serde_json::json;

    fn cat() -> Catalogue {
        Catalogue::load().unwrap()
    }

    fn ops(operations: Value) -> Vec<PatchOperation> {
        parse_patch(json!({"schemas": [PATCH_OP_URN], "Operations": operations})).unwrap()
    }

    fn kind(r: Result<impl std::fmt::Debug, DirectoryError>) -> (InvalidKind, String) {
        match r {
            Err(DirectoryError::Invalid { kind, detail }) => (kind, detail),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
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

    fn patch(start: Value, operations: Value) -> Result<Value, DirectoryError> {
        let c = cat();
        let doc = user_from_body(start, &c)?;
        patch_user(&doc, &ops(operations), &c).map(|d| Value::Object(d.into_attrs()))
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
        let cases: Vec<(Value, InvalidKind, &str)> = vec![
            (json!("x"), InvalidKind::InvalidSyntax, "JSON object"),
            (
                json!({"schemas": ["urn:wrong"], "Operations": [{"op": "remove", "path": "title"}]}),
                InvalidKind::InvalidSyntax,
                PATCH_OP_URN,
            ),
            (
                json!({"schemas": [PATCH_OP_URN]}),
                InvalidKind::InvalidSyntax,
                "Operations",
            ),
            (
                json!({"Operations": []}),
                InvalidKind::InvalidSyntax,
                "at least one",
            ),
            (
                json!({"Operations": {"op": "add"}}),
                InvalidKind::InvalidSyntax,
                "array",
            ),
            (
                json!({"Operations": too_many}),
                InvalidKind::TooMany,
                "1000",
            ),
            (
                op(json!("add")),
                InvalidKind::InvalidSyntax,
                "Operations[0]",
            ),
            (
                op(json!({"op": "move", "path": "title"})),
                InvalidKind::InvalidSyntax,
                "move",
            ),
            (
                op(json!({"path": "title", "value": 1})),
                InvalidKind::InvalidSyntax,
                "op",
            ),
            (
                op(json!({"op": "remove", "path": "emails[type eq"})),
                InvalidKind::InvalidPath,
                "emails[type eq",
            ),
            (
                op(json!({"op": "remove", "path": "a.b.c"})),
                InvalidKind::InvalidPath,
                "a.b.c",
            ),
            (
                op(json!({"op": "remove", "path": 7})),
                InvalidKind::InvalidSyntax,
                "path",
            ),
            (op(json!({"op": "remove"})), InvalidKind::NoTarget, "remove"),
            (
                op(json!({"op": "remove", "path": ""})),
                InvalidKind::NoTarget,
                "remove",
            ),
            (
                op(json!({"op": "add", "value": "x"})),
                InvalidKind::InvalidSyntax,
                "object value",
            ),
            (
                op(json!({"op": "replace"})),
                InvalidKind::InvalidSyntax,
                "object value",
            ),
            (
                op(json!({"op": "add", "path": "title"})),
                InvalidKind::InvalidSyntax,
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
        let got = patch(start.clone(), json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "bob@work.example"},
            {"op": "Add", "path": "emails[type eq \"work\"].primary", "value": "True"}
        ]))
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
        assert_eq!(k, InvalidKind::NoTarget);
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
        let cases: &[(Value, InvalidKind, &str)] = &[
            (
                json!({"op": "replace", "path": "shoeSize", "value": 1}),
                InvalidKind::InvalidPath,
                "shoeSize",
            ),
            (
                json!({"op": "replace", "path": "name.shoeSize", "value": 1}),
                InvalidKind::InvalidPath,
                "name.shoeSize",
            ),
            (
                json!({"op": "remove", "path": "members"}),
                InvalidKind::InvalidPath,
                "members",
            ),
            (
                json!({"op": "remove", "path": "urn:example:custom:thing"}),
                InvalidKind::InvalidPath,
                "urn:example",
            ),
            (
                json!({"op": "remove", "path": "emails[shoe eq \"x\"]"}),
                InvalidKind::InvalidPath,
                "shoe",
            ),
            (
                json!({"op": "remove", "path": "name[givenName eq \"x\"]"}),
                InvalidKind::InvalidPath,
                "single-valued",
            ),
            (
                json!({"op": "replace", "path": "id", "value": "x"}),
                InvalidKind::Mutability,
                "id",
            ),
            (
                json!({"op": "replace", "path": "meta", "value": {}}),
                InvalidKind::Mutability,
                "meta",
            ),
            (
                json!({"op": "remove", "path": "meta.created"}),
                InvalidKind::Mutability,
                "meta.created",
            ),
            (
                json!({"op": "add", "path": "groups", "value": [{"value": "g"}]}),
                InvalidKind::Mutability,
                "groups",
            ),
            (
                json!({"op": "replace", "path": format!("{ENTERPRISE_URN}:manager.displayName"), "value": "x"}),
                InvalidKind::Mutability,
                "manager.displayName",
            ),
            (
                json!({"op": "remove", "path": "userName"}),
                InvalidKind::InvalidValue,
                "userName",
            ),
            (
                json!({"op": "replace", "path": "userName", "value": ""}),
                InvalidKind::InvalidValue,
                "userName",
            ),
            (
                json!({"op": "replace", "path": "active", "value": "maybe"}),
                InvalidKind::InvalidValue,
                "active",
            ),
            (
                json!({"op": "replace", "path": "emails[type eq \"work\"]", "value": "x"}),
                InvalidKind::InvalidValue,
                "emails",
            ),
            (
                json!({"op": "replace", "path": "name", "value": 3}),
                InvalidKind::InvalidValue,
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
        let result = patch_user(
            &doc,
            &ops(json!([
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "replace", "path": "id", "value": "x"}
            ])),
            &c,
        );
        let (k, detail) = kind(result);
        assert_eq!(k, InvalidKind::Mutability);
        assert!(detail.starts_with("Operations[1]"), "{detail}");
        assert_eq!(doc, before);
    }

    fn plan(operations: Value) -> Result<GroupPatchPlan, DirectoryError> {
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
        let cases: &[(Value, InvalidKind)] = &[
            (
                json!({"op": "replace", "path": "members.value", "value": "x"}),
                InvalidKind::Mutability,
            ),
            (
                json!({"op": "remove", "path": "members[value eq \"x\"].type"}),
                InvalidKind::Mutability,
            ),
            (
                json!({"op": "add", "path": "members[value eq \"x\"]", "value": {"value": "y"}}),
                InvalidKind::InvalidPath,
            ),
            (
                json!({"op": "remove", "path": "members[display eq \"x\"]"}),
                InvalidKind::InvalidPath,
            ),
            (
                json!({"op": "remove", "path": "members[shoe eq \"x\"]"}),
                InvalidKind::InvalidPath,
            ),
            (
                json!({"op": "add", "path": "members", "value": ["u1"]}),
                InvalidKind::InvalidValue,
            ),
            (
                json!({"op": "remove", "path": "members", "value": [{"display": "x"}]}),
                InvalidKind::InvalidValue,
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
        let (doc, _) =
            group_from_body(json!({"displayName": "Old", "externalId": "e"}), &c).unwrap();
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
        let got = patch_group_doc(&doc, &p.doc_ops, &c).unwrap();
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
        let (k, _) = kind(patch_group_doc(&doc, &p.doc_ops, &c));
        assert_eq!(k, InvalidKind::InvalidValue);
        let p = plan(json!([{"op": "replace", "path": "userName", "value": "x"}])).unwrap();
        let (k, _) = kind(patch_group_doc(&doc, &p.doc_ops, &c));
        assert_eq!(k, InvalidKind::InvalidPath);
        let p = plan(json!([{"op": "add", "path": "EXTERNALID", "value": "e2"}])).unwrap();
        let got = patch_group_doc(&doc, &p.doc_ops, &c).unwrap();
        assert_eq!(got.external_id(), Some("e2"));
    }
}
