//! Operator tools behind `pimgate explain` and `pimgate diff-config`: the same resolution the
//! server runs, read straight from the store (never from the cache), printed for a person.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use super::claims::{Claims, Level};
use super::model::AccessModel;
use super::resolve::resolve;
use super::service::{AccessService, UserLookup};
use crate::directory::{ConnectionId, DirectoryError, Store};

/// Errors of the operator tools.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("connection {connection}: no user with id, userName or externalId {user:?}")]
    NoSuchUser { connection: String, user: String },
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("cannot render claims: {0}")]
    Render(#[from] serde_json::Error),
}

/// A cache that never holds anything: the tools always resolve from the store.
fn uncached(store: Arc<dyn Store>, model: Arc<AccessModel>) -> AccessService {
    AccessService::new(store, Arc::new(super::cache::MemoryCache::new(0)), model)
}

/// The claims of one user, with provenance, as indented JSON.
pub async fn explain(
    store: Arc<dyn Store>,
    model: Arc<AccessModel>,
    conn: &ConnectionId,
    user: &str,
) -> Result<String, AdminError> {
    let service = uncached(store, model.clone());
    let mut id = None;
    for lookup in [
        UserLookup::Id(user.to_owned()),
        UserLookup::UserName(user.to_owned()),
        UserLookup::ExternalId(user.to_owned()),
    ] {
        if let Some(found) = service.find_user(conn, &lookup).await? {
            id = Some(found);
            break;
        }
    }
    let no_such = || AdminError::NoSuchUser {
        connection: conn.to_string(),
        user: user.to_owned(),
    };
    let id = id.ok_or_else(no_such)?;
    let facts = service.facts(conn, &id).await?.ok_or_else(no_such)?;
    let claims = resolve(&model, &facts);
    Ok(serde_json::to_string_pretty(&claims)?)
}

/// What one grant is, for the summary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Grant {
    Permission(String),
    Role(String),
    UserGroup(String),
    Access(String),
}

fn grants(c: &Claims, model: &AccessModel) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for p in &c.permissions {
        let name = model
            .permission(p)
            .map_or_else(|| p.clone(), |perm| format!("{} ({p})", perm.name));
        out.insert(Grant::Permission(name));
    }
    for r in &c.roles {
        out.insert(Grant::Role(format!("{} ({})", r.name, r.key)));
    }
    for g in &c.user_groups {
        out.insert(Grant::UserGroup(format!("{} ({})", g.name, g.key)));
    }
    let level = |l: &Level| match l {
        Level::Edit => "edit",
        Level::Read => "read-only",
    };
    for (lang, l) in &c.access.languages {
        out.insert(Grant::Access(format!("language {lang} {}", level(l))));
    }
    for (dim, segs) in &c.access.segments {
        for (seg, l) in segs {
            out.insert(Grant::Access(format!("segment {dim}/{seg} {}", level(l))));
        }
    }
    for (bu, l) in &c.access.business_units {
        out.insert(Grant::Access(format!("business unit {bu} {}", level(l))));
    }
    out
}

fn describe(g: &Grant) -> String {
    match g {
        Grant::Permission(p) => format!("permission {p}"),
        Grant::Role(r) => format!("role {r}"),
        Grant::UserGroup(u) => format!("user group {u}"),
        Grant::Access(a) => a.clone(),
    }
}

/// Resolves every user of these connections under the current and the candidate model and
/// reports, per user, what the candidate adds and removes, then totals per grant ("removes
/// permission Delete product (products.delete) from 37 users").
pub async fn diff_config(
    store: Arc<dyn Store>,
    current: Arc<AccessModel>,
    candidate: Arc<AccessModel>,
    connections: &[ConnectionId],
) -> Result<String, AdminError> {
    let service = uncached(store.clone(), current.clone());
    let mut out = String::new();
    let mut added: BTreeMap<Grant, usize> = BTreeMap::new();
    let mut removed: BTreeMap<Grant, usize> = BTreeMap::new();
    let (mut users, mut changed) = (0usize, 0usize);
    for conn in connections {
        let mut after: Option<String> = None;
        loop {
            let ids = store.user_ids_after(conn, after.as_deref(), 500).await?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            for id in &ids {
                let Some(facts) = service.facts(conn, id).await? else {
                    continue;
                };
                users += 1;
                let old = grants(&resolve(&current, &facts), &current);
                let new = grants(&resolve(&candidate, &facts), &candidate);
                let plus: Vec<&Grant> = new.difference(&old).collect();
                let minus: Vec<&Grant> = old.difference(&new).collect();
                if plus.is_empty() && minus.is_empty() {
                    continue;
                }
                changed += 1;
                let _ = writeln!(out, "{conn}/{} ({id}):", facts.user_name);
                for g in &plus {
                    let _ = writeln!(out, "  + {}", describe(g));
                    *added.entry((*g).clone()).or_default() += 1;
                }
                for g in &minus {
                    let _ = writeln!(out, "  - {}", describe(g));
                    *removed.entry((*g).clone()).or_default() += 1;
                }
            }
            after = Some(last);
        }
    }
    let _ = writeln!(
        out,
        "\n{changed} of {users} users would change (access model {} -> {}).",
        current.version(),
        candidate.version()
    );
    for (g, n) in &removed {
        let _ = writeln!(
            out,
            "removes {} from {n} user{}",
            describe(g),
            if *n == 1 { "" } else { "s" }
        );
    }
    for (g, n) in &added {
        let _ = writeln!(
            out,
            "adds {} to {n} user{}",
            describe(g),
            if *n == 1 { "" } else { "s" }
        );
    }
    Ok(out)
}
