//! The signing-key role: the keys pimgate signs tokens with, one row per key generation.

use async_trait::async_trait;

use super::dialect::Bind;
use super::exec::Row;
use super::{SqlStore, timestamp};
use crate::clock::Timestamp;
use crate::directory::error::Result;
use crate::directory::model::SigningKeyRow;
use crate::directory::store::KeyStore;

fn key_from_row(row: &Row) -> Result<SigningKeyRow> {
    Ok(SigningKeyRow {
        kid: row.get(0)?,
        generation: row.get(1)?,
        alg: row.get(2)?,
        public_jwk: row.get(3)?,
        private_key: row.get(4)?,
        created: timestamp(row, 5)?,
        signs_from: timestamp(row, 6)?,
    })
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        let mut q = self.sql();
        q.push(
            "SELECT kid, generation, alg, public_jwk, private_key, created, signs_from \
             FROM signing_keys ORDER BY generation",
        );
        self.read_all(&q).await?.iter().map(key_from_row).collect()
    }

    async fn insert_signing_key(&self, key: &SigningKeyRow) -> Result<bool> {
        let mut ins = self.sql();
        ins.push(
            "INSERT INTO signing_keys \
             (kid, generation, alg, public_jwk, private_key, created, signs_from) VALUES ",
        )
        .row([
            Bind::text(key.kid.as_str()),
            Bind::Int(key.generation),
            Bind::text(key.alg.as_str()),
            Bind::text(key.public_jwk.as_str()),
            Bind::text(key.private_key.as_str()),
            Bind::text(key.created.to_rfc3339()),
            Bind::text(key.signs_from.to_rfc3339()),
        ]);
        match self.write_one(&ins).await {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn set_signs_from(&self, kid: &str, signs_from: Timestamp) -> Result<bool> {
        let mut up = self.sql();
        up.push("UPDATE signing_keys SET signs_from = ")
            .bind_text(signs_from.to_rfc3339())
            .push(" WHERE kid = ")
            .bind_text(kid);
        Ok(self.write_one(&up).await? > 0)
    }

    async fn delete_signing_keys(&self, kids: &[String]) -> Result<u64> {
        if kids.is_empty() {
            return Ok(0);
        }
        let mut del = self.sql();
        del.push("DELETE FROM signing_keys WHERE kid IN ")
            .bind_list(kids.iter().map(String::as_str));
        Ok(self.write_one(&del).await?)
    }
}
