//! Running statements on either backend with its own sqlx driver (no `Any` layer between):
//! pools, pooled connections and write transactions of SQLite or PostgreSQL, and the rows
//! they return. Each backend is configured for bounded work here:
//! - PostgreSQL connections run with `statement_timeout` set to the request timeout, so a
//!   statement never outlives the request that started it;
//! - SQLite statements run under a progress handler that interrupts them at the deadline of
//!   the request that took the connection ([`crate::deadline`]).

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection as _, Decode, Row as _, Transaction, Type};

use super::dialect::{Bind, Sql};
use crate::directory::model::Backend;

/// How often (in SQLite virtual-machine instructions) a running statement checks its
/// deadline.
const PROGRESS_STEPS: i32 = 10_000;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a free connection before it is answered 503.
    pub acquire_timeout: Duration,
    /// The longest any statement may run or wait for a lock (PostgreSQL
    /// `statement_timeout`, SQLite's busy timeout); running SQLite statements also stop at
    /// their request's deadline.
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// A connection pool of either backend.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection of either backend, borrowed for the statements of one operation.
pub(crate) enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

/// A connection taken from the pool (returned when dropped).
pub(crate) enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// A write transaction (rolled back when dropped without `commit`).
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A row of either backend.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Pool {
    /// Connects to a SQLite file (created when missing) or a PostgreSQL database.
    pub async fn connect(
        backend: Backend,
        url: &str,
        settings: &PoolSettings,
    ) -> Result<Self, sqlx::Error> {
        Ok(match backend {
            Backend::Sqlite => {
                // WAL lets readers run beside the one writer; the busy timeout makes writers
                // queue instead of failing, for no longer than a request may take; foreign
                // keys keep cascades honest.
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(settings.statement_timeout)
                    // Unicode-aware case-insensitive comparison and matching for filters
                    // (SQLite's own `lower()`, `LIKE` and `NOCASE` fold ASCII only).
                    .collation(
                        super::filter::SQLITE_CI,
                        super::filter::compare_ignoring_case,
                    )
                    .with_regexp();
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(settings.max_connections)
                        .acquire_timeout(settings.acquire_timeout)
                        .connect_with(options)
                        .await?,
                )
            }
            Backend::Postgres => {
                let ms = settings.statement_timeout.as_millis().to_string();
                // statement_timeout also bounds lock waits; the application name shows
                // pimgate's sessions in pg_stat_activity.
                let mut options = PgConnectOptions::from_str(url)?
                    .options([("statement_timeout", ms.as_str())])
                    .application_name("pimgate");
                if loopback_without_sslmode(url, &options) {
                    // TLS to a server on the same host protects nothing and costs every
                    // round trip; an explicit `sslmode` in the URL is always obeyed.
                    options = options.ssl_mode(sqlx::postgres::PgSslMode::Disable);
                }
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(settings.max_connections)
                        .acquire_timeout(settings.acquire_timeout)
                        // sqlx pings every connection when it returns to the pool; a ping
                        // before each use as well would double the round trips of a busy
                        // pool. Only a connection idle for a while (it may have been cut, by
                        // a restart say) is checked before use.
                        .test_before_acquire(false)
                        .before_acquire(|conn, meta| {
                            Box::pin(async move {
                                if meta.idle_for < IDLE_CHECK_AFTER {
                                    return Ok(true);
                                }
                                conn.ping().await.map(|()| true)
                            })
                        })
                        .connect_with(options)
                        .await?,
                )
            }
        })
    }

    /// (idle, in use, maximum) connections now.
    pub fn usage(&self) -> (u64, u64, u64) {
        let (size, idle, max) = match self {
            Pool::Sqlite(p) => (p.size(), p.num_idle(), p.options().get_max_connections()),
            Pool::Postgres(p) => (p.size(), p.num_idle(), p.options().get_max_connections()),
        };
        let idle = idle as u64;
        (idle, u64::from(size).saturating_sub(idle), u64::from(max))
    }

    /// A connection for reads.
    pub async fn acquire(&self) -> Result<Pooled, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p) => {
                let mut c = p.acquire().await?;
                bound_by_deadline(&mut c).await?;
                Pooled::Sqlite(c)
            }
            Pool::Postgres(p) => Pooled::Postgres(p.acquire().await?),
        })
    }

    /// A write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`), so a
    /// read-then-write never fails on a lock upgrade.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                bound_by_deadline(&mut tx).await?;
                Tx::Sqlite(tx)
            }
            // A cut connection fails at BEGIN, before anything is written: take another.
            Pool::Postgres(p) => Tx::Postgres(match p.begin().await {
                Err(e) if is_cut(&e) => p.begin().await?,
                other => other?,
            }),
        })
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// Applies `migrator` (sqlx takes a database lock, so concurrent callers apply each
    /// migration once). Migrations a newer build applied are left alone: migrations only
    /// expand the schema (a later release contracts it), so during a rolling upgrade or a
    /// rollback an older build keeps running beside a newer one.
    pub async fn migrate(
        &self,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<(), sqlx::migrate::MigrateError> {
        let tolerant = sqlx::migrate::Migrator {
            migrations: migrator.migrations.clone(),
            ignore_missing: true,
            locking: migrator.locking,
            no_tx: migrator.no_tx,
            table_name: migrator.table_name.clone(),
            create_schemas: migrator.create_schemas.clone(),
        };
        match self {
            Pool::Sqlite(p) => tolerant.run(p).await,
            Pool::Postgres(p) => tolerant.run(p).await,
        }
    }
}

