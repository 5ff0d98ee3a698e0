//! Compiles a parsed SCIM filter (RFC 7644 §3.4.2.2, parsed by `scim_v2`) into a SQL
//! condition over the `users` or `groups` table aliased `r`.
//!
//! The attributes identity providers filter on map to indexed columns: `id`, `userName`,
//! `externalId`, `displayName`, `active`, `meta.created`, `meta.lastModified`,
//! `emails.value` (the `user_emails` table) and `members.value` (the `group_members` table).
//! Every other attribute is read from the JSON document inside the database, so no filter
//! ever loads a table into the process.
//!
//! Every emitted condition is two-valued (never SQL NULL), so `not (...)` means what the
//! client wrote. Comparisons follow each attribute's `caseExact` (RFC 7643 §2.2): the
//! case-folded columns are compared with a bind folded in Rust; JSON text through `lower()`
//! on PostgreSQL and, on SQLite (whose `lower()` and `LIKE` fold ASCII only), through the
//! Unicode-aware `pimgate_ci` collation and a case-insensitive `REGEXP` the store registers.
//!
//! A filter's cost is bounded before anything runs ([`crate::directory::limits`]), and
//! `and`/`or` lists are emitted as balanced trees, so a long list never reaches either
//! backend's expression-depth limit.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter, ValuePath};

use super::dialect::{Bind, DialectExt, Sql};
use crate::clock::Timestamp;
use crate::directory::error::{DirectoryError, FilterError};
use crate::directory::kind::ResourceKind;
use crate::directory::limits::{
    MAX_DOCUMENT_TERMS, MAX_FILTER_TERMS, MAX_PATTERN_CHARS, MAX_TEXT_CHARS,
};
use crate::directory::model::Backend;
use crate::directory::schema::{AttrDef, AttrHome, AttrType, Catalogue, ResolvedAttr};

/// Where a compared value lives.
#[derive(Debug, Clone)]
enum Target {
    /// A column of `r`.
    Column {
        expr: String,
        ty: AttrType,
        fold: Fold,
    },
    /// The user's e-mail addresses (`user_emails.value_lc`, folded).
    Emails,
    /// A column of the `group_members` row (`m.member_id` or `m.member_type`).
    Members { column: &'static str, fold: Fold },
    /// A single-valued attribute in the JSON document.
    Json { keys: Vec<String>, leaf: AttrDef },
    /// A sub-attribute of the elements of a multi-valued attribute in the JSON document.
    JsonElements {
        keys: Vec<String>,
        sub: Option<String>,
        leaf: AttrDef,
    },
}

/// How a case-insensitive (`caseExact: false`) string comparison is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    /// Compare as is (case-exact, or not a string).
    None,
    /// The column already holds the value lowercased in Rust at write time; lowercase the
    /// bind in Rust too, so the comparison uses the column's index.
    Bind,
    /// Lowercase both sides in SQL (`lower(expr) = lower(?)`), for values inside documents.
    Sql,
}

impl Fold {
    fn for_json(def: &AttrDef) -> Self {
        if matches!(def.ty, AttrType::String | AttrType::Reference) && !def.case_exact {
            Fold::Sql
        } else {
            Fold::None
        }
    }
}

/// The SQLite collation that compares strings ignoring case, Unicode-aware (registered on
/// every SQLite connection by the store).
pub(crate) const SQLITE_CI: &str = "pimgate_ci";
/// The clause that applies it.
const COLLATE_CI: &str = " COLLATE pimgate_ci";

/// `pimgate_ci`: both strings lowercased character by character, compared in order.
pub(crate) fn compare_ignoring_case(a: &str, b: &str) -> std::cmp::Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// What a filter has spent so far, checked against the limits as it compiles.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    terms: usize,
    document_terms: usize,
}

impl Budget {
    fn term(&mut self) -> Result<(), DirectoryError> {
        self.terms += 1;
        if self.terms > MAX_FILTER_TERMS {
            return Err(too_costly(format!(
                "a filter may hold at most {MAX_FILTER_TERMS} comparisons"
            )));
        }
        Ok(())
    }

    fn document_term(&mut self, attr: &str) -> Result<(), DirectoryError> {
        self.document_terms += 1;
        if self.document_terms > MAX_DOCUMENT_TERMS {
            return Err(too_costly(format!(
                "a filter may make at most {MAX_DOCUMENT_TERMS} comparisons on attributes \
                 without an index (such as {attr}) or inside attr[...]"
            )));
        }
        Ok(())
    }
}

