//! Operator tools behind `pimgate explain` and `pimgate diff-config`: the same resolution the
//! server runs, read straight from the store (never from the cache), printed for a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::claims::{AccessGrant, Claims, ClaimsDiff, GrantedBy, Level, Provenance, Source};
use super::model::AccessModel;
use super::resolve::resolve;
use super::service::{AccessService, UserLookup};
use crate::connections::{ConnectionId, Registry};
use crate::directory::{DirectoryError, Stores};

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
fn uncached(stores: &Stores, model: Arc<AccessModel>) -> AccessService {
    AccessService::new(
        stores,
        Arc::new(super::cache::MemoryCache::new(0)),
        model,
        Arc::new(Registry::default()),
    )
}

/// The claims of one user, with provenance: as indented JSON when `json`, otherwise as text
/// for a person at a terminal.
pub async fn explain(
    stores: &Stores,
    model: Arc<AccessModel>,
    conn: &ConnectionId,
    user: &str,
    json: bool,
) -> Result<String, AdminError> {
    let service = uncached(stores, model.clone());
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
    let mut facts = service.facts(conn, &id).await?.ok_or_else(no_such)?;
    // As at the user's last sign-in: with the groups its login token carried.
    let last = stores.grants.latest_grant(conn, &id).await?;
    if let Some(g) = &last {
        facts.token_groups = g.token_groups.clone();
    }
    let claims = resolve(&model, &facts);
    if json {
        return Ok(serde_json::to_string_pretty(&claims)?);
    }
    let mut out = explain_text(&claims, &model);
    if let Some(g) = last {
        let _ = writeln!(
            out,
            "last sign-in {}: {}",
            g.auth_time.to_rfc3339(),
            match (&g.token_groups, g.groups_overage) {
                (_, true) => "the login token carried an overage marker instead of its groups; the SCIM groups were used".to_owned(),
                (Some(v), false) => format!("the login token's groups {v:?} were applied"),
                (None, false) => "the login token's groups are not read on this connection".to_owned(),
            }
        );
    }
    Ok(out)
}

fn source_text(s: &Source) -> String {
    match s {
        Source::ScimGroup { rule, group } => {
            let via = group
                .via
                .as_deref()
                .map(|v| format!(", through nested group {v}"))
                .unwrap_or_default();
            format!(
                "rule {rule:?}: member of group {:?} ({}{via})",
                group.display_name, group.id
            )
        }
        Source::TokenGroup { rule, value } => format!("rule {rule:?}: login-token group {value:?}"),
        Source::Attribute { rule, path, value } => format!("rule {rule:?}: {path} = {value:?}"),
        Source::NoMatchDefault => "no rule matched: the connection's default".to_owned(),
    }
}

