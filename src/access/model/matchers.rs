//! What rules match with: case-insensitive globs over group names and attribute values, and
//! paths to user attributes (RFC 7643 names, compared ignoring case).

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    Literal(char),
    One,
    Many,
}

/// A case-insensitive glob: `*` matches any run of characters, `?` one character, and `\`
/// escapes the next character. `[`, `]`, `{` and `}` must be escaped (they are not
/// character classes or alternatives here, and silently treating them literally would
/// surprise someone used to shell globs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<GlobToken>,
}

impl Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl Glob {
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("the pattern is empty".into());
        }
        let mut tokens = Vec::new();
        let mut chars = source.chars().enumerate();
        while let Some((i, c)) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&GlobToken::Many) {
                        tokens.push(GlobToken::Many);
                    }
                }
                '?' => tokens.push(GlobToken::One),
                '\\' => match chars.next() {
                    Some((_, escaped)) => {
                        tokens.extend(escaped.to_lowercase().map(GlobToken::Literal));
                    }
                    None => {
                        return Err(format!(
                            "bad pattern {source:?}: it ends with an unfinished escape '\\'"
                        ));
                    }
                },
                '[' | ']' | '{' | '}' => {
                    return Err(format!(
                        "bad pattern {source:?}: '{c}' at position {i} is not supported (only * and ? are wildcards); write \\{c} to match it literally"
                    ));
                }
                other => tokens.extend(other.to_lowercase().map(GlobToken::Literal)),
            }
        }
        Ok(Self {
            source: source.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches, ignoring case.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
        let pat = &self.tokens;
        let (mut p, mut t) = (0usize, 0usize);
        // Where the last `*` was, and the text position it currently stands for.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pat.get(p) {
                Some(GlobToken::One) => {
                    p += 1;
                    t += 1;
                }
                Some(GlobToken::Literal(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                Some(GlobToken::Many) => {
                    star = Some((p, t));
                    p += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pat[p..].iter().all(|tok| *tok == GlobToken::Many)
    }
}

/// A path to a user attribute: `title`, `name.givenName`, `emails.value`, or an extension
/// attribute by its URN (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`).
/// Names compare ignoring case (RFC 7643 §2.1); multi-valued attributes yield every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    source: String,
    schema: Option<String>,
    parts: Vec<String>,
}

impl Serialize for AttrPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl AttrPath {
    pub fn parse(source: &str) -> Result<Self, String> {
        let hint = "use a name (\"title\"), a dotted sub-attribute (\"name.givenName\") or an extension attribute after its schema URN (\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department\")";
        let is_urn = source
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        let (schema, rest) = if is_urn {
            match source.rsplit_once(':') {
                Some((schema, rest)) if !rest.is_empty() && schema.len() > 4 => {
                    (Some(schema.to_owned()), rest)
                }
                _ => return Err(format!("{source:?} names no attribute: {hint}")),
            }
        } else {
            (None, source)
        };
        let name_ok = |p: &str| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if !parts.iter().all(|p| name_ok(p)) {
            return Err(format!("{source:?} is not an attribute path: {hint}"));
        }
        Ok(Self {
            source: source.to_owned(),
            schema,
            parts,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every value at this path in a user's attributes, as text: strings as they are,
    /// booleans and numbers in JSON form; multi-valued attributes yield each element, and a
    /// complex value yields its `value` sub-attribute.
    pub fn values(&self, attrs: &Map<String, Value>) -> Vec<String> {
        let root = match &self.schema {
            Some(urn) => match get_ignore_case(attrs, urn) {
                Some(Value::Object(ext)) => ext,
                _ => return Vec::new(),
            },
            None => attrs,
        };
        let mut frontier: Vec<&Value> = Vec::new();
        let mut parts = self.parts.iter();
        if let Some(first) = parts.next()
            && let Some(v) = get_ignore_case(root, first)
        {
            frontier.push(v);
        }
        for part in parts {
            let mut next = Vec::new();
            for v in frontier {
                for obj in objects(v) {
                    if let Some(found) = get_ignore_case(obj, part) {
                        next.push(found);
                    }
                }
            }
            frontier = next;
        }
        let mut out = Vec::new();
        for v in frontier {
            scalars(v, &mut out);
        }
        out
    }
}

fn get_ignore_case<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The objects in a value: itself, or the object elements of an array.
fn objects(v: &Value) -> Vec<&Map<String, Value>> {
    match v {
        Value::Object(o) => vec![o],
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    }
}

fn scalars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => {
            for item in items {
                if !item.is_array() {
                    scalars(item, out);
                }
            }
        }
        Value::Object(o) => {
            if let Some(inner) = get_ignore_case(o, "value")
                && !inner.is_object()
                && !inner.is_array()
            {
                scalars(inner, out);
            }
        }
        Value::Null => {}
    }
}

/// Unicode case-insensitive equality (group names, attribute values).
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}
