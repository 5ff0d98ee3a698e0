//! Claims for the PIM: read through the cache, resolved from the directory on a miss, and
//! invalidated by directory change events before the SCIM response that caused them is sent.
//!
//! Freshness: every committed change invalidates exactly the users it affects (a membership
//! change: those members and, for a nested group, its transitive members; a group rename:
//! its members when a rule of that connection matches on names; a config change: everyone,
//! through the config version in every key). The cache's per-user epochs make a read that
//! raced with a change unable to store stale claims. A cache outage only costs speed.

use std::sync::{Arc, RwLock};

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter};

use super::cache::{ClaimsCache, ClaimsKey, Lookup};
use super::claims::{Claims, StoredClaims};
use super::model::AccessModel;
use super::resolve::resolve;
use super::{IdpGroup, UserFacts};
use crate::connections::{ConnectionId, Registry};
use crate::directory::events::{Change, ChangeListener, DirectoryEvent};
use crate::directory::{DirectoryError, ListSpec, Stores};

/// How a user is named in a claims request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLookup {
    Id(String),
    UserName(String),
    ExternalId(String),
}

/// Whether a read was served from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
        }
    }
}

/// Resolved claims and how they were obtained.
#[derive(Debug, Clone)]
pub struct ClaimsRead {
    /// The claims in their cached form.
    pub stored: StoredClaims,
    /// Whether the reader asked for provenance.
    pub explain: bool,
    pub cache: CacheOutcome,
}

impl ClaimsRead {
    /// The API's JSON body, taking the claims' text.
    pub fn into_json(self) -> String {
        self.stored.into_json(self.explain)
    }
}

/// Reads and invalidates claims (a cheap handle).
#[derive(Debug, Clone)]
pub struct AccessService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The directory's users and groups, read (never written) to resolve claims.
    stores: Stores,
    cache: Arc<dyn ClaimsCache>,
    model: RwLock<Arc<AccessModel>>,
    registry: Arc<Registry>,
    /// Where cache hits and misses are counted (none for offline tools).
    metrics: Option<crate::metrics::Metrics>,
}

