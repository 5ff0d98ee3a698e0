//! pimgate browser sessions. A sign-in at the connection's IdP starts one; the browser holds
//! it in a cookie ([`SESSION_COOKIE`]: HttpOnly, SameSite=Lax, Secure on https), so a second
//! client signs the person in without another trip to the IdP. Each client's sign-in is a
//! grant naming the session.
//!
//! Where things live:
//! - the session itself is in the store (PostgreSQL or SQLite), so a restart or another
//!   replica loses nothing, and an ended session is ended everywhere at once;
//! - its hot state, the last time it was used, is in Redis where configured (in process
//!   otherwise), refreshed on every use (a client signing in, a refresh); the store keeps a
//!   coarser copy, written when the session signs a client in and the copy is older than
//!   [`SEEN_WRITE_BEHIND_MS`], which is what counts when Redis lost the hot copy.
//!
//! A session ends after `oidc.session_idle_seconds` without use, `oidc.session_max_seconds`
//! after its sign-in, or when something ends it ([`Sessions::end`]): a logout at pimgate, a
//! back-channel logout from the IdP, or SCIM deprovisioning. Ending it revokes its grants
//! (refresh tokens included, `offline_access` ones too) in the same transaction, and sends
//! back-channel logout tokens to the clients that asked for them.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::backchannel::LogoutSender;
use crate::audit::{Audit, Entry, Outcome};
use crate::clock::{Clock, Timestamp};
use crate::connections::ConnectionId;
use crate::directory::{DirectoryError, EndedGrant, SessionRow, SessionSelector, SessionStore};
use crate::ephemeral::Ephemeral;
use crate::metrics::Metrics;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "pimgate_session";
/// The store's copy of "last used" is written at most this often per session.
pub const SEEN_WRITE_BEHIND_MS: u64 = 5 * 60 * 1000;

/// What a new session is made of (from the IdP's verified answer).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub connection: ConnectionId,
    pub user_id: String,
    pub upstream_sub: String,
    pub upstream_sid: Option<String>,
    pub upstream_id_token: Option<String>,
    pub token_groups: Option<Vec<String>>,
    pub groups_overage: bool,
    pub auth_time: Timestamp,
}

/// The sessions (a cheap handle).
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn SessionStore>,
    hot: Arc<dyn Ephemeral>,
    logouts: LogoutSender,
    audit: Audit,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    idle: Duration,
    max: Duration,
    secure: bool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Hex SHA-256 of a cookie value.
pub fn cookie_hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The parts [`Sessions`] is built from.
#[derive(Debug)]
pub struct SessionParts {
    pub store: Arc<dyn SessionStore>,
    pub hot: Arc<dyn Ephemeral>,
    pub logouts: LogoutSender,
    pub audit: Audit,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    pub idle: Duration,
    pub max: Duration,
    /// Mark the cookie `Secure` (an https issuer).
    pub secure: bool,
}

