//! The SCIM service: what the routes call. It turns protocol input into directory
//! operations (normalising bodies with [`resource`](super::resource), PATCH with
//! [`patch`](super::patch)), and directory records into representations
//! ([`render`](super::render)).
//!
//! Users and Groups take one generic path: [`Resource`] is implemented for the directory's
//! two kinds, and the routes are written once over it.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use super::error::ScimError;
use super::params::ListParams;
use super::patch;
use super::render::{Selection, group_json, user_json};
use super::resource;
use crate::access::cache::{ClaimsCache, ClaimsKey, Lookup};
use crate::connections::{ConnectionId, Registry};
use crate::directory::schema::Catalogue;
use crate::directory::{
    CredentialStore, Directory, EditError, GroupDoc, GroupKind, GroupRecord, Kind, ListSpec,
    Records, UserKind, UserRecord,
};
use crate::token;

/// What the SCIM layer is configured with.
#[derive(Debug, Clone)]
pub struct ScimOptions {
    /// Page size when a list request gives no `count`.
    pub default_page_size: i64,
    /// Largest page served (advertised as `filter.maxResults`).
    pub max_page_size: i64,
    /// A PATCH on a group answers with its members only up to this many members.
    pub patch_response_members_max: i64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// The externally visible base URL, if configured; otherwise taken from `Host`.
    pub public_url: Option<String>,
    /// Without `public_url`: the `Host` values accepted (lowercase; without a port they match
    /// any port). Any other is refused, never reflected into a URL.
    pub allowed_hosts: Vec<String>,
}

impl ScimOptions {
    /// The base URL of this server as the request names it: `public_url`, else `http://`
    /// and an allowed `Host`.
    pub fn base_of(&self, host: Option<&str>) -> Result<String, ScimError> {
        if let Some(url) = &self.public_url {
            return Ok(url.clone());
        }
        let host = host.unwrap_or("localhost").trim().to_ascii_lowercase();
        let bare = match host.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') && (h.ends_with(']') || !h.contains(':')) => h,
            _ => host.as_str(),
        };
        let allowed = crate::host::is_host(&host)
            && self
                .allowed_hosts
                .iter()
                .any(|a| *a == host || (!a.contains(':') || a.ends_with(']')) && *a == bare);
        if allowed {
            Ok(format!("http://{host}"))
        } else {
            Err(ScimError::bad_request(
                super::error::ScimType::InvalidValue,
                "the Host header names no host this server answers for: set server.public_url, or add it to server.allowed_hosts",
            ))
        }
    }
}

/// The SCIM service (a cheap handle).
#[derive(Debug, Clone)]
pub struct ScimService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    directory: Directory,
    catalogue: Arc<Catalogue>,
    registry: Arc<Registry>,
    credentials: Arc<dyn CredentialStore>,
    /// Users' representations, beside their claims and invalidated with them.
    cache: Arc<dyn ClaimsCache>,
    options: ScimOptions,
}

impl ScimService {
    pub fn new(
        directory: Directory,
        catalogue: Arc<Catalogue>,
        registry: Arc<Registry>,
        credentials: Arc<dyn CredentialStore>,
        cache: Arc<dyn ClaimsCache>,
        options: ScimOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                directory,
                catalogue,
                registry,
                cache,
                credentials,
                options,
            }),
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn options(&self) -> &ScimOptions {
        &self.inner.options
    }

    /// The connection a token hash belongs to: configured tokens first (in memory), then
    /// tokens created with `pimgate token create` (in the store, so every replica sees a
    /// revocation at once).
    pub async fn authenticate(&self, hash: &[u8; 32]) -> Result<Option<ConnectionId>, ScimError> {
        if let Some(owner) = self.inner.registry.scim_token_owner(hash) {
            return Ok(Some(owner.clone()));
        }
        let row = self.inner.credentials.find_token(hash).await?;
        Ok(row
            .filter(|r| token::matches_any(hash, std::slice::from_ref(&r.hash)))
            .map(|r| r.connection))
    }

    /// Turns list parameters into a store query for `R`.
    pub fn list_spec<R: Resource>(&self, params: &ListParams) -> Result<ListSpec, ScimError> {
        let sort_by = match &params.sort_by {
            None => None,
            Some(name) => Some(
                self.catalogue()
                    .resolve_name(R::KIND, name)
                    .map_err(|e| ScimError::invalid_value(format!("sortBy: {e}")))?,
            ),
        };
        let o = self.options();
        Ok(ListSpec {
            filter: params.filter.clone(),
            sort_by,
            descending: params.descending,
            start_index: params.effective_start(),
            count: params.effective_count(o.default_page_size, o.max_page_size),
        })
    }

    /// The selection a request asks for on resources of `R`.
    pub fn selection<R: Resource>(&self, attributes: &[String], excluded: &[String]) -> Selection {
        Selection::parse(R::KIND, self.catalogue(), attributes, excluded)
    }
}

