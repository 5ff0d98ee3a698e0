//! Directory change events: after every committed change to a user, group or membership, the
//! service layer publishes a [`DirectoryEvent`] saying which connection and which users (and
//! groups) it touched.
//!
//! Consumers subscribe to an [`EventBus`]. Today the audit log is the only consumer; the
//! access model invalidates cached claims from the same events. Events are published only
//! after commit, so a consumer never sees a change that was rolled back.

use tokio::sync::broadcast;

use super::ConnectionId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    UserCreated,
    UserUpdated,
    UserDeleted,
    GroupCreated,
    /// The group's own attributes changed (e.g. a rename); its members are affected where a
    /// rule matches on group names, and consumers expand them through the store.
    GroupUpdated,
    GroupDeleted,
    MembershipChanged,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryEvent {
    pub connection: ConnectionId,
    pub change: Change,
    /// Users whose own record or direct membership changed.
    pub users: Vec<String>,
    /// Groups whose record or membership changed (the changed group, and nested groups that
    /// joined or left it).
    pub groups: Vec<String>,
}

/// An in-process broadcast of directory events.
///
/// Publishing never blocks and never fails a request: with no subscriber the event is dropped,
/// and a subscriber that falls behind is told how many events it missed (it must then treat
/// everything as changed).
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<DirectoryEvent>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self { tx }
    }

    pub fn publish(&self, event: DirectoryEvent) {
        // An error only means nobody listens right now.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DirectoryEvent> {
        self.tx.subscribe()
    }
}

/// Writes every event to the audit log (target `pimgate::audit`) until the bus closes.
pub async fn audit_log(mut rx: broadcast::Receiver<DirectoryEvent>) {
    loop {
        match rx.recv().await {
            Ok(event) => tracing::info!(
                target: "pimgate::audit",
                connection = %event.connection,
                change = ?event.change,
                users = event.users.len(),
                groups = event.groups.len(),
                user_ids = ?event.users.iter().take(20).collect::<Vec<_>>(),
                group_ids = ?event.groups.iter().take(20).collect::<Vec<_>>(),
                "directory changed"
            ),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(target: "pimgate::audit", missed, "audit log fell behind; events were dropped");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}
