//! Connections: one per identity-provider tenant pushing into pimgate (and, with single
//! sign-on, signing people in through it). The [`Registry`] is the one list every capability
//! reads: SCIM authenticates a connection's IdP against it, the claims API and the operator
//! tools check connection names against it, and the SSO settings of a connection will live
//! beside its SCIM credentials here.
//!
//! The registry is built once from validated configuration; it holds only SHA-256 hashes of
//! configured tokens, never the secrets.

use std::fmt;

/// The name of a connection: one IdP tenant pushing into pimgate.
///
/// It appears in URLs (`/scim/{connection}/v2`) and in every key of the store and the cache,
/// so it is kept to a URL- and log-safe alphabet: lowercase ASCII letters, digits, `-` and
/// `_`, 1 to 63 characters, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// Parses a connection name, refusing anything outside the safe alphabet.
    pub fn parse(raw: &str) -> Result<Self, InvalidConnectionId> {
        let ok = !raw.is_empty()
            && raw.len() <= 63
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && raw
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidConnectionId(raw.to_owned()))
        }
    }

    /// The connection name as it appears in URLs and the store.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A connection name outside the allowed alphabet.
#[derive(Debug, thiserror::Error)]
#[error(
    "connection name {0:?} is not valid: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
)]
pub struct InvalidConnectionId(pub String);

/// A configured connection: its name and the SHA-256 hashes of its configured SCIM tokens
/// (tokens made with `pimgate token create` live in the store instead).
#[derive(Clone)]
pub struct Connection {
    pub id: ConnectionId,
    /// Shown in logs and `pimgate token list`.
    pub description: Option<String>,
    pub scim_token_hashes: Vec<[u8; 32]>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("scim_tokens", &self.scim_token_hashes.len())
            .finish()
    }
}

/// Every configured connection, in name order.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    connections: Vec<Connection>,
}

impl Registry {
    pub fn new(mut connections: Vec<Connection>) -> Self {
        connections.sort_by(|a, b| a.id.cmp(&b.id));
        connections.dedup_by(|a, b| a.id == b.id);
        Self { connections }
    }

    pub fn get(&self, id: &ConnectionId) -> Option<&Connection> {
        self.connections.iter().find(|c| &c.id == id)
    }

    /// The configured connection with this name as written in a URL, if any.
    pub fn find(&self, raw: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.id.as_str() == raw)
    }

    pub fn contains(&self, id: &ConnectionId) -> bool {
        self.get(id).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Connection> {
        self.connections.iter()
    }

    pub fn ids(&self) -> impl Iterator<Item = &ConnectionId> {
        self.connections.iter().map(|c| &c.id)
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// The connection one of whose configured SCIM tokens has this hash. Every token of
    /// every connection is compared, in constant time, whatever matches.
    pub fn scim_token_owner(&self, hash: &[u8; 32]) -> Option<&ConnectionId> {
        let mut owner = None;
        for c in &self.connections {
            if crate::token::matches_any(hash, &c.scim_token_hashes) {
                owner = Some(&c.id);
            }
        }
        owner
    }
}
