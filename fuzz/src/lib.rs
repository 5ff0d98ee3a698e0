//! What pimgate's fuzz targets share: the catalogue and the sample documents the service
//! would hold, the checks every target makes on an error, a check of the SQL a filter
//! compiles to, and generators of structured inputs.
//!
//! Every target takes its bytes two ways:
//! - as text or JSON when they are (the hand-written seeds in `fuzz/seeds/<target>` are), so
//!   libFuzzer's mutations of realistic requests stay close to what identity providers send;
//! - otherwise as a recipe for [`arbitrary::Unstructured`]: the generators below build a
//!   filter, a PATCH body or a resource body from SCIM vocabulary (the catalogue's attribute
//!   names, URNs, operators, typed values), so the fuzzer reaches deep into the pipeline
//!   instead of spending its time on JSON syntax.

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use pimgate::directory::schema::{AttrDef, Catalogue, ENTERPRISE_URN, GROUP_URN, USER_URN};
use pimgate::directory::{Backend, GroupDoc, UserDoc};
use pimgate::scim::error::ScimError;
use pimgate::scim::resource::{group_from_body, user_from_body};
use serde_json::{Number, Value, json};

pub mod generate;

/// The PATCH message URN (RFC 7644 §3.5.2).
pub const PATCH_OP_URN: &str = pimgate::scim::patch::PATCH_OP_URN;

/// The catalogue the service uses, built once.
pub fn catalogue() -> &'static Catalogue {
    static CAT: OnceLock<Catalogue> = OnceLock::new();
    CAT.get_or_init(|| Catalogue::load().expect("the embedded catalogue loads"))
}

/// A user as an identity provider creates one (Entra ID / Okta shape), normalised.
pub fn user_doc() -> &'static UserDoc {
    static DOC: OnceLock<UserDoc> = OnceLock::new();
    DOC.get_or_init(|| {
        user_from_body(
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": "alice@example.com",
                "externalId": "00u1abcd",
                "name": {"givenName": "Alice", "familyName": "Liddell", "formatted": "Alice Liddell"},
                "displayName": "Alice Liddell",
                "title": "Engineer",
                "active": true,
                "emails": [
                    {"value": "alice@example.com", "type": "work", "primary": true},
                    {"value": "alice@home.example", "type": "home"}
                ],
                "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
                "addresses": [{"type": "work", "streetAddress": "1 Main St", "locality": "Springfield", "country": "US", "primary": true}],
                "roles": [{"value": "editor", "primary": false}],
                ENTERPRISE_URN: {
                    "employeeNumber": "42",
                    "department": "Sales",
                    "manager": {"value": "m1", "displayName": "Bob"}
                }
            }),
            catalogue(),
        )
        .expect("the sample user normalises")
    })
}

/// A group as an identity provider creates one, normalised (members are rows, not part of
/// the document).
pub fn group_doc() -> &'static GroupDoc {
    static DOC: OnceLock<GroupDoc> = OnceLock::new();
    DOC.get_or_init(|| {
        group_from_body(
            json!({
                "schemas": [GROUP_URN],
                "displayName": "Engineering",
                "externalId": "grp-eng",
                "members": [{"value": "u1", "type": "User"}, {"value": "g2", "type": "Group"}]
            }),
            catalogue(),
        )
        .expect("the sample group normalises")
        .0
    })
}

/// An error a pure SCIM function returns must be the client's fault: a 4xx, and a 400 must
/// carry a `scimType` (RFC 7644 §3.12). Anything else would answer a bad request with a 500.
pub fn assert_client_error(e: &ScimError, what: &str) {
    assert!(
        e.status.is_client_error(),
        "{what}: a request error must be 4xx, got {} ({e:?})",
        e.status
    );
    if e.status.as_u16() == 400 {
        assert!(
            e.scim_type.is_some(),
            "{what}: a 400 must carry a scimType ({e:?})"
        );
    }
}

