//! The attribute catalogue: the data model of the directory, the RFC 7643 §8.7 schema
//! definitions (User, enterprise User extension, Group) shipped by `scim_v2`, indexed for the
//! case-insensitive attribute lookup that RFC 7643 §2.1 requires ("Attribute names are case
//! insensitive").
//!
//! The store compiles filters and sort keys against it; the SCIM layer resolves PATCH paths,
//! normalises bodies and projects attributes with it, and serves it as `/Schemas`. One table
//! decides canonical spelling, type, `caseExact`, `mutability` and `returned` for every code
//! path. It lives with the directory because the directory stores exactly what it describes.

use scim_v2::filter::AttrPath;
use scim_v2::models::scim_schema::{Attributes, Schema, SubAttributes, get_schemas};

use super::kind::ResourceKind;

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub use super::doc::ENTERPRISE_URN;

/// RFC 7643 §2.3 attribute data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Binary,
    Complex,
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// RFC 7643 §7 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// One attribute (or sub-attribute) definition.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrDef {
    /// Canonical spelling, as the RFC writes it.
    pub name: String,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub sub_attrs: Vec<AttrDef>,
}

impl AttrDef {
    /// Finds a sub-attribute by name, ignoring case.
    pub fn sub(&self, name: &str) -> Option<&AttrDef> {
        self.sub_attrs
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    fn leaf(name: &str, ty: AttrType, case_exact: bool, mutability: Mutability) -> Self {
        Self {
            name: name.to_owned(),
            ty,
            multi_valued: false,
            case_exact,
            mutability,
            returned: Returned::Default,
            sub_attrs: Vec::new(),
        }
    }
}

/// Where an attribute's value sits in a resource document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrHome {
    /// `id`, `externalId`, `meta`: RFC 7643 §3.1 common attributes.
    Common,
    /// A top-level key of the core schema.
    Core,
    /// Nested under the extension's URN key (the enterprise User extension).
    Extension(&'static str),
}

/// An attribute path resolved against the catalogue: canonical names and the definitions
/// that govern comparison and mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedAttr {
    pub home: AttrHome,
    pub attr: AttrDef,
    pub sub: Option<AttrDef>,
}

impl ResolvedAttr {
    /// The definition of the value a comparison looks at: the sub-attribute if one is named,
    /// otherwise `value` for a multi-valued complex attribute (RFC 7644 §3.4.2.2), otherwise
    /// the attribute itself.
    pub fn leaf(&self) -> &AttrDef {
        if let Some(sub) = &self.sub {
            return sub;
        }
        if self.attr.multi_valued
            && self.attr.ty == AttrType::Complex
            && let Some(value) = self.attr.sub("value")
        {
            return value;
        }
        &self.attr
    }

    /// The canonical dotted name (`emails.value`, `meta.lastModified`), without the URN.
    pub fn dotted(&self) -> String {
        match &self.sub {
            Some(sub) => format!("{}.{}", self.attr.name, sub.name),
            None => self.attr.name.clone(),
        }
    }
}

/// Why an attribute path did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown attribute {0:?}")]
pub struct UnknownAttr(pub String);

/// A schema with its attributes, as pimgate understands it.
#[derive(Debug, Clone)]
pub struct SchemaDef {
    pub urn: &'static str,
    pub attrs: Vec<AttrDef>,
}

