//! The groups role: group rows, membership rows changed by set operations, and the walks
//! through nested groups that the access model reads.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;

use super::dialect::Bind;
use super::exec::{Conn, Row};
use super::{CHUNK, SqlStore, filter};
use crate::clock::Timestamp;
use crate::connections::ConnectionId;
use crate::directory::doc::GroupDoc;
use crate::directory::error::{DirectoryError, Result};
use crate::directory::kind::{GroupKind, MemberKind};
use crate::directory::limits;
use crate::directory::model::{
    Backend, Change, GroupChange, GroupRecord, GroupRef, IdpGroup, ListSpec, MemberOp, MemberRef,
    MembershipDelta, Page, Removed,
};
use crate::directory::store::{GroupStore, Target};

/// Accumulates what membership operations changed.
#[derive(Default)]
struct Delta {
    count: i64,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
}

impl Delta {
    fn record(&mut self, row: &Row, sign: i64) -> Result<()> {
        let id: String = row.get(0)?;
        let kind: String = row.get(1)?;
        self.count += sign;
        match MemberKind::parse(&kind) {
            Some(MemberKind::Group) => self.groups.insert(id),
            _ => self.users.insert(id),
        };
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    fn into_delta(self) -> MembershipDelta {
        MembershipDelta {
            users: self.users.into_iter().collect(),
            groups: self.groups.into_iter().collect(),
        }
    }
}

impl SqlStore {
    /// Runs a membership statement ending in `RETURNING member_id, member_type` and records
    /// each returned row with `sign` (+1 added, -1 removed).
    async fn member_rows(
        &self,
        c: &mut Conn<'_>,
        sql: &super::dialect::Sql,
        sign: i64,
        delta: &mut Delta,
    ) -> Result<()> {
        for row in sql.fetch_all(c).await? {
            delta.record(&row, sign)?;
        }
        Ok(())
    }

    /// Adds members; ids that name no user or group of the connection are skipped (and
    /// logged), not refused: they can grant nothing, and refusing would block the group's
    /// other changes (IdPs reference users whose own provisioning failed).
    async fn add_members(
        &self,
        c: &mut Conn<'_>,
        conn: &ConnectionId,
        group_id: &str,
        ids: &[String],
        delta: &mut Delta,
    ) -> Result<()> {
        // An id no record can have names nothing, like any other unknown id.
        let ids: BTreeSet<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| limits::is_storable_key(id))
            .collect();
        if ids.contains(group_id) {
            return Err(DirectoryError::invalid(
                "members",
                "a group cannot be a member of itself",
            ));
        }
        let ids: Vec<&str> = ids.into_iter().collect();
        for chunk in ids.chunks(CHUNK) {
            let kinds = self.member_kinds(c, conn, chunk).await?;
            let skipped = chunk.iter().filter(|id| !kinds.contains_key(**id)).count();
            if let Some(first) = chunk.iter().find(|id| !kinds.contains_key(**id)) {
                tracing::warn!(
                    %conn,
                    group = group_id,
                    skipped,
                    first,
                    "members: ids that name no user or group of this connection were skipped"
                );
            }
            let known: Vec<(&str, MemberKind)> = chunk
                .iter()
                .filter_map(|id| kinds.get(*id).map(|k| (*id, *k)))
                .collect();
            if known.is_empty() {
                continue;
            }
            let mut ins = self.sql();
            ins.push(
                "INSERT INTO group_members (group_id, member_id, member_type, connection) VALUES ",
            )
            .rows(known.iter().map(|(id, kind)| {
                [
                    Bind::text(group_id),
                    Bind::text(*id),
                    Bind::text(kind.as_str()),
                    Bind::text(conn.as_str()),
                ]
            }))
            .push(" ON CONFLICT DO NOTHING RETURNING member_id, member_type");
            self.member_rows(c, &ins, 1, delta).await?;
        }
        Ok(())
    }

