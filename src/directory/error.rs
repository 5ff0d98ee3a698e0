//! Why a directory operation did not happen, in the directory's own terms. Protocol layers
//! map these once (SCIM to RFC 7644 §3.12 bodies in `scim::error`); nothing here knows a
//! status code or a `scimType`, and no caller ever needs to read an error's text to tell
//! one case from another.

use super::kind::ResourceKind;

/// The result of a directory operation.
pub type Result<T, E = DirectoryError> = std::result::Result<T, E>;

/// A failed directory operation.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No such resource in this connection.
    #[error("{0} not found")]
    NotFound(ResourceKind),
    /// A uniqueness rule: `attribute` already has `value` in this connection.
    #[error("{attribute} {value:?} is already in use")]
    Conflict {
        attribute: &'static str,
        value: String,
    },
    /// The caller expected another version than the stored one (`If-Match`).
    #[error("version mismatch: the current version is {current}")]
    VersionMismatch { current: i64 },
    /// A value the directory refuses; `path` names the attribute.
    #[error("{detail}")]
    InvalidValue { path: String, detail: String },
    /// A filter the directory cannot evaluate.
    #[error(transparent)]
    InvalidFilter(#[from] FilterError),
    /// An attribute the directory cannot order by.
    #[error("{0} cannot be sorted on")]
    Unsortable(String),
    /// A transient failure (the database is unreachable, restarting or saturated): the same
    /// request can succeed later. The cause is for the log, never for a client.
    #[error("the directory store is unavailable: {0}")]
    Unavailable(#[source] StoreFault),
    /// A failure that retrying will not fix (a bug or a damaged row).
    #[error("directory store failure: {0}")]
    Internal(#[source] StoreFault),
}

/// Why a filter cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The filter names an attribute the resource type does not have.
    #[error("unknown attribute {0:?}")]
    UnknownAttribute(String),
    /// The attribute exists but filters cannot look at it.
    #[error("{0} cannot be used in a filter")]
    NotFilterable(String),
    /// An operator or value that does not fit the attribute (`active gt "x"`).
    #[error("{0}")]
    Mismatch(String),
    /// The filter asks for more work than one request may cause; the detail names the
    /// limit ([`crate::directory::limits`]).
    #[error("{0}")]
    TooCostly(String),
}

/// What went wrong below the directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreFault {
    #[error(transparent)]
    Sql(sqlx::Error),
    /// A stored record could not be read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// An edit kept losing to concurrent changes of the same record.
    #[error("the record changed under {attempts} edits in a row")]
    Contention { attempts: u32 },
}

/// How a database error is to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot serve now (unreachable, restarting, shutting down, saturated,
    /// busy, or the statement ran out of time): the same request can succeed later.
    Transient,
    /// The database rolled the transaction back because of a concurrent one (serialization
    /// failure, deadlock): running it again is safe and usually succeeds at once.
    Retryable,
    /// The value cannot be stored as sent (a limit of the database): the request must change.
    Refused,
    /// Anything else: a bug, or a state retrying will not fix.
    Other,
}

impl StoreFault {
    /// How this fault is to be answered.
    pub fn failure(&self) -> Failure {
        match self {
            StoreFault::Sql(e) => classify(e),
            StoreFault::Contention { .. } => Failure::Transient,
            StoreFault::Corrupt(_) => Failure::Other,
        }
    }
}

/// Classifies a database error by kind and SQLSTATE (PostgreSQL) or result code (SQLite).
pub(crate) fn classify(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Failure::Transient,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                postgres_failure(pg.code())
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map_or(Failure::Other, sqlite_failure)
            } else {
                Failure::Other
            }
        }
        _ => Failure::Other,
    }
}

/// PostgreSQL SQLSTATE classes (Appendix A of its manual).
fn postgres_failure(code: &str) -> Failure {
    match code {
        // serialization_failure, deadlock_detected: rolled back, safe to run again.
        "40001" | "40P01" => Failure::Retryable,
        // query_canceled (statement_timeout), admin_shutdown, crash_shutdown,
        // cannot_connect_now, idle session timeout.
        "57014" | "57P01" | "57P02" | "57P03" | "57P05" => Failure::Transient,
        // Class 08: connection exception; class 53: insufficient resources (too many
        // connections, out of memory or disk).
        c if c.starts_with("08") || c.starts_with("53") => Failure::Transient,
        // Class 22: data exception (a value the column cannot hold); class 54: program limit
        // exceeded (an index row or a statement too large).
        c if c.starts_with("22") || c.starts_with("54") => Failure::Refused,
        _ => Failure::Other,
    }
}

/// SQLite result codes (the primary code is the low byte of the extended one).
fn sqlite_failure(code: i32) -> Failure {
    match code & 0xff {
        // BUSY, LOCKED, INTERRUPT (the request's deadline), IOERR, FULL, CANTOPEN, PROTOCOL.
        5 | 6 | 9 | 10 | 13 | 14 | 15 => Failure::Transient,
        // TOOBIG, RANGE: a value or statement beyond a limit.
        18 | 25 => Failure::Refused,
        _ => Failure::Other,
    }
}

impl From<sqlx::Error> for DirectoryError {
    fn from(e: sqlx::Error) -> Self {
        match classify(&e) {
            Failure::Transient | Failure::Retryable => {
                DirectoryError::Unavailable(StoreFault::Sql(e))
            }
            Failure::Refused => {
                tracing::warn!(error = %e, "the database refused a value");
                DirectoryError::InvalidValue {
                    path: String::new(),
                    detail: "a value is beyond what the directory can store; shorten it".into(),
                }
            }
            Failure::Other => DirectoryError::Internal(StoreFault::Sql(e)),
        }
    }
}

impl DirectoryError {
    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        DirectoryError::Internal(StoreFault::Corrupt(detail.into()))
    }

    /// Whether running the same operation again is safe and likely to succeed (the database
    /// rolled it back because of a concurrent transaction).
    pub fn is_retryable(&self) -> bool {
        matches!(self, DirectoryError::Unavailable(f) if f.failure() == Failure::Retryable)
    }

    pub(crate) fn invalid(path: &str, detail: impl Into<String>) -> Self {
        DirectoryError::InvalidValue {
            path: path.to_owned(),
            detail: detail.into(),
        }
    }
}