impl SchemaDef {
    pub fn attr(&self, name: &str) -> Option<&AttrDef> {
        self.attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// The catalogue of every attribute pimgate stores and serves.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub user: SchemaDef,
    pub enterprise: SchemaDef,
    pub group: SchemaDef,
    common: Vec<AttrDef>,
    /// The schema resources served by `/Schemas`, exactly as published by the crate, with
    /// `meta.location` filled in per request.
    published: Vec<Schema>,
}

/// The catalogue could not be built from the embedded schema definitions.
#[derive(Debug, thiserror::Error)]
#[error("embedded SCIM schema definitions are unreadable: {0}")]
pub struct CatalogueError(String);

impl Catalogue {
    /// Builds the catalogue from the RFC 7643 definitions embedded in `scim_v2`.
    pub fn load() -> Result<Self, CatalogueError> {
        let mut published = get_schemas(vec!["user", "enterprise_user", "group"])
            .map_err(|e| CatalogueError(e.to_string()))?;
        advertise_limits(&mut published);
        let find = |urn: &str| {
            published
                .iter()
                .find(|s| s.id == urn)
                .ok_or_else(|| CatalogueError(format!("{urn} missing")))
        };
        let user = SchemaDef {
            urn: USER_URN,
            attrs: find(USER_URN)?
                .attributes
                .iter()
                .map(from_attributes)
                .collect(),
        };
        let enterprise = SchemaDef {
            urn: ENTERPRISE_URN,
            attrs: find(ENTERPRISE_URN)?
                .attributes
                .iter()
                .map(from_attributes)
                .collect(),
        };
        let mut group = SchemaDef {
            urn: GROUP_URN,
            attrs: find(GROUP_URN)?
                .attributes
                .iter()
                .map(from_attributes)
                .collect(),
        };
        // RFC 7643 §4.2 prose gives members a `display` sub-attribute that the §8.7.1
        // definition omits; IdPs send it and filters may name it.
        if let Some(members) = group.attrs.iter_mut().find(|a| a.name == "members")
            && members.sub("display").is_none()
        {
            members.sub_attrs.push(AttrDef {
                returned: Returned::Default,
                ..AttrDef::leaf("display", AttrType::String, false, Mutability::Immutable)
            });
        }
        // RFC 7643 §2.4: `type`, `primary`, `display` and `value` are common to every
        // multi-valued attribute; the §8.7.1 `addresses` definition lists only its own.
        let mut user = user;
        if let Some(addresses) = user.attrs.iter_mut().find(|a| a.name == "addresses") {
            for (name, ty) in [
                ("primary", AttrType::Boolean),
                ("display", AttrType::String),
            ] {
                if addresses.sub(name).is_none() {
                    addresses
                        .sub_attrs
                        .push(AttrDef::leaf(name, ty, false, Mutability::ReadWrite));
                }
            }
        }
        Ok(Self {
            user,
            enterprise,
            group,
            common: common_attrs(),
            published,
        })
    }

    /// The schema resources for `/Schemas`.
    pub fn published(&self) -> &[Schema] {
        &self.published
    }

    /// The core schema of a resource kind.
    pub fn core(&self, kind: ResourceKind) -> &SchemaDef {
        match kind {
            ResourceKind::User => &self.user,
            ResourceKind::Group => &self.group,
        }
    }

    /// The extensions a resource kind supports (the enterprise extension, for users).
    pub fn extensions(&self, kind: ResourceKind) -> &[SchemaDef] {
        match kind {
            ResourceKind::User => std::slice::from_ref(&self.enterprise),
            ResourceKind::Group => &[],
        }
    }

    /// The extension with this URN (compared case-insensitively), if the kind supports it.
    pub fn extension(&self, kind: ResourceKind, urn: &str) -> Option<&SchemaDef> {
        self.extensions(kind)
            .iter()
            .find(|s| s.urn.eq_ignore_ascii_case(urn))
    }

    /// Resolves a filter or PATCH attribute path.
    ///
    /// An unqualified name is looked up in the common attributes, then the core schema, then
    /// the extensions (RFC 7644 §3.10 lets clients omit the core URN; IdPs also omit the
    /// extension URN for unambiguous names).
    pub fn resolve(
        &self,
        kind: ResourceKind,
        path: &AttrPath,
    ) -> Result<ResolvedAttr, UnknownAttr> {
        let unknown = || UnknownAttr(display_path(path));
        let (home, attr) = match &path.uri {
            Some(uri) if uri.eq_ignore_ascii_case(self.core(kind).urn) => self
                .lookup_unqualified(kind, &path.name, false)
                .ok_or_else(unknown)?,
            Some(uri) => {
                let ext = self.extension(kind, uri).ok_or_else(unknown)?;
                let attr = ext.attr(&path.name).ok_or_else(unknown)?;
                (AttrHome::Extension(ext.urn), attr)
            }
            None => self
                .lookup_unqualified(kind, &path.name, true)
                .ok_or_else(unknown)?,
        };
        let sub = match &path.sub_attr {
            None => None,
            Some(sub) => Some(attr.sub(sub).ok_or_else(unknown)?.clone()),
        };
        Ok(ResolvedAttr {
            home,
            attr: attr.clone(),
            sub,
        })
    }

