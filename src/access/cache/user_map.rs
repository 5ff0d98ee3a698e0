//! What the in-process cache and the near copies both keep: a value per (connection, user),
//! bounded in users, an arbitrary user going when full.

use std::collections::HashMap;

/// A user's cached texts, by [`super::Slot::index`]: (version, text).
pub(super) type Slots = [Option<(String, String)>; 2];

/// Values per connection and user, counted.
#[derive(Debug)]
pub(super) struct UserMap<V> {
    by_conn: HashMap<String, HashMap<String, V>>,
    len: usize,
}

impl<V> Default for UserMap<V> {
    fn default() -> Self {
        Self {
            by_conn: HashMap::new(),
            len: 0,
        }
    }
}

impl<V> UserMap<V> {
    /// How many users have a value.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, conn: &str, user: &str) -> Option<&V> {
        self.by_conn.get(conn).and_then(|m| m.get(user))
    }

    /// The user's value, made with `new` if there is none; a new user first makes room,
    /// when `max` users already have one, by dropping an arbitrary other.
    pub(super) fn get_or_insert_with(
        &mut self,
        conn: &str,
        user: &str,
        max: usize,
        new: impl FnOnce() -> V,
    ) -> &mut V {
        let is_new = self.get(conn, user).is_none();
        if is_new {
            if self.len >= max {
                let victim = self
                    .by_conn
                    .iter()
                    .find_map(|(c, m)| m.keys().next().map(|u| (c.clone(), u.clone())));
                if let Some((c, u)) = victim {
                    self.remove(&c, &u);
                }
            }
            self.len += 1;
        }
        self.by_conn
            .entry(conn.to_owned())
            .or_default()
            .entry(user.to_owned())
            .or_insert_with(new)
    }

    pub(super) fn remove(&mut self, conn: &str, user: &str) {
        let Some(users) = self.by_conn.get_mut(conn) else {
            return;
        };
        if users.remove(user).is_some() {
            self.len -= 1;
        }
        if users.is_empty() {
            self.by_conn.remove(conn);
        }
    }

    pub(super) fn remove_connection(&mut self, conn: &str) {
        if let Some(users) = self.by_conn.remove(conn) {
            self.len -= users.len();
        }
    }

    pub(super) fn clear(&mut self) {
        self.by_conn.clear();
        self.len = 0;
    }
}
