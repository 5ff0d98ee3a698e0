//! Body normalisation: turns the JSON an identity provider sends for a User or Group
//! (RFC 7644 §3.3 POST, §3.5.1 PUT, and the result of a §3.5.2 PATCH) into the canonical
//! document the directory stores ([`UserDoc`], [`GroupDoc`]).
//!
//! One pipeline, applied the same way to every write:
//! - attribute names are matched case-insensitively and rewritten to the catalogue's
//!   spelling (RFC 7643 §2.1), at the top level, in sub-attributes and in the enterprise
//!   extension object, whose URN key is matched case-insensitively too (RFC 7643 §3.3, §4.3);
//! - what the server owns or never keeps is dropped, not refused: `schemas` (recomputed on
//!   output), `id`, `meta`, `groups` and every other `readOnly` attribute or sub-attribute
//!   (RFC 7644 §3.5.1: "Any values provided SHALL be ignored"), `password` (`writeOnly`,
//!   RFC 7643 §4.1; pimgate has no use for it), `members` (stored as rows), attributes of
//!   schemas pimgate does not know and attributes no schema defines;
//! - values are typed as RFC 7643 §2.3 and the catalogue say, accepting the forms real
//!   clients send: booleans as strings (`"False"`), a multi-valued attribute given one value,
//!   the enterprise `manager` as a bare id or a one-element array;
//! - `null` (and `[]` for a multi-valued attribute) means "unassigned" (RFC 7643 §2.5) and
//!   removes the attribute;
//! - at most one `primary: true` per multi-valued attribute (RFC 7643 §2.4): the last wins;
//! - the result is checked against `scim_v2`'s typed models (RFC 7643 §4.1, §4.2, §4.3).
//!
//! Values are otherwise kept exactly as sent (case, format): identity providers compare what
//! they read back with what they sent.

use scim_v2::filter::AttrPath;
use scim_v2::models::group::Group;
use scim_v2::models::user::User;
use scim_v2::{Context, Validate};
use serde_json::{Map, Value};

use super::error::ScimError;
use crate::directory::doc::Document;
use crate::directory::schema::{
    AttrDef, AttrHome, AttrType, Catalogue, ENTERPRISE_URN, GROUP_URN, Mutability, SchemaDef,
    USER_URN,
};
use crate::directory::{GroupDoc, GroupKind, Kind, MemberKind, ResourceKind, UserDoc, UserKind};

/// One entry of a group's `members` as a client sent it (RFC 7643 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// The id of the member user or group.
    pub value: String,
    /// The `type` the client declared, if any; the store decides from the id otherwise.
    pub kind: Option<MemberKind>,
}

/// Normalises a User body (POST or PUT).
pub fn user_from_body(body: Value, cat: &Catalogue) -> Result<UserDoc, ScimError> {
    from_attrs(body_object(body, "user")?, cat)
}

/// What normalisation checks per resource kind: the `scim_v2` model its documents must read
/// as (RFC 7643 §4.1, §4.2), and the schemas a document declares.
pub trait Normalise: Kind {
    type Model: serde::de::DeserializeOwned + Validate;
    fn schemas(attrs: &Map<String, Value>) -> Vec<Value>;
}

impl Normalise for UserKind {
    type Model = User<String>;

    fn schemas(attrs: &Map<String, Value>) -> Vec<Value> {
        let mut schemas = vec![Value::from(USER_URN)];
        if attrs.contains_key(ENTERPRISE_URN) {
            schemas.push(Value::from(ENTERPRISE_URN));
        }
        schemas
    }
}

impl Normalise for GroupKind {
    type Model = Group<String>;

    fn schemas(_: &Map<String, Value>) -> Vec<Value> {
        vec![Value::from(GROUP_URN)]
    }
}

/// Normalises a resource's own attributes (never a group's members) into its document, and
/// checks the result against the typed model.
pub fn from_attrs<K: Normalise>(
    attrs: Map<String, Value>,
    cat: &Catalogue,
) -> Result<Document<K>, ScimError> {
    let doc = Document::<K>::new(normalise_resource(K::KIND, attrs, cat)?)?;
    checked::<K>(doc.attrs())?;
    Ok(doc)
}