fn too_costly(detail: String) -> DirectoryError {
    FilterError::TooCostly(detail).into()
}

fn invalid_filter(detail: impl Into<String>) -> DirectoryError {
    FilterError::Mismatch(detail.into()).into()
}

fn not_filterable(attr: impl Into<String>) -> DirectoryError {
    FilterError::NotFilterable(attr.into()).into()
}

fn unknown(attr: impl Into<String>) -> DirectoryError {
    FilterError::UnknownAttribute(attr.into()).into()
}

/// The JSON keys (from the document root) of a resolved attribute.
fn json_keys(r: &ResolvedAttr) -> Vec<String> {
    let mut keys = Vec::with_capacity(3);
    if let AttrHome::Extension(urn) = r.home {
        keys.push(urn.to_owned());
    }
    keys.push(r.attr.name.clone());
    keys
}

fn target(kind: ResourceKind, r: &ResolvedAttr) -> Result<Target, DirectoryError> {
    let dotted = r.dotted();
    let column = |expr: &str, ty, fold| Target::Column {
        expr: expr.to_owned(),
        ty,
        fold,
    };
    let fixed = match (kind, r.home.clone(), dotted.as_str()) {
        (_, AttrHome::Common, "id") => Some(column("r.id", AttrType::String, Fold::None)),
        (_, AttrHome::Common, "externalId") => {
            Some(column("r.external_id", AttrType::String, Fold::None))
        }
        (_, AttrHome::Common, "meta.created") => {
            Some(column("r.created", AttrType::DateTime, Fold::None))
        }
        (_, AttrHome::Common, "meta.lastModified") => {
            Some(column("r.last_modified", AttrType::DateTime, Fold::None))
        }
        (_, AttrHome::Common, other) => return Err(not_filterable(other)),
        (ResourceKind::User, AttrHome::Core, "userName") => {
            Some(column("r.user_name_lc", AttrType::String, Fold::Bind))
        }
        (_, AttrHome::Core, "displayName") => {
            Some(column("r.display_name_lc", AttrType::String, Fold::Bind))
        }
        (ResourceKind::User, AttrHome::Core, "active") => {
            Some(column("r.active", AttrType::Boolean, Fold::None))
        }
        (ResourceKind::User, AttrHome::Core, "emails" | "emails.value") => Some(Target::Emails),
        (ResourceKind::Group, AttrHome::Core, "members" | "members.value") => {
            Some(Target::Members {
                column: "m.member_id",
                fold: Fold::None,
            })
        }
        (ResourceKind::Group, AttrHome::Core, "members.type") => Some(Target::Members {
            column: "m.member_type",
            fold: Fold::Sql,
        }),
        (ResourceKind::Group, AttrHome::Core, d) if d.starts_with("members") => {
            return Err(not_filterable(d));
        }
        (ResourceKind::User, AttrHome::Core, d) if d.starts_with("groups") => {
            return Err(not_filterable(d));
        }
        _ => None,
    };
    if let Some(t) = fixed {
        return Ok(t);
    }
    let keys = json_keys(r);
    if r.attr.multi_valued {
        Ok(Target::JsonElements {
            keys,
            sub: (r.attr.ty == AttrType::Complex).then(|| r.leaf().name.clone()),
            leaf: r.leaf().clone(),
        })
    } else {
        let mut keys = keys;
        if let Some(sub) = &r.sub {
            keys.push(sub.name.clone());
        }
        Ok(Target::Json {
            keys,
            leaf: r.leaf().clone(),
        })
    }
}

/// Compiles `filter` into `sql` as a parenthesised condition over alias `r`.
pub(crate) fn compile(
    filter: &Filter,
    kind: ResourceKind,
    cat: &Catalogue,
    sql: &mut Sql,
) -> Result<(), DirectoryError> {
    compile_within(filter, kind, cat, sql, &mut Budget::default())
}

