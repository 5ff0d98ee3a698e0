//! Deprovisioning reaches sign-ins: when the IdP deletes or deactivates a user over SCIM,
//! every session and grant of theirs ends in the same path that invalidates their claims,
//! before the SCIM response is sent. Their refresh tokens stop working, introspection and
//! userinfo answer for their access tokens as revoked, on every replica (sessions and
//! grants live in the store), and the clients that asked for it get a back-channel logout.
//! A change of roles only keeps the sessions: the next token says the new claims.

use std::sync::Arc;

use super::sessions::Sessions;
use crate::directory::events::{Change, ChangeListener, DirectoryEvent};
use crate::directory::{SessionSelector, UserStore};

/// Ends the sessions of users a directory change deprovisions.
#[derive(Debug)]
pub struct GrantRevoker {
    sessions: Sessions,
    users: Arc<dyn UserStore>,
}

impl GrantRevoker {
    pub fn new(sessions: Sessions, users: Arc<dyn UserStore>) -> Self {
        Self { sessions, users }
    }
}

#[async_trait::async_trait]
impl ChangeListener for GrantRevoker {
    async fn on_change(&self, event: &DirectoryEvent) {
        let (check_active, reason) = match event.change {
            Change::UserDeleted => (false, "deprovisioned: deleted"),
            Change::UserUpdated => (true, "deprovisioned: deactivated"),
            _ => return,
        };
        for user in &event.users {
            if check_active {
                match self.users.get_user(&event.connection, user).await {
                    Ok(Some(u)) if u.doc.active() => continue,
                    Ok(_) => {}
                    Err(e) => {
                        // Unknown state: end rather than leave a deprovisioned user signed in.
                        tracing::error!(error = %e, user = %user, "cannot read a changed user; ending their sessions");
                    }
                }
            }
            match self
                .sessions
                .end(
                    SessionSelector::User(event.connection.clone(), user.clone()),
                    reason,
                )
                .await
            {
                Ok(ended) if ended.is_empty() => {}
                Ok(ended) => {
                    tracing::info!(connection = %event.connection, user = %user, grants = ended.len(), "deprovisioned: sessions ended and sign-ins revoked");
                }
                Err(e) => {
                    tracing::error!(error = %e, connection = %event.connection, user = %user, "deprovisioned user's sessions could not be ended");
                }
            }
        }
    }
}