/// Normalises a Group body (POST or PUT), splitting out its `members`: `None` when the body
/// has no `members` attribute (or `members: null`), so a caller can tell "leave the
/// membership alone" from `[]`, "no members".
pub fn group_from_body(
    body: Value,
    cat: &Catalogue,
) -> Result<(GroupDoc, Option<Vec<MemberValue>>), ScimError> {
    let mut map = body_object(body, "group")?;
    let keys: Vec<String> = map
        .keys()
        .filter(|k| k.eq_ignore_ascii_case("members"))
        .cloned()
        .collect();
    let mut members = None;
    for key in keys {
        match map.remove(&key) {
            None | Some(Value::Null) => {}
            Some(v) => members = Some(member_values(&v)?),
        }
    }
    Ok((from_attrs(map, cat)?, members))
}

/// Reads `members` values: an array of `{"value": id, "type": "User"|"Group"}` objects, or
/// a single such object. Duplicate ids are kept once, in first-seen order.
pub fn member_values(v: &Value) -> Result<Vec<MemberValue>, ScimError> {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![v],
        other => {
            return Err(invalid(format!(
                "members: expected an array of {{\"value\": id}} objects, got {}",
                kind_of(other)
            )));
        }
    };
    let mut out: Vec<MemberValue> = Vec::with_capacity(items.len());
    // A full member list can hold thousands of ids: deduplicate in linear time.
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(invalid(format!(
                "members[{i}]: expected an object with a \"value\" id, got {}",
                kind_of(item)
            )));
        };
        let value = match get_ci(obj, "value") {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                if !crate::directory::limits::is_storable_key(s) {
                    return Err(invalid(format!(
                        "members[{i}].value is not an id: ids hold at most {} characters and no control characters",
                        crate::directory::limits::MAX_INDEXED_CHARS
                    )));
                }
                s.clone()
            }
            _ => {
                return Err(invalid(format!(
                    "members[{i}].value is required: the id of a user or group"
                )));
            }
        };
        let kind = match get_ci(obj, "type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(MemberKind::parse(s).ok_or_else(|| {
                invalid(format!(
                    "members[{i}].type must be \"User\" or \"Group\", got {s:?}"
                ))
            })?),
            Some(other) => {
                return Err(invalid(format!(
                    "members[{i}].type must be \"User\" or \"Group\", got {}",
                    kind_of(other)
                )));
            }
        };
        if seen.insert(value.clone()) {
            out.push(MemberValue { value, kind });
        }
    }
    Ok(out)
}

