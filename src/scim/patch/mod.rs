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
//! - this file: parsing the body, and the entry points;
//! - [`document`]: applying operations to a document (what the RFC leaves to providers);
//! - [`members`]: planning a group's membership operations as set operations;
//! - [`op`]: a parsed operation.
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
//! operation on `members` into set operations ([`MemberOp`](crate::directory::MemberOp)) the store applies in the same
//! transaction.

mod document;
mod members;
mod op;
#[cfg(test)]
mod tests;

use scim_v2::filter::PatchPath;
use serde_json::{Map, Value};

use self::document::Engine;
pub use self::members::plan_group_patch;
pub use self::op::{GroupPatchPlan, OpKind, PatchOperation};
use self::op::{at, syntax};
use super::error::{ScimError, ScimType};
use super::resource::{Normalise, from_attrs, kind_of};
use crate::directory::ResourceKind;
use crate::directory::doc::Document;
use crate::directory::schema::Catalogue;

/// The URN a PATCH body declares (RFC 7644 §3.5.2).
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most operations one PATCH request may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// Parses a PATCH body (RFC 7644 §3.5.2). Member names (`Operations`, `op`, `path`,
/// `value`) and `op` values are matched case-insensitively (Entra ID sends `"Replace"`).
pub fn parse_patch(body: Value) -> Result<Vec<PatchOperation>, ScimError> {
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
        return Err(ScimError::bad_request(
            ScimType::TooMany,
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

fn parse_operation(i: usize, op: Value) -> Result<PatchOperation, ScimError> {
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
            ScimError::invalid_path(format!(
                "Operations[{i}].path {s:?} is not a valid SCIM path: {e}"
            ))
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
        (OpKind::Remove, None, _) => Err(ScimError::bad_request(
            ScimType::NoTarget,
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

/// Applies operations to a copy of a document, then normalises and validates the result
/// like a PUT body. Any failure leaves `doc` as it was and returns the error. On a group,
/// operations on `members` have no effect here: they are planned as
/// [`MemberOp`](crate::directory::MemberOp)s ([`plan_group_patch`]).
pub fn patch_doc<K: Normalise>(
    doc: &Document<K>,
    ops: &[PatchOperation],
    cat: &Catalogue,
) -> Result<Document<K>, ScimError> {
    from_attrs(apply(K::KIND, doc.attrs(), ops, cat)?, cat)
}

/// Applies every operation, in order, to a working copy of `attrs`.
fn apply(
    kind: ResourceKind,
    attrs: &Map<String, Value>,
    ops: &[PatchOperation],
    cat: &Catalogue,
) -> Result<Map<String, Value>, ScimError> {
    let mut work = attrs.clone();
    let engine = Engine { kind, cat };
    for (i, op) in ops.iter().enumerate() {
        engine.apply(&mut work, op).map_err(|e| at(i, e))?;
    }
    Ok(work)
}

fn take_ci(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = obj.keys().find(|k| k.eq_ignore_ascii_case(name))?.clone();
    obj.remove(&key)
}
