//! What a stored document may hold, checked before any statement runs so both stores
//! answer the same input the same way (a clear `invalidValue`, never a database error):
//! - no U+0000 anywhere (PostgreSQL cannot store it in text) and no other control
//!   characters, except tab, line feed and carriage return in free text;
//! - the attributes copied into indexed columns (`userName`, `displayName`, `externalId`,
//!   `emails.value`) hold at most [`MAX_INDEXED_CHARS`] characters and no control
//!   characters at all;
//! - any other string at most [`MAX_TEXT_CHARS`] characters;
//! - a multi-valued attribute at most [`MAX_VALUES`] values.
//!
//! A filter is bounded the same way before it is compiled: at most [`MAX_FILTER_TERMS`]
//! comparisons, [`MAX_DOCUMENT_TERMS`] of them inside documents, patterns of at most
//! [`MAX_PATTERN_CHARS`] characters, and no U+0000 (no stored value holds one).
//!
//! The limits are generous for every identity provider (Entra caps a UPN at 113 characters
//! and a display name at 256; Okta a login at 100) and keep every index row far below
//! PostgreSQL's 2,704-byte B-tree limit (256 characters are at most 1,024 bytes).

use serde_json::{Map, Value};

use super::error::DirectoryError;

/// The longest value of an indexed attribute, in characters.
pub const MAX_INDEXED_CHARS: usize = 256;
/// The longest value of any other string attribute, in characters.
pub const MAX_TEXT_CHARS: usize = 16 * 1024;
/// The most values a multi-valued attribute holds.
pub const MAX_VALUES: usize = 100;

/// The most comparisons one filter may hold.
pub const MAX_FILTER_TERMS: usize = 1000;
/// The most comparisons one filter may make inside stored documents (attributes without an
/// indexed column, and `attr[...]` over a document's values): each reads the JSON of every
/// candidate row.
pub const MAX_DOCUMENT_TERMS: usize = 16;
/// The longest `co`, `sw` or `ew` value of a filter, in characters.
pub const MAX_PATTERN_CHARS: usize = 256;

/// The attributes the store copies into indexed columns, as paths in the document (a
/// multi-valued attribute's sub-attribute is named `attr.sub`).
const INDEXED: [&str; 4] = ["userName", "displayName", "externalId", "emails.value"];

/// Whether a value could be an id or an indexed attribute of a stored record: lookups by
/// anything else find nothing without asking the database.
pub fn is_storable_key(s: &str) -> bool {
    s.chars().take(MAX_INDEXED_CHARS + 1).count() <= MAX_INDEXED_CHARS
        && !s.chars().any(char::is_control)
}

/// Checks a normalised document against the limits.
pub fn check(attrs: &Map<String, Value>) -> Result<(), DirectoryError> {
    for (name, value) in attrs {
        check_value(name, name, value)?;
    }
    Ok(())
}

/// `path` names the value in errors (`emails[3].value`); `schema_path` is the same
/// without indexes (`emails.value`), to tell indexed attributes.
fn check_value(path: &str, schema_path: &str, value: &Value) -> Result<(), DirectoryError> {
    match value {
        Value::String(s) => check_text(path, s, INDEXED.contains(&schema_path)),
        Value::Array(items) => {
            if items.len() > MAX_VALUES {
                return Err(DirectoryError::invalid(
                    path,
                    format!(
                        "{path} holds at most {MAX_VALUES} values; this one has {}",
                        items.len()
                    ),
                ));
            }
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| check_value(&format!("{path}[{i}]"), schema_path, v))
        }
        Value::Object(obj) => obj.iter().try_for_each(|(k, v)| {
            check_value(&format!("{path}.{k}"), &format!("{schema_path}.{k}"), v)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn check_text(path: &str, s: &str, indexed: bool) -> Result<(), DirectoryError> {
    let max = if indexed {
        MAX_INDEXED_CHARS
    } else {
        MAX_TEXT_CHARS
    };
    // Counting stops one past the limit: a huge value costs no more than a long one.
    let chars = s.chars().take(max + 1).count();
    if chars > max {
        return Err(DirectoryError::invalid(
            path,
            format!("{path} is longer than {max} characters"),
        ));
    }
    let refused = |c: char| {
        if indexed {
            c.is_control()
        } else {
            c.is_control() && !matches!(c, '\t' | '\n' | '\r')
        }
    };
    if let Some((at, c)) = s.char_indices().find(|(_, c)| refused(*c)) {
        let allowed = if indexed {
            "no control characters"
        } else {
            "no control characters other than tab, line feed and carriage return"
        };
        return Err(DirectoryError::invalid(
            path,
            format!(
                "{path} contains the control character U+{:04X} at byte {at}; it may hold {allowed}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn refused(v: Value) -> String {
        match check(&doc(v)) {
            Err(DirectoryError::InvalidValue { detail, .. }) => detail,
            other => panic!("expected an invalid value, got {other:?}"),
        }
    }

    #[test]
    fn ordinary_documents_pass() {
        let d = doc(json!({
            "userName": "ann@example.com",
            "name": {"formatted": "Ann\tExample", "givenName": "Ann"},
            "addresses": [{"formatted": "1 Main St\r\nTown", "primary": true}],
            "emails": [{"value": "ann@example.com", "primary": true}],
            "active": true,
        }));
        check(&d).unwrap();
    }

    #[test]
    fn nul_is_refused_everywhere_with_its_path() {
        assert!(refused(json!({"userName": "a\u{0}b"})).contains("userName contains"));
        let d = refused(json!({"userName": "a", "name": {"givenName": "x\u{0}"}}));
        assert!(d.contains("name.givenName") && d.contains("U+0000"), "{d}");
        let d = refused(json!({"userName": "a",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "\u{0}"}}));
        assert!(d.contains("department"), "{d}");
    }

    #[test]
    fn indexed_attributes_take_no_control_characters_and_free_text_keeps_line_breaks() {
        assert!(refused(json!({"userName": "a\nb"})).contains("no control characters"));
        assert!(
            refused(json!({"userName": "a", "emails": [{"value": "x\ty@example.com"}]}))
                .contains("emails[0].value")
        );
        assert!(refused(json!({"userName": "a", "title": "bell\u{7}"})).contains("title"));
        check(&doc(json!({"userName": "a", "title": "two\nlines"}))).unwrap();
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        let ok = "é".repeat(MAX_INDEXED_CHARS);
        check(&doc(json!({"userName": ok}))).unwrap();
        let long = "é".repeat(MAX_INDEXED_CHARS + 1);
        let d = refused(json!({"userName": long}));
        assert!(d.contains("longer than 256 characters"), "{d}");
        assert!(
            refused(json!({"userName": "a", "externalId": "x".repeat(10_000)}))
                .contains("externalId")
        );
        check(&doc(
            json!({"userName": "a", "title": "x".repeat(MAX_TEXT_CHARS)}),
        ))
        .unwrap();
        assert!(
            refused(json!({"userName": "a", "title": "x".repeat(MAX_TEXT_CHARS + 1)}))
                .contains("16384")
        );
    }

    #[test]
    fn multi_valued_attributes_hold_at_most_the_limit() {
        let emails: Vec<Value> = (0..=MAX_VALUES)
            .map(|i| json!({"value": format!("a{i}@example.com")}))
            .collect();
        let d = refused(json!({"userName": "a", "emails": emails}));
        assert!(d.contains("at most 100 values") && d.contains("101"), "{d}");
    }
}