    /// Resolves a dotted or URN-qualified name as written in a JSON body key or an
    /// `attributes=` list (`name.givenName`, `urn:...:User:manager`).
    pub fn resolve_name(&self, kind: ResourceKind, raw: &str) -> Result<ResolvedAttr, UnknownAttr> {
        let path = parse_name(raw).ok_or_else(|| UnknownAttr(raw.to_owned()))?;
        self.resolve(kind, &path)
    }

    fn lookup_unqualified(
        &self,
        kind: ResourceKind,
        name: &str,
        with_extensions: bool,
    ) -> Option<(AttrHome, &AttrDef)> {
        if let Some(a) = self
            .common
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
        {
            return Some((AttrHome::Common, a));
        }
        if let Some(a) = self.core(kind).attr(name) {
            return Some((AttrHome::Core, a));
        }
        if with_extensions {
            for ext in self.extensions(kind) {
                if let Some(a) = ext.attr(name) {
                    return Some((AttrHome::Extension(ext.urn), a));
                }
            }
        }
        None
    }
}

/// Parses an attribute name in standard attribute notation (RFC 7644 §3.10) with the crate's
/// own grammar: `<name> pr` must be a bare presence test.
pub fn parse_name(raw: &str) -> Option<AttrPath> {
    use scim_v2::filter::{AttrExp, Filter};
    match format!("{raw} pr").parse::<Filter>() {
        Ok(Filter::Attr(AttrExp::Present(path))) => Some(path),
        _ => None,
    }
}

fn display_path(path: &AttrPath) -> String {
    let mut out = String::new();
    if let Some(uri) = &path.uri {
        out.push_str(uri);
        out.push(':');
    }
    out.push_str(&path.name);
    if let Some(sub) = &path.sub_attr {
        out.push('.');
        out.push_str(sub);
    }
    out
}

/// RFC 7643 §3.1 common attributes, which no schema definition lists.
fn common_attrs() -> Vec<AttrDef> {
    let meta_sub = vec![
        AttrDef::leaf("resourceType", AttrType::String, true, Mutability::ReadOnly),
        AttrDef::leaf("created", AttrType::DateTime, false, Mutability::ReadOnly),
        AttrDef::leaf(
            "lastModified",
            AttrType::DateTime,
            false,
            Mutability::ReadOnly,
        ),
        AttrDef::leaf("location", AttrType::Reference, true, Mutability::ReadOnly),
        AttrDef::leaf("version", AttrType::String, true, Mutability::ReadOnly),
    ];
    vec![
        AttrDef {
            returned: Returned::Always,
            ..AttrDef::leaf("id", AttrType::String, true, Mutability::ReadOnly)
        },
        AttrDef::leaf("externalId", AttrType::String, true, Mutability::ReadWrite),
        AttrDef {
            sub_attrs: meta_sub,
            ..AttrDef::leaf("meta", AttrType::Complex, false, Mutability::ReadOnly)
        },
    ]
}

fn parse_type(raw: &str) -> AttrType {
    match raw.to_ascii_lowercase().as_str() {
        "boolean" => AttrType::Boolean,
        "decimal" => AttrType::Decimal,
        "integer" => AttrType::Integer,
        "datetime" => AttrType::DateTime,
        "reference" => AttrType::Reference,
        "binary" => AttrType::Binary,
        "complex" => AttrType::Complex,
        _ => AttrType::String,
    }
}

fn parse_mutability(raw: Option<&str>) -> Mutability {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        Some("readonly") => Mutability::ReadOnly,
        Some("immutable") => Mutability::Immutable,
        Some("writeonly") => Mutability::WriteOnly,
        _ => Mutability::ReadWrite,
    }
}

fn parse_returned(raw: Option<&str>) -> Returned {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        Some("always") => Returned::Always,
        Some("never") => Returned::Never,
        Some("request") => Returned::Request,
        _ => Returned::Default,
    }
}

