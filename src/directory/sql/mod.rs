//! The SQL implementation of the store roles for SQLite (the embedded default) and
//! PostgreSQL (production), each through its own sqlx driver. The backends differ only in the
//! fragments of [`dialect`] and in how [`exec`] runs statements on them; both run the same
//! statements, migrations of their own (`migrations/`) and one shared test story per role.
//!
//! - this file: opening, migrations and the schema check, and what the roles share (row
//!   reads, list queries, error mapping);
//! - [`users`], [`groups`] (with membership), [`credentials`]: one role each;
//! - [`exec`]: pools, connections, transactions and rows of either backend, and the bounds on
//!   every statement (deadlines).
//!
//! Transactions: every write opens a write transaction (`BEGIN IMMEDIATE` on SQLite), locks
//! the row it changes (`FOR UPDATE` on PostgreSQL), checks the version the caller expects and
//! commits once. Membership changes are set operations on `group_members` rows
//! (`INSERT ... ON CONFLICT DO NOTHING`, `DELETE ... RETURNING`), so their cost follows the
//! change, not the group's size.
//!
//! Opening never changes the schema: `pimgate serve` and `pimgate migrate` apply migrations
//! ([`SqlStore::migrate`]); every other command checks the schema is current
//! ([`SqlStore::check_schema`]) and says so when it is not.

mod credentials;
mod dialect;
mod exec;
mod filter;
mod grants;
mod groups;
mod keys;
mod sessions;
mod users;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::migrate::Migrator;

use self::dialect::{Bind, DialectExt, Sql};
pub use self::exec::PoolSettings;
use self::exec::{Conn, Pool, Row, Tx};
use super::doc::Document;
use super::error::{DirectoryError, Result};
use super::kind::{GroupKind, Kind, ResourceKind, UserKind};
use super::model::{Backend, GroupRecord, ListSpec, Page, UserRecord};
use super::schema::Catalogue;
use super::service::Records;
use super::store::{StoreHealth, Target};
use crate::clock::Timestamp;
use crate::connections::ConnectionId;

/// How many ids go into one `IN (...)` list or multi-row INSERT.
const CHUNK: usize = 500;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Errors opening, migrating or checking a database.
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
    #[error("cannot read the schema version: {0}")]
    Check(#[source] sqlx::Error),
    #[error(
        "the database schema is behind this pimgate ({applied} of {known} migrations applied): run `pimgate migrate` (or start `pimgate serve`, which migrates)"
    )]
    Behind { applied: usize, known: usize },
}

/// The store over a SQLite file or a PostgreSQL database.
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool,
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

