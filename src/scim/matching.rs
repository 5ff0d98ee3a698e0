//! In-memory evaluation of the value filters that select elements of a multi-valued attribute
//! (`emails[type eq "work"]`, RFC 7644 §3.4.2.2 `valuePath`), as PATCH paths use them
//! (RFC 7644 §3.5.2).
//!
//! The filter is the AST from `scim_v2`'s parser; nothing here parses text. Comparisons follow
//! RFC 7644 §3.4.2.2: strings compare case-insensitively unless the sub-attribute is
//! `caseExact` (RFC 7643 §2.2), `dateTime` values compare as instants (RFC 7643 §2.3.5),
//! booleans and numbers compare as JSON values, and `pr` means "has a non-empty value".
//! Booleans sent as strings (`"True"`, as Microsoft Entra ID sends them) compare as booleans.
//!
//! The store evaluates list filters in SQL; this module only ever sees one resource's values.

use std::borrow::Cow;
use std::cmp::Ordering;

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, ValFilter};
use serde_json::{Map, Value};

use super::resource::parse_bool;
use crate::directory::schema::{AttrDef, AttrType};

/// Whether one element of a multi-valued attribute matches a value filter.
///
/// `parent` is the multi-valued attribute the element belongs to; its sub-attribute
/// definitions decide `caseExact` and type. Element keys are looked up case-insensitively
/// (RFC 7643 §2.1), so elements not yet normalised match too. A name the parent does not
/// define compares as a case-insensitive string; callers that want unknown names refused run
/// [`check_filter`] first. For a multi-valued attribute of simple values, the name `value`
/// stands for the element itself.
pub fn element_matches(filter: &ValFilter, element: &Value, parent: &AttrDef) -> bool {
    match filter {
        ValFilter::Attr(exp) => attr_exp_matches(exp, element, parent),
        ValFilter::Not(inner) => !element_matches(inner, element, parent),
        ValFilter::And(items) => items.iter().all(|f| element_matches(f, element, parent)),
        ValFilter::Or(items) => items.iter().any(|f| element_matches(f, element, parent)),
    }
}

/// The `{sub-attribute: value}` map a filter pins down, when it is nothing but `eq`
/// comparisons joined by `and` (`type eq "work" and primary eq true`).
///
/// A PATCH that targets `emails[type eq "work"].value` on a user without a work email builds
/// the missing element from these terms (Entra ID expects it). Names are as written in the
/// filter. `None` when the filter has any other operator, a dotted or URN-qualified name, or
/// two different values for one name.
pub fn eq_terms(filter: &ValFilter) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    collect_eq_terms(filter, &mut out)?;
    Some(out)
}

fn collect_eq_terms(filter: &ValFilter, out: &mut Map<String, Value>) -> Option<()> {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, value))
            if path.uri.is_none() && path.sub_attr.is_none() =>
        {
            let value = comp_to_json(value);
            let existing = out
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&path.name))
                .map(|(_, v)| v.clone());
            match existing {
                Some(v) if v != value => None,
                Some(_) => Some(()),
                None => {
                    out.insert(path.name.clone(), value);
                    Some(())
                }
            }
        }
        ValFilter::And(items) => {
            for item in items {
                collect_eq_terms(item, out)?;
            }
            Some(())
        }
        _ => None,
    }
}

/// Checks that every name in a value filter is a sub-attribute of `parent`, written without
/// a URN or a further dotted part. The error is a sentence naming the offending name.
pub fn check_filter(filter: &ValFilter, parent: &AttrDef) -> Result<(), String> {
    match filter {
        ValFilter::Attr(AttrExp::Present(path) | AttrExp::Comparison(path, _, _)) => {
            check_name(path, parent)
        }
        ValFilter::Not(inner) => check_filter(inner, parent),
        ValFilter::And(items) | ValFilter::Or(items) => {
            items.iter().try_for_each(|f| check_filter(f, parent))
        }
    }
}

