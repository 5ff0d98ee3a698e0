//! Canonical resource documents: the attributes of a user or group as the directory keeps
//! them, after normalisation by the protocol layer (canonical attribute names, typed values,
//! no `id`, `meta`, `schemas`, `groups`, `members` or `password`).
//!
//! The store keeps the document as JSON and copies the attributes identity providers filter
//! on into indexed columns; the accessors here are the single definition of those copies.
//! One generic [`Document`] serves both kinds; each kind names the attribute it cannot do
//! without.

use std::marker::PhantomData;

use serde_json::{Map, Value};

use super::error::{DirectoryError, StoreFault};
use super::kind::{GroupKind, Kind, UserKind};

/// The URN of the enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A resource's attributes; the kind's required attribute is always present and non-blank.
pub struct Document<K: Kind> {
    attrs: Map<String, Value>,
    kind: PhantomData<K>,
}

/// A user's attributes.
pub type UserDoc = Document<UserKind>;
/// A group's own attributes (its members are rows, never part of the document).
pub type GroupDoc = Document<GroupKind>;

impl<K: Kind> Clone for Document<K> {
    fn clone(&self) -> Self {
        Self {
            attrs: self.attrs.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Kind> PartialEq for Document<K> {
    fn eq(&self, other: &Self) -> bool {
        self.attrs == other.attrs
    }
}

impl<K: Kind> std::fmt::Debug for Document<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple(K::KIND.as_str()).field(&self.attrs).finish()
    }
}

impl<K: Kind> Document<K> {
    /// Wraps a normalised attribute map, checking the invariant the store relies on and
    /// what it can hold ([`super::limits`]).
    pub fn new(attrs: Map<String, Value>) -> Result<Self, DirectoryError> {
        let doc = Self::required(attrs)?;
        super::limits::check(&doc.attrs)?;
        Ok(doc)
    }

    fn required(attrs: Map<String, Value>) -> Result<Self, DirectoryError> {
        match attrs.get(K::REQUIRED) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Self {
                attrs,
                kind: PhantomData,
            }),
            _ => Err(DirectoryError::InvalidValue {
                path: K::REQUIRED.to_owned(),
                detail: format!("{} is required and must be a non-empty string", K::REQUIRED),
            }),
        }
    }

    /// Reads back a stored document.
    pub fn from_stored(raw: &str) -> Result<Self, DirectoryError> {
        let what = K::KIND.as_str();
        let corrupt = |detail: String| DirectoryError::Internal(StoreFault::Corrupt(detail));
        match serde_json::from_str::<Value>(raw) {
            // Limits apply to what is written; what was stored reads back as it is.
            Ok(Value::Object(map)) => Self::required(map).map_err(|e| corrupt(e.to_string())),
            Ok(_) => Err(corrupt(format!("{what} document is not an object"))),
            Err(e) => Err(corrupt(format!("{what} document: {e}"))),
        }
    }

    pub fn attrs(&self) -> &Map<String, Value> {
        &self.attrs
    }

    pub fn into_attrs(self) -> Map<String, Value> {
        self.attrs
    }

    /// The document as stored (compact JSON).
    pub fn to_json(&self) -> String {
        Value::Object(self.attrs.clone()).to_string()
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }

    /// The required attribute (`userName` of a user, `displayName` of a group).
    pub fn name(&self) -> &str {
        self.text(K::REQUIRED).unwrap_or_default()
    }

    pub fn external_id(&self) -> Option<&str> {
        self.text("externalId")
    }
}

impl Document<UserKind> {
    pub fn user_name(&self) -> &str {
        self.name()
    }

    pub fn display_name(&self) -> Option<&str> {
        self.text("displayName")
    }

    /// `active` defaults to true: RFC 7643 leaves it to the provider, and every IdP treats a
    /// user it never deactivated as active.
    pub fn active(&self) -> bool {
        self.attrs
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// The `value`s of `emails`, for the indexed `emails.value` filter.
    pub fn email_values(&self) -> Vec<&str> {
        self.attrs
            .get("emails")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|e| e.get("value").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Document<GroupKind> {
    pub fn display_name(&self) -> &str {
        self.name()
    }
}
