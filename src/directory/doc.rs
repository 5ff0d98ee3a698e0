//! Canonical resource documents: the SCIM attributes of a user or group as the directory keeps
//! them, after normalisation by `scim::resource` (canonical attribute names, typed values,
//! no `id`, `meta`, `schemas`, `groups`, `members` or `password`).
//!
//! The store keeps the document as JSON and copies the attributes identity providers filter
//! on into indexed columns; the accessors here are the single definition of those copies.

use serde_json::{Map, Value};

use super::{DirectoryError, InvalidKind};

/// The URN of the enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A user's attributes. `userName` is always present and non-blank.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDoc(Map<String, Value>);

impl UserDoc {
    /// Wraps a normalised attribute map, checking the one invariant the store relies on.
    pub fn new(map: Map<String, Value>) -> Result<Self, DirectoryError> {
        match map.get("userName") {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Self(map)),
            _ => Err(DirectoryError::invalid(
                InvalidKind::InvalidValue,
                "userName is required and must be a non-empty string",
            )),
        }
    }

    /// Reads back a stored document.
    pub fn from_stored(raw: &str) -> Result<Self, DirectoryError> {
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) => {
                Self::new(map).map_err(|e| DirectoryError::Corrupt(e.to_string()))
            }
            Ok(_) => Err(DirectoryError::Corrupt(
                "user document is not an object".into(),
            )),
            Err(e) => Err(DirectoryError::Corrupt(format!("user document: {e}"))),
        }
    }

    pub fn attrs(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_attrs(self) -> Map<String, Value> {
        self.0
    }

    /// The document as stored (compact JSON).
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    pub fn user_name(&self) -> &str {
        self.0
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn external_id(&self) -> Option<&str> {
        self.0.get("externalId").and_then(Value::as_str)
    }

    pub fn display_name(&self) -> Option<&str> {
        self.0.get("displayName").and_then(Value::as_str)
    }

    /// `active` defaults to true: RFC 7643 leaves it to the provider, and every IdP treats a
    /// user it never deactivated as active.
    pub fn active(&self) -> bool {
        self.0
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// The `value`s of `emails`, for the indexed `emails.value` filter.
    pub fn email_values(&self) -> Vec<&str> {
        self.0
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

/// A group's own attributes (its members are rows, never part of the document).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDoc(Map<String, Value>);

impl GroupDoc {
    pub fn new(map: Map<String, Value>) -> Result<Self, DirectoryError> {
        match map.get("displayName") {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Self(map)),
            _ => Err(DirectoryError::invalid(
                InvalidKind::InvalidValue,
                "displayName is required and must be a non-empty string",
            )),
        }
    }

    pub fn from_stored(raw: &str) -> Result<Self, DirectoryError> {
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) => {
                Self::new(map).map_err(|e| DirectoryError::Corrupt(e.to_string()))
            }
            Ok(_) => Err(DirectoryError::Corrupt(
                "group document is not an object".into(),
            )),
            Err(e) => Err(DirectoryError::Corrupt(format!("group document: {e}"))),
        }
    }

    pub fn attrs(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_attrs(self) -> Map<String, Value> {
        self.0
    }

    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    pub fn display_name(&self) -> &str {
        self.0
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn external_id(&self) -> Option<&str> {
        self.0.get("externalId").and_then(Value::as_str)
    }
}