    /// Applies one membership set operation, recording the rows it added and removed.
    async fn apply_member_op(
        &self,
        c: &mut Conn<'_>,
        conn: &ConnectionId,
        group_id: &str,
        op: &MemberOp,
        delta: &mut Delta,
    ) -> Result<()> {
        match op {
            MemberOp::Add(ids) => self.add_members(c, conn, group_id, ids, delta).await,
            MemberOp::Remove(ids) => {
                // An id no record can have names no member.
                let ids: BTreeSet<&str> = ids
                    .iter()
                    .map(String::as_str)
                    .filter(|id| limits::is_storable_key(id))
                    .collect();
                let ids: Vec<&str> = ids.into_iter().collect();
                for chunk in ids.chunks(CHUNK) {
                    let mut del = self.sql();
                    del.push("DELETE FROM group_members WHERE group_id = ")
                        .bind_text(group_id)
                        .push(" AND member_id IN ")
                        .bind_list(chunk.iter().copied())
                        .push(" RETURNING member_id, member_type");
                    self.member_rows(c, &del, -1, delta).await?;
                }
                Ok(())
            }
            MemberOp::RemoveWhere(val_filter) => {
                let mut del = self.sql();
                del.push("DELETE FROM group_members AS m WHERE m.group_id = ")
                    .bind_text(group_id)
                    .push(" AND ");
                let members = self
                    .catalogue
                    .group
                    .attr("members")
                    .cloned()
                    .ok_or_else(|| DirectoryError::corrupt("catalogue lacks members"))?;
                filter::compile_member_filter(val_filter, &members, &mut del)?;
                del.push(" RETURNING member_id, member_type");
                self.member_rows(c, &del, -1, delta).await
            }
            MemberOp::RemoveAll => {
                let mut del = self.sql();
                del.push("DELETE FROM group_members WHERE group_id = ")
                    .bind_text(group_id)
                    .push(" RETURNING member_id, member_type");
                self.member_rows(c, &del, -1, delta).await
            }
        }
    }

    /// Which of these ids name a user or a group of the connection.
    async fn member_kinds(
        &self,
        c: &mut Conn<'_>,
        conn: &ConnectionId,
        ids: &[&str],
    ) -> Result<HashMap<String, MemberKind>> {
        // On PostgreSQL the members' rows are share-locked until the membership commits: a
        // concurrent delete of one of them either waits for this transaction (and then
        // removes the new row with the rest of its memberships) or has committed first (and
        // the locked read no longer returns the row, so it is skipped). Either way no
        // membership row outlives its member. SQLite runs one writer at a time.
        let share = if self.backend == Backend::Postgres {
            " FOR SHARE"
        } else {
            ""
        };
        let mut q = self.sql();
        q.push("SELECT id, 'User' FROM (SELECT id FROM users WHERE connection = ")
            .bind_text(conn.as_str())
            .push(" AND id IN ")
            .bind_list(ids.iter().copied())
            .push(share)
            .push(
                ") u UNION ALL SELECT id, 'Group' FROM (SELECT id FROM groups WHERE connection = ",
            )
            .bind_text(conn.as_str())
            .push(" AND id IN ")
            .bind_list(ids.iter().copied())
            .push(share)
            .push(") g");
        let mut out = HashMap::with_capacity(ids.len());
        for row in q.fetch_all(c).await? {
            let id: String = row.get(0)?;
            let kind: String = row.get(1)?;
            out.insert(id, MemberKind::parse(&kind).unwrap_or(MemberKind::User));
        }
        Ok(out)
    }

    /// Bumps the version of users whose `groups` attribute changed, so their ETag changes
    /// with their representation. Costs one row per affected user.
    async fn touch_users(
        &self,
        c: &mut Conn<'_>,
        users: &BTreeSet<String>,
        now: Timestamp,
    ) -> Result<()> {
        let ids: Vec<&str> = users.iter().map(String::as_str).collect();
        for chunk in ids.chunks(CHUNK) {
            let mut upd = self.sql();
            upd.push("UPDATE users SET version = version + 1, last_modified = ")
                .bind_text(now.to_rfc3339())
                .push(" WHERE id IN ")
                .bind_list(chunk.iter().copied());
            upd.execute(c).await?;
        }
        Ok(())
    }
}

/// Removes `member_id` from every group of the connection; bumps the version (and adjusts
/// the member count) of each group that lost it. Returns those groups.
pub(super) async fn detach_member_everywhere(
    store: &SqlStore,
    c: &mut Conn<'_>,
    conn: &ConnectionId,
    member_id: &str,
    now: Timestamp,
) -> Result<Vec<String>> {
    let mut del = store.sql();
    del.push("DELETE FROM group_members WHERE connection = ")
        .bind_text(conn.as_str())
        .push(" AND member_id = ")
        .bind_text(member_id)
        .push(" RETURNING group_id");
    let groups: Vec<String> = del
        .fetch_all(c)
        .await?
        .iter()
        .map(|r| r.get::<String>(0))
        .collect::<Result<_, _>>()?;
    for chunk in groups.chunks(CHUNK) {
        let mut upd = store.sql();
        upd.push(
            "UPDATE groups SET member_count = member_count - 1, version = version + 1, last_modified = ",
        )
        .bind_text(now.to_rfc3339())
        .push(" WHERE connection = ")
        .bind_text(conn.as_str())
        .push(" AND id IN ")
        .bind_list(chunk.iter().map(String::as_str));
        upd.execute(c).await?;
    }
    Ok(groups)
}

