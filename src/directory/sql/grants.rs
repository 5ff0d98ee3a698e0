//! The grant role: one row per completed sign-in, its refresh token kept as a hash.

use async_trait::async_trait;

use super::dialect::Bind;
use super::exec::Row;
use super::{SqlStore, timestamp};
use crate::clock::Timestamp;
use crate::connections::ConnectionId;
use crate::directory::error::{DirectoryError, Result};
use crate::directory::model::GrantRow;
use crate::directory::store::GrantStore;

const COLUMNS: &str = "SELECT id, client_id, connection, user_id, scope, token_groups, \
                       auth_time, created, expires, refresh_hash, revoked, groups_overage, \
                       session_id, last_used FROM oauth_grants";

fn grant_from_row(row: &Row) -> Result<GrantRow> {
    let conn: String = row.get(2)?;
    let groups: Option<String> = row.get(5)?;
    let token_groups = groups
        .map(|g| serde_json::from_str::<Vec<String>>(&g))
        .transpose()
        .map_err(|_| DirectoryError::corrupt("grant token groups"))?;
    let revoked: Option<String> = row.get(10)?;
    let overage: i64 = row.get(11)?;
    let last_used: Option<String> = row.get(13)?;
    Ok(GrantRow {
        id: row.get(0)?,
        client_id: row.get(1)?,
        connection: ConnectionId::parse(&conn)
            .map_err(|e| DirectoryError::corrupt(e.to_string()))?,
        user_id: row.get(3)?,
        scope: row.get(4)?,
        token_groups,
        auth_time: timestamp(row, 6)?,
        created: timestamp(row, 7)?,
        expires: timestamp(row, 8)?,
        refresh_hash: row.get(9)?,
        revoked: revoked
            .map(|r| Timestamp::parse_rfc3339(&r).ok_or(DirectoryError::corrupt("grant revoked")))
            .transpose()?,
        groups_overage: overage != 0,
        session_id: row.get(12)?,
        last_used: last_used
            .map(|r| Timestamp::parse_rfc3339(&r).ok_or(DirectoryError::corrupt("grant last used")))
            .transpose()?,
    })
}

#[async_trait]
impl GrantStore for SqlStore {
    async fn insert_grant(&self, g: &GrantRow) -> Result<()> {
        let groups = g
            .token_groups
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|_| DirectoryError::corrupt("grant token groups"))?;
        let mut ins = self.sql();
        ins.push(
            "INSERT INTO oauth_grants (id, client_id, connection, user_id, scope, token_groups, \
             auth_time, created, expires, refresh_hash, revoked, groups_overage, session_id, \
             last_used) VALUES ",
        )
        .row([
            Bind::text(g.id.as_str()),
            Bind::text(g.client_id.as_str()),
            Bind::text(g.connection.as_str()),
            Bind::text(g.user_id.as_str()),
            Bind::text(g.scope.as_str()),
            Bind::opt(groups.as_deref()),
            Bind::text(g.auth_time.to_rfc3339()),
            Bind::text(g.created.to_rfc3339()),
            Bind::text(g.expires.to_rfc3339()),
            Bind::opt(g.refresh_hash.as_deref()),
            Bind::opt(g.revoked.map(Timestamp::to_rfc3339).as_deref()),
            Bind::Int(i64::from(g.groups_overage)),
            Bind::opt(g.session_id.as_deref()),
            Bind::opt(g.last_used.map(Timestamp::to_rfc3339).as_deref()),
        ]);
        self.write_one(&ins).await?;
        Ok(())
    }

    async fn grant(&self, id: &str) -> Result<Option<GrantRow>> {
        if !crate::directory::limits::is_storable_key(id) {
            return Ok(None);
        }
        let mut q = self.sql();
        q.push(COLUMNS).push(" WHERE id = ").bind_text(id);
        let row = self.read_optional(&q).await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn grant_by_refresh(&self, refresh_hash: &str) -> Result<Option<GrantRow>> {
        let mut q = self.sql();
        q.push(COLUMNS)
            .push(" WHERE refresh_hash = ")
            .bind_text(refresh_hash);
        let row = self.read_optional(&q).await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn latest_grant(&self, conn: &ConnectionId, user_id: &str) -> Result<Option<GrantRow>> {
        if !crate::directory::limits::is_storable_key(user_id) {
            return Ok(None);
        }
        let mut q = self.sql();
        q.push(COLUMNS)
            .push(" WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" AND user_id = ")
            .bind_text(user_id)
            .push(" ORDER BY created DESC, id DESC LIMIT 1");
        let row = self.read_optional(&q).await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn rotate_refresh(
        &self,
        grant_id: &str,
        old: &str,
        new: &str,
        at: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let mut up = self.sql();
        up.push("UPDATE oauth_grants SET refresh_hash = ")
            .bind_text(new)
            .push(", last_used = ")
            .bind_text(at.to_rfc3339())
            .push(" WHERE id = ")
            .bind_text(grant_id)
            .push(" AND refresh_hash = ")
            .bind_text(old)
            .push(" AND revoked IS NULL");
        if up.execute(&mut tx.conn()).await? == 0 {
            return Ok(false);
        }
        let mut ins = self.sql();
        ins.push("INSERT INTO oauth_refresh_used (refresh_hash, grant_id) VALUES ")
            .row([Bind::text(old), Bind::text(grant_id)]);
        ins.execute(&mut tx.conn()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn grant_of_used_refresh(&self, refresh_hash: &str) -> Result<Option<String>> {
        let mut q = self.sql();
        q.push("SELECT grant_id FROM oauth_refresh_used WHERE refresh_hash = ")
            .bind_text(refresh_hash);
        let row = self.read_optional(&q).await?;
        Ok(row.map(|r| r.get::<String>(0)).transpose()?)
    }

    async fn revoke_grant(&self, id: &str, at: Timestamp) -> Result<bool> {
        let mut up = self.sql();
        up.push("UPDATE oauth_grants SET revoked = ")
            .bind_text(at.to_rfc3339())
            .push(" WHERE id = ")
            .bind_text(id)
            .push(" AND revoked IS NULL");
        Ok(self.write_one(&up).await? > 0)
    }

    async fn purge_grants(&self, before: Timestamp) -> Result<u64> {
        let mut del = self.sql();
        del.push("DELETE FROM oauth_grants WHERE expires < ")
            .bind_text(before.to_rfc3339());
        Ok(self.write_one(&del).await?)
    }
}