impl AccessService {
    pub fn new(
        stores: &Stores,
        cache: Arc<dyn ClaimsCache>,
        model: Arc<AccessModel>,
        registry: Arc<Registry>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                stores: stores.clone(),
                cache,
                model: RwLock::new(model),
                registry,
                metrics: None,
            }),
        }
    }

    /// Counts claims cache hits and misses in `metrics` (before the service is shared).
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics = Some(metrics);
        }
        self
    }

    fn count_cache(&self, hit: bool) {
        if let Some(m) = &self.inner.metrics {
            m.claims_cache(hit);
        }
    }

    /// The configured connection with this name as written in a URL, if any.
    pub fn connection(&self, raw: &str) -> Option<ConnectionId> {
        self.inner.registry.find(raw).map(|c| c.id.clone())
    }

    /// The access model in force.
    pub fn model(&self) -> Arc<AccessModel> {
        match self.inner.model.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts a new (already validated) model in force, atomically, and invalidates every
    /// cached claim.
    pub async fn reload(&self, model: Arc<AccessModel>) {
        match self.inner.model.write() {
            Ok(mut m) => *m = model,
            Err(poisoned) => *poisoned.into_inner() = model,
        }
        self.inner.cache.invalidate_all().await;
    }

    /// The cache of claims (and of users' SCIM representations, which share its epochs).
    pub fn cache(&self) -> Arc<dyn ClaimsCache> {
        self.inner.cache.clone()
    }

    pub fn cache_kind(&self) -> &'static str {
        self.inner.cache.kind()
    }

    /// Finds a user's id.
    pub async fn find_user(
        &self,
        conn: &ConnectionId,
        lookup: &UserLookup,
    ) -> Result<Option<String>, DirectoryError> {
        let (attr, value) = match lookup {
            UserLookup::Id(id) => {
                return Ok(self
                    .inner
                    .stores
                    .users
                    .get_user(conn, id)
                    .await?
                    .map(|u| u.id));
            }
            UserLookup::UserName(v) => ("userName", v),
            UserLookup::ExternalId(v) => ("externalId", v),
        };
        if !crate::directory::limits::is_storable_key(value) {
            return Ok(None);
        }
        let filter = Filter::Attr(AttrExp::Comparison(
            AttrPath::with_name(attr),
            CompareOp::Eq,
            CompValue::Str(value.clone()),
        ));
        let page = self
            .inner
            .stores
            .users
            .list_users(conn, &ListSpec::filtered(filter, 2))
            .await?;
        // externalId is not unique: an ambiguous lookup names nobody.
        Ok(if page.items.len() == 1 {
            page.items.into_iter().next().map(|u| u.id)
        } else {
            None
        })
    }

    /// What the directory says about a user (None: no such user).
    pub async fn facts(
        &self,
        conn: &ConnectionId,
        user_id: &str,
    ) -> Result<Option<UserFacts>, DirectoryError> {
        let Some(user) = self.inner.stores.users.get_user(conn, user_id).await? else {
            return Ok(None);
        };
        let groups: Vec<IdpGroup> = self
            .inner
            .stores
            .groups
            .user_access_groups(conn, user_id)
            .await?;
        Ok(Some(UserFacts {
            connection: conn.clone(),
            user_id: user.id.clone(),
            user_name: user.doc.user_name().to_owned(),
            external_id: user.doc.external_id().map(str::to_owned),
            active: user.doc.active(),
            attributes: user.doc.attrs().clone(),
            groups,
            token_groups: None,
        }))
    }

    /// The claims of a user (None: no such user). Provenance is kept only when `explain`.
    pub async fn claims(
        &self,
        conn: &ConnectionId,
        user_id: &str,
        explain: bool,
    ) -> Result<Option<ClaimsRead>, DirectoryError> {
        let model = self.model();
        let key = ClaimsKey::new(conn, user_id, model.version());
        let epoch = match self.inner.cache.get(&key).await {
            Lookup::Hit(raw) => match StoredClaims::from_cache(raw) {
                Some(stored) => {
                    self.count_cache(true);
                    return Ok(Some(ClaimsRead {
                        stored,
                        explain,
                        cache: CacheOutcome::Hit,
                    }));
                }
                None => {
                    tracing::warn!("cached claims in an unknown form; resolving again");
                    None
                }
            },
            Lookup::Miss(epoch) => Some(epoch),
        };
        self.count_cache(false);
        let Some(facts) = self.facts(conn, user_id).await? else {
            return Ok(None);
        };
        let claims = resolve(&model, &facts);
        let stored = StoredClaims::encode(&claims).map_err(|e| {
            DirectoryError::Internal(crate::directory::error::StoreFault::Corrupt(format!(
                "claims could not be encoded: {e}"
            )))
        })?;
        if let Some(epoch) = epoch {
            self.inner.cache.put(&key, epoch, stored.as_str()).await;
        }
        Ok(Some(ClaimsRead {
            stored,
            explain,
            cache: CacheOutcome::Miss,
        }))
    }

    /// The claims of a user signing in, with the groups of their login token (`None`: the
    /// token carried none the connection reads; then they are the cached claims). None: no
    /// such user.
    pub async fn claims_at_login(
        &self,
        conn: &ConnectionId,
        user_id: &str,
        token_groups: Option<Vec<String>>,
    ) -> Result<Option<Claims>, DirectoryError> {
        let model = self.model();
        let reads_token = model
            .connection(conn)
            .is_some_and(|c| c.token_groups != super::model::TokenGroups::Ignore);
        if token_groups.is_none() || !reads_token {
            let read = self.claims(conn, user_id, false).await?;
            return Ok(read.and_then(|r| r.stored.claims(false).ok()));
        }
        let Some(mut facts) = self.facts(conn, user_id).await? else {
            return Ok(None);
        };
        facts.token_groups = token_groups;
        let mut claims = resolve(&model, &facts);
        claims.provenance = None;
        Ok(Some(claims))
    }

    /// The users a change affects.
    async fn affected_users(&self, event: &DirectoryEvent) -> Result<Vec<String>, DirectoryError> {
        if event.change == Change::UserCreated {
            // A new id: nothing was cached under it (an unknown user is never cached).
            return Ok(Vec::new());
        }
        let mut users = event.users.clone();
        let expand: Vec<String> = match event.change {
            // The changed group is first; the rest are nested groups that joined or left it:
            // their members gained or lost the group too.
            Change::MembershipChanged | Change::GroupDeleted | Change::GroupCreated => {
                event.groups.iter().skip(1).cloned().collect()
            }
            // Its members' claims change when rules match the group's name or externalId;
            // their SCIM representations (cached beside the claims) list its name: always.
            Change::GroupUpdated => event.groups.clone(),
            _ => Vec::new(),
        };
        if !expand.is_empty() {
            users.extend(
                self.inner
                    .stores
                    .groups
                    .group_user_members(&event.connection, &expand)
                    .await?,
            );
        }
        users.sort();
        users.dedup();
        Ok(users)
    }
}

#[async_trait::async_trait]
impl ChangeListener for AccessService {
    async fn on_change(&self, event: &DirectoryEvent) {
        match self.affected_users(event).await {
            Ok(users) if users.is_empty() => {}
            Ok(users) => self.inner.cache.invalidate(&event.connection, &users).await,
            Err(e) => {
                // The affected set is unknown: drop everything rather than risk stale claims.
                tracing::error!(error = %e, "cannot expand a directory change; invalidating all claims");
                self.inner.cache.invalidate_all().await;
            }
        }
    }
}