/// The JSON of the fuzz input when it is JSON, else a value built by `build` from the bytes.
pub fn json_or_generated(
    data: &[u8],
    build: impl FnOnce(&mut Unstructured<'_>) -> Result<Value>,
) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        return Some(v);
    }
    build(&mut Unstructured::new(data)).ok()
}

/// Checks SQL text that a filter compiled to: quotes and parentheses balance, and the
/// placeholders are exactly one per bind (`?` on SQLite; `$1..$n`, in order, on PostgreSQL).
/// Placeholders are counted outside string literals only, so a JSON path such as
/// `'$."name"'` is not one.
pub fn check_sql(backend: Backend, sql: &str, binds: usize) -> std::result::Result<(), String> {
    let bytes = sql.as_bytes();
    let mut in_quote = false;
    let mut depth: i64 = 0;
    let mut placeholders: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        i += 1;
        if in_quote {
            // `''` inside a literal closes and reopens it: same effect as an escape.
            if c == b'\'' {
                in_quote = false;
            }
            continue;
        }
        match c {
            b'\'' => in_quote = true,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced ')' at byte {}", i - 1));
                }
            }
            b'?' if backend == Backend::Sqlite => placeholders.push(placeholders.len() + 1),
            b'?' => return Err(format!("'?' outside a literal on PostgreSQL at byte {}", i - 1)),
            b'$' if backend == Backend::Postgres => {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let n: usize = sql[start..i]
                    .parse()
                    .map_err(|_| format!("'$' without a number at byte {}", start - 1))?;
                placeholders.push(n);
            }
            b'$' => return Err(format!("'$' outside a literal on SQLite at byte {}", i - 1)),
            b';' => return Err(format!("';' outside a literal at byte {}", i - 1)),
            _ => {}
        }
    }
    if in_quote {
        return Err("unterminated string literal".into());
    }
    if depth != 0 {
        return Err(format!("{depth} unclosed '('"));
    }
    let expected: Vec<usize> = (1..=binds).collect();
    if placeholders != expected {
        return Err(format!(
            "{binds} binds but placeholders {placeholders:?}"
        ));
    }
    Ok(())
}

/// Every attribute name a body, path or filter may use: the catalogue's names, dotted
/// `attr.sub` forms, URN-qualified forms, and the common attributes.
pub fn names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let cat = catalogue();
        let mut out: Vec<String> = [
            "id",
            "externalId",
            "meta",
            "meta.created",
            "meta.lastModified",
            "meta.resourceType",
            "meta.location",
            "meta.version",
            "schemas",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for schema in [&cat.user, &cat.enterprise, &cat.group] {
            for a in &schema.attrs {
                out.push(a.name.clone());
                out.push(format!("{}:{}", schema.urn, a.name));
                for s in &a.sub_attrs {
                    out.push(format!("{}.{}", a.name, s.name));
                    out.push(format!("{}:{}.{}", schema.urn, a.name, s.name));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    })
}

/// The definition of a top-level attribute name of either kind, for typed values.
pub fn all_defs() -> &'static [(&'static str, AttrDef)] {
    static DEFS: OnceLock<Vec<(&'static str, AttrDef)>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let cat = catalogue();
        let mut out = Vec::new();
        for schema in [&cat.user, &cat.enterprise, &cat.group] {
            for a in &schema.attrs {
                out.push((schema.urn, a.clone()));
            }
        }
        out
    })
}

/// A JSON number from a few edge cases or the bytes.
pub fn number(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 => Value::from(u.arbitrary::<i64>()?),
        1 => Value::from(u.arbitrary::<u64>()?),
        2 => Number::from_f64(u.arbitrary::<f64>()?).map_or(Value::Null, Value::Number),
        3 => Value::from(*u.choose(&[0i64, 1, -1, i64::MAX, i64::MIN, 42])?),
        4 => Value::from(u64::MAX),
        _ => Value::from(*u.choose(&[0.5f64, -0.0, 1e300, 3.25])?),
    })
}
