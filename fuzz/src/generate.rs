//! Generators of SCIM-shaped inputs from unstructured bytes: filter text, PATCH paths and
//! bodies, and resource bodies. They lean on the catalogue's vocabulary and types so that
//! most generated inputs get past the first checks, and keep a share of arbitrary strings
//! and mistyped values so the error paths are reached too.

use arbitrary::{Result, Unstructured};
use pimgate::directory::schema::{AttrDef, AttrType, ENTERPRISE_URN, GROUP_URN, USER_URN};
use serde_json::{Map, Value};

use crate::{PATCH_OP_URN, all_defs, names, number};

const OPS: &[&str] = &["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Co"];
const WORDS: &[&str] = &[
    "work",
    "home",
    "other",
    "User",
    "Group",
    "user",
    "true",
    "False",
    "alice@example.com",
    "ALICE@EXAMPLE.COM",
    "u1",
    "g2",
    "m1",
    "",
    " ",
    "%",
    "_",
    "\\",
    "'",
    "\"",
    "?",
    "$1",
    "'; DROP TABLE users; --",
    "2026-12-03T10:00:00Z",
    "2026-12-03T10:00:00.123+02:00",
    "2026-13-45T99:00:00Z",
    "Engineering",
    "Sales",
    "\u{0130}",
    "\u{1F600}",
];

/// Flips the ASCII case of some characters (names are case-insensitive, RFC 7643 §2.1).
fn recase(u: &mut Unstructured<'_>, s: &str) -> Result<String> {
    if !u.ratio(1, 4)? {
        return Ok(s.to_owned());
    }
    let mask: u64 = u.arbitrary()?;
    Ok(s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect())
}

/// An attribute name: mostly from the catalogue, sometimes anything.
pub fn name(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 10)? {
        return u.arbitrary();
    }
    let n = u.choose(names())?.clone();
    recase(u, &n)
}

/// A string value: SCIM words, or anything.
pub fn word(u: &mut Unstructured<'_>) -> Result<String> {
    match u.int_in_range(0..=3u8)? {
        0 | 1 => Ok((*u.choose(WORDS)?).to_owned()),
        2 => name(u),
        _ => u.arbitrary(),
    }
}

/// A filter comparison value as written in a filter.
fn comp_value(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=6u8)? {
        0 => "true".into(),
        1 => "false".into(),
        2 => "null".into(),
        3 => number(u)?.to_string(),
        4 => u.arbitrary::<String>()?,
        _ => Value::String(word(u)?).to_string(),
    })
}

/// `attrPath op value`, `attrPath pr`, combined with `and`, `or`, `not (...)` and
/// parentheses; with `value_paths`, also `attr[valFilter]`.
pub fn filter(u: &mut Unstructured<'_>, depth: u32, value_paths: bool) -> Result<String> {
    let choice = if depth == 0 {
        u.int_in_range(0..=1u8)?
    } else {
        u.int_in_range(0..=6u8)?
    };
    Ok(match choice {
        0 => format!("{} {} {}", name(u)?, u.choose(OPS)?, comp_value(u)?),
        1 => format!("{} pr", name(u)?),
        2 if value_paths => {
            let attr = name(u)?;
            format!("{attr}[{}]", filter(u, depth - 1, false)?)
        }
        2 | 3 => format!("not ({})", filter(u, depth - 1, value_paths)?),
        4 => format!(
            "{} and {}",
            filter(u, depth - 1, value_paths)?,
            filter(u, depth - 1, value_paths)?
        ),
        5 => format!(
            "{} or {}",
            filter(u, depth - 1, value_paths)?,
            filter(u, depth - 1, value_paths)?
        ),
        _ => format!("({})", filter(u, depth - 1, value_paths)?),
    })
}

/// A PATCH path: `attr`, `attr.sub`, `urn:...:attr`, `attr[filter]`, `attr[filter].sub`.
pub fn path(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 | 1 => name(u)?,
        2 => format!("{}[{}]", name(u)?, filter(u, 2, false)?),
        3 => format!("{}[{}].{}", name(u)?, filter(u, 2, false)?, name(u)?),
        4 => (*u.choose(&[
            "members",
            "members[value eq \"u1\"]",
            "members[value eq \"u1\" or value eq \"g2\"]",
            "members[type eq \"Group\"]",
            "members[not (value eq \"u1\")]",
            "emails[type eq \"work\"].value",
            "emails[type eq \"work\" and primary eq true]",
            "addresses[type eq \"work\"].streetAddress",
            "name.givenName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        ])?)
        .to_owned(),
        _ => u.arbitrary()?,
    })
}

/// Any JSON value, keys and strings from SCIM vocabulary.
pub fn any_value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 3 } else { 5 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 => Value::String(word(u)?),
        4 => {
            let n = u.int_in_range(0..=4u8)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(any_value(u, depth - 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let n = u.int_in_range(0..=4u8)?;
            let mut obj = Map::new();
            for _ in 0..n {
                obj.insert(name(u)?, any_value(u, depth - 1)?);
            }
            Value::Object(obj)
        }
    })
}

