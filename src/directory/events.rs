//! Directory change events: after every committed change to a user, group or membership, the
//! [`Directory`](super::Directory) publishes a [`DirectoryEvent`] saying which connection and
//! which users (and groups) it touched.
//!
//! The claims cache listens (awaited before the SCIM response is sent, so the next read sees
//! the change); the audit log subscribes. Events are published only
//! after commit, so a consumer never sees a change that was rolled back.

use tokio::sync::broadcast;

use crate::connections::ConnectionId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    UserCreated,
    UserUpdated,
    UserDeleted,
    GroupCreated,
    /// The group's own attributes changed (a rename, a new `externalId`); consumers expand
    /// its members through the store (their claims may depend on the group's name or id, and
    /// their SCIM representations list its name).
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

/// Something that must act on a change before the request that made it is answered (the
/// claims cache: a membership removed through SCIM must be gone from the very next read).
#[async_trait::async_trait]
pub trait ChangeListener: Send + Sync + 'static {
    async fn on_change(&self, event: &DirectoryEvent);
}

/// In-process delivery of directory events.
///
/// [`publish`](EventBus::publish) first awaits every [`ChangeListener`] (so their work is
/// done when the SCIM response is sent), then broadcasts to subscribers such as the audit log.
/// Broadcasting never blocks: a subscriber that falls behind is told how many events it
/// missed.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<DirectoryEvent>,
    listeners: Vec<std::sync::Arc<dyn ChangeListener>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self {
            tx,
            listeners: Vec::new(),
        }
    }

    /// Adds a listener that every publish awaits.
    #[must_use]
    pub fn with_listener(mut self, listener: std::sync::Arc<dyn ChangeListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Delivers a committed change: listeners first (awaited), then subscribers.
    pub async fn publish(&self, event: DirectoryEvent) {
        for l in &self.listeners {
            l.on_change(&event).await;
        }
        // An error only means nobody subscribes right now.
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
