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

impl From<sqlx::Error> for DirectoryError {
    /// Unreachable, closed or exhausted pools and broken connections are transient; anything
    /// else (a constraint this layer did not expect, a statement error) is not.
    fn from(e: sqlx::Error) -> Self {
        let transient = matches!(
            e,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
        );
        if transient {
            DirectoryError::Unavailable(StoreFault::Sql(e))
        } else {
            DirectoryError::Internal(StoreFault::Sql(e))
        }
    }
}

impl DirectoryError {
    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        DirectoryError::Internal(StoreFault::Corrupt(detail.into()))
    }

    pub(crate) fn invalid(path: &str, detail: impl Into<String>) -> Self {
        DirectoryError::InvalidValue {
            path: path.to_owned(),
            detail: detail.into(),
        }
    }
}
