//! The SQL implementation of [`Store`] for SQLite (the embedded default) and PostgreSQL
//! (production), through sqlx's `Any` driver. The backends differ only in the fragments of
//! [`dialect`]; both run the same statements, migrations of their own (`migrations/`) and one
//! shared test story.
//!
//! Transactions: every write opens a write transaction (`BEGIN IMMEDIATE` on SQLite), locks
//! the row it changes (`FOR UPDATE` on PostgreSQL) and commits once. Membership changes are
//! set operations on `group_members` rows (`INSERT ... ON CONFLICT DO NOTHING`,
//! `DELETE ... RETURNING`), so their cost follows the change, not the group's size.

mod dialect;
mod filter;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection as _, Executor as _, Row as _, Transaction};

use self::dialect::{Bind, DialectExt, Sql};
use super::{
    Backend, ConnectionId, DirectoryError, GroupDoc, GroupEdit, GroupRecord, GroupRef, InvalidKind,
    ListSpec, MemberKind, MemberOp, MemberRef, MembershipDelta, Page, ResourceKind, Store,
    Timestamp, TokenRow, UserDoc, UserEdit, UserRecord,
};
use crate::scim::schema::Catalogue;

/// How many ids go into one `IN (...)` list or multi-row INSERT.
const CHUNK: usize = 500;

/// Errors opening or migrating a database.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database_url: {0}")]
    Url(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot create the directory for the SQLite file {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The store over a SQLite file or a PostgreSQL database.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    catalogue: Arc<Catalogue>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Which backend a database URL names.
pub fn backend_of(url: &str) -> Result<Backend, OpenError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(OpenError::Url(
            "must start with sqlite:// or postgres:// (the value is not shown; it may hold a password)"
                .into(),
        ))
    }
}

/// Makes sure the directory of a SQLite file exists and the URL creates the file if missing.
fn prepare_sqlite_url(url: &str) -> Result<String, OpenError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_owned());
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|source| OpenError::Dir {
            path: path.to_owned(),
            source,
        })?;
    }
    if url.contains("mode=") {
        Ok(url.to_owned())
    } else if url.contains('?') {
        Ok(format!("{url}&mode=rwc"))
    } else {
        Ok(format!("{url}?mode=rwc"))
    }
}