/// A value of the type `def` declares (as a client would send it), or sometimes not.
pub fn typed_value(u: &mut Unstructured<'_>, def: &AttrDef, depth: u32) -> Result<Value> {
    if depth == 0 || u.ratio(1, 12)? {
        return any_value(u, depth.min(1));
    }
    if def.multi_valued && !u.ratio(1, 8)? {
        let n = u.int_in_range(0..=3u8)?;
        let mut items = Vec::new();
        for _ in 0..n {
            items.push(typed_single(u, def, depth - 1)?);
        }
        return Ok(Value::Array(items));
    }
    typed_single(u, def, depth)
}

fn typed_single(u: &mut Unstructured<'_>, def: &AttrDef, depth: u32) -> Result<Value> {
    Ok(match def.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary => Value::String(word(u)?),
        AttrType::Boolean => match u.int_in_range(0..=3u8)? {
            0 => Value::String((*u.choose(&["True", "false", "FALSE", " true "])?).to_owned()),
            _ => Value::Bool(u.arbitrary()?),
        },
        AttrType::Integer | AttrType::Decimal => number(u)?,
        AttrType::DateTime => Value::String(
            (*u.choose(&[
                "2026-12-03T10:00:00Z",
                "2026-12-03T10:00:00.5-05:00",
                "2026-12-03",
                "not a date",
            ])?)
            .to_owned(),
        ),
        AttrType::Complex => {
            let mut obj = Map::new();
            for sub in &def.sub_attrs {
                if u.ratio(2, 3)? {
                    let key = recase(u, &sub.name)?;
                    obj.insert(key, typed_value(u, sub, depth.saturating_sub(1))?);
                }
            }
            if u.ratio(1, 10)? {
                obj.insert(name(u)?, any_value(u, 1)?);
            }
            Value::Object(obj)
        }
    })
}

/// A typed value for an attribute found by (possibly dotted or URN-qualified) name.
fn value_for(u: &mut Unstructured<'_>, key: &str, depth: u32) -> Result<Value> {
    let bare = key.rsplit(':').next().unwrap_or(key);
    let (top, sub) = match bare.split_once('.') {
        Some((t, s)) => (t, Some(s)),
        None => (bare, None),
    };
    let found = all_defs()
        .iter()
        .find(|(_, d)| d.name.eq_ignore_ascii_case(top))
        .map(|(_, d)| d);
    match (found, sub) {
        (Some(d), Some(s)) => match d.sub(s) {
            Some(sd) => typed_value(u, sd, depth),
            None => any_value(u, depth),
        },
        (Some(d), None) => typed_value(u, d, depth),
        (None, _) => any_value(u, depth),
    }
}

/// A `members` value: `[{"value": id, "type": ...}]`, one such object, or something else.
pub fn members_value(u: &mut Unstructured<'_>) -> Result<Value> {
    if u.ratio(1, 6)? {
        return any_value(u, 2);
    }
    let n = u.int_in_range(0..=4u8)?;
    let mut items = Vec::new();
    for _ in 0..n {
        let mut m = Map::new();
        if u.ratio(9, 10)? {
            m.insert(
                recase(u, "value")?,
                Value::String((*u.choose(&["u1", "g2", "u3", "", " ", "u1"])?).to_owned()),
            );
        }
        if u.ratio(1, 2)? {
            m.insert(
                recase(u, "type")?,
                Value::String((*u.choose(&["User", "Group", "group", "Robot"])?).to_owned()),
            );
        }
        if u.ratio(1, 4)? {
            m.insert("display".into(), Value::String(word(u)?));
        }
        items.push(Value::Object(m));
    }
    if items.len() == 1 && u.ratio(1, 3)? {
        return Ok(items.remove(0));
    }
    Ok(Value::Array(items))
}

