//! The few places SQLite and PostgreSQL SQL differ, and a small statement builder that
//! numbers placeholders for the backend it targets.
//!
//! Identifiers and JSON keys spliced into statements come only from the attribute catalogue
//! (canonical RFC 7643 names), never from a request; every request value is a bind.

use crate::directory::Backend;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    Null,
    /// A resource document (JSON text), written as the backend stores documents.
    Doc(String),
}

impl Bind {
    pub fn text(value: impl Into<String>) -> Self {
        Bind::Text(value.into())
    }

    /// A text, or NULL when absent.
    pub fn opt(value: Option<&str>) -> Self {
        value.map_or(Bind::Null, Bind::text)
    }
}

/// A statement under construction: SQL text plus its binds, with placeholders in the
/// backend's own syntax (`?` for SQLite, `$n` for PostgreSQL).
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub backend: Backend,
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            text: String::with_capacity(256),
            binds: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value` (a document as the backend reads documents).
    pub fn bind(&mut self, value: Bind) -> &mut Self {
        if let Bind::Doc(json) = value {
            let backend = self.backend;
            backend.doc_param(self, json);
            return self;
        }
        self.binds.push(value);
        match self.backend {
            Backend::Sqlite => self.text.push('?'),
            Backend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.binds.len().to_string());
            }
        }
        self
    }

    pub fn bind_text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(value.into()))
    }

    /// Appends `each` of `items`, separated by commas.
    fn commas<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            each(self, item);
        }
        self
    }

    /// Appends `(?, ?, ...)` bound to the values.
    pub fn bind_list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.row(values.into_iter().map(Bind::text))
    }

    /// Appends `(?, ?, ...)` bound to the values of one row.
    pub fn row(&mut self, values: impl IntoIterator<Item = Bind>) -> &mut Self {
        self.push("(");
        self.commas(values, |s, v| {
            s.bind(v);
        });
        self.push(")")
    }

    /// Appends `(...), (...)` for several rows.
    pub fn rows<R: IntoIterator<Item = Bind>>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
    ) -> &mut Self {
        self.commas(rows, |s, row| {
            s.row(row);
        })
    }
}

/// Backend-specific SQL fragments.
pub(crate) trait DialectExt {
    /// A JSON text value at `keys` below `base` (NULL when absent).
    fn json_text(self, base: &str, keys: &[&str]) -> String;
    /// A JSON boolean at `keys`, comparable with a bound bool.
    fn json_bool(self, base: &str, keys: &[&str]) -> String;
    /// A JSON number at `keys`, comparable with a bound number.
    fn json_number(self, base: &str, keys: &[&str]) -> String;
    /// A FROM item iterating the elements of the JSON array at `keys`, and the expression
    /// naming one element.
    fn json_elements(self, base: &str, keys: &[&str], alias: &str) -> (String, String);
    /// How the document column is written (`?` or `CAST($n AS jsonb)` around a placeholder).
    fn doc_param(self, placeholder_sql: &mut Sql, json: String);
    /// How the document column is read as text.
    fn doc_column(self, alias: &str) -> String;
    /// Row-lock suffix for the SELECT that starts a read-modify-write.
    fn for_update(self) -> &'static str;
    /// A query whose one row and column counts the tables named `table` (0 or 1) in the
    /// database (SQLite) or the current schema (PostgreSQL). `table` is a constant.
    fn table_exists(self, table: &str) -> String;
}

fn sqlite_path(keys: &[&str]) -> String {
    let mut p = String::from("'$");
    for k in keys {
        p.push_str(".\"");
        p.push_str(k);
        p.push('"');
    }
    p.push('\'');
    p
}

fn pg_path(base: &str, keys: &[&str], last_text: bool) -> String {
    let mut p = String::from(base);
    for (i, k) in keys.iter().enumerate() {
        let arrow = if last_text && i + 1 == keys.len() {
            "->>"
        } else {
            "->"
        };
        p.push_str(arrow);
        p.push('\'');
        p.push_str(k);
        p.push('\'');
    }
    p
}

impl DialectExt for Backend {
    fn json_text(self, base: &str, keys: &[&str]) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({base}, {})", sqlite_path(keys)),
            Backend::Postgres => format!("({})", pg_path(base, keys, true)),
        }
    }

    fn json_bool(self, base: &str, keys: &[&str]) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({base}, {})", sqlite_path(keys)),
            Backend::Postgres => format!("(({})::boolean)", pg_path(base, keys, true)),
        }
    }

    fn json_number(self, base: &str, keys: &[&str]) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({base}, {})", sqlite_path(keys)),
            Backend::Postgres => format!("(({})::numeric)", pg_path(base, keys, true)),
        }
    }

    fn json_elements(self, base: &str, keys: &[&str], alias: &str) -> (String, String) {
        match self {
            Backend::Sqlite => (
                format!("json_each({base}, {}) AS {alias}", sqlite_path(keys)),
                format!("{alias}.value"),
            ),
            Backend::Postgres => {
                let arr = pg_path(base, keys, false);
                (
                    format!(
                        "jsonb_array_elements(CASE WHEN jsonb_typeof({arr}) = 'array' THEN {arr} ELSE '[]'::jsonb END) AS {alias}(v)"
                    ),
                    format!("{alias}.v"),
                )
            }
        }
    }

    fn doc_param(self, sql: &mut Sql, json: String) {
        match self {
            Backend::Sqlite => {
                sql.bind_text(json);
            }
            Backend::Postgres => {
                sql.push("CAST(").bind_text(json).push(" AS jsonb)");
            }
        }
    }

    fn doc_column(self, alias: &str) -> String {
        match self {
            Backend::Sqlite => format!("{alias}.doc"),
            Backend::Postgres => format!("{alias}.doc::text"),
        }
    }

    fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    fn table_exists(self, table: &str) -> String {
        match self {
            Backend::Sqlite => format!(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ),
            Backend::Postgres => format!(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '{table}'"
            ),
        }
    }
}