fn compile_within(
    filter: &Filter,
    kind: ResourceKind,
    cat: &Catalogue,
    sql: &mut Sql,
    budget: &mut Budget,
) -> Result<(), DirectoryError> {
    match filter {
        Filter::Attr(exp) => compile_attr_exp(exp, kind, cat, sql, budget),
        Filter::ValuePath(vp) => compile_value_path(vp, kind, cat, sql, budget),
        Filter::Not(inner) => {
            sql.push("(NOT ");
            compile_within(inner, kind, cat, sql, budget)?;
            sql.push(")");
            Ok(())
        }
        Filter::And(items) => join(items.as_slice(), " AND ", sql, &mut |f, s| {
            compile_within(f, kind, cat, s, budget)
        }),
        Filter::Or(items) => join(items.as_slice(), " OR ", sql, &mut |f, s| {
            compile_within(f, kind, cat, s, budget)
        }),
    }
}

/// Emits `items` joined by `op` as a balanced tree of parenthesised halves, so a list of n
/// terms nests log2(n) deep in the database's parser rather than n.
fn join<T>(
    items: &[T],
    op: &str,
    sql: &mut Sql,
    each: &mut dyn FnMut(&T, &mut Sql) -> Result<(), DirectoryError>,
) -> Result<(), DirectoryError> {
    const FLAT: usize = 8;
    sql.push("(");
    if items.len() <= FLAT {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                sql.push(op);
            }
            each(item, sql)?;
        }
    } else {
        let (left, right) = items.split_at(items.len() / 2);
        join(left, op, sql, each)?;
        sql.push(op);
        join(right, op, sql, each)?;
    }
    sql.push(")");
    Ok(())
}

fn resolve(
    kind: ResourceKind,
    cat: &Catalogue,
    path: &AttrPath,
) -> Result<ResolvedAttr, DirectoryError> {
    cat.resolve(kind, path).map_err(|e| unknown(e.0))
}

fn compile_attr_exp(
    exp: &AttrExp,
    kind: ResourceKind,
    cat: &Catalogue,
    sql: &mut Sql,
    budget: &mut Budget,
) -> Result<(), DirectoryError> {
    let path = match exp {
        AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
    };
    budget.term()?;
    let resolved = resolve(kind, cat, path)?;
    let backend = sql.backend;
    match target(kind, &resolved)? {
        Target::Column { expr, ty, fold } => leaf(exp, &expr, ty, fold, sql),
        Target::Json { keys, leaf: def } => {
            budget.document_term(&resolved.dotted())?;
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let expr = json_expr(backend, "r.doc", &keys, &def, exp);
            leaf(exp, &expr, def.ty, Fold::for_json(&def), sql)
        }
        Target::Emails => {
            sql.push("EXISTS (SELECT 1 FROM user_emails e WHERE e.user_id = r.id AND ");
            leaf(exp, "e.value_lc", AttrType::String, Fold::Bind, sql)?;
            sql.push(")");
            Ok(())
        }
        Target::Members { column, fold } => {
            sql.push("EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = r.id AND ");
            leaf(exp, column, AttrType::String, fold, sql)?;
            sql.push(")");
            Ok(())
        }
        Target::JsonElements {
            keys,
            sub,
            leaf: def,
        } => {
            budget.document_term(&resolved.dotted())?;
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let (from, elem) = backend.json_elements("r.doc", &keys, "j");
            sql.push("EXISTS (SELECT 1 FROM ")
                .push(&from)
                .push(" WHERE ");
            let sub_keys: Vec<&str> = sub.iter().map(String::as_str).collect();
            let expr = json_expr(backend, &elem, &sub_keys, &def, exp);
            leaf(exp, &expr, def.ty, Fold::for_json(&def), sql)?;
            sql.push(")");
            Ok(())
        }
    }
}

/// The SQL expression of a JSON value, typed for the comparison that uses it.
fn json_expr(backend: Backend, base: &str, keys: &[&str], def: &AttrDef, exp: &AttrExp) -> String {
    let needs_typed = matches!(exp, AttrExp::Comparison(_, _, v) if !matches!(v, CompValue::Null));
    if keys.is_empty() {
        // The element itself is the value (a multi-valued simple attribute).
        return match backend {
            Backend::Sqlite => base.to_owned(),
            Backend::Postgres => format!("({base} #>> '{{}}')"),
        };
    }
    match (def.ty, needs_typed) {
        (AttrType::Boolean, true) => backend.json_bool(base, keys),
        (AttrType::Integer | AttrType::Decimal, true) => backend.json_number(base, keys),
        _ => backend.json_text(base, keys),
    }
}

