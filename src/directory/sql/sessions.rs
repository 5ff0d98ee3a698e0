//! The session and audit roles: pimgate browser sessions (ending one revokes its grants in
//! the same transaction) and the audit log.

use async_trait::async_trait;

use super::dialect::Bind;
use super::exec::Row;
use super::{SqlStore, timestamp};
use crate::clock::Timestamp;
use crate::connections::ConnectionId;
use crate::directory::error::{DirectoryError, Result};
use crate::directory::model::{AuditEvent, EndedGrant, SessionRow, SessionSelector};
use crate::directory::store::{AuditStore, SessionStore};

const COLUMNS: &str = "SELECT id, cookie_hash, connection, user_id, upstream_sub, upstream_sid, \
                       upstream_id_token, token_groups, groups_overage, auth_time, created, \
                       last_seen, expires, ended, end_reason FROM oidc_sessions";

/// Most audit events one query answers.
pub const MAX_AUDIT_ROWS: u32 = 10_000;

fn optional_time(raw: Option<String>, what: &'static str) -> Result<Option<Timestamp>> {
    raw.map(|r| Timestamp::parse_rfc3339(&r).ok_or(DirectoryError::corrupt(what)))
        .transpose()
}

fn session_from_row(row: &Row) -> Result<SessionRow> {
    let conn: String = row.get(2)?;
    let groups: Option<String> = row.get(7)?;
    let token_groups = groups
        .map(|g| serde_json::from_str::<Vec<String>>(&g))
        .transpose()
        .map_err(|_| DirectoryError::corrupt("session token groups"))?;
    let overage: i64 = row.get(8)?;
    Ok(SessionRow {
        id: row.get(0)?,
        cookie_hash: row.get(1)?,
        connection: ConnectionId::parse(&conn)
            .map_err(|e| DirectoryError::corrupt(e.to_string()))?,
        user_id: row.get(3)?,
        upstream_sub: row.get(4)?,
        upstream_sid: row.get(5)?,
        upstream_id_token: row.get(6)?,
        token_groups,
        groups_overage: overage != 0,
        auth_time: timestamp(row, 9)?,
        created: timestamp(row, 10)?,
        last_seen: timestamp(row, 11)?,
        expires: timestamp(row, 12)?,
        ended: optional_time(row.get(13)?, "session ended")?,
        end_reason: row.get(14)?,
    })
}

impl SqlStore {
    /// `WHERE` condition (with binds) of the sessions a selector names.
    fn push_session_selector(q: &mut super::dialect::Sql, which: &SessionSelector) {
        match which {
            SessionSelector::Id(id) => {
                q.push("id = ").bind_text(id.as_str());
            }
            SessionSelector::User(conn, user) => {
                q.push("connection = ")
                    .bind_text(conn.as_str())
                    .push(" AND user_id = ")
                    .bind_text(user.as_str());
            }
            SessionSelector::UpstreamSid(conn, sid) => {
                q.push("connection = ")
                    .bind_text(conn.as_str())
                    .push(" AND upstream_sid = ")
                    .bind_text(sid.as_str());
            }
            SessionSelector::UpstreamSub(conn, sub) => {
                q.push("connection = ")
                    .bind_text(conn.as_str())
                    .push(" AND upstream_sub = ")
                    .bind_text(sub.as_str());
            }
        }
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        let groups = s
            .token_groups
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|_| DirectoryError::corrupt("session token groups"))?;
        let mut ins = self.sql();
        ins.push(
            "INSERT INTO oidc_sessions (id, cookie_hash, connection, user_id, upstream_sub, \
             upstream_sid, upstream_id_token, token_groups, groups_overage, auth_time, created, \
             last_seen, expires, ended, end_reason) VALUES ",
        )
        .row([
            Bind::text(s.id.as_str()),
            Bind::text(s.cookie_hash.as_str()),
            Bind::text(s.connection.as_str()),
            Bind::text(s.user_id.as_str()),
            Bind::text(s.upstream_sub.as_str()),
            Bind::opt(s.upstream_sid.as_deref()),
            Bind::opt(s.upstream_id_token.as_deref()),
            Bind::opt(groups.as_deref()),
            Bind::Int(i64::from(s.groups_overage)),
            Bind::text(s.auth_time.to_rfc3339()),
            Bind::text(s.created.to_rfc3339()),
            Bind::text(s.last_seen.to_rfc3339()),
            Bind::text(s.expires.to_rfc3339()),
            Bind::opt(s.ended.map(Timestamp::to_rfc3339).as_deref()),
            Bind::opt(s.end_reason.as_deref()),
        ]);
        self.write_one(&ins).await?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        if !crate::directory::limits::is_storable_key(id) {
            return Ok(None);
        }
        let mut q = self.sql();
        q.push(COLUMNS).push(" WHERE id = ").bind_text(id);
        let row = self.read_optional(&q).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn session_by_cookie(&self, cookie_hash: &str) -> Result<Option<SessionRow>> {
        let mut q = self.sql();
        q.push(COLUMNS)
            .push(" WHERE cookie_hash = ")
            .bind_text(cookie_hash);
        let row = self.read_optional(&q).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id: &str, at: Timestamp) -> Result<()> {
        let mut up = self.sql();
        up.push("UPDATE oidc_sessions SET last_seen = ")
            .bind_text(at.to_rfc3339())
            .push(" WHERE id = ")
            .bind_text(id)
            .push(" AND ended IS NULL");
        self.write_one(&up).await?;
        Ok(())
    }