#[async_trait]
impl GroupStore for SqlStore {
    async fn create_group(
        &self,
        conn: &ConnectionId,
        doc: GroupDoc,
        members: &[String],
        now: Timestamp,
    ) -> Result<(GroupRecord, MembershipDelta)> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let mut c = tx.conn();
        let mut ins = self.sql();
        ins.push(
            "INSERT INTO groups (id, connection, display_name, display_name_lc, external_id, \
             created, last_modified, version, member_count, doc) VALUES ",
        )
        .row([
            Bind::text(id.as_str()),
            Bind::text(conn.as_str()),
            Bind::text(doc.display_name()),
            Bind::text(doc.display_name().to_lowercase()),
            Bind::opt(doc.external_id()),
            Bind::text(now.to_rfc3339()),
            Bind::text(now.to_rfc3339()),
            Bind::Int(1),
            Bind::Int(0),
            Bind::Doc(doc.to_json()),
        ]);
        ins.execute(&mut c).await?;
        let mut delta = Delta::default();
        if !members.is_empty() {
            self.add_members(&mut c, conn, &id, members, &mut delta)
                .await?;
            let mut upd = self.sql();
            upd.push("UPDATE groups SET member_count = ")
                .bind(Bind::Int(delta.count))
                .push(" WHERE id = ")
                .bind_text(id.as_str());
            upd.execute(&mut c).await?;
            self.touch_users(&mut c, &delta.users, now).await?;
        }
        tx.commit().await?;
        let member_count = delta.count;
        Ok((
            GroupRecord {
                id,
                doc,
                created: now,
                last_modified: now,
                version: 1,
                member_count,
            },
            delta.into_delta(),
        ))
    }

    async fn get_group(&self, conn: &ConnectionId, id: &str) -> Result<Option<GroupRecord>> {
        self.get::<GroupKind>(conn, id).await
    }

    async fn list_groups(&self, conn: &ConnectionId, spec: &ListSpec) -> Result<Page<GroupRecord>> {
        self.list::<GroupKind>(conn, spec).await
    }

    async fn modify_group(
        &self,
        at: Target<'_>,
        doc: Option<GroupDoc>,
        members: &[MemberOp],
    ) -> Result<GroupChange> {
        let (conn, id, now) = (at.conn, at.id, at.now);
        let mut tx = self.begin_write().await?;
        let mut c = tx.conn();
        let before = self.lock::<GroupKind>(&mut c, at).await?;
        let doc = doc.unwrap_or_else(|| before.doc.clone());
        let mut delta = Delta::default();
        for op in members {
            self.apply_member_op(&mut c, conn, id, op, &mut delta)
                .await?;
        }
        if doc == before.doc && delta.is_empty() {
            tx.commit().await?;
            return Ok(GroupChange {
                record: Change {
                    after: before.clone(),
                    before,
                },
                members: MembershipDelta::default(),
            });
        }
        let mut upd = self.sql();
        upd.push("UPDATE groups SET display_name = ")
            .bind_text(doc.display_name())
            .push(", display_name_lc = ")
            .bind_text(doc.display_name().to_lowercase())
            .push(", external_id = ")
            .bind(Bind::opt(doc.external_id()))
            .push(", member_count = member_count + ")
            .bind(Bind::Int(delta.count))
            .push(", last_modified = ")
            .bind_text(now.to_rfc3339())
            .push(", version = version + 1, doc = ")
            .bind(Bind::Doc(doc.to_json()))
            .push(" WHERE id = ")
            .bind_text(id);
        upd.execute(&mut c).await?;
        self.touch_users(&mut c, &delta.users, now).await?;
        tx.commit().await?;
        let after = GroupRecord {
            id: before.id.clone(),
            doc,
            created: before.created,
            last_modified: now,
            version: before.version + 1,
            member_count: before.member_count + delta.count,
        };
        Ok(GroupChange {
            record: Change { before, after },
            members: delta.into_delta(),
        })
    }

    async fn delete_group(&self, at: Target<'_>) -> Result<Removed<GroupRecord>> {
        let (conn, id, now) = (at.conn, at.id, at.now);
        let mut tx = self.begin_write().await?;
        let mut c = tx.conn();
        let before = self.lock::<GroupKind>(&mut c, at).await?;
        let mut delta = Delta::default();
        self.apply_member_op(&mut c, conn, id, &MemberOp::RemoveAll, &mut delta)
            .await?;
        detach_member_everywhere(self, &mut c, conn, id, now).await?;
        self.touch_users(&mut c, &delta.users, now).await?;
        let mut del = self.sql();
        del.push("DELETE FROM groups WHERE id = ").bind_text(id);
        del.execute(&mut c).await?;
        tx.commit().await?;
        Ok(Removed {
            before,
            members: delta.into_delta(),
        })
    }

    async fn group_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<HashMap<String, Vec<MemberRef>>> {
        let mut out: HashMap<String, Vec<MemberRef>> = HashMap::new();
        for chunk in group_ids.chunks(CHUNK) {
            let mut q = self.sql();
            q.push(
                "SELECT m.group_id, m.member_id, m.member_type FROM group_members m \
                 WHERE m.connection = ",
            )
            .bind_text(conn.as_str())
            .push(" AND m.group_id IN ")
            .bind_list(chunk.iter().map(String::as_str))
            .push(" ORDER BY m.group_id, m.member_id");
            for row in self.read_all(&q).await? {
                let group: String = row.get(0)?;
                let kind: String = row.get(2)?;
                out.entry(group).or_default().push(MemberRef {
                    id: row.get(1)?,
                    kind: MemberKind::parse(&kind).unwrap_or(MemberKind::User),
                });
            }
        }
        Ok(out)
    }

    async fn user_groups(
        &self,
        conn: &ConnectionId,
        user_ids: &[String],
    ) -> Result<HashMap<String, Vec<GroupRef>>> {
        let mut out: HashMap<String, Vec<GroupRef>> = HashMap::new();
        for chunk in user_ids.chunks(CHUNK) {
            let mut q = self.sql();
            q.push(
                "SELECT m.member_id, g.id, g.display_name FROM group_members m \
                 JOIN groups g ON g.id = m.group_id WHERE m.connection = ",
            )
            .bind_text(conn.as_str())
            .push(" AND m.member_id IN ")
            .bind_list(chunk.iter().map(String::as_str))
            .push(" ORDER BY m.member_id, g.display_name_lc, g.id");
            for row in self.read_all(&q).await? {
                let user: String = row.get(0)?;
                out.entry(user).or_default().push(GroupRef {
                    id: row.get(1)?,
                    display: row.get(2)?,
                });
            }
        }
        Ok(out)
    }

    async fn user_access_groups(
        &self,
        conn: &ConnectionId,
        user_id: &str,
    ) -> Result<Vec<IdpGroup>> {
        // Walk up from the user's direct groups through groups that contain them. UNION (not
        // UNION ALL) stops cycles.
        let mut q = self.sql();
        q.push(
            "WITH RECURSIVE up(group_id, via) AS (\
               SELECT m.group_id, CAST(NULL AS TEXT) FROM group_members m \
               WHERE m.connection = ",
        )
        .bind_text(conn.as_str())
        .push(" AND m.member_id = ")
        .bind_text(user_id)
        .push(
            " UNION SELECT p.group_id, COALESCE(up.via, up.group_id) FROM group_members p \
               JOIN up ON p.member_id = up.group_id WHERE p.connection = ",
        )
        .bind_text(conn.as_str())
        .push(
            ") SELECT g.id, g.external_id, g.display_name, up.via FROM up \
             JOIN groups g ON g.id = up.group_id WHERE g.connection = ",
        )
        .bind_text(conn.as_str())
        .push(" ORDER BY g.id, up.via");
        let mut out: Vec<IdpGroup> = Vec::new();
        for row in self.read_all(&q).await? {
            let id: String = row.get(0)?;
            let via: Option<String> = row.get(3)?;
            // A group reached both directly and through nesting counts once, as direct.
            if let Some(prev) = out.iter_mut().find(|g| g.id == id) {
                if via.is_none() {
                    prev.via = None;
                }
                continue;
            }
            out.push(IdpGroup {
                id,
                external_id: row.get(1)?,
                display_name: row.get(2)?,
                via,
            });
        }
        Ok(out)
    }

    async fn group_user_members(
        &self,
        conn: &ConnectionId,
        group_ids: &[String],
    ) -> Result<Vec<String>> {
        let mut users = BTreeSet::new();
        for chunk in group_ids.chunks(CHUNK) {
            let mut q = self.sql();
            q.push("WITH RECURSIVE down(group_id) AS (SELECT g.id FROM groups g WHERE g.connection = ")
                .bind_text(conn.as_str())
                .push(" AND g.id IN ")
                .bind_list(chunk.iter().map(String::as_str))
                .push(
                    " UNION SELECT m.member_id FROM group_members m JOIN down ON m.group_id = down.group_id \
                     WHERE m.member_type = 'Group' AND m.connection = ",
                )
                .bind_text(conn.as_str())
                .push(
                    ") SELECT DISTINCT m.member_id FROM group_members m JOIN down ON m.group_id = down.group_id \
                     WHERE m.member_type = 'User' AND m.connection = ",
                )
                .bind_text(conn.as_str());
            for row in self.read_all(&q).await? {
                users.insert(row.get::<String>(0)?);
            }
        }
        Ok(users.into_iter().collect())
    }
}
