//! Resource representations (RFC 7643 §3, §4) and attribute selection (RFC 7644 §3.9).
//!
//! A record becomes its full JSON (`schemas`, `id`, the stored attributes, `groups` or
//! `members` when loaded, `meta`), then `attributes`/`excludedAttributes` project it.
//! [`Selection::wants`] tells the service layer up front whether `members`/`groups` are needed
//! at all, so `excludedAttributes=members` never loads a member.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::directory::schema::{
    AttrHome, Catalogue, ENTERPRISE_URN, GROUP_URN, Returned, USER_URN,
};
use crate::directory::{
    GroupKind, GroupRecord, GroupRef, MemberRef, Records, ResourceKind, UserKind, UserRecord,
};

/// A top-level attribute: where it lives (`None` = top level, `Some(urn)` = inside an
/// extension) and its canonical name.
type TopKey = (Option<&'static str>, String);

/// Which parts of a top-level attribute are selected.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Whole,
    Subs(BTreeSet<String>),
}

/// A resolved `attributes` or `excludedAttributes` list. Unknown names are ignored.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Option<BTreeMap<TopKey, Part>>,
    exclude: BTreeMap<TopKey, Part>,
}

fn add_part(map: &mut BTreeMap<TopKey, Part>, key: TopKey, sub: Option<String>) {
    match (map.get_mut(&key), sub) {
        (Some(Part::Whole), _) => {}
        (Some(Part::Subs(set)), Some(s)) => {
            set.insert(s);
        }
        (Some(slot @ Part::Subs(_)), None) => *slot = Part::Whole,
        (None, Some(s)) => {
            map.insert(key, Part::Subs(BTreeSet::from([s])));
        }
        (None, None) => {
            map.insert(key, Part::Whole);
        }
    }
}

impl Selection {
    pub fn parse(
        kind: ResourceKind,
        cat: &Catalogue,
        attributes: &[String],
        excluded: &[String],
    ) -> Self {
        let resolve = |names: &[String]| {
            let mut map = BTreeMap::new();
            for n in names {
                // A bare extension URN selects the whole extension object.
                if let Some(ext) = cat.extension(kind, n) {
                    add_part(&mut map, (None, ext.urn.to_owned()), None);
                    continue;
                }
                if let Ok(r) = cat.resolve_name(kind, n) {
                    let home = match r.home {
                        AttrHome::Extension(urn) => Some(urn),
                        _ => None,
                    };
                    add_part(&mut map, (home, r.attr.name.clone()), r.sub.map(|s| s.name));
                }
            }
            map
        };
        Self {
            include: (!attributes.is_empty()).then(|| resolve(attributes)),
            exclude: resolve(excluded),
        }
    }

    /// Whether the top-level core attribute `name` (e.g. `members`) will be returned.
    /// Whether nothing was asked for: the default representation.
    pub fn is_default(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }

    pub fn wants(&self, name: &str) -> bool {
        let key = (None, name.to_owned());
        match &self.include {
            Some(inc) => inc.contains_key(&key),
            None => self.exclude.get(&key) != Some(&Part::Whole),
        }
    }

    /// Whether `name` was asked for explicitly with `attributes=`.
    pub fn requests(&self, name: &str) -> bool {
        self.include
            .as_ref()
            .is_some_and(|inc| inc.contains_key(&(None, name.to_owned())))
    }

    /// Projects a full representation.
    pub fn apply(&self, kind: ResourceKind, cat: &Catalogue, full: Value) -> Value {
        let Value::Object(mut obj) = full else {
            return full;
        };
        if let Some(include) = &self.include {
            let mut out = Map::new();
            for k in ["schemas", "id"] {
                if let Some(v) = obj.remove(k) {
                    out.insert(k.to_owned(), v);
                }
            }
            for ((home, name), part) in include {
                let source = match home {
                    None => obj.get(name),
                    Some(urn) => obj.get(*urn).and_then(|e| e.get(name)),
                };
                let Some(value) = source else { continue };
                let picked = match part {
                    Part::Whole => Some(value.clone()),
                    Part::Subs(subs) => pick_subs(value, subs),
                };
                let Some(picked) = picked else { continue };
                match home {
                    None => {
                        out.insert(name.clone(), picked);
                    }
                    Some(urn) => {
                        let entry = out
                            .entry((*urn).to_owned())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(ext) = entry {
                            ext.insert(name.clone(), picked);
                        }
                    }
                }
            }
            return Value::Object(out);
        }
        for ((home, name), part) in &self.exclude {
            if home.is_none() && is_always(kind, cat, name) {
                continue;
            }
            let target = match home {
                None => Some(&mut obj),
                Some(urn) => obj.get_mut(*urn).and_then(Value::as_object_mut),
            };
            let Some(target) = target else { continue };
            match part {
                Part::Whole => {
                    target.remove(name);
                }
                Part::Subs(subs) => {
                    if let Some(v) = target.get_mut(name) {
                        drop_subs(v, subs);
                    }
                }
            }
        }
        Value::Object(obj)
    }
}

