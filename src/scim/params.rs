//! List and search parameters (RFC 7644 §3.4.2, §3.4.3), read into `scim_v2`'s
//! [`ListQuery`] (a query string) and [`SearchRequest`] (a `.search` body).
//!
//! Identity providers are looser than the crate's serde types: parameter names in any case,
//! `count` as a string, `attributes` as a comma-separated string in a body. Each input is
//! first brought to the canonical form, checking every value on the way so an error names
//! the parameter at fault, then read by the crate. A filter that does not parse is
//! `invalidFilter` (the crate keeps it as [`MaybeFilter::Invalid`] for exactly this).

use scim_v2::filter::{Filter, MaybeFilter};
use scim_v2::models::others::{ListQuery, SearchRequest, SortOrder};
use scim_v2::schema_urns::SEARCH_REQUEST;
use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};

/// A list request: what to match, in which order, which window, which attributes.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub filter: Option<Filter>,
    pub sort_by: Option<String>,
    pub descending: bool,
    /// RFC 7644 §3.4.2.4: 1-based; below 1 reads as 1.
    pub start_index: i64,
    /// `None` when not given (the configured default applies); negative reads as 0.
    pub count: Option<i64>,
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

/// The canonical spelling of a list parameter name, matched without regard to case.
fn canonical(name: &str) -> Option<&'static str> {
    [
        "filter",
        "sortBy",
        "sortOrder",
        "startIndex",
        "count",
        "attributes",
        "excludedAttributes",
        "schemas",
    ]
    .into_iter()
    .find(|c| c.eq_ignore_ascii_case(name))
}

fn parse_int(name: &str, raw: &str) -> Result<i64, ScimError> {
    raw.trim()
        .parse::<i64>()
        .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, got {raw:?}")))
}

fn check_order(raw: &str) -> Result<(), ScimError> {
    if raw.eq_ignore_ascii_case("ascending") || raw.eq_ignore_ascii_case("descending") {
        Ok(())
    } else {
        Err(ScimError::invalid_value(format!(
            "sortOrder must be ascending or descending, got {raw:?}"
        )))
    }
}

fn split_names(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn strict(filter: Option<MaybeFilter>) -> Result<Option<Filter>, ScimError> {
    match filter {
        None => Ok(None),
        Some(MaybeFilter::Valid(f)) => Ok(Some(f)),
        Some(MaybeFilter::Invalid(e)) => Err(ScimError::bad_request(
            ScimType::InvalidFilter,
            format!("filter {} is not valid: {}", quoted_prefix(&e.raw), e.error),
        )),
    }
}

/// The filter as the caller sent it, quoted, and cut after 120 characters so an error about
/// a huge filter stays readable.
fn quoted_prefix(raw: &str) -> String {
    const SHOWN: usize = 120;
    match raw.char_indices().nth(SHOWN) {
        None => format!("{raw:?}"),
        Some((cut, _)) => format!(
            "{:?} (first {SHOWN} of {} characters)",
            &raw[..cut],
            raw.chars().count()
        ),
    }
}

/// Reads the canonical form with the crate's type; every value was checked before.
fn read<T: serde::de::DeserializeOwned>(canonical: Map<String, Value>) -> Result<T, ScimError> {
    serde_json::from_value(Value::Object(canonical))
        .map_err(|e| ScimError::invalid_value(format!("the list parameters are not valid: {e}")))
}

impl ListParams {
    /// From URL query pairs (RFC 7644 §3.4.2); the last of repeated names wins.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, ScimError> {
        let mut out = Map::new();
        for (k, v) in pairs {
            let Some(name) = canonical(k) else { continue };
            let value = match name {
                "startIndex" | "count" => Value::from(parse_int(name, v)?),
                "sortOrder" => {
                    check_order(v)?;
                    Value::String(v.to_ascii_lowercase())
                }
                "sortBy" if v.is_empty() => {
                    out.remove(name);
                    continue;
                }
                "schemas" => continue,
                _ => Value::String(v.clone()),
            };
            out.insert(name.to_owned(), value);
        }
        let q: ListQuery<MaybeFilter> = read(out)?;
        let names = |v: &Option<String>| v.as_deref().map(split_names).unwrap_or_default();
        Ok(ListParams {
            start_index: q.effective_start_index(),
            count: q.count,
            descending: q.sort_order == Some(SortOrder::Descending),
            attributes: names(&q.attributes),
            excluded: names(&q.excluded_attributes),
            sort_by: q.sort_by,
            filter: strict(q.filter)?,
        })
    }

    /// From a `POST .search` body (RFC 7644 §3.4.3); keys matched without regard to case.
    pub fn from_search(body: &Value) -> Result<Self, ScimError> {
        let Some(obj) = body.as_object() else {
            return Err(ScimError::invalid_syntax("search body must be an object"));
        };
        let mut out = Map::new();
        out.insert("schemas".into(), Value::from(vec![SEARCH_REQUEST]));
        for (k, v) in obj {
            let Some(name) = canonical(k) else { continue };
            let value = match (name, v) {
                ("schemas", v) => {
                    let declares = v
                        .as_array()
                        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(SEARCH_REQUEST)));
                    if !declares {
                        return Err(ScimError::invalid_syntax(format!(
                            "schemas must contain {SEARCH_REQUEST}"
                        )));
                    }
                    continue;
                }
                (_, Value::Null) => continue,
                ("filter", Value::String(_)) => v.clone(),
                ("filter", _) => {
                    return Err(ScimError::bad_request(
                        ScimType::InvalidFilter,
                        "filter must be a string",
                    ));
                }
                ("sortBy", Value::String(s)) if !s.is_empty() => v.clone(),
                ("sortOrder", Value::String(s)) => {
                    check_order(s)?;
                    Value::String(s.to_ascii_lowercase())
                }
                ("sortBy" | "sortOrder", _) => continue,
                ("startIndex" | "count", Value::Number(n)) => {
                    Value::from(n.as_i64().ok_or_else(|| {
                        ScimError::invalid_value(format!("{name} must be an integer"))
                    })?)
                }
                ("startIndex" | "count", Value::String(s)) => Value::from(parse_int(name, s)?),
                ("startIndex" | "count", _) => {
                    return Err(ScimError::invalid_value(format!(
                        "{name} must be an integer"
                    )));
                }
                (_, Value::String(s)) => Value::from(split_names(s)),
                (_, Value::Array(items)) if items.iter().all(Value::is_string) => v.clone(),
                (_, Value::Array(_)) => {
                    return Err(ScimError::invalid_syntax(format!(
                        "{name} must list strings"
                    )));
                }
                (_, _) => {
                    return Err(ScimError::invalid_syntax(format!(
                        "{name} must be an array of strings"
                    )));
                }
            };
            out.insert(name.to_owned(), value);
        }
        let r: SearchRequest<MaybeFilter> = read(out)?;
        Ok(ListParams {
            start_index: r.effective_start_index(),
            count: r.count,
            descending: r.sort_order == Some(SortOrder::Descending),
            attributes: r.attributes,
            excluded: r.excluded_attributes,
            sort_by: r.sort_by,
            filter: strict(r.filter)?,
        })
    }

    /// The page size to serve: RFC 7644 §3.4.2.4 treats a negative count as 0; larger than
    /// the maximum is capped.
    pub fn effective_count(&self, default: i64, max: i64) -> i64 {
        self.count.unwrap_or(default).clamp(0, max)
    }

    /// RFC 7644 §3.4.2.4: a startIndex below 1 is interpreted as 1.
    pub fn effective_start(&self) -> i64 {
        self.start_index.max(1)
    }
}