fn from_sub(s: &SubAttributes) -> AttrDef {
    AttrDef {
        name: s.name.clone(),
        ty: parse_type(&s.r#type),
        multi_valued: s.multi_valued,
        case_exact: s.case_exact.unwrap_or(false),
        mutability: parse_mutability(s.mutability.as_deref()),
        returned: parse_returned(s.returned.as_deref()),
        sub_attrs: Vec::new(),
    }
}

fn from_attributes(a: &Attributes) -> AttrDef {
    AttrDef {
        name: a.name.clone(),
        ty: parse_type(&a.r#type),
        multi_valued: a.multi_valued,
        case_exact: a.case_exact.unwrap_or(false),
        mutability: parse_mutability(a.mutability.as_deref()),
        returned: parse_returned(a.returned.as_deref()),
        sub_attrs: a
            .sub_attributes
            .as_option()
            .map(|subs| subs.iter().map(from_sub).collect())
            .unwrap_or_default(),
    }
}

/// Says in each attribute's `description` what the store holds ([`super::limits`]): SCIM
/// schemas have no field for lengths or counts, and clients show descriptions to admins.
fn advertise_limits(schemas: &mut [Schema]) {
    use super::limits::{MAX_INDEXED_CHARS, MAX_TEXT_CHARS, MAX_VALUES};
    let note = |description: &mut Option<String>, text: String| {
        let d = description.get_or_insert_with(String::new);
        if !d.is_empty() && !d.ends_with(' ') {
            d.push(' ');
        }
        d.push_str(&text);
    };
    let indexed = |name: &str| matches!(name, "userName" | "displayName");
    for schema in schemas {
        for a in &mut schema.attributes {
            // `members` are rows of their own and `groups` is read-only: neither is a
            // document value list.
            if a.multi_valued && !matches!(a.name.as_str(), "members" | "groups") {
                note(
                    &mut a.description,
                    format!("pimgate keeps at most {MAX_VALUES} values."),
                );
            }
            if a.r#type == "string" {
                let text = if indexed(&a.name) {
                    format!("At most {MAX_INDEXED_CHARS} characters, no control characters.")
                } else {
                    format!("At most {MAX_TEXT_CHARS} characters.")
                };
                note(&mut a.description, text);
            }
            let subs = match &mut a.sub_attributes {
                scim_v2::Asserted::Set(subs) if a.name != "groups" => subs.as_mut_slice(),
                _ => &mut [],
            };
            for sub in subs {
                if sub.r#type == "string" {
                    let max = if matches!(
                        (a.name.as_str(), sub.name.as_str()),
                        ("emails" | "members", "value")
                    ) {
                        MAX_INDEXED_CHARS
                    } else {
                        MAX_TEXT_CHARS
                    };
                    note(&mut sub.description, format!("At most {max} characters."));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalogue {
        Catalogue::load().unwrap()
    }

    #[test]
    fn names_resolve_case_insensitively_to_canonical_spelling() {
        let c = cat();
        let r = c.resolve_name(ResourceKind::User, "USERNAME").unwrap();
        assert_eq!(r.attr.name, "userName");
        let r = c
            .resolve_name(ResourceKind::User, "name.GIVENNAME")
            .unwrap();
        assert_eq!(r.dotted(), "name.givenName");
        let r = c
            .resolve_name(ResourceKind::User, "meta.lastmodified")
            .unwrap();
        assert_eq!(
            (r.home.clone(), r.dotted()),
            (AttrHome::Common, "meta.lastModified".into())
        );
    }

    #[test]
    fn extension_attributes_resolve_with_and_without_urn() {
        let c = cat();
        let q = c
            .resolve_name(
                ResourceKind::User,
                &format!("{ENTERPRISE_URN}:manager.value"),
            )
            .unwrap();
        assert_eq!(q.home, AttrHome::Extension(ENTERPRISE_URN));
        assert_eq!(q.dotted(), "manager.value");
        let u = c.resolve_name(ResourceKind::User, "department").unwrap();
        assert_eq!(u.home, AttrHome::Extension(ENTERPRISE_URN));
        let core = c
            .resolve_name(ResourceKind::User, &format!("{USER_URN}:userName"))
            .unwrap();
        assert_eq!(core.home, AttrHome::Core);
    }

    #[test]
    fn unknown_names_and_sub_attributes_are_refused() {
        let c = cat();
        assert!(c.resolve_name(ResourceKind::User, "shoeSize").is_err());
        assert!(c.resolve_name(ResourceKind::User, "name.shoeSize").is_err());
        assert!(c.resolve_name(ResourceKind::Group, "userName").is_err());
        assert!(c.resolve_name(ResourceKind::Group, "department").is_err());
    }

    #[test]
    fn multi_valued_complex_attributes_compare_on_value() {
        let c = cat();
        let r = c.resolve_name(ResourceKind::User, "emails").unwrap();
        assert_eq!(r.leaf().name, "value");
        let m = c
            .resolve_name(ResourceKind::Group, "members.display")
            .unwrap();
        assert_eq!(m.leaf().name, "display");
    }
}