fn compile_value_path(
    vp: &ValuePath,
    kind: ResourceKind,
    cat: &Catalogue,
    sql: &mut Sql,
    budget: &mut Budget,
) -> Result<(), DirectoryError> {
    let resolved = resolve(kind, cat, &vp.attr)?;
    if !resolved.attr.multi_valued
        || resolved.attr.ty != AttrType::Complex
        || resolved.sub.is_some()
    {
        return Err(invalid_filter(format!(
            "{}[...] needs a multi-valued complex attribute",
            resolved.dotted()
        )));
    }
    let backend = sql.backend;
    if kind == ResourceKind::Group && resolved.attr.name == "members" {
        sql.push("EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = r.id AND ");
        member_filter(&vp.filter, &resolved.attr, sql, budget)?;
        sql.push(")");
        return Ok(());
    }
    if matches!(resolved.home, AttrHome::Common) || resolved.attr.name == "groups" {
        return Err(not_filterable(resolved.dotted()));
    }
    let keys = json_keys(&resolved);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (from, elem) = backend.json_elements("r.doc", &keys, "j");
    sql.push("EXISTS (SELECT 1 FROM ")
        .push(&from)
        .push(" WHERE ");
    let in_document = |b: &mut Budget| b.document_term(&resolved.dotted());
    compile_val_filter(
        &vp.filter,
        &resolved.attr,
        sql,
        budget,
        &in_document,
        &|exp, sub| {
            let def = resolved
                .attr
                .sub(sub)
                .ok_or_else(|| unknown(format!("{}.{sub}", resolved.attr.name)))?;
            Ok((
                json_expr(backend, &elem, &[def.name.as_str()], def, exp),
                Fold::for_json(def),
            ))
        },
    )?;
    sql.push(")");
    Ok(())
}

/// Compiles a filter over a group's members (`members[...]`) against the `group_members`
/// row aliased `m`: `value` is the member id, `type` its kind.
pub(crate) fn compile_member_filter(
    filter: &ValFilter,
    members: &AttrDef,
    sql: &mut Sql,
) -> Result<(), DirectoryError> {
    member_filter(filter, members, sql, &mut Budget::default())
}

fn member_filter(
    filter: &ValFilter,
    members: &AttrDef,
    sql: &mut Sql,
    budget: &mut Budget,
) -> Result<(), DirectoryError> {
    // Membership rows are indexed: their comparisons cost no document reads.
    compile_val_filter(
        filter,
        members,
        sql,
        budget,
        &|_| Ok(()),
        &|_, sub| match sub {
            "value" => Ok(("m.member_id".to_owned(), Fold::None)),
            "type" => Ok(("m.member_type".to_owned(), Fold::Sql)),
            other => Err(not_filterable(format!("members.{other}"))),
        },
    )
}

/// Maps a sub-attribute name inside `[...]` to its SQL expression and case handling.
type SubExpr<'a> = dyn Fn(&AttrExp, &str) -> Result<(String, Fold), DirectoryError> + 'a;
/// What one comparison inside `[...]` costs beyond a term.
type TermCost<'a> = dyn Fn(&mut Budget) -> Result<(), DirectoryError> + 'a;

/// Compiles the filter inside `attr[...]`, whose paths name sub-attributes of `parent`.
fn compile_val_filter(
    filter: &ValFilter,
    parent: &AttrDef,
    sql: &mut Sql,
    budget: &mut Budget,
    cost: &TermCost<'_>,
    sub_expr: &SubExpr<'_>,
) -> Result<(), DirectoryError> {
    match filter {
        ValFilter::Attr(exp) => {
            let path = match exp {
                AttrExp::Present(p) | AttrExp::Comparison(p, _, _) => p,
            };
            budget.term()?;
            cost(budget)?;
            if path.uri.is_some() || path.sub_attr.is_some() {
                return Err(invalid_filter(format!(
                    "inside {}[...] only sub-attribute names are allowed",
                    parent.name
                )));
            }
            let def = parent
                .sub(&path.name)
                .ok_or_else(|| unknown(format!("{}.{}", parent.name, path.name)))?;
            let (expr, fold) = sub_expr(exp, &def.name)?;
            leaf(exp, &expr, def.ty, fold, sql)
        }
        ValFilter::Not(inner) => {
            sql.push("(NOT ");
            compile_val_filter(inner, parent, sql, budget, cost, sub_expr)?;
            sql.push(")");
            Ok(())
        }
        ValFilter::And(items) => join(items.as_slice(), " AND ", sql, &mut |f, s| {
            compile_val_filter(f, parent, s, budget, cost, sub_expr)
        }),
        ValFilter::Or(items) => join(items.as_slice(), " OR ", sql, &mut |f, s| {
            compile_val_filter(f, parent, s, budget, cost, sub_expr)
        }),
    }
}

