//! The store story: one sequence of directory operations run against each backend through
//! the store roles (users, groups and membership, credentials), so SQLite and PostgreSQL are
//! held to the same contract.

use std::sync::Arc;

use pimgate::clock::Timestamp;
use pimgate::connections::ConnectionId;
use pimgate::directory::schema::Catalogue;
use pimgate::directory::{
    CredentialStore, DirectoryError, GroupDoc, GroupStore, ListSpec, MemberOp, Target, TokenRow,
    UserDoc, UserStore,
};
use serde_json::{Map, Value, json};

use crate::helpers::{Db, TestDb};

fn user(name: &str, extra: Value) -> UserDoc {
    let mut m = Map::new();
    m.insert("userName".into(), json!(name));
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    UserDoc::new(m).unwrap()
}

fn group(name: &str) -> GroupDoc {
    let mut m = Map::new();
    m.insert("displayName".into(), json!(name));
    GroupDoc::new(m).unwrap()
}

fn spec(filter: Option<&str>) -> ListSpec {
    ListSpec {
        filter: filter.map(|f| f.parse().unwrap()),
        sort_by: None,
        descending: false,
        start_index: 1,
        count: 100,
    }
}

/// A write to record `id` of `conn` expecting `expect`, at `now`.
fn at<'a>(conn: &'a ConnectionId, id: &'a str, expect: Option<i64>, now: Timestamp) -> Target<'a> {
    Target {
        conn,
        id,
        expect,
        now,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn story(backend: Db) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let a = ConnectionId::parse("alpha").unwrap();
    let b = ConnectionId::parse("beta").unwrap();
    let t0 = Timestamp(1_700_000_000_000);

    // Users: create, read back as sent, uniqueness is case-insensitive and per connection.
    // Two e-mails that differ only in case: the create is accepted, and filters on e-mail
    // values find the user whatever the case.
    let ann_mails = json!({
        "emails": [
            {"value": "Ann@Work.example", "type": "work"},
            {"value": "ann@work.EXAMPLE", "type": "other"},
            {"value": "ann@home.example", "type": "home"}
        ],
        "externalId": "ext-1"
    });
    let ann = store
        .create_user(&a, user("Ann@Example.com", ann_mails), t0)
        .await
        .unwrap();
    assert_eq!(ann.doc.user_name(), "Ann@Example.com");
    assert_eq!(ann.version, 1);
    // A refused create leaves nothing behind: its e-mails find no one below.
    let dup = store
        .create_user(
            &a,
            user(
                "ann@example.COM",
                json!({"emails": [{"value": "dup@work.example"}]}),
            ),
            t0,
        )
        .await;
    assert!(
        matches!(dup, Err(DirectoryError::Conflict { .. })),
        "{dup:?}"
    );
    let ann_b = store
        .create_user(&b, user("ann@example.com", json!({})), t0)
        .await
        .unwrap();
    assert!(
        store.get_user(&a, &ann_b.id).await.unwrap().is_none(),
        "connections are isolated"
    );
    let bob = store
        .create_user(
            &a,
            user("bob", json!({"active": false, "displayName": "Bob B"})),
            t0,
        )
        .await
        .unwrap();

    // Filters run in the database, on the indexed attributes and inside documents.
    for (f, expect) in [
        (r#"userName eq "ANN@example.com""#, vec![ann.id.clone()]),
        (r#"externalId eq "ext-1""#, vec![ann.id.clone()]),
        (
            r#"emails.value eq "ann@work.EXAMPLE""#,
            vec![ann.id.clone()],
        ),
        (
            r#"emails[type eq "work" and value co "work"]"#,
            vec![ann.id.clone()],
        ),
        (
            r#"emails.value eq "ANN@home.example""#,
            vec![ann.id.clone()],
        ),
        (r#"emails.value eq "dup@work.example""#, vec![]),
        (r#"active eq false"#, vec![bob.id.clone()]),
        (r#"displayName sw "bob""#, vec![bob.id.clone()]),
        (r#"not (active eq false)"#, vec![ann.id.clone()]),
        (
            r#"userName eq "ann@example.com" or userName eq "bob""#,
            sorted(vec![ann.id.clone(), bob.id.clone()]),
        ),
        (
            r#"meta.lastModified ge "2023-01-01T00:00:00Z""#,
            sorted(vec![ann.id.clone(), bob.id.clone()]),
        ),
        (r#"userName co "%""#, vec![]),
    ] {
        let page = store.list_users(&a, &spec(Some(f))).await.unwrap();
        let ids = sorted(page.items.iter().map(|u| u.id.clone()).collect());
        assert_eq!(ids, expect, "filter {f}");
        assert_eq!(page.total, expect.len() as i64, "filter {f}");
    }

    // Update under a row lock; unchanged documents keep their version.
    let same = store
        .update_user(at(&a, &bob.id, None, t0), bob.doc.clone())
        .await
        .unwrap();
    assert_eq!(same.after.version, 1);
    assert_eq!(same.before, same.after);
    let renamed = store
        .update_user(
            at(&a, &bob.id, Some(1), Timestamp(t0.0 + 1)),
            user("robert", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(renamed.after.version, 2);
    assert_eq!(renamed.before.doc.user_name(), "bob");
    let stale = store
        .update_user(at(&a, &bob.id, Some(1), t0), user("x", json!({})))
        .await;
    assert!(
        matches!(stale, Err(DirectoryError::VersionMismatch { current: 2 })),
        "{stale:?}"
    );
    let clash = store
        .update_user(
            at(&a, &bob.id, None, t0),
            user("ANN@example.com", json!({})),
        )
        .await;
    assert!(
        matches!(clash, Err(DirectoryError::Conflict { .. })),
        "{clash:?}"
    );

    // Groups and membership as set operations.
    let (g, delta) = store
        .create_group(&a, group("Editors"), std::slice::from_ref(&ann.id), t0)
        .await
        .unwrap();
    assert_eq!(g.member_count, 1);
    assert_eq!(delta.users, vec![ann.id.clone()]);
    let (foreign, _) = store
        .create_group(&a, group("Foreign"), std::slice::from_ref(&ann_b.id), t0)
        .await
        .unwrap();
    assert_eq!(
        foreign.member_count, 0,
        "a user of another connection is never added"
    );
    let own = store
        .modify_group(
            at(&a, &foreign.id, None, t0),
            None,
            &[MemberOp::Add(vec![foreign.id.clone()])],
        )
        .await;
    assert!(
        matches!(own, Err(DirectoryError::InvalidValue { .. })),
        "a group cannot contain itself"
    );
    let change = store
        .modify_group(
            at(&a, &g.id, None, t0),
            None,
            &[MemberOp::Add(vec![ann.id.clone(), bob.id.clone()])],
        )
        .await
        .unwrap();
    assert_eq!(
        change.members.users,
        vec![bob.id.clone()],
        "only the new member is reported"
    );
    let g2 = change.record.after;
    assert_eq!((g2.member_count, g2.version), (2, 2));
    assert_eq!(change.record.before.member_count, 1);
    let change = store
        .modify_group(
            at(&a, &g.id, None, t0),
            None,
            &[MemberOp::Remove(vec![ann.id.clone(), "nobody".into()])],
        )
        .await
        .unwrap();
    assert_eq!(change.members.users, vec![ann.id.clone()]);
    let g3 = change.record.after;
    assert_eq!(g3.member_count, 1);
    let members = store
        .group_members(&a, std::slice::from_ref(&g.id))
        .await
        .unwrap();
    assert_eq!(
        members[&g.id]
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        vec![bob.id.clone()]
    );
    let groups = store
        .list_groups(
            &a,
            &spec(Some(&format!(r#"members.value eq "{}""#, bob.id))),
        )
        .await
        .unwrap();
    assert_eq!(groups.total, 1);
    let by_member = store
        .user_groups(&a, std::slice::from_ref(&bob.id))
        .await
        .unwrap();
    assert_eq!(by_member[&bob.id][0].display, "Editors");

    // A failed membership change writes nothing.
    let failed = store
        .modify_group(
            at(&a, &g.id, None, t0),
            None,
            &[
                MemberOp::Add(vec![ann.id.clone()]),
                MemberOp::Add(vec![g.id.clone()]),
            ],
        )
        .await;
    assert!(failed.is_err());
    let after = store.get_group(&a, &g.id).await.unwrap().unwrap();
    assert_eq!((after.member_count, after.version), (1, g3.version));

    // Deleting a user removes its memberships and bumps the groups it left.
    let left = store.delete_user(at(&a, &bob.id, None, t0)).await.unwrap();
    assert_eq!(left.members.groups, vec![g.id.clone()]);
    assert_eq!(left.before.id, bob.id);
    let after = store.get_group(&a, &g.id).await.unwrap().unwrap();
    assert_eq!(after.member_count, 0);
    assert!(
        store
            .group_members(&a, std::slice::from_ref(&g.id))
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting a group.
    let removed = store.delete_group(at(&a, &g.id, None, t0)).await.unwrap();
    assert!(removed.members.users.is_empty());
    assert!(store.get_group(&a, &g.id).await.unwrap().is_none());

    // Tokens: found by hash, listed per connection, revoked.
    let row = TokenRow {
        id: "tok-1".into(),
        connection: a.clone(),
        hash: pimgate::token::hash("some-secret-token-value"),
        label: "entra".into(),
        created: t0,
    };
    store.insert_token(&row).await.unwrap();
    assert_eq!(
        store.find_token(&row.hash).await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(store.list_tokens(&b).await.unwrap(), vec![]);
    assert!(store.revoke_token(&a, "tok-1").await.unwrap());
    assert_eq!(store.find_token(&row.hash).await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn story_sqlite() {
    story(Db::Sqlite).await;
}

#[tokio::test]
async fn story_postgres() {
    story(Db::Postgres).await;
}

/// Concurrent one-member additions to one group serialize on the group row and lose nothing.
async fn concurrent_member_adds(backend: Db) {
    let db = TestDb::new(backend).await;
    let store = Arc::new(db.store().await);
    let c = ConnectionId::parse("alpha").unwrap();
    let t0 = Timestamp(1_700_000_000_000);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            store
                .create_user(&c, user(&format!("u{i}"), json!({})), t0)
                .await
                .unwrap()
                .id,
        );
    }
    let (g, _) = store.create_group(&c, group("G"), &[], t0).await.unwrap();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let store = store.clone();
            let (c, gid, id) = (c.clone(), g.id.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .modify_group(at(&c, &gid, None, t0), None, &[MemberOp::Add(vec![id])])
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after = store.get_group(&c, &g.id).await.unwrap().unwrap();
    assert_eq!(after.member_count, 30);
    assert_eq!(after.version, 31);
    let members = store
        .group_members(&c, std::slice::from_ref(&g.id))
        .await
        .unwrap();
    assert_eq!(members[&g.id].len(), 30);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_member_adds_sqlite() {
    concurrent_member_adds(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_member_adds_postgres() {
    concurrent_member_adds(Db::Postgres).await;
}

#[test]
fn catalogue_loads() {
    Catalogue::load().unwrap();
}