fn check_name(path: &AttrPath, parent: &AttrDef) -> Result<(), String> {
    if path.uri.is_some() || path.sub_attr.is_some() {
        return Err(format!(
            "the filter on {} may only name its sub-attributes, not {path}",
            parent.name
        ));
    }
    let simple_value = parent.sub_attrs.is_empty() && path.name.eq_ignore_ascii_case("value");
    if simple_value || parent.sub(&path.name).is_some() {
        Ok(())
    } else {
        Err(format!(
            "{} has no sub-attribute {:?} to filter on",
            parent.name, path.name
        ))
    }
}

/// Rewrites every sub-attribute name in a value filter to the parent's canonical spelling
/// (`VALUE eq "x"` → `value eq "x"`), so code downstream can compare names exactly.
/// Names the parent does not define are left as written.
pub fn canonicalise_filter(filter: &mut ValFilter, parent: &AttrDef) {
    match filter {
        ValFilter::Attr(AttrExp::Present(path) | AttrExp::Comparison(path, _, _)) => {
            if let Some(sub) = parent.sub(&path.name) {
                path.name.clone_from(&sub.name);
            }
        }
        ValFilter::Not(inner) => canonicalise_filter(inner, parent),
        ValFilter::And(items) | ValFilter::Or(items) => {
            for item in items.iter_mut() {
                canonicalise_filter(item, parent);
            }
        }
    }
}

/// The JSON value of a filter literal.
pub fn comp_to_json(value: &CompValue) -> Value {
    match value {
        CompValue::False => Value::Bool(false),
        CompValue::True => Value::Bool(true),
        CompValue::Null => Value::Null,
        CompValue::Number(n) => Value::Number(n.clone()),
        CompValue::Str(s) => Value::String(s.clone()),
    }
}

fn attr_exp_matches(exp: &AttrExp, element: &Value, parent: &AttrDef) -> bool {
    let (path, cmp) = match exp {
        AttrExp::Present(path) => (path, None),
        AttrExp::Comparison(path, op, value) => (path, Some((op, value))),
    };
    let def = parent.sub(&path.name);
    let found = lookup(element, &path.name, parent);
    match cmp {
        None => found.is_some_and(is_present),
        Some((op, value)) => match found {
            // A multi-valued sub-attribute matches when any of its values does.
            Some(Value::Array(items)) => items.iter().any(|v| compare(Some(v), op, value, def)),
            other => compare(other, op, value, def),
        },
    }
}

/// The element's value for a sub-attribute name, matched case-insensitively.
fn lookup<'a>(element: &'a Value, name: &str, parent: &AttrDef) -> Option<&'a Value> {
    match element {
        Value::Object(map) => map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v),
        other if parent.sub_attrs.is_empty() && name.eq_ignore_ascii_case("value") => Some(other),
        _ => None,
    }
}

/// RFC 7644 §3.4.2.2 `pr`: the attribute has a non-empty, non-null value.
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// One side of a comparison, reduced to what RFC 7644 §3.4.2.2 compares.
#[derive(Debug, PartialEq)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
}

fn scalar_of_json<'a>(v: Option<&'a Value>, boolean: bool) -> Option<Scalar<'a>> {
    Some(match v {
        None | Some(Value::Null) => Scalar::Null,
        Some(Value::Bool(b)) => Scalar::Bool(*b),
        Some(Value::Number(n)) => Scalar::Num(n.as_f64()?),
        Some(Value::String(s)) => match parse_bool(s) {
            Some(b) if boolean => Scalar::Bool(b),
            _ => Scalar::Str(Cow::Borrowed(s)),
        },
        Some(Value::Array(_) | Value::Object(_)) => return None,
    })
}

fn scalar_of_comp(v: &CompValue, boolean: bool) -> Option<Scalar<'_>> {
    Some(match v {
        CompValue::Null => Scalar::Null,
        CompValue::True => Scalar::Bool(true),
        CompValue::False => Scalar::Bool(false),
        CompValue::Number(n) => Scalar::Num(n.as_f64()?),
        CompValue::Str(s) => match parse_bool(s) {
            Some(b) if boolean => Scalar::Bool(b),
            _ => Scalar::Str(Cow::Borrowed(s)),
        },
    })
}

