//! A parsed PATCH operation and what the other parts of this module share.

use std::fmt;

use scim_v2::filter::PatchPath;
use serde_json::Value;

use crate::directory::MemberOp;
use crate::scim::error::ScimError;

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
    /// Operations on the group's own attributes, for [`patch_doc`](super::patch_doc).
    pub doc_ops: Vec<PatchOperation>,
    /// Membership set operations, in request order.
    pub members: Vec<MemberOp>,
}

/// Prefixes an error's detail with the operation it came from.
pub(super) fn at(i: usize, e: ScimError) -> ScimError {
    e.at(&format!("Operations[{i}]"))
}

pub(super) fn syntax(detail: String) -> ScimError {
    ScimError::invalid_syntax(detail)
}