/// A compared string within the limits: no U+0000 (no stored value holds one), patterns and
/// values no longer than anything stored could match.
fn check_value(name: &str, op: &CompareOp, s: &str) -> Result<(), DirectoryError> {
    if s.contains('\0') {
        return Err(invalid_filter(format!(
            "{name}: a filter value cannot contain U+0000"
        )));
    }
    let (max, what) = match op {
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
            (MAX_PATTERN_CHARS, "co, sw and ew values")
        }
        _ => (MAX_TEXT_CHARS, "filter values"),
    };
    if s.chars().take(max + 1).count() > max {
        return Err(too_costly(format!(
            "{name}: {what} are at most {max} characters long"
        )));
    }
    Ok(())
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 2);
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One comparison or presence test on `expr`.
///
/// `fold` says how a case-insensitive string comparison is made (see [`Fold`]).
fn leaf(
    exp: &AttrExp,
    expr: &str,
    ty: AttrType,
    fold: Fold,
    sql: &mut Sql,
) -> Result<(), DirectoryError> {
    let (path, op, value) = match exp {
        AttrExp::Present(_) => {
            sql.push("(").push(expr).push(" IS NOT NULL)");
            return Ok(());
        }
        AttrExp::Comparison(path, op, value) => (path, op, value),
    };
    let name = &path.name;
    if let CompValue::Str(s) = value {
        check_value(name, op, s)?;
    }
    if matches!(value, CompValue::Null) {
        return match op {
            CompareOp::Eq => {
                sql.push("(").push(expr).push(" IS NULL)");
                Ok(())
            }
            CompareOp::Ne => {
                sql.push("(").push(expr).push(" IS NOT NULL)");
                Ok(())
            }
            _ => Err(invalid_filter(format!(
                "{name}: null can only be compared with eq or ne"
            ))),
        };
    }
    let bind = match ty {
        AttrType::Boolean => {
            let b = match value {
                CompValue::True => true,
                CompValue::False => false,
                CompValue::Str(s) if s.eq_ignore_ascii_case("true") => true,
                CompValue::Str(s) if s.eq_ignore_ascii_case("false") => false,
                _ => return Err(invalid_filter(format!("{name} is a boolean"))),
            };
            if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
                return Err(invalid_filter(format!(
                    "{name} is a boolean: only eq, ne and pr apply"
                )));
            }
            Bind::Bool(b)
        }
        AttrType::Integer | AttrType::Decimal => match value {
            CompValue::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Bind::Int(i)
                } else {
                    Bind::Float(n.as_f64().unwrap_or_default())
                }
            }
            _ => return Err(invalid_filter(format!("{name} is a number"))),
        },
        AttrType::DateTime => match value {
            CompValue::Str(s) => match Timestamp::parse_rfc3339(s) {
                Some(t) => Bind::Text(t.to_rfc3339()),
                None => {
                    return Err(invalid_filter(format!(
                        "{name}: {s:?} is not an RFC 3339 date-time"
                    )));
                }
            },
            _ => return Err(invalid_filter(format!("{name} is a date-time string"))),
        },
        AttrType::Complex => {
            return Err(invalid_filter(format!(
                "{name} is complex: compare one of its sub-attributes"
            )));
        }
        AttrType::String | AttrType::Reference | AttrType::Binary => match value {
            CompValue::Str(s) => Bind::Text(s.clone()),
            CompValue::Number(n) => Bind::Text(n.to_string()),
            CompValue::True => Bind::Text("true".into()),
            CompValue::False => Bind::Text("false".into()),
            CompValue::Null => Bind::Text(String::new()),
        },
    };
    let text = ty != AttrType::DateTime && matches!(bind, Bind::Text(_));
    // SQLite folds in SQL through its `pimgate_ci` collation (its `lower()` is ASCII-only).
    let sqlite_fold = fold == Fold::Sql && text && sql.backend == Backend::Sqlite;
    let (lhs, bind, rhs_fn, collate) = match (fold, bind) {
        (Fold::Bind, Bind::Text(s)) if text => {
            (expr.to_owned(), Bind::Text(s.to_lowercase()), "", "")
        }
        (Fold::Sql, b) if sqlite_fold => (expr.to_owned(), b, "", COLLATE_CI),
        (Fold::Sql, b) if text => (format!("lower({expr})"), b, "lower", ""),
        (_, b) => (expr.to_owned(), b, "", ""),
    };
    let rhs = |sql: &mut Sql, b: Bind| {
        sql.push(rhs_fn).push("(").bind(b).push(")").push(collate);
    };
    match op {
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew if sqlite_fold => {
            let Bind::Text(s) = bind else {
                unreachable!("sqlite_fold implies a text bind")
            };
            let escaped = regex::escape(&s);
            let pattern = match op {
                CompareOp::Co => format!("(?i){escaped}"),
                CompareOp::Sw => format!("(?i)^{escaped}"),
                _ => format!("(?i){escaped}$"),
            };
            sql.push("(")
                .push(&lhs)
                .push(" IS NOT NULL AND ")
                .push(&lhs)
                .push(" REGEXP ")
                .bind(Bind::Text(pattern))
                .push(")");
        }
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
            let Bind::Text(s) = bind else {
                return Err(invalid_filter(format!(
                    "{name}: co, sw and ew apply to strings only"
                )));
            };
            let escaped = like_escape(&s);
            let pattern = match op {
                CompareOp::Co => format!("%{escaped}%"),
                CompareOp::Sw => format!("{escaped}%"),
                _ => format!("%{escaped}"),
            };
            sql.push("(")
                .push(&lhs)
                .push(" IS NOT NULL AND ")
                .push(&lhs)
                .push(" LIKE ");
            rhs(sql, Bind::Text(pattern));
            sql.push(" ESCAPE '\\')");
        }
        CompareOp::Ne => {
            sql.push("(")
                .push(&lhs)
                .push(" IS NULL OR ")
                .push(&lhs)
                .push(" <> ");
            rhs(sql, bind);
            sql.push(")");
        }
        CompareOp::Eq | CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
            let sym = match op {
                CompareOp::Eq => " = ",
                CompareOp::Gt => " > ",
                CompareOp::Ge => " >= ",
                CompareOp::Lt => " < ",
                _ => " <= ",
            };
            sql.push("(")
                .push(&lhs)
                .push(" IS NOT NULL AND ")
                .push(&lhs)
                .push(sym);
            rhs(sql, bind);
            sql.push(")");
        }
    }
    Ok(())
}

