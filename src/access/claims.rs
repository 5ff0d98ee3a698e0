//! The claims contract: what the PIM reads about one user (roles, user groups, the union of
//! their permissions and access, the default dashboard), with the provenance of every grant
//! on request, and the difference between two resolutions of the same user.
//!
//! The JSON shape is a contract (documented in `docs/claims.md`): field names are camelCase,
//! and every collection has a fixed order (roles and user groups by key, maps and sets by
//! key), so the same inputs always serialize to the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Access to one language, segment or business unit. `Edit` implies `Read`; when several
/// user groups grant the same thing, the highest level wins (`Read < Edit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Read,
    Edit,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Edit => "edit",
        }
    }
}

/// A role or user group as the PIM knows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NamedRef {
    /// The PIM's `Uid` of the role or user group.
    pub id: String,
    /// pimgate's config key (`[access.roles.<key>]`), stable across renames in the PIM.
    pub key: String,
    /// The display name.
    pub name: String,
}

/// What the user may see and edit: the union over their user groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    /// Language code → level.
    pub languages: BTreeMap<String, Level>,
    /// Dimension → segment → level.
    pub segments: BTreeMap<String, BTreeMap<String, Level>>,
    /// Business unit id → level.
    pub business_units: BTreeMap<String, Level>,
}

impl Access {
    pub fn is_empty(&self) -> bool {
        self.languages.is_empty() && self.segments.is_empty() && self.business_units.is_empty()
    }

    /// Every grant as one flat, ordered set (for diffs).
    pub fn grants(&self) -> BTreeSet<AccessGrant> {
        let mut out = BTreeSet::new();
        for (code, level) in &self.languages {
            out.insert(AccessGrant::Language {
                code: code.clone(),
                level: *level,
            });
        }
        for (dimension, segments) in &self.segments {
            for (segment, level) in segments {
                out.insert(AccessGrant::Segment {
                    dimension: dimension.clone(),
                    segment: segment.clone(),
                    level: *level,
                });
            }
        }
        for (id, level) in &self.business_units {
            out.insert(AccessGrant::BusinessUnit {
                id: id.clone(),
                level: *level,
            });
        }
        out
    }
}

/// The resolved claims of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    /// pimgate's id of the user (the SCIM `id`), stable within its connection.
    pub sub: String,
    /// The connection (IdP tenant) the user belongs to.
    pub connection: String,
    pub user_name: String,
    /// The IdP's own id of the user, when it sent one.
    pub external_id: Option<String>,
    /// `false`: the IdP deactivated the user; every grant below is empty.
    pub active: bool,
    /// Sorted by key.
    pub roles: Vec<NamedRef>,
    /// Sorted by key.
    pub user_groups: Vec<NamedRef>,
    /// Permission keys: the union over `roles`.
    pub permissions: BTreeSet<String>,
    /// The union over `userGroups`, edit winning over read.
    pub access: Access,
    /// The default dashboard of the highest-priority user group that sets one.
    pub default_dashboard: Option<String>,
    /// The version of the access model these claims were resolved with.
    pub config_version: String,
    /// Why each grant is there; only with `explain=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// Why each grant of a [`Claims`] is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// Role key → the sources that granted it (sorted, deduplicated).
    pub roles: BTreeMap<String, Vec<Source>>,
    /// User-group key → the sources that granted it.
    pub user_groups: BTreeMap<String, Vec<Source>>,
    /// Permission key → the role keys holding it.
    pub permissions: BTreeMap<String, BTreeSet<String>>,
    /// Language code → the user groups granting it, with their levels.
    pub languages: BTreeMap<String, Vec<GrantedBy>>,
    /// Dimension → segment → the user groups granting it.
    pub segments: BTreeMap<String, BTreeMap<String, Vec<GrantedBy>>>,
    /// Business unit id → the user groups granting it.
    pub business_units: BTreeMap<String, Vec<GrantedBy>>,
    /// The user-group key whose default dashboard won.
    pub default_dashboard: Option<String>,
}

/// What made a rule (or the no-match default) apply.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Source {
    /// A SCIM group the user is a member of (directly, or through `group.via`).
    ScimGroup { rule: String, group: GroupRef },
    /// A value of the login token's groups claim.
    TokenGroup { rule: String, value: String },
    /// A user attribute: the rule's path and the value that matched.
    Attribute {
        rule: String,
        path: String,
        value: String,
    },
    /// The user matched no rule: the connection's `on_no_match` applied.
    NoMatchDefault,
}

/// A SCIM group, as named in provenance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRef {
    /// pimgate's id of the group.
    pub id: String,
    pub external_id: Option<String>,
    pub display_name: String,
    /// Set when the membership is indirect: the nested group the user is in.
    pub via: Option<String>,
}

/// One user group granting a language, segment or business unit at a level.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantedBy {
    pub user_group: String,
    pub level: Level,
}