/// The SQL condition (over the table aliased `r`) a filter compiles to on `backend`, and
/// how many values it binds. The store runs exactly this; it is public for the fuzz targets
/// and tests that check what reaches the database.
pub fn compile_filter(
    backend: Backend,
    kind: ResourceKind,
    catalogue: &Catalogue,
    filter: &scim_v2::filter::Filter,
) -> Result<(String, usize)> {
    let mut sql = Sql::new(backend);
    filter::compile(filter, kind, catalogue, &mut sql)?;
    Ok((sql.text, sql.binds.len()))
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

/// Makes sure the directory of a SQLite file exists.
fn prepare_sqlite_dir(url: &str) -> Result<(), OpenError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|source| OpenError::Dir {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(())
}

impl SqlStore {
    /// Opens the database named by `url` (`sqlite://path` or `postgres://...`). The schema
    /// is left as it is.
    pub async fn open(
        url: &str,
        pool: &PoolSettings,
        catalogue: Arc<Catalogue>,
    ) -> Result<Self, OpenError> {
        let backend = backend_of(url)?;
        if backend == Backend::Sqlite {
            prepare_sqlite_dir(url)?;
        }
        let pool = Pool::connect(backend, url, pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(e) => OpenError::Url(e.to_string()),
                e => OpenError::Connect(e),
            })?;
        Ok(Self {
            pool,
            backend,
            catalogue,
        })
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the schema migrations of this backend (concurrent callers apply each once:
    /// sqlx takes a database lock around them).
    pub async fn migrate(&self) -> Result<(), OpenError> {
        self.pool.migrate(self.migrator()).await?;
        Ok(())
    }

    /// Checks that every migration this build knows has been applied (a newer build's
    /// migrations beside them are fine: migrations only add).
    pub async fn check_schema(&self) -> Result<(), OpenError> {
        let known: BTreeSet<i64> = self.migrator().iter().map(|m| m.version).collect();
        let mut c = self.pool.acquire().await.map_err(OpenError::Check)?;
        let mut exists = self.sql();
        exists.push(&self.backend.table_exists("_sqlx_migrations"));
        let present: i64 = exists
            .fetch_one(&mut c.conn())
            .await
            .and_then(|r| r.get::<i64>(0))
            .map_err(OpenError::Check)?;
        let applied: BTreeSet<i64> = if present > 0 {
            let mut versions = self.sql();
            versions.push("SELECT version FROM _sqlx_migrations WHERE success");
            versions
                .fetch_all(&mut c.conn())
                .await
                .map_err(OpenError::Check)?
                .iter()
                .map(|r| r.get::<i64>(0))
                .collect::<Result<_, _>>()
                .map_err(OpenError::Check)?
        } else {
            BTreeSet::new()
        };
        if let Some(unknown) = applied.difference(&known).next() {
            // A newer build migrated: migrations only expand the schema, so this one still
            // works on it (a rolling upgrade, a rollback).
            tracing::warn!(
                migration = unknown,
                "the database schema is newer than this pimgate; running on it (migrations only add)"
            );
        }
        let missing = known.difference(&applied).count();
        if missing > 0 {
            return Err(OpenError::Behind {
                applied: known.len() - missing,
                known: known.len(),
            });
        }
        Ok(())
    }

    /// The connection pool's (idle, in use, maximum), for the metrics.
    pub fn pool_usage(&self) -> (u64, u64, u64) {
        self.pool.usage()
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn sql(&self) -> Sql {
        Sql::new(self.backend)
    }

    /// Runs a read on a connection of its own. A read that finds its connection cut (the
    /// database restarted since the connection was last used) runs once more on another:
    /// reads are always safe to repeat.
    async fn read_all(&self, sql: &Sql) -> Result<Vec<Row>> {
        let mut c = self.pool.acquire().await?;
        match sql.fetch_all(&mut c.conn()).await {
            Err(e) if exec::is_cut(&e) => {
                drop(c);
                let mut c = self.pool.acquire().await?;
                Ok(sql.fetch_all(&mut c.conn()).await?)
            }
            other => Ok(other?),
        }
    }

    async fn read_optional(&self, sql: &Sql) -> Result<Option<Row>> {
        let mut c = self.pool.acquire().await?;
        match sql.fetch_optional(&mut c.conn()).await {
            Err(e) if exec::is_cut(&e) => {
                drop(c);
                let mut c = self.pool.acquire().await?;
                Ok(sql.fetch_optional(&mut c.conn()).await?)
            }
            other => Ok(other?),
        }
    }

    /// Runs one statement on a connection of its own; the rows it changed.
    async fn write_one(&self, sql: &Sql) -> std::result::Result<u64, sqlx::Error> {
        let mut c = self.pool.acquire().await?;
        sql.execute(&mut c.conn()).await
    }

    async fn begin_write(&self) -> Result<Tx> {
        Ok(self.pool.begin_write().await?)
    }

    /// One record of connection `conn` by id; with `lock`, the row stays locked until the
    /// transaction ends.
    async fn find<T: Table>(
        &self,
        c: &mut Conn<'_>,
        conn: &ConnectionId,
        id: &str,
        lock: bool,
    ) -> Result<Option<T::Record>> {
        let Some(sql) = self.find_sql::<T>(conn, id, lock) else {
            return Ok(None);
        };
        let row = sql.fetch_optional(c).await?;
        row.as_ref().map(T::decode).transpose()
    }

    /// The statement [`Self::find`] runs; `None` for an id no record can have.
    fn find_sql<T: Table>(&self, conn: &ConnectionId, id: &str, lock: bool) -> Option<Sql> {
        if !crate::directory::limits::is_storable_key(id) {
            // No record has such an id; PostgreSQL would refuse the bind (U+0000).
            return None;
        }
        let mut sql = self.sql();
        sql.push("SELECT ")
            .push(&T::columns(self.backend))
            .push(" FROM ")
            .push(T::TABLE)
            .push(" r WHERE r.connection = ")
            .bind_text(conn.as_str())
            .push(" AND r.id = ")
            .bind_text(id);
        if lock {
            sql.push(self.backend.for_update());
        }
        Some(sql)
    }

    /// A record by id, outside any transaction.
    async fn get<T: Table>(&self, conn: &ConnectionId, id: &str) -> Result<Option<T::Record>> {
        let Some(sql) = self.find_sql::<T>(conn, id, false) else {
            return Ok(None);
        };
        self.read_optional(&sql)
            .await?
            .as_ref()
            .map(T::decode)
            .transpose()
    }

    /// Locks the record a write targets and checks the version the caller expects.
    async fn lock<T: Table>(&self, c: &mut Conn<'_>, at: Target<'_>) -> Result<T::Record> {
        let current = self
            .find::<T>(c, at.conn, at.id, true)
            .await?
            .ok_or(DirectoryError::NotFound(T::KIND))?;
        if let Some(v) = at.expect
            && v != T::version(&current)
        {
            return Err(DirectoryError::VersionMismatch {
                current: T::version(&current),
            });
        }
        Ok(current)
    }

    /// A filtered, sorted page of a connection's records and the number of matches.
    async fn list<T: Table>(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<T::Record>> {
        let kind = T::KIND;
        let mut condition = self.sql();
        condition.push("r.connection = ").bind_text(conn.as_str());
        if let Some(f) = &spec.filter {
            condition.push(" AND ");
            filter::compile(f, kind, &self.catalogue, &mut condition)?;
        }
        let mut count = condition.clone();
        count.text = format!(
            "SELECT COUNT(*) FROM {} r WHERE {}",
            T::TABLE,
            condition.text
        );
        let mut reader = self.pool.acquire().await?;
        let mut c = reader.conn();
        let total: i64 = count.fetch_one(&mut c).await?.get(0)?;
        let offset = spec.start_index.max(1) - 1;
        if spec.count <= 0 || offset >= total {
            return Ok(Page {
                total,
                items: Vec::new(),
            });
        }
        let mut page = condition;
        page.text = format!(
            "SELECT {} FROM {} r WHERE {}",
            T::columns(self.backend),
            T::TABLE,
            page.text
        );
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
        let rows = page.fetch_all(&mut c).await?;
        let items = rows.iter().map(T::decode).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { total, items })
    }
}

/// The table of records of one kind: how to read its rows.
trait Table: Records {
    const TABLE: &'static str;
    fn columns(backend: Backend) -> String;
    fn decode(row: &Row) -> Result<Self::Record>;
}

/// The columns every record table starts with: id, document, created, modified, version.
fn record_columns(backend: Backend) -> String {
    format!(
        "r.id, {}, r.created, r.last_modified, r.version",
        backend.doc_column("r")
    )
}

/// The common head of a record row, in [`record_columns`] order.
struct Head<K: Kind> {
    id: String,
    doc: Document<K>,
    created: Timestamp,
    last_modified: Timestamp,
    version: i64,
}

fn head<K: Kind>(row: &Row) -> Result<Head<K>> {
    Ok(Head {
        id: row.get(0)?,
        doc: Document::from_stored(&row.get::<String>(1)?)?,
        created: timestamp(row, 2)?,
        last_modified: timestamp(row, 3)?,
        version: row.get(4)?,
    })
}

/// How many columns [`Table::columns`] of users has (the next one is free for extras).
const USER_COLUMNS: usize = 5;

impl Table for UserKind {
    const TABLE: &'static str = "users";

    fn columns(backend: Backend) -> String {
        record_columns(backend)
    }

    fn decode(row: &Row) -> Result<UserRecord> {
        let h = head::<UserKind>(row)?;
        Ok(UserRecord {
            id: h.id,
            doc: h.doc,
            created: h.created,
            last_modified: h.last_modified,
            version: h.version,
        })
    }
}

impl Table for GroupKind {
    const TABLE: &'static str = "groups";

    fn columns(backend: Backend) -> String {
        format!("{}, r.member_count", record_columns(backend))
    }

    fn decode(row: &Row) -> Result<GroupRecord> {
        let h = head::<GroupKind>(row)?;
        Ok(GroupRecord {
            id: h.id,
            doc: h.doc,
            created: h.created,
            last_modified: h.last_modified,
            version: h.version,
            member_count: row.get(5)?,
        })
    }
}

fn timestamp(row: &Row, idx: usize) -> Result<Timestamp> {
    let raw: String = row.get(idx)?;
    Timestamp::parse_rfc3339(&raw)
        .ok_or_else(|| DirectoryError::corrupt(format!("timestamp {raw:?}")))
}

/// A unique-constraint violation becomes a conflict on `attribute`.
fn uniqueness(err: sqlx::Error, attribute: &'static str, value: &str) -> DirectoryError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => DirectoryError::Conflict {
            attribute,
            value: value.to_owned(),
        },
        _ => err.into(),
    }
}

#[async_trait]
impl StoreHealth for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> Result<()> {
        let mut c = self.pool.acquire().await?;
        c.conn().ping().await?;
        Ok(())
    }
}