fn compare(
    found: Option<&Value>,
    op: &CompareOp,
    value: &CompValue,
    def: Option<&AttrDef>,
) -> bool {
    let boolean = def.is_some_and(|d| d.ty == AttrType::Boolean);
    let (Some(lhs), Some(rhs)) = (
        scalar_of_json(found, boolean),
        scalar_of_comp(value, boolean),
    ) else {
        return false;
    };
    let case_exact = def.is_some_and(|d| d.case_exact);
    let date_time = def.is_some_and(|d| d.ty == AttrType::DateTime);
    match op {
        CompareOp::Eq => equal(&lhs, &rhs, case_exact, date_time),
        CompareOp::Ne => !equal(&lhs, &rhs, case_exact, date_time),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => match (&lhs, &rhs) {
            (Scalar::Str(l), Scalar::Str(r)) => {
                let (l, r) = fold(l, r, case_exact);
                match op {
                    CompareOp::Co => l.contains(r.as_ref()),
                    CompareOp::Sw => l.starts_with(r.as_ref()),
                    _ => l.ends_with(r.as_ref()),
                }
            }
            _ => false,
        },
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
            let Some(ord) = order(&lhs, &rhs, case_exact, date_time) else {
                return false;
            };
            match op {
                CompareOp::Gt => ord == Ordering::Greater,
                CompareOp::Ge => ord != Ordering::Less,
                CompareOp::Lt => ord == Ordering::Less,
                _ => ord != Ordering::Greater,
            }
        }
    }
}

fn fold<'a>(l: &'a str, r: &'a str, case_exact: bool) -> (Cow<'a, str>, Cow<'a, str>) {
    if case_exact {
        (Cow::Borrowed(l), Cow::Borrowed(r))
    } else {
        (Cow::Owned(l.to_lowercase()), Cow::Owned(r.to_lowercase()))
    }
}

