//! Applying PATCH operations to a working copy of a document: resolving each path against
//! the catalogue, then adding, replacing or removing values (RFC 7644 §3.5.2.1-3), with the
//! identity-provider forms documented in the parent module.

use scim_v2::filter::{PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::op::{OpKind, PatchOperation, syntax};
use crate::directory::ResourceKind;
use crate::directory::schema::{AttrDef, AttrHome, AttrType, Catalogue, Mutability, SchemaDef};
use crate::scim::error::{ScimError, ScimType};
use crate::scim::matching::{check_filter, element_matches, eq_terms};
use crate::scim::resource::{get_ci, kind_of, normalise_attr, normalise_value, writable};

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
    fn into_error(self) -> ScimError {
        match self {
            Unresolved::Unknown(d) | Unresolved::Malformed(d) => ScimError::invalid_path(d),
            Unresolved::ReadOnly(d) => ScimError::mutability(d),
        }
    }
}

pub(super) struct Engine<'c> {
    pub(super) kind: ResourceKind,
    pub(super) cat: &'c Catalogue,
}

impl<'c> Engine<'c> {
    pub(super) fn apply(
        &self,
        work: &mut Map<String, Value>,
        op: &PatchOperation,
    ) -> Result<(), ScimError> {
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
    ) -> Result<(), ScimError> {
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
) -> Result<(), ScimError> {
    let obj = match (op, value) {
        (OpKind::Remove, _) | (OpKind::Replace, Some(Value::Null)) => {
            work.remove(ext.urn);
            return Ok(());
        }
        (_, None | Some(Value::Null)) => return Ok(()),
        (_, Some(Value::Object(obj))) => obj,
        (_, Some(other)) => {
            return Err(ScimError::invalid_value(format!(
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
) -> Result<(), ScimError> {
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
) -> Result<(), ScimError> {
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
                            return Err(ScimError::invalid_value(format!(
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
fn new_element(t: &AttrTarget, value: Value) -> Result<Option<Value>, ScimError> {
    let terms = match &t.filter {
        None => Map::new(),
        Some(f) => eq_terms(f).ok_or_else(|| {
            ScimError::bad_request(
                ScimType::NoTarget,
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
            return Err(ScimError::invalid_value(format!(
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
) -> Result<(), ScimError> {
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