/// The form of a cached user representation: `<version>\n<JSON>`. Part of the cache key, so
/// a build that renders users differently never reads another's entries.
const CACHED_USER_FORMAT: &str = "scim-user/1";

/// A cached representation: (version, JSON text); `None` if it is not in the expected form.
fn cached_user(mut entry: String) -> Option<(i64, String)> {
    let newline = entry.find('\n')?;
    let version = entry[..newline].parse().ok()?;
    // The body stays where it is: only the version line goes.
    entry.drain(..=newline);
    Some((version, entry))
}

fn edit_error(e: EditError<ScimError>) -> ScimError {
    match e {
        EditError::Directory(d) => d.into(),
        EditError::Edit(s) => s,
    }
}

/// A SCIM resource type, as one generic path for the routes (RFC 7643 §4.1, §4.2): what
/// differs between Users and Groups in SCIM. Reading records is the directory's
/// ([`Records`]).
pub trait Resource: Records {
    /// POST: a new resource from a request body.
    fn create(
        scim: &ScimService,
        conn: &ConnectionId,
        body: Value,
    ) -> impl Future<Output = Result<Self::Record, ScimError>> + Send;

    /// PUT: replaces every writable attribute (RFC 7644 §3.5.1); read-only ones are ignored.
    fn replace(
        scim: &ScimService,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        body: Value,
    ) -> impl Future<Output = Result<Self::Record, ScimError>> + Send;

    /// PATCH (RFC 7644 §3.5.2): all operations or none.
    fn patch(
        scim: &ScimService,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        body: Value,
    ) -> impl Future<Output = Result<Self::Record, ScimError>> + Send;

    /// GET of one resource: its version and its representation (as [`Resource::represent`]),
    /// serialized, in as few reads as the store allows.
    fn read(
        scim: &ScimService,
        conn: &ConnectionId,
        base_url: &str,
        sel: &Selection,
        id: &str,
    ) -> impl Future<Output = Result<(i64, String), ScimError>> + Send;

    /// The representations of `records` (under the connection's SCIM base URL), projected by
    /// `sel`, with their read-only
    /// references (`groups`, `members`) loaded only when the selection wants them.
    /// `patched`: answering a PATCH, where a large group's members are left out unless
    /// asked for by name, so a one-member change costs the same on any group.
    fn represent(
        scim: &ScimService,
        conn: &ConnectionId,
        base_url: &str,
        sel: &Selection,
        records: &[Self::Record],
        patched: bool,
    ) -> impl Future<Output = Result<Vec<Value>, ScimError>> + Send;
}

impl Resource for UserKind {
    async fn create(
        scim: &ScimService,
        conn: &ConnectionId,
        body: Value,
    ) -> Result<UserRecord, ScimError> {
        let doc = resource::user_from_body(body, scim.catalogue())?;
        Ok(scim.directory().create_user(conn, doc).await?)
    }

    async fn replace(
        scim: &ScimService,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        body: Value,
    ) -> Result<UserRecord, ScimError> {
        let doc = resource::user_from_body(body, scim.catalogue())?;
        Ok(scim.directory().replace_user(conn, id, expect, doc).await?)
    }

    async fn patch(
        scim: &ScimService,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        body: Value,
    ) -> Result<UserRecord, ScimError> {
        let ops = patch::parse_patch(body)?;
        let cat = scim.catalogue();
        scim.directory()
            .edit_user(conn, id, expect, |doc| patch::patch_doc(doc, &ops, cat))
            .await
            .map_err(edit_error)
    }

