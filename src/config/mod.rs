//! Layered configuration: `config/pimgate.toml` (or `--config` / `PIMGATE_CONFIG`), then the
//! `PIMGATE_*` environment variables of the runtime contract, merged with `figment`
//! ([`load`](load::load)). Unknown keys in the file are errors that name the key; every
//! setting is documented in the shipped file.
//!
//! Secrets (SCIM tokens, the database URL, which may carry a password) are `SecretString`s:
//! redacted in `Debug` and never logged. Each has a `*_file` variant for Kubernetes secrets.
//!
//! - this file: the settings as written, with their defaults;
//! - [`load`]: layering file and environment, and validation into [`Validated`].

mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

pub use self::load::{EnvSource, ProcessEnv, config_path, load, parse, validate};
use crate::access::model::{AccessConfig, AccessModel};
use crate::connections::Registry;
pub use crate::oauth::settings::{OidcClientSettings, OidcSettings, SsoSettings};

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/pimgate.toml";
/// The embedded default store: a SQLite file under `./data`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/pimgate.db";
/// The connection `PIMGATE_SCIM_TOKEN` belongs to.
pub const DEFAULT_CONNECTION: &str = "default";

/// The whole configuration as read from file and environment.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub log: LogSettings,
    pub access_api: AccessApiSettings,
    pub scim: ScimSettings,
    /// One entry per IdP tenant pushing into pimgate, keyed by connection name. The
    /// connection `default` always exists.
    pub connections: BTreeMap<String, ConnectionSettings>,
    /// The access model: permissions, roles, user groups and per-connection mapping rules
    /// (validated into [`Validated::access`]).
    pub access: AccessConfig,
    /// pimgate as an OpenID provider towards the PIM: token lifetimes, signing, clients.
    pub oidc: OidcSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on (`PIMGATE_LISTEN`).
    pub listen: String,
    /// Serve `GET /metrics` on this address only (`PIMGATE_METRICS_LISTEN`), so an ingress
    /// in front of `listen` need not expose it. Unset: on `listen`.
    pub metrics_listen: Option<String>,
    /// The externally visible base URL (`https://pimgate.example.com`), used in `Location`
    /// headers and `meta.location`. Unset: taken from each request's `Host` header.
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes; larger bodies get `413`.
    pub max_body_bytes: usize,
    /// How long a request may take before it is answered `503` (its database statements
    /// stop then too).
    pub request_timeout_seconds: u64,
    /// How long a client may take to send a request's head (request line and headers),
    /// counted from the connection's first byte or from when it was accepted.
    pub header_read_timeout_seconds: u64,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout_seconds: u64,
    /// Open client connections at most; at the cap pimgate stops accepting until one
    /// closes. Kept below the process's file-descriptor limit.
    pub max_connections: usize,
    /// Requests served at once at most (`/healthz` and `/readyz` excepted); more are
    /// answered `503` with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Longest request URI (path and query), in bytes; longer is `414`.
    pub max_uri_bytes: usize,
    /// Largest request headers (all of them), in bytes; larger is `431`.
    pub max_header_bytes: usize,
    /// The `Host` values accepted when `public_url` is unset (it becomes the base of
    /// `Location` and `meta.location`). Default: the listen address, `localhost` and the
    /// loopback addresses, with and without the port.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: None,
            public_url: None,
            max_body_bytes: 1024 * 1024,
            request_timeout_seconds: 30,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            max_connections: 10_000,
            max_concurrent_requests: 512,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            allowed_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path` or `postgres://user@host/db` (`PIMGATE_DATABASE_URL`).
    pub url: Option<SecretString>,
    /// Read the URL from this file instead (`PIMGATE_DATABASE_URL_FILE`).
    pub url_file: Option<PathBuf>,
    /// Connection pool size per process.
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            max_connections: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://host:6379`, `rediss://…`, `redis+unix:///path` (`PIMGATE_REDIS_URL`); unset
    /// means the in-process cache (one replica only). Holds the resolved claims.
    pub url: Option<SecretString>,
    /// Prefix of every key pimgate writes, so several installations can share a Redis.
    pub key_prefix: String,
    /// Users whose cached claims and SCIM representations each replica also keeps in memory,
    /// kept coherent by Redis publish/subscribe; 0: every read asks Redis.
    pub near_cache_entries: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "pimgate".into(),
            near_cache_entries: crate::access::cache::DEFAULT_NEAR_ENTRIES,
        }
    }
}