impl SqlStore {
    /// Opens the database named by `url` (`sqlite://path` or `postgres://...`).
    pub async fn open(
        url: &str,
        pool: &PoolSettings,
        catalogue: Arc<Catalogue>,
    ) -> Result<Self, OpenError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let options =
            AnyConnectOptions::from_str(&url).map_err(|e| OpenError::Url(e.to_string()))?;
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout);
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn: &mut AnyConnection, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the one writer; the busy timeout makes
                    // writers queue instead of failing; foreign keys keep cascades honest.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(OpenError::Connect)?;
        Ok(Self {
            pool,
            backend,
            catalogue,
        })
    }

    /// Applies the schema migrations of this backend.
    pub async fn migrate(&self) -> Result<(), OpenError> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/sqlite")
                    .run(&self.pool)
                    .await?;
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn sql(&self) -> Sql {
        Sql::new(self.backend)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Any>, DirectoryError> {
        Ok(self.pool.begin_with(self.backend.begin_write()).await?)
    }

    fn user_columns(&self) -> String {
        format!(
            "r.id, {}, r.created, r.last_modified, r.version",
            self.backend.doc_column("r")
        )
    }

    fn group_columns(&self) -> String {
        format!(
            "r.id, {}, r.created, r.last_modified, r.version, r.member_count",
            self.backend.doc_column("r")
        )
    }

    async fn lock_user(
        &self,
        tx: &mut AnyConnection,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<UserRecord, DirectoryError> {
        let mut sql = self.sql();
        sql.push("SELECT ")
            .push(&self.user_columns())
            .push(" FROM users r WHERE r.connection = ")
            .bind_text(conn.as_str())
            .push(" AND r.id = ")
            .bind_text(id)
            .push(self.backend.for_update());
        let row = sql.query().fetch_optional(&mut *tx).await?;
        row.as_ref()
            .map(user_from_row)
            .transpose()?
            .ok_or(DirectoryError::NotFound("User"))
    }

    async fn lock_group(
        &self,
        tx: &mut AnyConnection,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<GroupRecord, DirectoryError> {
        let mut sql = self.sql();
        sql.push("SELECT ")
            .push(&self.group_columns())
            .push(" FROM groups r WHERE r.connection = ")
            .bind_text(conn.as_str())
            .push(" AND r.id = ")
            .bind_text(id)
            .push(self.backend.for_update());
        let row = sql.query().fetch_optional(&mut *tx).await?;
        row.as_ref()
            .map(group_from_row)
            .transpose()?
            .ok_or(DirectoryError::NotFound("Group"))
    }

    async fn write_emails(
        &self,
        tx: &mut AnyConnection,
        conn: &ConnectionId,
        user_id: &str,
        doc: &UserDoc,
        replace: bool,
    ) -> Result<(), DirectoryError> {
        if replace {
            let mut del = self.sql();
            del.push("DELETE FROM user_emails WHERE user_id = ")
                .bind_text(user_id);
            del.query().execute(&mut *tx).await?;
        }
        let values: BTreeSet<String> = doc
            .email_values()
            .iter()
            .map(|v| v.to_lowercase())
            .collect();
        if values.is_empty() {
            return Ok(());
        }
        let mut ins = self.sql();
        ins.push("INSERT INTO user_emails (user_id, connection, value_lc) VALUES ");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                ins.push(", ");
            }
            ins.push("(")
                .bind_text(user_id)
                .push(", ")
                .bind_text(conn.as_str())
                .push(", ")
                .bind_text(v.as_str())
                .push(")");
        }
        ins.push(" ON CONFLICT DO NOTHING");
        ins.query().execute(&mut *tx).await?;
        Ok(())
    }

    async fn list<T>(
        &self,
        conn: &ConnectionId,
        kind: ResourceKind,
        spec: &ListSpec,
        decode: fn(&AnyRow) -> Result<T, DirectoryError>,
    ) -> Result<Page<T>, DirectoryError> {
        let table = match kind {
            ResourceKind::User => "users",
            ResourceKind::Group => "groups",
        };
        let mut condition = self.sql();
        condition.push("r.connection = ").bind_text(conn.as_str());
        if let Some(f) = &spec.filter {
            condition.push(" AND ");
            filter::compile(f, kind, &self.catalogue, &mut condition)?;
        }
        let mut count = condition.clone();
        count.text = format!("SELECT COUNT(*) FROM {table} r WHERE {}", condition.text);
        let mut reader = self.pool.acquire().await?;
        let total: i64 = count.query().fetch_one(&mut *reader).await?.try_get(0)?;
        let offset = spec.start_index.max(1) - 1;
        if spec.count <= 0 || offset >= total {
            return Ok(Page {
                total,
                items: Vec::new(),
            });
        }
        let columns = match kind {
            ResourceKind::User => self.user_columns(),
            ResourceKind::Group => self.group_columns(),
        };
        let mut page = condition;
        page.text = format!("SELECT {columns} FROM {table} r WHERE {}", page.text);
        page.push(" ORDER BY ");
        if let Some(sort) = &spec.sort_by {
            let expr = filter::sort_expr(kind, sort, self.backend)?;
            let dir = if spec.descending { "DESC" } else { "ASC" };
            // Unassigned values sort last in either direction (RFC 7644 §3.4.2.3).
            page.push(&format!("({expr}) IS NULL, {expr} {dir}, "));
        }
        page.push("r.seq ASC LIMIT ")
            .bind(Bind::Int(spec.count))
            .push(" OFFSET ")
            .bind(Bind::Int(offset));
        let rows = page.query().fetch_all(&mut *reader).await?;
        let items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { total, items })
    }

    /// Applies one membership set operation; returns the rows it added and removed.
    async fn apply_member_op(
        &self,
        tx: &mut AnyConnection,
        conn: &ConnectionId,
        group_id: &str,
        op: &MemberOp,
        delta: &mut Delta,
    ) -> Result<(), DirectoryError> {
        match op {
            MemberOp::Add(ids) => {
                let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
                if ids.contains(group_id) {
                    return Err(DirectoryError::invalid(
                        InvalidKind::InvalidValue,
                        "a group cannot be a member of itself",
                    ));
                }
                let ids: Vec<&str> = ids.into_iter().collect();
                for chunk in ids.chunks(CHUNK) {
                    let kinds = self.member_kinds(tx, conn, chunk).await?;
                    // An id that names no user or group of this connection is skipped, not
                    // refused: it can grant nothing, and refusing would block the group's
                    // other changes (IdPs reference users whose own provisioning failed).
                    let skipped: Vec<&str> = chunk
                        .iter()
                        .copied()
                        .filter(|id| !kinds.contains_key(*id))
                        .collect();
                    if !skipped.is_empty() {
                        tracing::warn!(
                            %conn,
                            group = group_id,
                            skipped = skipped.len(),
                            first = skipped[0],
                            "members: ids that name no user or group of this connection were skipped"
                        );
                    }
                    let chunk: Vec<&str> = chunk
                        .iter()
                        .copied()
                        .filter(|id| kinds.contains_key(*id))
                        .collect();
                    if chunk.is_empty() {
                        continue;
                    }
                    let mut ins = self.sql();
                    ins.push(
                        "INSERT INTO group_members (group_id, member_id, member_type, connection) VALUES ",
                    );
                    for (i, id) in chunk.iter().enumerate() {
                        if i > 0 {
                            ins.push(", ");
                        }
                        let kind = kinds.get(*id).copied().unwrap_or(MemberKind::User);
                        ins.push("(")
                            .bind_text(group_id)
                            .push(", ")
                            .bind_text(*id)
                            .push(", ")
                            .bind_text(kind.as_str())
                            .push(", ")
                            .bind_text(conn.as_str())
                            .push(")");
                    }
                    ins.push(" ON CONFLICT DO NOTHING RETURNING member_id, member_type");
                    for row in ins.query().fetch_all(&mut *tx).await? {
                        delta.record(&row, 1)?;
                    }
                }
            }
            MemberOp::Remove(ids) => {
                let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
                let ids: Vec<&str> = ids.into_iter().collect();
                for chunk in ids.chunks(CHUNK) {
                    let mut del = self.sql();
                    del.push("DELETE FROM group_members WHERE group_id = ")
                        .bind_text(group_id)
                        .push(" AND member_id IN ")
                        .bind_list(chunk.iter().copied())
                        .push(" RETURNING member_id, member_type");
                    for row in del.query().fetch_all(&mut *tx).await? {
                        delta.record(&row, -1)?;
                    }
                }
            }
            MemberOp::RemoveWhere(val_filter) => {
                let mut del = self.sql();
                del.push("DELETE FROM group_members AS m WHERE m.group_id = ")
                    .bind_text(group_id)
                    .push(" AND ");
                let members = self
                    .catalogue
                    .group
                    .attr("members")
                    .cloned()
                    .ok_or_else(|| DirectoryError::Corrupt("catalogue lacks members".into()))?;
                filter::compile_member_filter(val_filter, &members, &mut del)?;
                del.push(" RETURNING member_id, member_type");
                for row in del.query().fetch_all(&mut *tx).await? {
                    delta.record(&row, -1)?;
                }
            }
            MemberOp::RemoveAll => {
                let mut del = self.sql();
                del.push("DELETE FROM group_members WHERE group_id = ")
                    .bind_text(group_id)
                    .push(" RETURNING member_id, member_type");
                for row in del.query().fetch_all(&mut *tx).await? {
                    delta.record(&row, -1)?;
                }
            }
        }
        Ok(())
    }

    /// Which of these ids name a user or a group of the connection.
    async fn member_kinds(
        &self,
        tx: &mut AnyConnection,
        conn: &ConnectionId,
        ids: &[&str],
    ) -> Result<HashMap<String, MemberKind>, DirectoryError> {
        let mut q = self.sql();
        q.push("SELECT id, 'User' FROM users WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" AND id IN ")
            .bind_list(ids.iter().copied())
            .push(" UNION ALL SELECT id, 'Group' FROM groups WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" AND id IN ")
            .bind_list(ids.iter().copied());
        let mut out = HashMap::with_capacity(ids.len());
        for row in q.query().fetch_all(&mut *tx).await? {
            let id: String = row.try_get(0)?;
            let kind: String = row.try_get(1)?;
            out.insert(id, MemberKind::parse(&kind).unwrap_or(MemberKind::User));
        }
        Ok(out)
    }

    /// Bumps the version of users whose `groups` attribute changed, so their ETag changes
    /// with their representation. Costs one row per affected user.
    async fn touch_users(
        &self,
        tx: &mut AnyConnection,
        users: &BTreeSet<String>,
        now: Timestamp,
    ) -> Result<(), DirectoryError> {
        let ids: Vec<&str> = users.iter().map(String::as_str).collect();
        for chunk in ids.chunks(CHUNK) {
            let mut upd = self.sql();
            upd.push("UPDATE users SET version = version + 1, last_modified = ")
                .bind_text(now.to_rfc3339())
                .push(" WHERE id IN ")
                .bind_list(chunk.iter().copied());
            upd.query().execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Bumps the version (and adjusts the member count) of the groups that lost `member_id`.
    async fn detach_member_everywhere(
        &self,
        tx: &mut AnyConnection,
        conn: &ConnectionId,
        member_id: &str,
        now: Timestamp,
    ) -> Result<Vec<String>, DirectoryError> {
        let mut del = self.sql();
        del.push("DELETE FROM group_members WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" AND member_id = ")
            .bind_text(member_id)
            .push(" RETURNING group_id");
        let groups: Vec<String> = del
            .query()
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        for chunk in groups.chunks(CHUNK) {
            let mut upd = self.sql();
            upd.push("UPDATE groups SET member_count = member_count - 1, version = version + 1, last_modified = ")
                .bind_text(now.to_rfc3339())
                .push(" WHERE id IN ")
                .bind_list(chunk.iter().map(String::as_str));
            upd.query().execute(&mut *tx).await?;
        }
        Ok(groups)
    }
}

/// Accumulates what membership operations changed.
#[derive(Default)]
struct Delta {
    count: i64,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
}

impl Delta {
    fn record(&mut self, row: &AnyRow, sign: i64) -> Result<(), DirectoryError> {
        let id: String = row.try_get(0)?;
        let kind: String = row.try_get(1)?;
        self.count += sign;
        match MemberKind::parse(&kind) {
            Some(MemberKind::Group) => self.groups.insert(id),
            _ => self.users.insert(id),
        };
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    fn into_delta(self) -> MembershipDelta {
        MembershipDelta {
            users: self.users.into_iter().collect(),
            groups: self.groups.into_iter().collect(),
        }
    }
}

fn timestamp(row: &AnyRow, idx: usize) -> Result<Timestamp, DirectoryError> {
    let raw: String = row.try_get(idx)?;
    Timestamp::parse_rfc3339(&raw)
        .ok_or_else(|| DirectoryError::Corrupt(format!("timestamp {raw:?}")))
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, DirectoryError> {
    Ok(UserRecord {
        id: row.try_get(0)?,
        doc: UserDoc::from_stored(&row.try_get::<String, _>(1)?)?,
        created: timestamp(row, 2)?,
        last_modified: timestamp(row, 3)?,
        version: row.try_get(4)?,
    })
}

fn group_from_row(row: &AnyRow) -> Result<GroupRecord, DirectoryError> {
    Ok(GroupRecord {
        id: row.try_get(0)?,
        doc: GroupDoc::from_stored(&row.try_get::<String, _>(1)?)?,
        created: timestamp(row, 2)?,
        last_modified: timestamp(row, 3)?,
        version: row.try_get(4)?,
        member_count: row.try_get(5)?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRow, DirectoryError> {
    let conn: String = row.try_get(1)?;
    let hash_hex: String = row.try_get(2)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&hash_hex, &mut hash)
        .map_err(|_| DirectoryError::Corrupt("token hash".into()))?;
    Ok(TokenRow {
        id: row.try_get(0)?,
        connection: ConnectionId::parse(&conn)
            .map_err(|e| DirectoryError::Corrupt(e.to_string()))?,
        hash,
        label: row.try_get(3)?,
        created: timestamp(row, 4)?,
    })
}

/// A unique-constraint violation becomes `409 uniqueness`.
fn uniqueness(err: sqlx::Error, what: impl FnOnce() -> String) -> DirectoryError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => DirectoryError::Uniqueness(what()),
        _ => DirectoryError::Store(err),
    }
}

fn check_version(expect: Option<i64>, current: i64) -> Result<(), DirectoryError> {
    match expect {
        Some(v) if v != current => Err(DirectoryError::PreconditionFailed { current }),
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> Result<(), DirectoryError> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    async fn create_user(
        &self,
        conn: &ConnectionId,
        doc: UserDoc,
        now: Timestamp,
    ) -> Result<UserRecord, DirectoryError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let mut ins = self.sql();
        ins.push(
            "INSERT INTO users (id, connection, user_name, user_name_lc, external_id, display_name, \
             display_name_lc, active, created, last_modified, version, doc) VALUES (",
        )
        .bind_text(id.as_str())
        .push(", ")
        .bind_text(conn.as_str())
        .push(", ")
        .bind_text(doc.user_name())
        .push(", ")
        .bind_text(doc.user_name().to_lowercase());
        push_opt(&mut ins, doc.external_id());
        push_opt(&mut ins, doc.display_name());
        push_opt(
            &mut ins,
            doc.display_name().map(str::to_lowercase).as_deref(),
        );
        ins.push(", ")
            .bind(Bind::Bool(doc.active()))
            .push(", ")
            .bind_text(now.to_rfc3339())
            .push(", ")
            .bind_text(now.to_rfc3339())
            .push(", 1, ");
        self.backend.doc_param(&mut ins, doc.to_json());
        ins.push(")");
        ins.query().execute(&mut *tx).await.map_err(|e| {
            uniqueness(e, || {
                format!("userName {:?} is already in use", doc.user_name())
            })
        })?;
        self.write_emails(&mut tx, conn, &id, &doc, false).await?;
        tx.commit().await?;
        Ok(UserRecord {
            id,
            doc,
            created: now,
            last_modified: now,
            version: 1,
        })
    }

    async fn get_user(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<Option<UserRecord>, DirectoryError> {
        let mut sql = self.sql();
        sql.push("SELECT ")
            .push(&self.user_columns())
            .push(" FROM users r WHERE r.connection = ")
            .bind_text(conn.as_str())
            .push(" AND r.id = ")
            .bind_text(id);
        let row = sql.query().fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<UserRecord>, DirectoryError> {
        self.list(conn, ResourceKind::User, spec, user_from_row)
            .await
    }

    async fn update_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
        edit: UserEdit<'_>,
    ) -> Result<UserRecord, DirectoryError> {
        let mut tx = self.begin_write().await?;
        let current = self.lock_user(&mut tx, conn, id).await?;
        check_version(expect, current.version)?;
        let doc = edit(&current)?;
        if doc == current.doc {
            // Nothing changed: no new version, no event (IdPs re-send unchanged users).
            tx.commit().await?;
            return Ok(current);
        }
        let mut upd = self.sql();
        upd.push("UPDATE users SET user_name = ")
            .bind_text(doc.user_name())
            .push(", user_name_lc = ")
            .bind_text(doc.user_name().to_lowercase())
            .push(", external_id = ");
        bind_opt(&mut upd, doc.external_id());
        upd.push(", display_name = ");
        bind_opt(&mut upd, doc.display_name());
        upd.push(", display_name_lc = ");
        bind_opt(
            &mut upd,
            doc.display_name().map(str::to_lowercase).as_deref(),
        );
        upd.push(", active = ")
            .bind(Bind::Bool(doc.active()))
            .push(", last_modified = ")
            .bind_text(now.to_rfc3339())
            .push(", version = version + 1, doc = ");
        self.backend.doc_param(&mut upd, doc.to_json());
        upd.push(" WHERE id = ").bind_text(id);
        upd.query().execute(&mut *tx).await.map_err(|e| {
            uniqueness(e, || {
                format!("userName {:?} is already in use", doc.user_name())
            })
        })?;
        if doc.email_values() != current.doc.email_values() {
            self.write_emails(&mut tx, conn, id, &doc, true).await?;
        }
        tx.commit().await?;
        Ok(UserRecord {
            id: current.id,
            doc,
            created: current.created,
            last_modified: now,
            version: current.version + 1,
        })
    }

    async fn delete_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
    ) -> Result<Vec<String>, DirectoryError> {
        let mut tx = self.begin_write().await?;
        // Lock order everywhere: groups before users (a membership change locks its group,
        // then touches its member users), so this cannot deadlock with one.
        if self.backend == Backend::Postgres {
            let mut lock = self.sql();
            lock.push(
                "SELECT g.id FROM groups g WHERE g.id IN \
                 (SELECT m.group_id FROM group_members m WHERE m.member_id = ",
            )
            .bind_text(id)
            .push(") ORDER BY g.id FOR UPDATE");
            lock.query().fetch_all(&mut *tx).await?;
        }
        let current = self.lock_user(&mut tx, conn, id).await?;
        check_version(expect, current.version)?;
        let groups = self
            .detach_member_everywhere(&mut tx, conn, id, now)
            .await?;
        let mut del = self.sql();
        del.push("DELETE FROM user_emails WHERE user_id = ")
            .bind_text(id);
        del.query().execute(&mut *tx).await?;
        let mut del = self.sql();
        del.push("DELETE FROM users WHERE id = ").bind_text(id);
        del.query().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(groups)
    }

    async fn user_groups(
        &self,
        conn: &ConnectionId,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<GroupRef>>, DirectoryError> {
        let mut out: HashMap<String, Vec<GroupRef>> = HashMap::new();
        for chunk in user_ids.chunks(CHUNK) {
            let mut q = self.sql();
            q.push(
                "SELECT m.member_id, g.id, g.display_name FROM group_members m \
                 JOIN groups g ON g.id = m.group_id WHERE m.connection = ",
            )
            .bind_text(conn.as_str())
            .push(" AND m.member_id IN ")
            .bind_list(chunk.iter().map(String::as_str))
            .push(" ORDER BY m.member_id, g.display_name_lc, g.id");
            for row in q.query().fetch_all(&self.pool).await? {
                let user: String = row.try_get(0)?;
                out.entry(user).or_default().push(GroupRef {
                    id: row.try_get(1)?,
                    display: row.try_get(2)?,
                });
            }
        }
        Ok(out)
    }

    async fn create_group(
        &self,
        conn: &ConnectionId,
        doc: GroupDoc,
        members: &[String],
        now: Timestamp,
    ) -> Result<(GroupRecord, MembershipDelta), DirectoryError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let mut ins = self.sql();
        ins.push(
            "INSERT INTO groups (id, connection, display_name, display_name_lc, external_id, \
             created, last_modified, version, member_count, doc) VALUES (",
        )
        .bind_text(id.as_str())
        .push(", ")
        .bind_text(conn.as_str())
        .push(", ")
        .bind_text(doc.display_name())
        .push(", ")
        .bind_text(doc.display_name().to_lowercase());
        push_opt(&mut ins, doc.external_id());
        ins.push(", ")
            .bind_text(now.to_rfc3339())
            .push(", ")
            .bind_text(now.to_rfc3339())
            .push(", 1, 0, ");
        self.backend.doc_param(&mut ins, doc.to_json());
        ins.push(")");
        ins.query().execute(&mut *tx).await?;
        let mut delta = Delta::default();
        if !members.is_empty() {
            self.apply_member_op(
                &mut tx,
                conn,
                &id,
                &MemberOp::Add(members.to_vec()),
                &mut delta,
            )
            .await?;
            let mut upd = self.sql();
            upd.push("UPDATE groups SET member_count = ")
                .bind(Bind::Int(delta.count))
                .push(" WHERE id = ")
                .bind_text(id.as_str());
            upd.query().execute(&mut *tx).await?;
            self.touch_users(&mut tx, &delta.users, now).await?;
        }
        tx.commit().await?;
        let member_count = delta.count;
        Ok((
            GroupRecord {
                id,
                doc,
                created: now,
                last_modified: now,
                version: 1,
                member_count,
            },
            delta.into_delta(),
        ))
    }

    async fn get_group(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<Option<GroupRecord>, DirectoryError> {
        let mut sql = self.sql();
        sql.push("SELECT ")
            .push(&self.group_columns())
            .push(" FROM groups r WHERE r.connection = ")
            .bind_text(conn.as_str())
            .push(" AND r.id = ")
            .bind_text(id);
        let row = sql.query().fetch_optional(&self.pool).await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn list_groups(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<GroupRecord>, DirectoryError> {
        self.list(conn, ResourceKind::Group, spec, group_from_row)
            .await
    }

    async fn group_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<HashMap<String, Vec<MemberRef>>, DirectoryError> {
        let mut out: HashMap<String, Vec<MemberRef>> = HashMap::new();
        for chunk in group_ids.chunks(CHUNK) {
            let mut q = self.sql();
            q.push(
                "SELECT m.group_id, m.member_id, m.member_type FROM group_members m \
                 WHERE m.connection = ",
            )
            .bind_text(conn.as_str())
            .push(" AND m.group_id IN ")
            .bind_list(chunk.iter().map(String::as_str))
            .push(" ORDER BY m.group_id, m.member_id");
            for row in q.query().fetch_all(&self.pool).await? {
                let group: String = row.try_get(0)?;
                let kind: String = row.try_get(2)?;
                out.entry(group).or_default().push(MemberRef {
                    id: row.try_get(1)?,
                    kind: MemberKind::parse(&kind).unwrap_or(MemberKind::User),
                });
            }
        }
        Ok(out)
    }

    async fn modify_group(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
        edit: Option<GroupEdit<'_>>,
        members: &[MemberOp],
    ) -> Result<(GroupRecord, MembershipDelta), DirectoryError> {
        let mut tx = self.begin_write().await?;
        let current = self.lock_group(&mut tx, conn, id).await?;
        check_version(expect, current.version)?;
        let doc = match edit {
            Some(edit) => edit(&current)?,
            None => current.doc.clone(),
        };
        let mut delta = Delta::default();
        for op in members {
            self.apply_member_op(&mut tx, conn, id, op, &mut delta)
                .await?;
        }
        if doc == current.doc && delta.is_empty() {
            tx.commit().await?;
            return Ok((current, MembershipDelta::default()));
        }
        let mut upd = self.sql();
        upd.push("UPDATE groups SET display_name = ")
            .bind_text(doc.display_name())
            .push(", display_name_lc = ")
            .bind_text(doc.display_name().to_lowercase())
            .push(", external_id = ");
        bind_opt(&mut upd, doc.external_id());
        upd.push(", member_count = member_count + ")
            .bind(Bind::Int(delta.count))
            .push(", last_modified = ")
            .bind_text(now.to_rfc3339())
            .push(", version = version + 1, doc = ");
        self.backend.doc_param(&mut upd, doc.to_json());
        upd.push(" WHERE id = ").bind_text(id);
        upd.query().execute(&mut *tx).await?;
        self.touch_users(&mut tx, &delta.users, now).await?;
        tx.commit().await?;
        let record = GroupRecord {
            id: current.id,
            doc,
            created: current.created,
            last_modified: now,
            version: current.version + 1,
            member_count: current.member_count + delta.count,
        };
        Ok((record, delta.into_delta()))
    }

    async fn delete_group(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
    ) -> Result<MembershipDelta, DirectoryError> {
        let mut tx = self.begin_write().await?;
        let current = self.lock_group(&mut tx, conn, id).await?;
        check_version(expect, current.version)?;
        let mut delta = Delta::default();
        self.apply_member_op(&mut tx, conn, id, &MemberOp::RemoveAll, &mut delta)
            .await?;
        self.detach_member_everywhere(&mut tx, conn, id, now)
            .await?;
        self.touch_users(&mut tx, &delta.users, now).await?;
        let mut del = self.sql();
        del.push("DELETE FROM groups WHERE id = ").bind_text(id);
        del.query().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(delta.into_delta())
    }

    async fn user_access_groups(
        &self,
        conn: &ConnectionId,
        user_id: &str,
    ) -> Result<Vec<crate::access::IdpGroup>, DirectoryError> {
        // Walk up from the user's direct groups through groups that contain them. UNION (not
        // UNION ALL) stops cycles.
        let mut q = self.sql();
        q.push(
            "WITH RECURSIVE up(group_id, via) AS (\
               SELECT m.group_id, CAST(NULL AS TEXT) FROM group_members m \
               WHERE m.connection = ",
        )
        .bind_text(conn.as_str())
        .push(" AND m.member_id = ")
        .bind_text(user_id)
        .push(
            " UNION SELECT p.group_id, COALESCE(up.via, up.group_id) FROM group_members p \
               JOIN up ON p.member_id = up.group_id \
             ) SELECT g.id, g.external_id, g.display_name, up.via FROM up \
             JOIN groups g ON g.id = up.group_id ORDER BY g.id, up.via",
        );
        let mut out: Vec<crate::access::IdpGroup> = Vec::new();
        for row in q.query().fetch_all(&self.pool).await? {
            let id: String = row.try_get(0)?;
            let via: Option<String> = row.try_get(3)?;
            // A group reached both directly and through nesting counts once, as direct.
            if let Some(prev) = out.iter_mut().find(|g| g.id == id) {
                if via.is_none() {
                    prev.via = None;
                }
                continue;
            }
            out.push(crate::access::IdpGroup {
                id,
                external_id: row.try_get(1)?,
                display_name: row.try_get(2)?,
                via,
            });
        }
        Ok(out)
    }

    async fn group_user_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<Vec<String>, DirectoryError> {
        let mut users = BTreeSet::new();
        for chunk in group_ids.chunks(CHUNK) {
            let mut q = self.sql();
            q.push("WITH RECURSIVE down(group_id) AS (SELECT g.id FROM groups g WHERE g.connection = ")
                .bind_text(conn.as_str())
                .push(" AND g.id IN ")
                .bind_list(chunk.iter().map(String::as_str))
                .push(
                    " UNION SELECT m.member_id FROM group_members m JOIN down ON m.group_id = down.group_id \
                     WHERE m.member_type = 'Group') \
                     SELECT DISTINCT m.member_id FROM group_members m JOIN down ON m.group_id = down.group_id \
                     WHERE m.member_type = 'User'",
                );
            for row in q.query().fetch_all(&self.pool).await? {
                users.insert(row.try_get::<String, _>(0)?);
            }
        }
        Ok(users.into_iter().collect())
    }

    async fn user_ids_after(
        &self,
        conn: &ConnectionId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, DirectoryError> {
        let mut q = self.sql();
        q.push("SELECT id FROM users WHERE connection = ")
            .bind_text(conn.as_str());
        if let Some(a) = after {
            q.push(" AND id > ").bind_text(a);
        }
        q.push(" ORDER BY id LIMIT ").bind(Bind::Int(limit));
        q.query()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0).map_err(DirectoryError::from))
            .collect()
    }

    async fn insert_token(&self, token: &TokenRow) -> Result<(), DirectoryError> {
        let mut ins = self.sql();
        ins.push("INSERT INTO scim_tokens (id, connection, token_hash, label, created) VALUES (")
            .bind_text(token.id.as_str())
            .push(", ")
            .bind_text(token.connection.as_str())
            .push(", ")
            .bind_text(hex::encode(token.hash))
            .push(", ")
            .bind_text(token.label.as_str())
            .push(", ")
            .bind_text(token.created.to_rfc3339())
            .push(")");
        ins.query()
            .execute(&self.pool)
            .await
            .map_err(|e| uniqueness(e, || "token already exists".to_owned()))?;
        Ok(())
    }

    async fn find_token(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>, DirectoryError> {
        let mut q = self.sql();
        q.push("SELECT id, connection, token_hash, label, created FROM scim_tokens WHERE token_hash = ")
            .bind_text(hex::encode(hash));
        let row = q.query().fetch_optional(&self.pool).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self, conn: &ConnectionId) -> Result<Vec<TokenRow>, DirectoryError> {
        let mut q = self.sql();
        q.push("SELECT id, connection, token_hash, label, created FROM scim_tokens WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" ORDER BY created, id");
        q.query()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn revoke_token(&self, conn: &ConnectionId, id: &str) -> Result<bool, DirectoryError> {
        let mut del = self.sql();
        del.push("DELETE FROM scim_tokens WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" AND id = ")
            .bind_text(id);
        Ok(del.query().execute(&self.pool).await?.rows_affected() > 0)
    }
}

/// `, ?` bound to an optional text (NULL when absent).
fn push_opt(sql: &mut Sql, value: Option<&str>) {
    sql.push(", ");
    bind_opt(sql, value);
}

fn bind_opt(sql: &mut Sql, value: Option<&str>) {
    match value {
        Some(v) => {
            sql.bind_text(v);
        }
        None => {
            sql.push("NULL");
        }
    }
}