/// One access grant, flattened (a change of level is a removal plus an addition).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AccessGrant {
    Language {
        code: String,
        level: Level,
    },
    Segment {
        dimension: String,
        segment: String,
        level: Level,
    },
    BusinessUnit {
        id: String,
        level: Level,
    },
}

/// What was added and removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes<T: Ord> {
    pub added: BTreeSet<T>,
    pub removed: BTreeSet<T>,
}

impl<T: Ord> Default for Changes<T> {
    fn default() -> Self {
        Self {
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
        }
    }
}

impl<T: Ord + Clone> Changes<T> {
    fn between(older: &BTreeSet<T>, newer: &BTreeSet<T>) -> Self {
        Self {
            added: newer.difference(older).cloned().collect(),
            removed: older.difference(newer).cloned().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// A change of default dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardChange {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The difference between two resolutions of one user (`pimgate diff-config`). Roles and
/// user groups compare by id, key and name together, so a role whose PIM id changed shows as
/// removed and added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimsDiff {
    pub permissions: Changes<String>,
    pub roles: Changes<NamedRef>,
    pub user_groups: Changes<NamedRef>,
    pub access: Changes<AccessGrant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_dashboard: Option<DashboardChange>,
}

impl ClaimsDiff {
    pub fn is_empty(&self) -> bool {
        self.permissions.is_empty()
            && self.roles.is_empty()
            && self.user_groups.is_empty()
            && self.access.is_empty()
            && self.default_dashboard.is_none()
    }
}

impl Claims {
    /// What `newer` adds to and removes from these claims. Provenance, `configVersion` and the
    /// user's identity fields are not compared.
    pub fn diff(&self, newer: &Claims) -> ClaimsDiff {
        let set = |refs: &[NamedRef]| refs.iter().cloned().collect::<BTreeSet<_>>();
        ClaimsDiff {
            permissions: Changes::between(&self.permissions, &newer.permissions),
            roles: Changes::between(&set(&self.roles), &set(&newer.roles)),
            user_groups: Changes::between(&set(&self.user_groups), &set(&newer.user_groups)),
            access: Changes::between(&self.access.grants(), &newer.access.grants()),
            default_dashboard: (self.default_dashboard != newer.default_dashboard).then(|| {
                DashboardChange {
                    from: self.default_dashboard.clone(),
                    to: newer.default_dashboard.clone(),
                }
            }),
        }
    }
}

/// Claims as a cache keeps them: the claims as the API serves them and their provenance, as
/// two compact JSON documents on two lines. A read without `explain` (every read the PIM
/// makes) is answered with the first line as stored, without parsing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClaims(String);

impl StoredClaims {
    /// Encodes resolved claims.
    pub fn encode(claims: &Claims) -> Result<Self, serde_json::Error> {
        let mut plain = claims.clone();
        let provenance = plain.provenance.take();
        let (plain, provenance) = (
            serde_json::to_string(&plain)?,
            serde_json::to_string(&provenance)?,
        );
        Ok(Self(format!("{plain}\n{provenance}")))
    }

    /// What a cache handed back; `None` when it is not in this form (an entry of another
    /// version of pimgate), which is then a miss.
    pub fn from_cache(raw: String) -> Option<Self> {
        let (plain, provenance) = raw.split_once('\n')?;
        let object = |s: &str| s.len() >= 2 && s.starts_with('{') && s.ends_with('}');
        (object(plain) && (provenance == "null" || object(provenance))).then_some(Self(raw))
    }

    /// The stored form, for a cache.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The API's JSON body: the claims, with `provenance` when `explain`.
    pub fn to_json(&self, explain: bool) -> String {
        let (plain, provenance) = self.0.split_once('\n').unwrap_or((self.0.as_str(), "null"));
        if !explain || provenance == "null" {
            return plain.to_owned();
        }
        // `plain` is a JSON object: `provenance` goes in before its closing brace.
        let open = &plain[..plain.len() - 1];
        format!("{open},\"provenance\":{provenance}}}")
    }

    /// The API's JSON body, taking the stored text (no copy without `explain`).
    pub fn into_json(self, explain: bool) -> String {
        let mut text = self.0;
        match text.find('\n') {
            Some(end) if !explain || &text[end + 1..] == "null" => {
                text.truncate(end);
                text
            }
            Some(_) => Self(text).to_json(true),
            None => text,
        }
    }

    /// The claims themselves.
    pub fn claims(&self, explain: bool) -> Result<Claims, serde_json::Error> {
        serde_json::from_str(&self.to_json(explain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_claims_answer_both_forms() {
        let mut full = claims();
        full.provenance = Some(Provenance {
            default_dashboard: Some("nordics".into()),
            ..Provenance::default()
        });
        let stored = StoredClaims::encode(&full).unwrap();
        let plain: serde_json::Value = serde_json::from_str(&stored.to_json(false)).unwrap();
        assert!(plain.get("provenance").is_none(), "{plain}");
        assert_eq!(stored.claims(true).unwrap(), full);
        let mut without = full.clone();
        without.provenance = None;
        assert_eq!(stored.claims(false).unwrap(), without);
        // Read back from a cache as it was stored; other forms are misses.
        let again = StoredClaims::from_cache(stored.as_str().to_owned()).unwrap();
        assert_eq!(again, stored);
        assert!(StoredClaims::from_cache(serde_json::to_string(&full).unwrap()).is_none());
        assert!(StoredClaims::from_cache("{\n".into()).is_none());
        // No provenance at all: explain gives the plain form.
        let bare = StoredClaims::encode(&without).unwrap();
        assert_eq!(bare.to_json(true), bare.to_json(false));
        // Taking the text answers the same as copying it.
        for (stored, explain) in [
            (&stored, false),
            (&stored, true),
            (&bare, false),
            (&bare, true),
        ] {
            assert_eq!(stored.clone().into_json(explain), stored.to_json(explain));
        }
    }

    fn named(key: &str) -> NamedRef {
        NamedRef {
            id: format!("id-{key}"),
            key: key.to_owned(),
            name: key.to_uppercase(),
        }
    }

    fn claims() -> Claims {
        Claims {
            sub: "u1".into(),
            connection: "default".into(),
            user_name: "ann@example.com".into(),
            external_id: None,
            active: true,
            roles: vec![named("editor")],
            user_groups: vec![named("nordics")],
            permissions: ["products.view".to_owned(), "products.create".to_owned()].into(),
            access: Access {
                languages: [
                    ("da".to_owned(), Level::Edit),
                    ("en".to_owned(), Level::Read),
                ]
                .into(),
                segments: [("market".to_owned(), [("dk".to_owned(), Level::Edit)].into())].into(),
                business_units: BTreeMap::new(),
            },
            default_dashboard: Some("dash".into()),
            config_version: "sha256:00".into(),
            provenance: None,
        }
    }

    #[test]
    fn the_contract_is_camel_case_without_provenance_unless_explained() {
        let v = serde_json::to_value(claims()).unwrap();
        assert_eq!(v["userName"], "ann@example.com");
        assert_eq!(v["userGroups"][0]["key"], "nordics");
        assert_eq!(
            v["access"]["languages"],
            json!({"da": "edit", "en": "read"})
        );
        assert_eq!(v["access"]["businessUnits"], json!({}));
        assert_eq!(v["defaultDashboard"], "dash");
        assert_eq!(v["configVersion"], "sha256:00");
        assert_eq!(v["externalId"], json!(null));
        assert!(v.get("provenance").is_none());
        // Round trip (the cache stores claims as JSON).
        let back: Claims = serde_json::from_value(v).unwrap();
        assert_eq!(back, claims());
    }

    #[test]
    fn sources_are_tagged_by_kind() {
        let s = Source::ScimGroup {
            rule: "editors".into(),
            group: GroupRef {
                id: "g1".into(),
                external_id: Some("e1".into()),
                display_name: "PIM Editors".into(),
                via: None,
            },
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"kind": "scimGroup", "rule": "editors", "group": {
                "id": "g1", "externalId": "e1", "displayName": "PIM Editors", "via": null}})
        );
        assert_eq!(
            serde_json::to_value(Source::NoMatchDefault).unwrap(),
            json!({"kind": "noMatchDefault"})
        );
    }

    #[test]
    fn edit_outranks_read() {
        assert!(Level::Edit > Level::Read);
        assert_eq!(Level::Read.max(Level::Edit), Level::Edit);
    }

    #[test]
    fn diff_lists_additions_and_removals() {
        let old = claims();
        assert!(old.diff(&old).is_empty());
        let mut new = claims();
        new.roles = vec![named("viewer")];
        new.permissions = ["products.view".to_owned()].into();
        new.access.languages.insert("en".into(), Level::Edit);
        new.default_dashboard = None;
        new.config_version = "sha256:11".into();
        let d = old.diff(&new);
        assert!(!d.is_empty());
        assert_eq!(d.roles.added, [named("viewer")].into());
        assert_eq!(d.roles.removed, [named("editor")].into());
        assert!(d.user_groups.is_empty());
        assert_eq!(d.permissions.removed, ["products.create".to_owned()].into());
        assert!(d.permissions.added.is_empty());
        let en = |level| AccessGrant::Language {
            code: "en".into(),
            level,
        };
        assert_eq!(d.access.added, [en(Level::Edit)].into());
        assert_eq!(d.access.removed, [en(Level::Read)].into());
        assert_eq!(
            d.default_dashboard,
            Some(DashboardChange {
                from: Some("dash".into()),
                to: None
            })
        );
    }
}
