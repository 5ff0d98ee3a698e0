//! The users role: user rows, their indexed columns and their e-mail index rows.

use std::collections::BTreeSet;

use async_trait::async_trait;
use sqlx::{AnyConnection, Row as _};

use super::dialect::{Bind, DialectExt, Sql};
use super::groups::detach_member_everywhere;
use super::{SqlStore, bind_opt, push_opt, uniqueness};
use crate::clock::Timestamp;
use crate::connections::ConnectionId;
use crate::directory::doc::{UserDoc, UserKind};
use crate::directory::error::DirectoryError;
use crate::directory::model::{
    Backend, Change, ListSpec, MembershipDelta, Page, Removed, UserRecord,
};
use crate::directory::store::UserStore;

impl SqlStore {
    async fn write_emails(
        &self,
        tx: &mut AnyConnection,
        conn: &ConnectionId,
        user_id: &str,
        doc: &UserDoc,
        replace: bool,
    ) -> Result<(), DirectoryError> {
        if replace {
            let mut del = self.sql();
            del.push("DELETE FROM user_emails WHERE user_id = ")
                .bind_text(user_id);
            del.query().execute(&mut *tx).await?;
        }
        let values: BTreeSet<String> = doc
            .email_values()
            .iter()
            .map(|v| v.to_lowercase())
            .collect();
        if values.is_empty() {
            return Ok(());
        }
        let mut ins = self.sql();
        ins.push("INSERT INTO user_emails (user_id, connection, value_lc) VALUES ");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                ins.push(", ");
            }
            ins.push("(")
                .bind_text(user_id)
                .push(", ")
                .bind_text(conn.as_str())
                .push(", ")
                .bind_text(v.as_str())
                .push(")");
        }
        ins.push(" ON CONFLICT DO NOTHING");
        ins.query().execute(&mut *tx).await?;
        Ok(())
    }
}

/// The indexed copies of a user's attributes, as `column = ?` assignments.
fn set_user_columns(upd: &mut Sql, doc: &UserDoc) {
    upd.push("user_name = ")
        .bind_text(doc.user_name())
        .push(", user_name_lc = ")
        .bind_text(doc.user_name().to_lowercase())
        .push(", external_id = ");
    bind_opt(upd, doc.external_id());
    upd.push(", display_name = ");
    bind_opt(upd, doc.display_name());
    upd.push(", display_name_lc = ");
    bind_opt(upd, doc.display_name().map(str::to_lowercase).as_deref());
    upd.push(", active = ").bind(Bind::Bool(doc.active()));
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(
        &self,
        conn: &ConnectionId,
        doc: UserDoc,
        now: Timestamp,
    ) -> Result<UserRecord, DirectoryError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let mut ins = self.sql();
        ins.push(
            "INSERT INTO users (id, connection, user_name, user_name_lc, external_id, display_name, \
             display_name_lc, active, created, last_modified, version, doc) VALUES (",
        )
        .bind_text(id.as_str())
        .push(", ")
        .bind_text(conn.as_str())
        .push(", ")
        .bind_text(doc.user_name())
        .push(", ")
        .bind_text(doc.user_name().to_lowercase());
        push_opt(&mut ins, doc.external_id());
        push_opt(&mut ins, doc.display_name());
        push_opt(
            &mut ins,
            doc.display_name().map(str::to_lowercase).as_deref(),
        );
        ins.push(", ")
            .bind(Bind::Bool(doc.active()))
            .push(", ")
            .bind_text(now.to_rfc3339())
            .push(", ")
            .bind_text(now.to_rfc3339())
            .push(", 1, ");
        self.backend.doc_param(&mut ins, doc.to_json());
        ins.push(")");
        ins.query()
            .execute(&mut *tx)
            .await
            .map_err(|e| uniqueness(e, "userName", doc.user_name()))?;
        self.write_emails(&mut tx, conn, &id, &doc, false).await?;
        tx.commit().await?;
        Ok(UserRecord {
            id,
            doc,
            created: now,
            last_modified: now,
            version: 1,
        })
    }

    async fn get_user(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<Option<UserRecord>, DirectoryError> {
        self.get::<UserKind>(conn, id).await
    }

    async fn list_users(
        &self,
        conn: &ConnectionId,
        spec: &ListSpec,
    ) -> Result<Page<UserRecord>, DirectoryError> {
        self.list::<UserKind>(conn, spec).await
    }

    async fn update_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        doc: UserDoc,
        now: Timestamp,
    ) -> Result<Change<UserRecord>, DirectoryError> {
        let mut tx = self.begin_write().await?;
        let before = self.lock::<UserKind>(&mut tx, conn, id, expect).await?;
        if doc == before.doc {
            // Nothing changed: no new version, no event (IdPs re-send unchanged users).
            tx.commit().await?;
            return Ok(Change {
                after: before.clone(),
                before,
            });
        }
        let mut upd = self.sql();
        upd.push("UPDATE users SET ");
        set_user_columns(&mut upd, &doc);
        upd.push(", last_modified = ")
            .bind_text(now.to_rfc3339())
            .push(", version = version + 1, doc = ");
        self.backend.doc_param(&mut upd, doc.to_json());
        upd.push(" WHERE id = ").bind_text(id);
        upd.query()
            .execute(&mut *tx)
            .await
            .map_err(|e| uniqueness(e, "userName", doc.user_name()))?;
        if doc.email_values() != before.doc.email_values() {
            self.write_emails(&mut tx, conn, id, &doc, true).await?;
        }
        tx.commit().await?;
        let after = UserRecord {
            id: before.id.clone(),
            doc,
            created: before.created,
            last_modified: now,
            version: before.version + 1,
        };
        Ok(Change { before, after })
    }

    async fn delete_user(
        &self,
        conn: &ConnectionId,
        id: &str,
        expect: Option<i64>,
        now: Timestamp,
    ) -> Result<Removed<UserRecord>, DirectoryError> {
        let mut tx = self.begin_write().await?;
        // Lock order everywhere: groups before users (a membership change locks its group,
        // then touches its member users), so this cannot deadlock with one.
        if self.backend == Backend::Postgres {
            let mut lock = self.sql();
            lock.push(
                "SELECT g.id FROM groups g WHERE g.id IN \
                 (SELECT m.group_id FROM group_members m WHERE m.member_id = ",
            )
            .bind_text(id)
            .push(") ORDER BY g.id FOR UPDATE");
            lock.query().fetch_all(&mut *tx).await?;
        }
        let before = self.lock::<UserKind>(&mut tx, conn, id, expect).await?;
        let groups = detach_member_everywhere(self, &mut tx, conn, id, now).await?;
        let mut del = self.sql();
        del.push("DELETE FROM user_emails WHERE user_id = ")
            .bind_text(id);
        del.query().execute(&mut *tx).await?;
        let mut del = self.sql();
        del.push("DELETE FROM users WHERE id = ").bind_text(id);
        del.query().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Removed {
            before,
            members: MembershipDelta {
                users: Vec::new(),
                groups,
            },
        })
    }

    async fn user_ids_after(
        &self,
        conn: &ConnectionId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, DirectoryError> {
        let mut q = self.sql();
        q.push("SELECT id FROM users WHERE connection = ")
            .bind_text(conn.as_str());
        if let Some(a) = after {
            q.push(" AND id > ").bind_text(a);
        }
        q.push(" ORDER BY id LIMIT ").bind(Bind::Int(limit));
        q.query()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0).map_err(DirectoryError::from))
            .collect()
    }
}
