//! The in-process claims cache: the same contract as Redis for a single replica, with a
//! mutex. Epochs come from one counter, so a token is `max(user epoch, global epoch)`, and
//! `put` checks the token under the lock. It is bounded; users without an entry share one
//! "floor" epoch, so forgetting a user never lets an old token come back.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use super::user_map::{Slots, UserMap};
use super::{ClaimsCache, ClaimsKey, Epoch, Lookup};
use crate::connections::ConnectionId;

/// Claims cached in this process: for a single replica without Redis. Bounded to
/// `max_entries` (an arbitrary entry goes when full); `MemoryCache::new(0)` caches nothing.
pub struct MemoryCache {
    max_entries: usize,
    state: Mutex<MemoryState>,
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("max_entries", &self.max_entries)
            .field("entries", &self.lock().entries.len())
            .finish()
    }
}

#[derive(Default)]
pub(super) struct MemoryState {
    /// The last epoch handed out: user and global epochs share this counter, so a token can
    /// be `max(user epoch, global epoch)` and still change whenever either moves.
    last: u64,
    global: u64,
    /// The epoch of every user without an entry. Invalidations raise it: a user without an
    /// entry may have a reader in flight, whose token must die. Dropping an entry to make
    /// room is safe for the same reason: its user falls back to the floor, which is at least
    /// the entry's own epoch (the floor never goes down), so no old token comes back.
    floor: u64,
    pub(super) entries: UserMap<MemoryEntry>,
}

/// What is cached of one user. Entries in the map are always current: every invalidation
/// removes them, and `put` stores only under the current token.
pub(super) struct MemoryEntry {
    /// The user's epoch (the floor when the entry was stored).
    epoch: u64,
    slots: Slots,
}

impl MemoryState {
    fn token(&self, conn: &ConnectionId, user_id: &str) -> u64 {
        let user = self
            .entries
            .get(conn.as_str(), user_id)
            .map_or(self.floor, |e| e.epoch);
        user.max(self.global)
    }

    fn next(&mut self) -> u64 {
        self.last += 1;
        self.last
    }
}

impl MemoryCache {
    /// An empty cache holding at most `max_entries` users' claims.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            state: Mutex::new(MemoryState::default()),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // Every update leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl ClaimsCache for MemoryCache {
    async fn get(&self, key: &ClaimsKey<'_>) -> Lookup {
        let state = self.lock();
        let cached = state
            .entries
            .get(key.conn.as_str(), key.user)
            .and_then(|e| e.slots[key.slot.index()].as_ref());
        match cached {
            Some((version, text)) if version == key.version => Lookup::Hit(text.clone()),
            _ => Lookup::Miss(Epoch(state.token(key.conn, key.user))),
        }
    }

    async fn put(&self, key: &ClaimsKey<'_>, epoch: Epoch, claims: &str) {
        let (conn, user_id, config_version) = (key.conn, key.user, key.version);
        if self.max_entries == 0 || !epoch.is_cacheable() {
            return;
        }
        let mut state = self.lock();
        if state.token(conn, user_id) != epoch.0 {
            return; // invalidated since the miss: these claims may be stale
        }
        let floor = state.floor;
        let entry =
            state
                .entries
                .get_or_insert_with(conn.as_str(), user_id, self.max_entries, || MemoryEntry {
                    epoch: floor,
                    slots: Slots::default(),
                });
        entry.slots[key.slot.index()] = Some((config_version.to_owned(), claims.to_owned()));
    }

    async fn invalidate(&self, conn: &ConnectionId, user_ids: &[String]) {
        if user_ids.is_empty() {
            return;
        }
        let mut state = self.lock();
        for u in user_ids {
            state.entries.remove(conn.as_str(), u);
        }
        state.floor = state.next();
    }

    async fn invalidate_all(&self) {
        let mut state = self.lock();
        state.entries.clear();
        state.global = state.next();
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