/// Selection parameters (`attributes`/`excludedAttributes`) from a query string, for
/// single-resource routes (GET by id, POST, PUT, PATCH).
#[derive(Debug, Clone, Default)]
pub struct SelectParams {
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

impl SelectParams {
    pub fn from_query(pairs: &[(String, String)]) -> Self {
        let mut s = SelectParams::default();
        for (k, v) in pairs {
            match canonical(k) {
                Some("attributes") => s.attributes = split_names(v),
                Some("excludedAttributes") => s.excluded = split_names(v),
                _ => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn query_names_are_case_insensitive_and_values_checked() {
        let p = ListParams::from_query(&pairs(&[
            ("FILTER", "userName eq \"a\""),
            ("sortby", "userName"),
            ("SortOrder", "Descending"),
            ("startindex", "0"),
            ("Count", "5"),
            ("attributes", "userName, emails"),
        ]))
        .unwrap();
        assert!(p.filter.is_some());
        assert_eq!(p.sort_by.as_deref(), Some("userName"));
        assert!(p.descending);
        assert_eq!((p.start_index, p.count), (1, Some(5)));
        assert_eq!(p.attributes, vec!["userName", "emails"]);
        for (bad, kind) in [
            (("count", "x"), ScimType::InvalidValue),
            (("sortOrder", "up"), ScimType::InvalidValue),
            (("filter", "userName eq"), ScimType::InvalidFilter),
        ] {
            let e = ListParams::from_query(&pairs(&[bad])).unwrap_err();
            assert_eq!(e.scim_type, Some(kind), "{bad:?}");
        }
    }

    #[test]
    fn search_bodies_take_the_forms_providers_send() {
        let p = ListParams::from_search(&json!({
            "schemas": [SEARCH_REQUEST], "Filter": "active eq true", "count": "3",
            "attributes": "userName,emails", "excludedAttributes": ["groups"], "sortOrder": null
        }))
        .unwrap();
        assert_eq!(p.count, Some(3));
        assert_eq!(p.attributes, vec!["userName", "emails"]);
        assert_eq!(p.excluded, vec!["groups"]);
        for (bad, kind) in [
            (json!({"schemas": ["urn:x"]}), ScimType::InvalidSyntax),
            (json!({"filter": 5}), ScimType::InvalidFilter),
            (json!({"count": true}), ScimType::InvalidValue),
            (json!({"attributes": [1]}), ScimType::InvalidSyntax),
            (json!([1]), ScimType::InvalidSyntax),
        ] {
            let e = ListParams::from_search(&bad).unwrap_err();
            assert_eq!(e.scim_type, Some(kind), "{bad}");
        }
    }
}
