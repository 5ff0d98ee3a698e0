//! The users role: user rows, their indexed columns and their e-mail index rows.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::dialect::{Bind, Sql};
use super::exec::Conn;
use super::groups::detach_member_everywhere;
use super::{CHUNK, SqlStore, Table, USER_COLUMNS, uniqueness};
use crate::clock::Timestamp;
use crate::connections::ConnectionId;
use crate::directory::doc::UserDoc;
use crate::directory::error::{DirectoryError, Result};
use crate::directory::kind::UserKind;
use crate::directory::model::{
    Backend, Change, GroupRef, ListSpec, MembershipDelta, Page, Removed, UserRecord,
};
use crate::directory::store::{Target, UserStore};

impl SqlStore {
    /// Writes the e-mail index rows `values` ([`email_index`]) of a user, replacing its old
    /// ones with `replace`.
    async fn write_emails(
        &self,
        c: &mut Conn<'_>,
        conn: &ConnectionId,
        user_id: &str,
        values: &[String],
        replace: bool,
    ) -> Result<()> {
        if replace {
            let mut del = self.sql();
            del.push("DELETE FROM user_emails WHERE user_id = ")
                .bind_text(user_id);
            del.execute(c).await?;
        }
        // Documents hold at most `limits::MAX_VALUES` e-mails; chunks keep any statement
        // below both backends' bind-parameter limits regardless.
        for chunk in values.chunks(CHUNK) {
            let mut ins = self.sql();
            push_email_rows(&mut ins, conn, user_id, chunk);
            ins.execute(c).await?;
        }
        Ok(())
    }
}

/// The e-mail index rows of a user: its distinct e-mail values, case-folded.
fn email_index(doc: &UserDoc) -> Vec<String> {
    let values: BTreeSet<String> = doc
        .email_values()
        .iter()
        .map(|v| v.to_lowercase())
        .collect();
    values.into_iter().collect()
}

/// `INSERT INTO user_emails …` for these values of one user.
fn push_email_rows(ins: &mut Sql, conn: &ConnectionId, user_id: &str, values: &[String]) {
    ins.push("INSERT INTO user_emails (user_id, connection, value_lc) VALUES ")
        .rows(values.iter().map(|v| {
            [
                Bind::text(user_id),
                Bind::text(conn.as_str()),
                Bind::text(v),
            ]
        }))
        .push(" ON CONFLICT DO NOTHING");
}

