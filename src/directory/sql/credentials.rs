//! The credentials role: SCIM bearer tokens made with `pimgate token create`, kept as the
//! hex SHA-256 of the secret.

use async_trait::async_trait;

use super::dialect::Bind;
use super::exec::Row;
use super::{SqlStore, timestamp, uniqueness};
use crate::connections::ConnectionId;
use crate::directory::error::{DirectoryError, Result};
use crate::directory::model::TokenRow;
use crate::directory::store::CredentialStore;

const COLUMNS: &str = "SELECT id, connection, token_hash, label, created FROM scim_tokens";

fn token_from_row(row: &Row) -> Result<TokenRow> {
    let conn: String = row.get(1)?;
    let hash_hex: String = row.get(2)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&hash_hex, &mut hash)
        .map_err(|_| DirectoryError::corrupt("token hash"))?;
    Ok(TokenRow {
        id: row.get(0)?,
        connection: ConnectionId::parse(&conn)
            .map_err(|e| DirectoryError::corrupt(e.to_string()))?,
        hash,
        label: row.get(3)?,
        created: timestamp(row, 4)?,
    })
}

#[async_trait]
impl CredentialStore for SqlStore {
    async fn insert_token(&self, token: &TokenRow) -> Result<()> {
        let mut ins = self.sql();
        ins.push("INSERT INTO scim_tokens (id, connection, token_hash, label, created) VALUES ")
            .row([
                Bind::text(token.id.as_str()),
                Bind::text(token.connection.as_str()),
                Bind::text(hex::encode(token.hash)),
                Bind::text(token.label.as_str()),
                Bind::text(token.created.to_rfc3339()),
            ]);
        self.write_one(&ins)
            .await
            .map_err(|e| uniqueness(e, "token", &token.id))?;
        Ok(())
    }

    async fn find_token(&self, hash: &[u8; 32]) -> Result<Option<TokenRow>> {
        let mut q = self.sql();
        q.push(COLUMNS)
            .push(" WHERE token_hash = ")
            .bind_text(hex::encode(hash));
        let row = self.read_optional(&q).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self, conn: &ConnectionId) -> Result<Vec<TokenRow>> {
        let mut q = self.sql();
        q.push(COLUMNS)
            .push(" WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" ORDER BY created, id");
        self.read_all(&q)
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    async fn revoke_token(&self, conn: &ConnectionId, id: &str) -> Result<bool> {
        let mut del = self.sql();
        del.push("DELETE FROM scim_tokens WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" AND id = ")
            .bind_text(id);
        Ok(self.write_one(&del).await? > 0)
    }
}