/// Whether an error says the connection itself is gone (cut by a database restart or the
/// network), not that the statement failed: the same statement may then run on another.
pub(crate) fn is_cut(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| {
                matches!(pg.code(), "57P01" | "57P02") || pg.code().starts_with("08")
            }),
        _ => false,
    }
}

/// A pooled PostgreSQL connection idle this long is pinged before it is used.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);

/// Whether `url` names a PostgreSQL server on this host (loopback or a Unix socket) and
/// leaves `sslmode` to the default.
fn loopback_without_sslmode(url: &str, options: &PgConnectOptions) -> bool {
    if url.contains("sslmode=") {
        return false;
    }
    let host = options.get_host();
    host.starts_with('/')
        || host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Makes the statements run on `conn` stop at the deadline of the current request (none
/// outside a request).
async fn bound_by_deadline(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    match crate::deadline::current() {
        Some(deadline) => {
            handle.set_progress_handler(PROGRESS_STEPS, move || Instant::now() < deadline);
        }
        None => handle.remove_progress_handler(),
    }
    Ok(())
}

impl Pooled {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Sqlite(c) => Conn::Sqlite(c),
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(t) => Conn::Sqlite(t),
            Tx::Postgres(t) => Conn::Postgres(t),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }
}

impl Conn<'_> {
    pub async fn ping(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(c) => c.ping().await,
            Conn::Postgres(c) => c.ping().await,
        }
    }
}

impl Row {
    /// Column `i`, decoded.
    pub fn get<T>(&self, i: usize) -> Result<T, sqlx::Error>
    where
        T: for<'r> Decode<'r, Sqlite>
            + Type<Sqlite>
            + for<'r> Decode<'r, Postgres>
            + Type<Postgres>,
    {
        match self {
            Row::Sqlite(r) => r.try_get(i),
            Row::Postgres(r) => r.try_get(i),
        }
    }
}

/// The statement with its values bound, for backend `$db`.
macro_rules! query {
    ($sql:expr, $db:ty) => {{
        let mut q = sqlx::query::<$db>(AssertSqlSafe($sql.text.clone()));
        for b in &$sql.binds {
            q = match b {
                Bind::Text(s) | Bind::Doc(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
                Bind::Bool(v) => q.bind(*v),
                Bind::Float(f) => q.bind(*f),
                Bind::Null => q.bind(None::<&str>),
            };
        }
        q
    }};
}

impl Sql {
    pub async fn fetch_all(&self, c: &mut Conn<'_>) -> Result<Vec<Row>, sqlx::Error> {
        Ok(match c {
            Conn::Sqlite(c) => query!(self, Sqlite)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Conn::Postgres(c) => query!(self, Postgres)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub async fn fetch_optional(&self, c: &mut Conn<'_>) -> Result<Option<Row>, sqlx::Error> {
        Ok(match c {
            Conn::Sqlite(c) => query!(self, Sqlite)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Sqlite),
            Conn::Postgres(c) => query!(self, Postgres)
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Postgres),
        })
    }

    pub async fn fetch_one(&self, c: &mut Conn<'_>) -> Result<Row, sqlx::Error> {
        self.fetch_optional(c)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Runs the statement; the number of rows it changed.
    pub async fn execute(&self, c: &mut Conn<'_>) -> Result<u64, sqlx::Error> {
        Ok(match c {
            Conn::Sqlite(c) => query!(self, Sqlite)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Conn::Postgres(c) => query!(self, Postgres)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(url: &str) -> bool {
        loopback_without_sslmode(url, &PgConnectOptions::from_str(url).unwrap())
    }

    #[test]
    fn tls_is_left_out_only_on_this_host_without_an_explicit_sslmode() {
        assert!(loopback("postgres://u@127.0.0.1:5432/db"));
        assert!(loopback("postgres://u@localhost/db"));
        assert!(loopback("postgres://u@[::1]:5432/db"));
        assert!(loopback("postgres://u@%2Fvar%2Frun%2Fpostgresql/db"));
        assert!(!loopback("postgres://u@127.0.0.1/db?sslmode=require"));
        assert!(!loopback("postgres://u@db.example.com/db"));
        assert!(!loopback("postgres://u@10.0.0.5/db"));
    }
}