    async fn end_sessions(
        &self,
        which: &SessionSelector,
        at: Timestamp,
        reason: &str,
    ) -> Result<(u64, Vec<EndedGrant>)> {
        let at_text = at.to_rfc3339();
        let mut tx = self.begin_write().await?;
        let mut end = self.sql();
        end.push("UPDATE oidc_sessions SET ended = ")
            .bind_text(at_text.as_str())
            .push(", end_reason = ")
            .bind_text(reason)
            .push(" WHERE ");
        Self::push_session_selector(&mut end, which);
        end.push(" AND ended IS NULL");
        let sessions = end.execute(&mut tx.conn()).await?;
        // The grants of every selected session (ended now or before), and for a user, every
        // grant of theirs.
        let mut revoke = self.sql();
        revoke
            .push("UPDATE oauth_grants SET revoked = ")
            .bind_text(at_text.as_str())
            .push(" WHERE revoked IS NULL AND (session_id IN (SELECT id FROM oidc_sessions WHERE ");
        Self::push_session_selector(&mut revoke, which);
        revoke.push(")");
        if let SessionSelector::User(conn, user) = which {
            revoke
                .push(" OR (connection = ")
                .bind_text(conn.as_str())
                .push(" AND user_id = ")
                .bind_text(user.as_str())
                .push(")");
        }
        revoke.push(") RETURNING id, client_id, user_id, session_id");
        let grants = revoke
            .fetch_all(&mut tx.conn())
            .await?
            .iter()
            .map(|r| {
                Ok(EndedGrant {
                    grant_id: r.get(0)?,
                    client_id: r.get(1)?,
                    user_id: r.get(2)?,
                    session_id: r.get(3)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        tx.commit().await?;
        Ok((sessions, grants))
    }

    async fn purge_sessions(&self, before: Timestamp) -> Result<u64> {
        let t = before.to_rfc3339();
        let mut del = self.sql();
        del.push("DELETE FROM oidc_sessions WHERE expires < ")
            .bind_text(t.as_str())
            .push(" OR ended < ")
            .bind_text(t.as_str());
        Ok(self.write_one(&del).await?)
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn record_audit(&self, e: &AuditEvent) -> Result<()> {
        let mut ins = self.sql();
        ins.push(
            "INSERT INTO audit_events (at, kind, outcome, connection, user_id, user_name, \
             client_id, session_id, reason) VALUES ",
        )
        .row([
            Bind::text(e.at.to_rfc3339()),
            Bind::text(e.kind.as_str()),
            Bind::text(e.outcome.as_str()),
            Bind::opt(e.connection.as_deref()),
            Bind::opt(e.user_id.as_deref()),
            Bind::opt(e.user_name.as_deref()),
            Bind::opt(e.client_id.as_deref()),
            Bind::opt(e.session_id.as_deref()),
            Bind::opt(e.reason.as_deref()),
        ]);
        self.write_one(&ins).await?;
        Ok(())
    }

    async fn audit_of_user(&self, user: &str, limit: u32) -> Result<Vec<AuditEvent>> {
        let mut q = self.sql();
        q.push(
            "SELECT at, kind, outcome, connection, user_id, user_name, client_id, session_id, \
             reason FROM audit_events WHERE user_id = ",
        )
        .bind_text(user)
        .push(" OR user_name = ")
        .bind_text(user)
        .push(" ORDER BY at DESC, id DESC LIMIT ")
        .bind(Bind::Int(i64::from(limit.min(MAX_AUDIT_ROWS))));
        self.read_all(&q)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEvent {
                    at: timestamp(r, 0)?,
                    kind: r.get(1)?,
                    outcome: r.get(2)?,
                    connection: r.get(3)?,
                    user_id: r.get(4)?,
                    user_name: r.get(5)?,
                    client_id: r.get(6)?,
                    session_id: r.get(7)?,
                    reason: r.get(8)?,
                })
            })
            .collect()
    }

    async fn purge_audit(&self, before: Timestamp) -> Result<u64> {
        let mut del = self.sql();
        del.push("DELETE FROM audit_events WHERE at < ")
            .bind_text(before.to_rfc3339());
        Ok(self.write_one(&del).await?)
    }
}