/// Service credentials of the claims read API (`/access/v1`), for the PIM and operators.
/// They are never SCIM tokens, and a SCIM token is never one of them.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AccessApiSettings {
    /// Bearer tokens (16+ characters). Prefer `token_file` or `PIMGATE_ACCESS_TOKEN`.
    pub tokens: Vec<SecretString>,
    /// Read one more token from this file (`PIMGATE_ACCESS_TOKEN_FILE`).
    pub token_file: Option<PathBuf>,
    /// Claims requests served at once at most (their share of pimgate); default: three
    /// quarters of `database.max_connections`.
    pub max_concurrent_requests: Option<usize>,
}

impl std::fmt::Debug for AccessApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessApiSettings")
            .field("tokens", &self.tokens.len())
            .field("token_file", &self.token_file)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .finish()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    /// `text` or `json`, in any case.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        LogFormat::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("{raw:?} is not one of text, json")))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` for people, `json` for log pipelines (`PIMGATE_LOG_FORMAT`).
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `pimgate=debug,info` (`PIMGATE_LOG`).
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimSettings {
    /// Page size when a list request gives no `count`.
    pub default_page_size: i64,
    /// Largest page served (advertised as `filter.maxResults`); larger `count`s are capped.
    pub max_page_size: i64,
    /// A PATCH on a group answers with its members only up to this many members (unless the
    /// request asks for `attributes=members`), so a one-member change on a very large group
    /// costs the same as on a small one.
    pub patch_response_members_max: i64,
    /// SCIM requests of one connection served at once at most (its share of pimgate, so one
    /// IdP cannot starve the others); default: three quarters of
    /// `database.max_connections`.
    pub max_concurrent_requests: Option<usize>,
}

impl Default for ScimSettings {
    fn default() -> Self {
        Self {
            default_page_size: 100,
            max_page_size: 1000,
            patch_response_members_max: 1000,
            max_concurrent_requests: None,
        }
    }
}

#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionSettings {
    /// Shown in logs and `pimgate token list`.
    pub description: Option<String>,
    /// A bearer token this connection's IdP presents. Prefer `scim_token_file` or
    /// `pimgate token create` (stored hashed in the database); for `default`,
    /// `PIMGATE_SCIM_TOKEN` sets it.
    pub scim_token: Option<SecretString>,
    /// Read the bearer token from this file (a mounted Kubernetes secret).
    pub scim_token_file: Option<PathBuf>,
    /// Single sign-on through this connection's IdP (pimgate is its relying party).
    pub sso: Option<SsoSettings>,
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("description", &self.description)
            .field(
                "scim_token",
                &self.scim_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scim_token_file", &self.scim_token_file)
            .field("sso", &self.sso)
            .finish()
    }
}

/// A configuration problem, naming the key or variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl From<crate::oauth::settings::SettingsError> for ConfigError {
    fn from(e: crate::oauth::settings::SettingsError) -> Self {
        ConfigError::Invalid {
            key: e.key,
            message: e.message,
        }
    }
}

impl From<crate::access::model::ModelError> for ConfigError {
    fn from(e: crate::access::model::ModelError) -> Self {
        ConfigError::Invalid {
            key: e.key,
            message: e.message,
        }
    }
}

/// Where a configuration was read from, so it can be read again (on `SIGHUP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// Named on the command line or in `PIMGATE_CONFIG` (then it must exist).
    pub explicit: bool,
}

/// Settings checked and turned into the values the server runs with.
#[derive(Debug, Clone)]
pub struct Validated {
    pub listen: SocketAddr,
    /// `server.metrics_listen`: `/metrics` is served there (and not on `listen`).
    pub metrics_listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub database_url: SecretString,
    pub settings: Settings,
    /// Every configured connection (always `default`), with hashes of its SCIM tokens.
    pub connections: Registry,
    /// SHA-256 of the access API credentials.
    pub access_api_tokens: Vec<[u8; 32]>,
    /// The validated access model (shared; a config reload swaps the whole `Arc`).
    pub access: Arc<AccessModel>,
    /// The file and environment this was read from; `None` when built in code.
    pub source: Option<ConfigSource>,
    /// The `Host` values accepted when `public_url` is unset (lowercase; without a port they
    /// match any port).
    pub allowed_hosts: Vec<String>,
    /// Single sign-on: the upstream IdPs and the downstream clients (empty without them).
    pub sso: crate::oauth::settings::SsoConfig,
}