/// An object of attribute names (dotted and URN-qualified too) to typed values.
fn attr_object(u: &mut Unstructured<'_>, depth: u32) -> Result<Map<String, Value>> {
    let n = u.int_in_range(0..=5u8)?;
    let mut obj = Map::new();
    for _ in 0..n {
        let key = name(u)?;
        let v = if key.eq_ignore_ascii_case("members") {
            members_value(u)?
        } else if key.eq_ignore_ascii_case(ENTERPRISE_URN) {
            Value::Object(extension_object(u, depth)?)
        } else {
            value_for(u, &key, depth)?
        };
        obj.insert(key, v);
    }
    Ok(obj)
}

fn extension_object(u: &mut Unstructured<'_>, depth: u32) -> Result<Map<String, Value>> {
    let mut obj = Map::new();
    let ext = &crate::catalogue().enterprise;
    for a in &ext.attrs {
        if u.ratio(1, 2)? {
            obj.insert(recase(u, &a.name)?, typed_value(u, a, depth)?);
        }
    }
    Ok(obj)
}

/// A PATCH body (RFC 7644 §3.5.2) with 0 to 6 operations.
pub fn patch_body(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut body = Map::new();
    match u.int_in_range(0..=9u8)? {
        0 => {}
        1 => {
            body.insert("schemas".into(), any_value(u, 1)?);
        }
        2 => {
            body.insert("schemas".into(), Value::String(PATCH_OP_URN.into()));
        }
        _ => {
            body.insert("schemas".into(), Value::from(vec![PATCH_OP_URN]));
        }
    }
    let n = if u.ratio(1, 30)? {
        0
    } else {
        u.int_in_range(1..=6u8)?
    };
    let mut ops = Vec::new();
    for _ in 0..n {
        ops.push(patch_op(u)?);
    }
    let key = recase(u, "Operations")?;
    body.insert(key, Value::Array(ops));
    Ok(Value::Object(body))
}

fn patch_op(u: &mut Unstructured<'_>) -> Result<Value> {
    if u.ratio(1, 40)? {
        return any_value(u, 2);
    }
    let mut op = Map::new();
    let kind = match u.int_in_range(0..=9u8)? {
        0..=2 => "add",
        3..=5 => "replace",
        6..=8 => "remove",
        _ => "delete",
    };
    op.insert(recase(u, "op")?, Value::String(recase(u, kind)?));
    let has_path = u.ratio(3, 4)?;
    let path = if has_path { Some(path(u)?) } else { None };
    if let Some(p) = &path {
        op.insert(recase(u, "path")?, Value::String(p.clone()));
    } else if u.ratio(1, 10)? {
        op.insert("path".into(), Value::Null);
    }
    let value = match (&path, u.int_in_range(0..=9u8)?) {
        (_, 0) => None,
        (_, 1) => Some(any_value(u, 3)?),
        (None, _) => Some(Value::Object(attr_object(u, 3)?)),
        (Some(p), _) => {
            let target = p.split('[').next().unwrap_or(p);
            if target.eq_ignore_ascii_case("members") {
                Some(members_value(u)?)
            } else {
                Some(value_for(u, target, 3)?)
            }
        }
    };
    if let Some(v) = value {
        op.insert(recase(u, "value")?, v);
    }
    Ok(Value::Object(op))
}

/// A User or Group body (POST/PUT): usually with its required name, attribute keys in any
/// case, typed values, and sometimes server-owned keys (`id`, `meta`, `schemas`).
pub fn resource_body(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut obj = attr_object(u, 3)?;
    if u.ratio(4, 5)? {
        let key = recase(u, "userName")?;
        obj.insert(key, Value::String(word(u)?));
    }
    if u.ratio(4, 5)? {
        let key = recase(u, "displayName")?;
        obj.insert(key, Value::String(word(u)?));
    }
    if u.ratio(1, 3)? {
        obj.insert(
            "schemas".into(),
            Value::from(vec![USER_URN, ENTERPRISE_URN, GROUP_URN]),
        );
    }
    if u.ratio(1, 3)? {
        let key = recase(u, ENTERPRISE_URN)?;
        obj.insert(key, Value::Object(extension_object(u, 3)?));
    }
    if u.ratio(1, 4)? {
        obj.insert("members".into(), members_value(u)?);
    }
    if u.ratio(1, 6)? {
        obj.insert("id".into(), Value::String(word(u)?));
        obj.insert("meta".into(), any_value(u, 2)?);
    }
    Ok(Value::Object(obj))
}