fn instant(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

fn equal(lhs: &Scalar<'_>, rhs: &Scalar<'_>, case_exact: bool, date_time: bool) -> bool {
    match (lhs, rhs) {
        (Scalar::Str(l), Scalar::Str(r)) => {
            if date_time && let (Some(a), Some(b)) = (instant(l), instant(r)) {
                return a == b;
            }
            let (l, r) = fold(l, r, case_exact);
            l == r
        }
        (Scalar::Num(l), Scalar::Num(r)) => l == r,
        (Scalar::Bool(l), Scalar::Bool(r)) => l == r,
        (Scalar::Null, Scalar::Null) => true,
        _ => false,
    }
}

fn order(
    lhs: &Scalar<'_>,
    rhs: &Scalar<'_>,
    case_exact: bool,
    date_time: bool,
) -> Option<Ordering> {
    match (lhs, rhs) {
        (Scalar::Str(l), Scalar::Str(r)) => {
            if date_time && let (Some(a), Some(b)) = (instant(l), instant(r)) {
                return Some(a.cmp(&b));
            }
            let (l, r) = fold(l, r, case_exact);
            Some(l.cmp(&r))
        }
        (Scalar::Num(l), Scalar::Num(r)) => l.partial_cmp(r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::schema::{Mutability, Returned};
    use serde_json::json;

    fn leaf(name: &str, ty: AttrType, case_exact: bool) -> AttrDef {
        AttrDef {
            name: name.into(),
            ty,
            multi_valued: false,
            case_exact,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            sub_attrs: Vec::new(),
        }
    }

    /// A multi-valued attribute exercising every comparison type.
    fn parent() -> AttrDef {
        AttrDef {
            name: "things".into(),
            ty: AttrType::Complex,
            multi_valued: true,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            sub_attrs: vec![
                leaf("value", AttrType::String, false),
                leaf("code", AttrType::String, true),
                leaf("primary", AttrType::Boolean, false),
                leaf("rank", AttrType::Integer, false),
                leaf("since", AttrType::DateTime, false),
            ],
        }
    }

    fn vf(raw: &str) -> ValFilter {
        match format!("x[{raw}]").parse::<scim_v2::filter::PatchPath>() {
            Ok(scim_v2::filter::PatchPath::Value(vp)) => vp.filter,
            other => panic!("not a value filter: {raw}: {other:?}"),
        }
    }

    #[test]
    fn comparisons_follow_rfc7644_semantics() {
        let el = json!({
            "Value": "Bob@Example.com", "code": "AbC", "primary": "True",
            "rank": 3, "since": "2024-01-01T10:00:00+02:00", "empty": ""
        });
        let cases: &[(&str, bool)] = &[
            (r#"value eq "bob@example.com""#, true),
            (r#"value ne "bob@example.com""#, false),
            (r#"value co "EXAMPLE""#, true),
            (r#"value sw "bob@""#, true),
            (r#"value ew ".COM""#, true),
            (r#"value gt "a""#, true),
            (r#"value lt "a""#, false),
            (r#"code eq "abc""#, false),
            (r#"code eq "AbC""#, true),
            (r#"code co "B""#, false),
            (r#"code co "b""#, true),
            ("primary eq true", true),
            ("primary eq false", false),
            (r#"primary eq "true""#, true),
            ("rank eq 3", true),
            ("rank gt 2", true),
            ("rank ge 3", true),
            ("rank lt 3", false),
            ("rank le 3", true),
            (r#"rank eq "3""#, false),
            (r#"since eq "2024-01-01T08:00:00Z""#, true),
            (r#"since gt "2024-01-01T07:59:59Z""#, true),
            (r#"since lt "2024-01-01T07:59:59Z""#, false),
            ("value pr", true),
            ("display pr", false),
            ("empty pr", false),
            ("display eq null", true),
            ("value eq null", false),
            (r#"not (value eq "x")"#, true),
            (r#"code eq "AbC" and rank gt 5"#, false),
            (r#"code eq "nope" or rank gt 2"#, true),
            (r#"(code eq "nope" or rank gt 2) and primary eq true"#, true),
            (r#"display eq "x""#, false),
            (r#"display ne "x""#, true),
        ];
        for (filter, want) in cases {
            assert_eq!(
                element_matches(&vf(filter), &el, &parent()),
                *want,
                "{filter}"
            );
        }
    }

    #[test]
    fn simple_multi_valued_elements_are_their_own_value() {
        let simple = AttrDef {
            multi_valued: true,
            ..leaf("tags", AttrType::String, false)
        };
        assert!(element_matches(
            &vf(r#"value eq "A""#),
            &json!("a"),
            &simple
        ));
        assert!(!element_matches(
            &vf(r#"value eq "b""#),
            &json!("a"),
            &simple
        ));
    }

    #[test]
    fn eq_terms_only_for_eq_conjunctions() {
        let cases: &[(&str, Option<Value>)] = &[
            (r#"type eq "work""#, Some(json!({"type": "work"}))),
            (
                r#"type eq "work" and primary eq true"#,
                Some(json!({"type": "work", "primary": true})),
            ),
            (
                r#"type eq "work" and type eq "work""#,
                Some(json!({"type": "work"})),
            ),
            (r#"type eq "work" and type eq "home""#, None),
            (r#"type eq "work" or type eq "home""#, None),
            (r#"type ne "work""#, None),
            ("type pr", None),
            (r#"not (type eq "work")"#, None),
        ];
        for (filter, want) in cases {
            let got = eq_terms(&vf(filter)).map(Value::Object);
            assert_eq!(&got, want, "{filter}");
        }
    }

    #[test]
    fn check_filter_names_unknown_sub_attributes() {
        assert!(check_filter(&vf(r#"VALUE eq "x" and rank gt 1"#), &parent()).is_ok());
        let err = check_filter(&vf(r#"shoe eq "x""#), &parent()).unwrap_err();
        assert!(err.contains("shoe"), "{err}");
        assert!(check_filter(&vf(r#"value.x eq "x""#), &parent()).is_err());
    }

    #[test]
    fn canonicalise_filter_rewrites_known_names_only() {
        let mut f = vf(r#"VALUE eq "x" or (Code eq "y" and not (shoe pr))"#);
        canonicalise_filter(&mut f, &parent());
        assert_eq!(f, vf(r#"value eq "x" or (code eq "y" and not (shoe pr))"#));
    }
}