/// The SQL expression to sort by for a resolved `sortBy` attribute (RFC 7644 §3.4.2.3).
pub(crate) fn sort_expr(
    kind: ResourceKind,
    r: &ResolvedAttr,
    backend: Backend,
) -> Result<String, DirectoryError> {
    let bad = || DirectoryError::Unsortable(r.dotted());
    match target(kind, r).map_err(|_| bad())? {
        Target::Column { expr, .. } => Ok(expr),
        Target::Emails => {
            Ok("(SELECT MIN(e.value_lc) FROM user_emails e WHERE e.user_id = r.id)".to_owned())
        }
        Target::Json { keys, leaf } => {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let text = backend.json_text("r.doc", &keys);
            Ok(match backend {
                _ if leaf.ty != AttrType::String || leaf.case_exact => text,
                Backend::Sqlite => format!("{text} COLLATE {SQLITE_CI}"),
                Backend::Postgres => format!("lower({text})"),
            })
        }
        Target::Members { .. } | Target::JsonElements { .. } => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(backend: Backend, kind: ResourceKind, raw: &str) -> Result<Sql, DirectoryError> {
        let cat = Catalogue::load().unwrap();
        let filter: Filter = raw.parse().unwrap();
        let mut sql = Sql::new(backend);
        compile(&filter, kind, &cat, &mut sql)?;
        Ok(sql)
    }

    fn too_costly_detail(r: Result<Sql, DirectoryError>) -> String {
        match r {
            Err(DirectoryError::InvalidFilter(FilterError::TooCostly(d))) => d,
            other => panic!("expected a cost refusal, got {other:?}"),
        }
    }

    /// The deepest parenthesis nesting of a statement.
    fn depth(text: &str) -> usize {
        let (mut d, mut max) = (0usize, 0usize);
        for c in text.chars() {
            match c {
                '(' => {
                    d += 1;
                    max = max.max(d);
                }
                ')' => d -= 1,
                _ => {}
            }
        }
        max
    }

    fn or_chain(n: usize, term: impl Fn(usize) -> String) -> String {
        (0..n).map(term).collect::<Vec<_>>().join(" or ")
    }

    #[test]
    fn a_thousand_or_terms_nest_logarithmically() {
        let raw = or_chain(MAX_FILTER_TERMS, |i| {
            format!("userName eq \"u{i}@example.com\"")
        });
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let sql = compiled(backend, ResourceKind::User, &raw).unwrap();
            assert_eq!(sql.binds.len(), MAX_FILTER_TERMS);
            // log2(1000) halvings of two parentheses each, plus the terms' own.
            assert!(depth(&sql.text) < 30, "depth {}", depth(&sql.text));
        }
    }

    #[test]
    fn more_terms_than_the_limit_are_refused_naming_it() {
        let raw = or_chain(MAX_FILTER_TERMS + 1, |i| format!("userName eq \"u{i}\""));
        let d = too_costly_detail(compiled(Backend::Postgres, ResourceKind::User, &raw));
        assert!(d.contains("at most 1000 comparisons"), "{d}");
    }

    #[test]
    fn document_terms_are_limited_inside_value_paths_too() {
        let inner = or_chain(MAX_DOCUMENT_TERMS + 1, |i| {
            format!("value eq \"a{i}@example.com\"")
        });
        let raw = format!("emails[{inner}]");
        // emails.value in a value path reads documents.
        let d = too_costly_detail(compiled(Backend::Sqlite, ResourceKind::User, &raw));
        assert!(d.contains("at most 16 comparisons"), "{d}");
        let raw = or_chain(MAX_DOCUMENT_TERMS + 1, |i| format!("title eq \"t{i}\""));
        let d = too_costly_detail(compiled(Backend::Postgres, ResourceKind::User, &raw));
        assert!(d.contains("title"), "{d}");
        // Indexed attributes and membership rows cost no document reads.
        let raw = or_chain(200, |i| format!("members[value eq \"m{i}\"]"));
        compiled(Backend::Postgres, ResourceKind::Group, &raw).unwrap();
        let raw = or_chain(200, |i| format!("emails.value eq \"a{i}@example.com\""));
        compiled(Backend::Sqlite, ResourceKind::User, &raw).unwrap();
    }

    #[test]
    fn long_patterns_and_nul_are_refused() {
        let long = "x".repeat(MAX_PATTERN_CHARS + 1);
        let d = too_costly_detail(compiled(
            Backend::Sqlite,
            ResourceKind::User,
            &format!("userName co \"{long}\""),
        ));
        assert!(d.contains("at most 256 characters"), "{d}");
        let ok = "x".repeat(MAX_PATTERN_CHARS);
        compiled(
            Backend::Sqlite,
            ResourceKind::User,
            &format!("userName co \"{ok}\""),
        )
        .unwrap();
        let r = compiled(
            Backend::Postgres,
            ResourceKind::User,
            "userName eq \"a\\u0000b\"",
        );
        assert!(
            matches!(&r, Err(DirectoryError::InvalidFilter(FilterError::Mismatch(d))) if d.contains("U+0000")),
            "{r:?}"
        );
    }

    #[test]
    fn case_insensitive_document_text_folds_unicode_on_sqlite() {
        let sql = compiled(Backend::Sqlite, ResourceKind::User, "title eq \"ÄRZTIN\"").unwrap();
        assert!(sql.text.contains(COLLATE_CI), "{}", sql.text);
        assert!(COLLATE_CI.ends_with(SQLITE_CI));
        let sql = compiled(Backend::Sqlite, ResourceKind::User, "title sw \"ÄR\"").unwrap();
        assert!(sql.text.contains(" REGEXP "), "{}", sql.text);
        assert_eq!(sql.binds, vec![Bind::Text("(?i)^ÄR".into())]);
        let sql = compiled(Backend::Postgres, ResourceKind::User, "title eq \"ÄRZTIN\"").unwrap();
        assert!(sql.text.contains("lower("), "{}", sql.text);
        assert_eq!(
            compare_ignoring_case("Ärztin", "äRZTIN"),
            std::cmp::Ordering::Equal
        );
        assert_eq!(compare_ignoring_case("a", "B"), std::cmp::Ordering::Less);
    }
}