/// The indexed copies of a user's attributes, as `column = ?` assignments.
fn set_user_columns(upd: &mut Sql, doc: &UserDoc) {
    upd.push("user_name = ")
        .bind_text(doc.user_name())
        .push(", user_name_lc = ")
        .bind_text(doc.user_name().to_lowercase())
        .push(", external_id = ")
        .bind(Bind::opt(doc.external_id()))
        .push(", display_name = ")
        .bind(Bind::opt(doc.display_name()))
        .push(", display_name_lc = ")
        .bind(Bind::opt(
            doc.display_name().map(str::to_lowercase).as_deref(),
        ))
        .push(", active = ")
        .bind(Bind::Bool(doc.active()));
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(
        &self,
        conn: &ConnectionId,
        doc: UserDoc,
        now: Timestamp,
    ) -> Result<UserRecord> {
        let id = uuid::Uuid::now_v7().to_string();
        let emails = email_index(&doc);
        // On PostgreSQL the user row and its e-mail rows go in one statement, which commits
        // on its own: one round trip instead of four (BEGIN, two INSERTs, COMMIT).
        let one_statement = self.backend == Backend::Postgres && emails.len() <= CHUNK;
        let mut ins = self.sql();
        if one_statement && !emails.is_empty() {
            ins.push("WITH new_user AS (");
        }
        ins.push(
            "INSERT INTO users (id, connection, user_name, user_name_lc, external_id, display_name, \
             display_name_lc, active, created, last_modified, version, doc) VALUES ",
        )
        .row([
            Bind::text(id.as_str()),
            Bind::text(conn.as_str()),
            Bind::text(doc.user_name()),
            Bind::text(doc.user_name().to_lowercase()),
            Bind::opt(doc.external_id()),
            Bind::opt(doc.display_name()),
            Bind::opt(doc.display_name().map(str::to_lowercase).as_deref()),
            Bind::Bool(doc.active()),
            Bind::text(now.to_rfc3339()),
            Bind::text(now.to_rfc3339()),
            Bind::Int(1),
            Bind::Doc(doc.to_json()),
        ]);
        if one_statement {
            if !emails.is_empty() {
                ins.push(") ");
                push_email_rows(&mut ins, conn, &id, &emails);
            }
            self.write_one(&ins)
                .await
                .map_err(|e| uniqueness(e, "userName", doc.user_name()))?;
        } else {
            let mut tx = self.begin_write().await?;
            let mut c = tx.conn();
            ins.execute(&mut c)
                .await
                .map_err(|e| uniqueness(e, "userName", doc.user_name()))?;
            self.write_emails(&mut c, conn, &id, &emails, false).await?;
            tx.commit().await?;
        }
        Ok(UserRecord {
            id,
            doc,
            created: now,
            last_modified: now,
            version: 1,
        })
    }

    async fn get_user(&self, conn: &ConnectionId, id: &str) -> Result<Option<UserRecord>> {
        self.get::<UserKind>(conn, id).await
    }

    async fn get_user_with_groups(
        &self,
        conn: &ConnectionId,
        id: &str,
    ) -> Result<Option<(UserRecord, Vec<GroupRef>)>> {
        if !crate::directory::limits::is_storable_key(id) {
            return Ok(None);
        }
        // The groups ride along as one JSON array column: one round trip for the read
        // identity providers make most.
        let groups = match self.backend {
            Backend::Postgres => {
                "(SELECT COALESCE(json_agg(json_build_array(g.id, g.display_name)), '[]')::text \
                 FROM group_members m JOIN groups g ON g.id = m.group_id \
                 WHERE m.connection = r.connection AND m.member_id = r.id)"
            }
            Backend::Sqlite => {
                "(SELECT json_group_array(json_array(g.id, g.display_name)) \
                 FROM group_members m JOIN groups g ON g.id = m.group_id \
                 WHERE m.connection = r.connection AND m.member_id = r.id)"
            }
        };
        let mut q = self.sql();
        q.push("SELECT ")
            .push(&UserKind::columns(self.backend))
            .push(", ")
            .push(groups)
            .push(" FROM users r WHERE r.connection = ")
            .bind_text(conn.as_str())
            .push(" AND r.id = ")
            .bind_text(id);
        let Some(row) = self.read_optional(&q).await? else {
            return Ok(None);
        };
        let user = UserKind::decode(&row)?;
        let raw: String = row.get(USER_COLUMNS)?;
        let pairs: Vec<(String, String)> = serde_json::from_str(&raw)
            .map_err(|e| DirectoryError::corrupt(format!("groups of user {id}: {e}")))?;
        let mut groups: Vec<GroupRef> = pairs
            .into_iter()
            .map(|(id, display)| GroupRef { id, display })
            .collect();
        groups.sort_by_cached_key(|g| (g.display.to_lowercase(), g.id.clone()));
        Ok(Some((user, groups)))
    }

    async fn list_users(&self, conn: &ConnectionId, spec: &ListSpec) -> Result<Page<UserRecord>> {
        self.list::<UserKind>(conn, spec).await
    }

    async fn update_user(&self, at: Target<'_>, doc: UserDoc) -> Result<Change<UserRecord>> {
        let (conn, id, now) = (at.conn, at.id, at.now);
        let mut tx = self.begin_write().await?;
        let mut c = tx.conn();
        let before = self.lock::<UserKind>(&mut c, at).await?;
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
            .push(", version = version + 1, doc = ")
            .bind(Bind::Doc(doc.to_json()))
            .push(" WHERE id = ")
            .bind_text(id);
        upd.execute(&mut c)
            .await
            .map_err(|e| uniqueness(e, "userName", doc.user_name()))?;
        if doc.email_values() != before.doc.email_values() {
            self.write_emails(&mut c, conn, id, &email_index(&doc), true)
                .await?;
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

    async fn delete_user(&self, at: Target<'_>) -> Result<Removed<UserRecord>> {
        let (conn, id, now) = (at.conn, at.id, at.now);
        let mut tx = self.begin_write().await?;
        let mut c = tx.conn();
        // Lock order everywhere: groups before users (a membership change locks its group,
        // then touches its member users), so this cannot deadlock with one.
        if self.backend == Backend::Postgres {
            let mut lock = self.sql();
            lock.push("SELECT g.id FROM groups g WHERE g.connection = ")
                .bind_text(conn.as_str())
                .push(" AND g.id IN (SELECT m.group_id FROM group_members m WHERE m.connection = ")
                .bind_text(conn.as_str())
                .push(" AND m.member_id = ")
                .bind_text(id)
                .push(") ORDER BY g.id FOR UPDATE");
            lock.fetch_all(&mut c).await?;
        }
        let before = self.lock::<UserKind>(&mut c, at).await?;
        let groups = detach_member_everywhere(self, &mut c, conn, id, now).await?;
        let mut del = self.sql();
        del.push("DELETE FROM user_emails WHERE user_id = ")
            .bind_text(id);
        del.execute(&mut c).await?;
        let mut del = self.sql();
        del.push("DELETE FROM users WHERE id = ").bind_text(id);
        del.execute(&mut c).await?;
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
    ) -> Result<Vec<String>> {
        let mut q = self.sql();
        q.push("SELECT id FROM users WHERE connection = ")
            .bind_text(conn.as_str());
        if let Some(a) = after {
            q.push(" AND id > ").bind_text(a);
        }
        q.push(" ORDER BY id LIMIT ").bind(Bind::Int(limit));
        self.read_all(&q)
            .await?
            .iter()
            .map(|r| r.get::<String>(0).map_err(DirectoryError::from))
            .collect()
    }
}