    async fn read(
        scim: &ScimService,
        conn: &ConnectionId,
        base_url: &str,
        sel: &Selection,
        id: &str,
    ) -> Result<(i64, String), ScimError> {
        let dir = scim.directory();
        if !sel.is_default() {
            let (user, groups) = if sel.wants("groups") {
                let (user, groups) = dir.get_user_with_groups(conn, id).await?;
                (user, Some(groups))
            } else {
                (dir.get::<UserKind>(conn, id).await?, None)
            };
            let full = user_json(&user, groups.as_deref(), base_url);
            let body = sel.apply(Self::KIND, scim.catalogue(), full);
            return Ok((user.version, body.to_string()));
        }
        // The representation every identity provider asks for is cached beside the user's
        // claims, under the same epochs: any change that could alter it (the user, its
        // memberships, a group's name) invalidates both before it is acknowledged.
        let version = format!("{CACHED_USER_FORMAT}|{base_url}");
        let key = ClaimsKey::scim_user(conn, id, &version);
        let epoch = match scim.inner.cache.get(&key).await {
            Lookup::Hit(entry) => {
                if let Some(hit) = cached_user(entry) {
                    return Ok(hit);
                }
                None
            }
            Lookup::Miss(epoch) => Some(epoch),
        };
        let (user, groups) = dir.get_user_with_groups(conn, id).await?;
        let full = user_json(&user, Some(&groups), base_url);
        let body = sel.apply(Self::KIND, scim.catalogue(), full).to_string();
        if let Some(epoch) = epoch {
            let entry = format!("{}\n{body}", user.version);
            scim.inner.cache.put(&key, epoch, &entry).await;
        }
        Ok((user.version, body))
    }

    async fn represent(
        scim: &ScimService,
        conn: &ConnectionId,
        base_url: &str,
        sel: &Selection,
        records: &[UserRecord],
        _patched: bool,
    ) -> Result<Vec<Value>, ScimError> {
        let mut groups = if sel.wants("groups") {
            let ids: Vec<String> = records.iter().map(|u| u.id.clone()).collect();
            scim.directory().groups_of(conn, &ids).await?
        } else {
            Default::default()
        };
        Ok(records
            .iter()
            .map(|u| {
                let g = groups.remove(&u.id);
                let full = user_json(u, g.as_deref(), base_url);
                sel.apply(Self::KIND, scim.catalogue(), full)
            })
            .collect())
    }
}

impl Resource for GroupKind {
    async fn create(
        scim: &ScimService,
        conn: &ConnectionId,
        body: Value,
    ) -> Result<GroupRecord, ScimError> {
        let (doc, members) = resource::group_from_body(body, scim.catalogue())?;
        let ids: Vec<String> = members
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.value)
            .collect();
        Ok(scim.directory().create_group(conn, doc, &ids).await?)
    }

    /// `members`, when present, replaces the membership; when absent, the membership is
    /// left as it is (a rename must never empty a group).
    async fn replace(
        scim: &ScimService,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        body: Value,
    ) -> Result<GroupRecord, ScimError> {
        let (doc, members) = resource::group_from_body(body, scim.catalogue())?;
        let ids = members.map(|m| m.into_iter().map(|m| m.value).collect());
        Ok(scim
            .directory()
            .replace_group(conn, id, expect, doc, ids)
            .await?)
    }

    /// Attribute operations on the group's document and set operations on its membership,
    /// in one transaction.
    async fn patch(
        scim: &ScimService,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        body: Value,
    ) -> Result<GroupRecord, ScimError> {
        let ops = patch::parse_patch(body)?;
        let cat = scim.catalogue();
        let plan = patch::plan_group_patch(ops, cat)?;
        let doc_ops = plan.doc_ops;
        let edit =
            (!doc_ops.is_empty()).then_some(|doc: &GroupDoc| patch::patch_doc(doc, &doc_ops, cat));
        scim.directory()
            .edit_group(conn, id, expect, edit, &plan.members)
            .await
            .map_err(edit_error)
    }

    async fn read(
        scim: &ScimService,
        conn: &ConnectionId,
        base_url: &str,
        sel: &Selection,
        id: &str,
    ) -> Result<(i64, String), ScimError> {
        let group = scim.directory().get::<GroupKind>(conn, id).await?;
        let body = Self::represent(
            scim,
            conn,
            base_url,
            sel,
            std::slice::from_ref(&group),
            false,
        )
        .await?
        .pop()
        .unwrap_or(Value::Null);
        Ok((group.version, body.to_string()))
    }

    async fn represent(
        scim: &ScimService,
        conn: &ConnectionId,
        base_url: &str,
        sel: &Selection,
        records: &[GroupRecord],
        patched: bool,
    ) -> Result<Vec<Value>, ScimError> {
        let max = scim.options().patch_response_members_max;
        let wanted: Vec<&GroupRecord> = records
            .iter()
            .filter(|g| {
                sel.wants("members")
                    && (!patched || sel.requests("members") || g.member_count <= max)
            })
            .collect();
        let mut members = scim.directory().members_of(conn, &wanted).await?;
        Ok(records
            .iter()
            .map(|g| {
                let m = members.remove(&g.id);
                let full = group_json(g, m.as_deref(), base_url);
                sel.apply(Self::KIND, scim.catalogue(), full)
            })
            .collect())
    }
}
