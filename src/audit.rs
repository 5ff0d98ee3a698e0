//! The sign-in audit trail: every login, refresh, revocation, logout and refused attempt is
//! one [`AuditEvent`] (who, which connection, client and session, why), written to the log
//! (target `pimgate::audit`) and to the store, where `pimgate audit --user ...` reads it.
//!
//! Recording never delays or fails the request it describes: the store write runs beside
//! it, at most [`MAX_PENDING_WRITES`] at once (beyond that, under a flood, only the log line
//! is written, and that is logged), and a failed write is logged (the log line is written
//! either way).

use std::sync::Arc;

use crate::clock::Clock;
use crate::directory::{AuditEvent, AuditStore};

/// Audit rows being written at once, at most.
pub const MAX_PENDING_WRITES: usize = 256;

/// Whether the audited attempt succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
        }
    }
}

/// One event being described (the time is added when it is recorded).
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub connection: Option<String>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub session_id: Option<String>,
    pub reason: Option<String>,
}

impl Entry {
    pub fn user(connection: impl ToString, user_id: impl Into<String>) -> Self {
        Entry {
            connection: Some(connection.to_string()),
            user_id: Some(user_id.into()),
            ..Entry::default()
        }
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn session(mut self, session_id: Option<impl Into<String>>) -> Self {
        self.session_id = session_id.map(Into::into);
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// The audit trail (a cheap handle).
#[derive(Debug, Clone)]
pub struct Audit {
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
    pending: Arc<tokio::sync::Semaphore>,
}

impl Audit {
    pub fn new(store: Arc<dyn AuditStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            pending: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_WRITES)),
        }
    }

    /// Records `kind` (`login`, `refresh`, `revoke`, `logout`, ...) with its outcome.
    pub fn record(&self, kind: &'static str, outcome: Outcome, e: Entry) {
        let event = AuditEvent {
            at: self.clock.now(),
            kind: kind.to_owned(),
            outcome: outcome.as_str().to_owned(),
            connection: e.connection,
            user_id: e.user_id,
            user_name: e.user_name,
            client_id: e.client_id,
            session_id: e.session_id,
            reason: e.reason,
        };
        tracing::info!(
            target: "pimgate::audit",
            kind,
            outcome = outcome.as_str(),
            connection = event.connection.as_deref(),
            user = event.user_id.as_deref(),
            user_name = event.user_name.as_deref(),
            client = event.client_id.as_deref(),
            session = event.session_id.as_deref(),
            reason = event.reason.as_deref(),
            "audit"
        );
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::warn!(
                kind,
                "{MAX_PENDING_WRITES} audit writes are pending: this event is only in this log"
            );
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.record_audit(&event).await {
                tracing::error!(error = %e, kind = %event.kind, "an audit event could not be stored (it is in this log)");
            }
            drop(permit);
        });
    }

    /// The newest events of a user (pimgate id or userName), newest first, as text lines.
    pub async fn lines_of_user(
        &self,
        user: &str,
        limit: u32,
    ) -> Result<Vec<String>, crate::directory::DirectoryError> {
        Ok(self
            .store
            .audit_of_user(user, limit)
            .await?
            .iter()
            .map(describe)
            .collect())
    }
}

/// One event as a line: time, kind, outcome, then the fields that are set.
pub fn describe(e: &AuditEvent) -> String {
    let mut line = format!("{}\t{}\t{}", e.at.to_rfc3339(), e.kind, e.outcome);
    for (k, v) in [
        ("connection", &e.connection),
        ("user", &e.user_id),
        ("user_name", &e.user_name),
        ("client", &e.client_id),
        ("session", &e.session_id),
        ("reason", &e.reason),
    ] {
        if let Some(v) = v {
            line.push_str(&format!("\t{k}={v}"));
        }
    }
    line
}