/// Normalises the value of one attribute (or sub-attribute) as the catalogue defines it.
/// `Ok(None)` means "unassigned" (`null`, `[]`, an empty object): the key is to be absent.
/// `path` names the attribute in error details.
pub(crate) fn normalise_attr(
    def: &AttrDef,
    value: Value,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if !def.multi_valued {
        return normalise_value(def, value, path);
    }
    let items = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        if let Some(v) = normalise_value(def, item, &format!("{path}[{i}]"))? {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    enforce_single_primary(&mut out);
    Ok(Some(Value::Array(out)))
}

/// Normalises one value of an attribute: the whole value of a single-valued attribute, or
/// one element of a multi-valued one.
pub(crate) fn normalise_value(
    def: &AttrDef,
    value: Value,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if def.ty != AttrType::Complex {
        return normalise_simple(def, value, path);
    }
    // A single-valued complex attribute with a `value` sub-attribute (the enterprise
    // `manager`) also arrives as the bare value or a one-element array.
    let has_value_sub = !def.multi_valued && def.sub("value").is_some();
    match value {
        Value::Null => Ok(None),
        Value::Object(obj) => normalise_complex(def, obj, path),
        Value::String(s) if has_value_sub => Ok((!s.is_empty()).then(|| {
            let mut obj = Map::new();
            obj.insert("value".to_owned(), Value::String(s));
            Value::Object(obj)
        })),
        Value::Array(mut items) if has_value_sub && items.len() <= 1 => match items.pop() {
            None => Ok(None),
            Some(Value::Array(_)) => Err(invalid(format!(
                "{path}: expected an object or an id, got a nested array"
            ))),
            Some(item) => normalise_value(def, item, path),
        },
        other => Err(invalid(format!(
            "{path}: expected an object of sub-attributes, got {}",
            kind_of(&other)
        ))),
    }
}

fn normalise_complex(
    def: &AttrDef,
    obj: Map<String, Value>,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    let mut out = Map::new();
    for (key, v) in obj {
        let Some(sub) = def.sub(&key) else { continue };
        if !writable(sub) {
            continue;
        }
        if let Some(v) = normalise_attr(sub, v, &format!("{path}.{}", sub.name))? {
            out.insert(sub.name.clone(), v);
        }
    }
    // `"manager": {"value": ""}` is how some clients say "no manager".
    if !def.multi_valued && out.get("value").is_some_and(|v| v.as_str() == Some("")) {
        out.remove("value");
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

fn normalise_simple(def: &AttrDef, value: Value, path: &str) -> Result<Option<Value>, ScimError> {
    let ok = match (def.ty, &value) {
        (_, Value::Null) => return Ok(None),
        (AttrType::Boolean, Value::Bool(_)) => true,
        (AttrType::Boolean, Value::String(s)) => {
            return match parse_bool(s.trim()) {
                Some(b) => Ok(Some(Value::Bool(b))),
                None => Err(invalid(format!(
                    "{path}: expected a boolean (true or false), got {s:?}"
                ))),
            };
        }
        (AttrType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (AttrType::Decimal, Value::Number(_)) => true,
        (AttrType::DateTime, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(_)) => true,
        _ => false,
    };
    if ok {
        Ok(Some(value))
    } else {
        Err(invalid(format!(
            "{path}: expected {}, got {}",
            expected(def.ty),
            kind_of(&value)
        )))
    }
}

/// RFC 7643 §2.4: "The primary attribute value "true" MUST appear no more than once." When a
/// client marks several, the last one it sent stays primary.
pub(crate) fn enforce_single_primary(list: &mut [Value]) {
    let is_primary = |v: &Value| v.get("primary") == Some(&Value::Bool(true));
    let Some(last) = list.iter().rposition(is_primary) else {
        return;
    };
    for (i, v) in list.iter_mut().enumerate() {
        if i != last
            && let Some(p) = v.get_mut("primary").filter(|p| **p == Value::Bool(true))
        {
            *p = Value::Bool(false);
        }
    }
}

/// Normalises the object stored under an extension's URN key.
pub(crate) fn normalise_extension(
    ext: &SchemaDef,
    value: Value,
) -> Result<Option<Value>, ScimError> {
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        other => {
            return Err(invalid(format!(
                "{}: expected an object of extension attributes, got {}",
                ext.urn,
                kind_of(&other)
            )));
        }
    };
    let mut out = Map::new();
    for (key, v) in obj {
        let Some(def) = ext.attr(&key) else { continue };
        if !writable(def) {
            continue;
        }
        if let Some(v) = normalise_attr(def, v, &format!("{}:{}", ext.urn, def.name))? {
            out.insert(def.name.clone(), v);
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// Whether a client may set the attribute at all (RFC 7643 §7 `mutability`): `readOnly`
/// values are the server's, `writeOnly` ones (`password`) pimgate never keeps.
pub(crate) fn writable(def: &AttrDef) -> bool {
    !matches!(def.mutability, Mutability::ReadOnly | Mutability::WriteOnly)
}

/// The definition of a top-level key of a resource body: a common or core attribute. An
/// unqualified extension attribute at the top level is not where the extension lives
/// (RFC 7643 §3.3), so it is not resolved here.
fn top_level_def(kind: ResourceKind, key: &str, cat: &Catalogue) -> Option<AttrDef> {
    match cat.resolve(kind, &AttrPath::with_name(key)) {
        Ok(r) if matches!(r.home, AttrHome::Common | AttrHome::Core) => Some(r.attr),
        _ => None,
    }
}

fn normalise_resource(
    kind: ResourceKind,
    attrs: Map<String, Value>,
    cat: &Catalogue,
) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    for (key, value) in attrs {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = cat.extension(kind, &key) {
            if let Some(v) = normalise_extension(ext, value)? {
                out.insert(ext.urn.to_owned(), v);
            }
            continue;
        }
        let Some(def) = top_level_def(kind, &key, cat) else {
            continue;
        };
        if !writable(&def) || (kind == ResourceKind::Group && def.name == "members") {
            continue;
        }
        if let Some(v) = normalise_attr(&def, value, &def.name)? {
            out.insert(def.name.clone(), v);
        }
    }
    Ok(out)
}

/// The typed check: the document must read as `scim_v2`'s model of its kind and pass its
/// RFC 7643 REQUIRED rules. The pipeline above already enforces types, so a failure here is
/// a rule the model knows and the catalogue does not.
fn checked<K: Normalise>(attrs: &Map<String, Value>) -> Result<(), ScimError> {
    let mut obj = attrs.clone();
    obj.insert("schemas".to_owned(), Value::Array(K::schemas(attrs)));
    let what = K::KIND.as_str();
    let model: K::Model = serde_json::from_value(Value::Object(obj)).map_err(|e| {
        invalid(format!(
            "the {} does not fit the {what} schema: {e}",
            what.to_lowercase()
        ))
    })?;
    model
        .validate_as(Context::CreateRequest)
        .map_err(|e| invalid(e.to_string()))
}

fn body_object(body: Value, what: &str) -> Result<Map<String, Value>, ScimError> {
    match body {
        Value::Object(map) => Ok(map),
        other => Err(ScimError::invalid_syntax(format!(
            "a {what} body must be a JSON object, got {}",
            kind_of(&other)
        ))),
    }
}

/// A key of a JSON object, matched case-insensitively (RFC 7643 §2.1).
pub(crate) fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

pub(crate) fn invalid(detail: String) -> ScimError {
    ScimError::invalid_value(detail)
}

/// "a string", "an array"...: how a JSON value is named in error details.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(ty: AttrType) -> &'static str {
    match ty {
        AttrType::String | AttrType::Reference | AttrType::Binary => "a string",
        AttrType::Boolean => "a boolean",
        AttrType::Decimal => "a number",
        AttrType::Integer => "an integer",
        AttrType::DateTime => "an RFC 3339 date-time string",
        AttrType::Complex => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use serde_json::json;

    fn cat() -> Catalogue {
        Catalogue::load().unwrap()
    }

    fn user(body: Value) -> Result<Value, ScimError> {
        user_from_body(body, &cat()).map(|d| Value::Object(d.into_attrs()))
    }

    fn kind_of_err(r: Result<Value, ScimError>) -> (ScimType, String) {
        crate::scim::error::bad_request_parts(r)
    }

    #[test]
    fn brief_example_normalises_to_canonical_document() {
        let got = user(json!({
            "UserName": "Bob", "active": "False",
            "emails": {"value": "b@x", "primary": "True"},
            ENTERPRISE_URN: {"Manager": "42"},
            "password": "p", "id": "zzz"
        }))
        .unwrap();
        assert_eq!(
            got,
            json!({
                "userName": "Bob", "active": false,
                "emails": [{"value": "b@x", "primary": true}],
                ENTERPRISE_URN: {"manager": {"value": "42"}}
            })
        );
    }

    #[test]
    fn canonical_names_from_odd_case() {
        let cases = [
            (
                json!({"UserName": "a", "Active": true}),
                json!({"userName": "a", "active": true}),
            ),
            (
                json!({"USERNAME": "a", "NAME": {"GIVENNAME": "A", "familyname": "B"}}),
                json!({"userName": "a", "name": {"givenName": "A", "familyName": "B"}}),
            ),
            (
                json!({"userName": "a", "PhoneNumbers": [{"VALUE": "1", "Type": "work"}]}),
                json!({"userName": "a", "phoneNumbers": [{"value": "1", "type": "work"}]}),
            ),
            (
                json!({"userName": "a", "EXTERNALID": "e1"}),
                json!({"userName": "a", "externalId": "e1"}),
            ),
            (
                json!({"userName": "a", ENTERPRISE_URN.to_uppercase(): {"DEPARTMENT": "x"}}),
                json!({"userName": "a", ENTERPRISE_URN: {"department": "x"}}),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(user(input.clone()).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn string_booleans_are_coerced() {
        let cases = [
            ("True", true),
            ("true", true),
            ("TRUE", true),
            ("False", false),
            ("false", false),
            ("fAlSe", false),
        ];
        for (raw, want) in cases {
            let got = user(json!({
                "userName": "a", "active": raw,
                "emails": [{"value": "x", "primary": raw}]
            }))
            .unwrap();
            assert_eq!(got["active"], json!(want), "{raw}");
            assert_eq!(got["emails"][0]["primary"], json!(want), "{raw}");
        }
        let (kind, detail) = kind_of_err(user(json!({"userName": "a", "active": "yes"})));
        assert_eq!(kind, ScimType::InvalidValue);
        assert!(detail.contains("active"), "{detail}");
        let (_, detail) = kind_of_err(user(
            json!({"userName": "a", "emails": [{"value": "x", "primary": 1}]}),
        ));
        assert!(detail.contains("emails[0].primary"), "{detail}");
    }

    #[test]
    fn manager_as_string_object_or_array() {
        let m = |v: Value| user(json!({"userName": "a", ENTERPRISE_URN: {"manager": v}}));
        let want = json!({"userName": "a", ENTERPRISE_URN: {"manager": {"value": "42"}}});
        for form in [
            json!("42"),
            json!({"value": "42"}),
            json!([{"value": "42"}]),
            json!(["42"]),
            json!({"value": "42", "displayName": "Boss"}),
        ] {
            assert_eq!(m(form.clone()).unwrap(), want, "{form}");
        }
        let with_ref = m(json!({"value": "42", "$ref": "../Users/42"})).unwrap();
        assert_eq!(
            with_ref[ENTERPRISE_URN]["manager"]["$ref"],
            json!("../Users/42")
        );
        for none in [json!([]), json!(null), json!(""), json!({"value": ""})] {
            assert_eq!(m(none.clone()).unwrap(), json!({"userName": "a"}), "{none}");
        }
        let (_, detail) = kind_of_err(m(json!([{"value": "1"}, {"value": "2"}])));
        assert!(detail.contains("manager"), "{detail}");
    }

    #[test]
    fn unknown_schema_uris_and_attributes_are_tolerated() {
        let got = user(json!({
            "schemas": [USER_URN, "urn:example:custom"],
            "userName": "a",
            "shoeSize": 44,
            "name": {"givenName": "A", "nickname2": "x"},
            "emails": [{"value": "x", "verified": true}],
            "urn:example:custom": {"whatever": [1, 2]},
            "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User": {"x": 1},
            "department": "top-level extension attribute is not where it lives"
        }))
        .unwrap();
        assert_eq!(
            got,
            json!({"userName": "a", "name": {"givenName": "A"}, "emails": [{"value": "x"}]})
        );
    }

    #[test]
    fn server_owned_and_write_only_attributes_are_dropped() {
        // Okta PUTs the whole user back, with id, meta and groups.
        let got = user(json!({
            "schemas": [USER_URN],
            "id": "u1", "userName": "a", "password": "hunter2",
            "meta": {"resourceType": "User", "created": "2020-01-01T00:00:00Z"},
            "groups": [{"value": "g1", "display": "G"}],
            ENTERPRISE_URN: {"manager": {"value": "m", "displayName": "M"}}
        }))
        .unwrap();
        assert_eq!(
            got,
            json!({"userName": "a", ENTERPRISE_URN: {"manager": {"value": "m"}}})
        );
    }

    #[test]
    fn nulls_empties_and_single_values() {
        let got = user(json!({
            "userName": "a", "title": null, "emails": [], "phoneNumbers": null,
            "name": {}, "roles": {"value": "r"}, "ims": [null, {"value": "i"}]
        }))
        .unwrap();
        assert_eq!(
            got,
            json!({"userName": "a", "roles": [{"value": "r"}], "ims": [{"value": "i"}]})
        );
    }

    #[test]
    fn last_primary_wins() {
        let got = user(json!({"userName": "a", "emails": [
            {"value": "1", "primary": true}, {"value": "2"},
            {"value": "3", "primary": "true"}, {"value": "4", "primary": false}
        ]}))
        .unwrap();
        assert_eq!(
            got["emails"],
            json!([
                {"value": "1", "primary": false}, {"value": "2"},
                {"value": "3", "primary": true}, {"value": "4", "primary": false}
            ])
        );
    }

    #[test]
    fn values_are_kept_as_sent() {
        let got = user(json!({"userName": "Bob.Smith@Example.COM",
            "emails": [{"value": "Bob.Smith@Example.COM", "type": "Work"}]}))
        .unwrap();
        assert_eq!(got["userName"], json!("Bob.Smith@Example.COM"));
        assert_eq!(
            got["emails"][0],
            json!({"value": "Bob.Smith@Example.COM", "type": "Work"})
        );
    }

    #[test]
    fn invalid_bodies_are_refused_with_the_attribute_named() {
        let cases: &[(Value, ScimType, &str)] = &[
            (json!([1]), ScimType::InvalidSyntax, "JSON object"),
            (json!({"active": true}), ScimType::InvalidValue, "userName"),
            (
                json!({"userName": "  "}),
                ScimType::InvalidValue,
                "userName",
            ),
            (json!({"userName": 7}), ScimType::InvalidValue, "userName"),
            (
                json!({"userName": "a", "name": "Bob"}),
                ScimType::InvalidValue,
                "name",
            ),
            (
                json!({"userName": "a", "name": {"givenName": 3}}),
                ScimType::InvalidValue,
                "name.givenName",
            ),
            (
                json!({"userName": "a", "emails": ["x"]}),
                ScimType::InvalidValue,
                "emails[0]",
            ),
            (
                json!({"userName": "a", ENTERPRISE_URN: "x"}),
                ScimType::InvalidValue,
                ENTERPRISE_URN,
            ),
            (
                json!({"userName": "a", ENTERPRISE_URN: {"employeeNumber": 5}}),
                ScimType::InvalidValue,
                "employeeNumber",
            ),
        ];
        for (body, want_kind, needle) in cases {
            let (kind, detail) = kind_of_err(user(body.clone()));
            assert_eq!(kind, *want_kind, "{body}");
            assert!(detail.contains(needle), "{body}: {detail}");
        }
    }

    #[test]
    fn group_body_splits_members() {
        let (doc, members) = group_from_body(
            json!({
                "schemas": [GROUP_URN, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "id": "g", "DisplayName": "Admins", "externalId": "e",
                "Members": [{"value": "u1", "type": "User"}, {"VALUE": "g2", "type": "group"}, {"value": "u1"}],
                "meta": {"resourceType": "Group"}
            }),
            &cat(),
        )
        .unwrap();
        assert_eq!(
            Value::Object(doc.into_attrs()),
            json!({"displayName": "Admins", "externalId": "e"})
        );
        assert_eq!(
            members,
            Some(vec![
                MemberValue {
                    value: "u1".into(),
                    kind: Some(MemberKind::User)
                },
                MemberValue {
                    value: "g2".into(),
                    kind: Some(MemberKind::Group)
                },
            ])
        );
        let (_, none) = group_from_body(json!({"displayName": "G"}), &cat()).unwrap();
        assert_eq!(none, None);
        let (_, null) =
            group_from_body(json!({"displayName": "G", "members": null}), &cat()).unwrap();
        assert_eq!(null, None);
        let (_, empty) =
            group_from_body(json!({"displayName": "G", "members": []}), &cat()).unwrap();
        assert_eq!(empty, Some(vec![]));
        assert!(group_from_body(json!({"externalId": "x"}), &cat()).is_err());
    }

    #[test]
    fn member_values_accepts_array_or_object_only() {
        let one = member_values(&json!({"value": "u1"})).unwrap();
        assert_eq!(
            one,
            vec![MemberValue {
                value: "u1".into(),
                kind: None
            }]
        );
        for bad in [
            json!("u1"),
            json!(null),
            json!(["u1"]),
            json!([{"display": "x"}]),
            json!([{"value": ""}]),
            json!([{"value": 5}]),
            json!([{"value": "u", "type": "Robot"}]),
        ] {
            let err = member_values(&bad).unwrap_err();
            assert_eq!(
                err.scim_type,
                Some(ScimType::InvalidValue),
                "{bad}: {err:?}"
            );
        }
    }
}