fn granted_by_text(g: &[GrantedBy]) -> String {
    g.iter()
        .map(|b| format!("{} ({})", b.user_group, b.level.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The claims and why each grant is there, as indented text.
fn explain_text(c: &Claims, model: &AccessModel) -> String {
    let mut out = String::new();
    let state = if c.active {
        "active"
    } else {
        "DEACTIVATED: no access"
    };
    let _ = writeln!(
        out,
        "{} ({}) in connection {}: {state}",
        c.user_name, c.sub, c.connection
    );
    let _ = writeln!(out, "access model {}", c.config_version);
    let empty = Provenance::default();
    let why = c.provenance.as_ref().unwrap_or(&empty);
    let _ = writeln!(out, "\nroles ({}):", c.roles.len());
    for r in &c.roles {
        let _ = writeln!(out, "  {} {:?} [{}]", r.key, r.name, r.id);
        for s in why.roles.get(&r.key).into_iter().flatten() {
            let _ = writeln!(out, "    <- {}", source_text(s));
        }
    }
    let _ = writeln!(out, "\nuser groups ({}):", c.user_groups.len());
    for g in &c.user_groups {
        let _ = writeln!(out, "  {} {:?} [{}]", g.key, g.name, g.id);
        for s in why.user_groups.get(&g.key).into_iter().flatten() {
            let _ = writeln!(out, "    <- {}", source_text(s));
        }
    }
    let _ = writeln!(out, "\npermissions ({}):", c.permissions.len());
    for p in &c.permissions {
        let name = model.permission(p).map_or("", |perm| perm.name.as_str());
        let roles: Vec<&str> = why
            .permissions
            .get(p)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let _ = writeln!(out, "  {p:<40} {name:<36} <- {}", roles.join(", "));
    }
    let _ = writeln!(out, "\naccess:");
    for (code, level) in &c.access.languages {
        let by = why
            .languages
            .get(code)
            .map(|g| granted_by_text(g))
            .unwrap_or_default();
        let _ = writeln!(out, "  language {code}: {} <- {by}", level.as_str());
    }
    for (dim, segs) in &c.access.segments {
        for (seg, level) in segs {
            let by = why
                .segments
                .get(dim)
                .and_then(|m| m.get(seg))
                .map(|g| granted_by_text(g))
                .unwrap_or_default();
            let _ = writeln!(out, "  segment {dim}/{seg}: {} <- {by}", level.as_str());
        }
    }
    for (bu, level) in &c.access.business_units {
        let by = why
            .business_units
            .get(bu)
            .map(|g| granted_by_text(g))
            .unwrap_or_default();
        let _ = writeln!(out, "  business unit {bu}: {} <- {by}", level.as_str());
    }
    match (&c.default_dashboard, &why.default_dashboard) {
        (Some(d), Some(from)) => {
            let _ = writeln!(out, "\ndefault dashboard: {d} <- user group {from}");
        }
        (Some(d), None) => {
            let _ = writeln!(out, "\ndefault dashboard: {d}");
        }
        _ => {
            let _ = writeln!(out, "\ndefault dashboard: none");
        }
    }
    out
}

fn permission_text(key: &str, model: &AccessModel) -> String {
    match model.permission(key) {
        Some(p) => format!("permission {} ({key})", p.name),
        None => format!("permission {key}"),
    }
}

fn access_text(g: &AccessGrant) -> String {
    let level = |l: &Level| match l {
        Level::Edit => "edit",
        Level::Read => "read-only",
    };
    match g {
        AccessGrant::Language { code, level: l } => format!("language {code} {}", level(l)),
        AccessGrant::Segment {
            dimension,
            segment,
            level: l,
        } => format!("segment {dimension}/{segment} {}", level(l)),
        AccessGrant::BusinessUnit { id, level: l } => format!("business unit {id} {}", level(l)),
    }
}

/// A [`ClaimsDiff`] as (added, removed) lines; permission names come from the model that
/// grants (or granted) them.
fn diff_lines(
    d: &ClaimsDiff,
    current: &AccessModel,
    candidate: &AccessModel,
) -> (Vec<String>, Vec<String>) {
    let named = |what: &str, r: &super::claims::NamedRef| format!("{what} {} ({})", r.name, r.key);
    let mut plus: Vec<String> = d
        .permissions
        .added
        .iter()
        .map(|p| permission_text(p, candidate))
        .collect();
    let mut minus: Vec<String> = d
        .permissions
        .removed
        .iter()
        .map(|p| permission_text(p, current))
        .collect();
    plus.extend(d.roles.added.iter().map(|r| named("role", r)));
    minus.extend(d.roles.removed.iter().map(|r| named("role", r)));
    plus.extend(d.user_groups.added.iter().map(|g| named("user group", g)));
    minus.extend(d.user_groups.removed.iter().map(|g| named("user group", g)));
    plus.extend(d.access.added.iter().map(access_text));
    minus.extend(d.access.removed.iter().map(access_text));
    if let Some(change) = &d.default_dashboard {
        if let Some(to) = &change.to {
            plus.push(format!("default dashboard {to}"));
        }
        if let Some(from) = &change.from {
            minus.push(format!("default dashboard {from}"));
        }
    }
    (plus, minus)
}

/// Resolves every user of these connections under the current and the candidate model and
/// reports, per user, what the candidate adds and removes, then totals per grant ("removes
/// permission Delete product (products.delete) from 37 users").
pub async fn diff_config(
    stores: &Stores,
    current: Arc<AccessModel>,
    candidate: Arc<AccessModel>,
    connections: &[ConnectionId],
) -> Result<String, AdminError> {
    let service = uncached(stores, current.clone());
    let mut out = String::new();
    let mut added: BTreeMap<String, usize> = BTreeMap::new();
    let mut removed: BTreeMap<String, usize> = BTreeMap::new();
    let (mut users, mut changed) = (0usize, 0usize);
    for conn in connections {
        let mut after: Option<String> = None;
        loop {
            let ids = stores
                .users
                .user_ids_after(conn, after.as_deref(), 500)
                .await?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            for id in &ids {
                let Some(facts) = service.facts(conn, id).await? else {
                    continue;
                };
                users += 1;
                let diff = resolve(&current, &facts).diff(&resolve(&candidate, &facts));
                if diff.is_empty() {
                    continue;
                }
                changed += 1;
                let (plus, minus) = diff_lines(&diff, &current, &candidate);
                let _ = writeln!(out, "{conn}/{} ({id}):", facts.user_name);
                for g in plus {
                    let _ = writeln!(out, "  + {g}");
                    *added.entry(g).or_default() += 1;
                }
                for g in minus {
                    let _ = writeln!(out, "  - {g}");
                    *removed.entry(g).or_default() += 1;
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
            "removes {g} from {n} user{}",
            if *n == 1 { "" } else { "s" }
        );
    }
    for (g, n) in &added {
        let _ = writeln!(
            out,
            "adds {g} to {n} user{}",
            if *n == 1 { "" } else { "s" }
        );
    }
    Ok(out)
}