fn is_always(kind: ResourceKind, cat: &Catalogue, name: &str) -> bool {
    name == "id"
        || name == "schemas"
        || cat
            .core(kind)
            .attr(name)
            .is_some_and(|a| a.returned == Returned::Always)
}

fn pick_subs(value: &Value, subs: &BTreeSet<String>) -> Option<Value> {
    let pick = |v: &Value| -> Option<Value> {
        let o = v.as_object()?;
        let m: Map<String, Value> = o
            .iter()
            .filter(|(k, _)| subs.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!m.is_empty()).then_some(Value::Object(m))
    };
    match value {
        Value::Array(items) => {
            let picked: Vec<Value> = items.iter().filter_map(pick).collect();
            (!picked.is_empty()).then_some(Value::Array(picked))
        }
        other => pick(other),
    }
}

fn drop_subs(value: &mut Value, subs: &BTreeSet<String>) {
    match value {
        Value::Array(items) => {
            for i in items {
                if let Some(o) = i.as_object_mut() {
                    o.retain(|k, _| !subs.contains(k));
                }
            }
        }
        Value::Object(o) => o.retain(|k, _| !subs.contains(k)),
        _ => {}
    }
}

/// A full representation: `schemas`, `id`, the stored attributes, the read-only references
/// (`groups` of a user, `members` of a group) when loaded and not empty, and `meta`
/// (RFC 7643 §3.1).
fn representation<R: Records>(
    schemas: Vec<Value>,
    rec: &R::Record,
    attrs: &Map<String, Value>,
    refs: Option<(&str, Vec<Value>)>,
    base: &str,
) -> Value {
    let mut obj = Map::new();
    obj.insert("schemas".into(), Value::Array(schemas));
    obj.insert("id".into(), json!(R::id(rec)));
    for (k, v) in attrs {
        obj.insert(k.clone(), v.clone());
    }
    if let Some((name, list)) = refs.filter(|(_, l)| !l.is_empty()) {
        obj.insert(name.to_owned(), Value::Array(list));
    }
    let (created, modified) = R::times(rec);
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": R::KIND.as_str(),
            "created": created.to_rfc3339(),
            "lastModified": modified.to_rfc3339(),
            "version": etag(R::version(rec)),
            "location": format!("{base}/{}/{}", R::KIND.endpoint(), R::id(rec)),
        }),
    );
    Value::Object(obj)
}

/// The full representation of a user. `groups` is the user's direct groups, when loaded.
pub fn user_json(rec: &UserRecord, groups: Option<&[GroupRef]>, base: &str) -> Value {
    let mut schemas = vec![json!(USER_URN)];
    if rec.doc.attrs().contains_key(ENTERPRISE_URN) {
        schemas.push(json!(ENTERPRISE_URN));
    }
    let group = |g: &GroupRef| {
        json!({
            "value": g.id,
            "$ref": format!("{base}/Groups/{}", g.id),
            "display": g.display,
            "type": "direct",
        })
    };
    let refs = groups.map(|g| ("groups", g.iter().map(group).collect()));
    representation::<UserKind>(schemas, rec, rec.doc.attrs(), refs, base)
}

/// The full representation of a group. `members` is its members, when loaded.
pub fn group_json(rec: &GroupRecord, members: Option<&[MemberRef]>, base: &str) -> Value {
    let member = |m: &MemberRef| {
        json!({
            "value": m.id,
            "$ref": format!("{base}/{}/{}", m.kind.resource().endpoint(), m.id),
            "type": m.kind.as_str(),
        })
    };
    let refs = members.map(|m| ("members", m.iter().map(member).collect()));
    representation::<GroupKind>(vec![json!(GROUP_URN)], rec, rec.doc.attrs(), refs, base)
}

/// Parses `W/"12"` or `"12"`.
pub fn parse_etag(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    raw.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// The ETag of a version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// An RFC 7644 §3.4.2 list response.
pub fn list_response(total: i64, start_index: i64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}