impl Sessions {
    pub fn new(p: SessionParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: p.store,
                hot: p.hot,
                logouts: p.logouts,
                audit: p.audit,
                metrics: p.metrics,
                clock: p.clock,
                idle: p.idle,
                max: p.max,
                secure: p.secure,
            }),
        }
    }

    pub fn audit(&self) -> &Audit {
        &self.inner.audit
    }

    /// The `Set-Cookie` value holding a session (`value` empty and `max_age` 0 clear it).
    pub fn cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            if self.inner.secure { "; Secure" } else { "" }
        )
    }

    /// Starts a session; it and the cookie value for the browser (only its hash is kept).
    pub async fn start(&self, n: NewSession) -> Result<(SessionRow, String), DirectoryError> {
        let now = self.inner.clock.now();
        let value = crate::token::random_b64url();
        let row = SessionRow {
            id: uuid::Uuid::now_v7().to_string(),
            cookie_hash: cookie_hash(&value),
            connection: n.connection,
            user_id: n.user_id,
            upstream_sub: n.upstream_sub,
            upstream_sid: n.upstream_sid,
            upstream_id_token: n.upstream_id_token,
            token_groups: n.token_groups,
            groups_overage: n.groups_overage,
            auth_time: n.auth_time,
            created: now,
            last_seen: now,
            expires: now.plus_millis(millis(self.inner.max)),
            ended: None,
            end_reason: None,
        };
        self.inner.store.insert_session(&row).await?;
        self.mark_seen(&row.id, now).await;
        Ok((row, value))
    }

    /// The live session a cookie names: not ended, not past its absolute end, used within
    /// the idle lifetime. A session found expired is ended here (its grants revoked).
    pub async fn live(&self, cookie_value: &str) -> Result<Option<SessionRow>, DirectoryError> {
        if cookie_value.is_empty() || cookie_value.len() > 128 {
            return Ok(None);
        }
        let Some(s) = self
            .inner
            .store
            .session_by_cookie(&cookie_hash(cookie_value))
            .await?
        else {
            return Ok(None);
        };
        if s.ended.is_some() {
            return Ok(None);
        }
        let now = self.inner.clock.now();
        if s.expires <= now {
            self.end(SessionSelector::Id(s.id.clone()), "expired")
                .await?;
            return Ok(None);
        }
        let hot = match self.inner.hot.get(&seen_key(&s.id)).await {
            Ok(v) => v.and_then(|v| v.parse::<i64>().ok()).map(Timestamp),
            Err(e) => {
                tracing::warn!(error = %e, "session activity unavailable; using the store's copy");
                None
            }
        };
        let last = hot.map_or(s.last_seen, |h| h.max(s.last_seen));
        if now.millis_since(last) > millis(self.inner.idle) {
            self.end(SessionSelector::Id(s.id.clone()), "idle").await?;
            return Ok(None);
        }
        if now.millis_since(s.last_seen) > SEEN_WRITE_BEHIND_MS {
            self.inner.store.touch_session(&s.id, now).await?;
        }
        self.mark_seen(&s.id, now).await;
        Ok(Some(s))
    }

    /// Records a use of the session (a refresh in it) in the hot state.
    pub async fn seen(&self, id: &str) {
        self.mark_seen(id, self.inner.clock.now()).await;
    }

    async fn mark_seen(&self, id: &str, at: Timestamp) {
        if let Err(e) = self
            .inner
            .hot
            .put(&seen_key(id), &at.0.to_string(), self.inner.idle)
            .await
        {
            tracing::warn!(error = %e, "session activity not recorded");
        }
    }

    /// Ends the selected sessions and revokes their grants (for a user, every grant), then
    /// tells the clients over the back channel, without waiting for them. The revoked grants.
    pub async fn end(
        &self,
        which: SessionSelector,
        reason: &'static str,
    ) -> Result<Vec<EndedGrant>, DirectoryError> {
        let now = self.inner.clock.now();
        let (count, ended) = self.inner.store.end_sessions(&which, now, reason).await?;
        let sessions: std::collections::BTreeSet<&str> = ended
            .iter()
            .filter_map(|g| g.session_id.as_deref())
            .collect();
        self.inner.metrics.session_ended(reason, count);
        let (conn, user) = match &which {
            SessionSelector::User(c, u) => (Some(c.to_string()), Some(u.clone())),
            SessionSelector::UpstreamSid(c, _) | SessionSelector::UpstreamSub(c, _) => {
                (Some(c.to_string()), None)
            }
            SessionSelector::Id(_) => (None, None),
        };
        // A deactivated user's later SCIM updates end nothing more: no event for those.
        let nothing = count == 0 && ended.is_empty() && matches!(which, SessionSelector::User(..));
        if nothing {
            return Ok(ended);
        }
        self.inner.audit.record(
            "logout",
            Outcome::Ok,
            Entry {
                connection: conn,
                user_id: user.or_else(|| ended.first().map(|g| g.user_id.clone())),
                session_id: match &which {
                    SessionSelector::Id(id) => Some(id.clone()),
                    _ => (!sessions.is_empty()).then(|| {
                        let mut list = sessions.iter().take(20).copied().collect::<Vec<_>>();
                        let more = sessions.len().saturating_sub(list.len());
                        let more = format!("and {more} more");
                        if sessions.len() > 20 {
                            list.push(&more);
                        }
                        list.join(",")
                    }),
                },
                reason: Some(format!(
                    "{reason}; {count} session(s) ended, {} sign-in(s) revoked",
                    ended.len()
                )),
                ..Entry::default()
            },
        );
        self.inner.logouts.send(&ended);
        Ok(ended)
    }

    /// The session of this id (live or not).
    pub async fn get(&self, id: &str) -> Result<Option<SessionRow>, DirectoryError> {
        self.inner.store.session(id).await
    }
}

fn seen_key(id: &str) -> String {
    format!("session-seen:{id}")
}
