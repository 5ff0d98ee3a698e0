//! Deprovisioning reaches sign-ins: when the IdP deletes or deactivates a user over SCIM,
//! every grant of theirs is revoked in the same path that invalidates their claims, before
//! the SCIM response is sent. Their refresh tokens stop working, and introspection and
//! userinfo answer for their access tokens as revoked, on every replica (grants live in the
//! store). A change of roles only keeps the grants: the next token says the new claims.

use std::sync::Arc;

use crate::clock::Clock;
use crate::directory::events::{Change, ChangeListener, DirectoryEvent};
use crate::directory::{GrantStore, UserStore};

/// Revokes the grants of users a directory change deprovisions.
#[derive(Debug)]
pub struct GrantRevoker {
    grants: Arc<dyn GrantStore>,
    users: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
}

impl GrantRevoker {
    pub fn new(
        grants: Arc<dyn GrantStore>,
        users: Arc<dyn UserStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            grants,
            users,
            clock,
        }
    }
}

#[async_trait::async_trait]
impl ChangeListener for GrantRevoker {
    async fn on_change(&self, event: &DirectoryEvent) {
        let check_active = match event.change {
            Change::UserDeleted => false,
            Change::UserUpdated => true,
            _ => return,
        };
        for user in &event.users {
            if check_active {
                match self.users.get_user(&event.connection, user).await {
                    Ok(Some(u)) if u.doc.active() => continue,
                    Ok(_) => {}
                    Err(e) => {
                        // Unknown state: revoke rather than leave a deprovisioned user signed in.
                        tracing::error!(error = %e, user = %user, "cannot read a changed user; revoking their grants");
                    }
                }
            }
            match self
                .grants
                .revoke_user_grants(&event.connection, user, self.clock.now())
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(connection = %event.connection, user = %user, grants = n, "deprovisioned: sign-in grants revoked");
                }
                Err(e) => {
                    tracing::error!(error = %e, connection = %event.connection, user = %user, "deprovisioned user's grants could not be revoked");
                }
            }
        }
    }
}
