//! Layered configuration: `config/pimgate.toml` (or `--config` / `PIMGATE_CONFIG`), then the
//! `PIMGATE_*` environment variables of the runtime contract. Unknown keys in the file are
//! errors that name the key; every setting is documented in the shipped file.
//!
//! Secrets (SCIM tokens, the database URL, which may carry a password) are `SecretString`s:
//! redacted in `Debug` and never logged. Each has a `*_file` variant for Kubernetes secrets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::directory::ConnectionId;

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/pimgate.toml";
/// The embedded default store: a SQLite file under `./data`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/pimgate.db";
/// The connection `PIMGATE_SCIM_TOKEN` belongs to.
pub const DEFAULT_CONNECTION: &str = "default";

/// The whole configuration as read from file and environment.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub redis: RedisSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub access_api: AccessApiSettings,
    #[serde(default)]
    pub scim: ScimSettings,
    /// One entry per IdP tenant pushing into pimgate, keyed by connection name. The
    /// connection `default` always exists.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionSettings>,
    /// The access model: permissions, roles, user groups and per-connection mapping rules
    /// (validated into [`Validated::access`]).
    #[serde(default)]
    pub access: crate::access::model::AccessConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (`PIMGATE_LISTEN`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The externally visible base URL (`https://pimgate.example.com`), used in `Location`
    /// headers and `meta.location`. Unset: taken from each request's `Host` header.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes; larger bodies get `413`.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long a request may take before it is answered `503`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            max_body_bytes: default_max_body(),
            request_timeout_seconds: default_request_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path` or `postgres://user@host/db` (`PIMGATE_DATABASE_URL`).
    #[serde(default)]
    pub url: Option<SecretString>,
    /// Read the URL from this file instead (`PIMGATE_DATABASE_URL_FILE`).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Connection pool size per process.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            max_connections: default_max_connections(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:6379`, `rediss://…`, `redis+unix:///path` (`PIMGATE_REDIS_URL`); unset
    /// means the in-process cache (one replica only). Holds the resolved claims.
    #[serde(default)]
    pub url: Option<SecretString>,
    /// Prefix of every key pimgate writes, so several installations can share a Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: default_key_prefix(),
        }
    }
}

fn default_key_prefix() -> String {
    "pimgate".into()
}

/// Service credentials of the claims read API (`/access/v1`), for the PIM and operators.
/// They are never SCIM tokens, and a SCIM token is never one of them.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AccessApiSettings {
    /// Bearer tokens (16+ characters). Prefer `token_file` or `PIMGATE_ACCESS_TOKEN`.
    #[serde(default)]
    pub tokens: Vec<SecretString>,
    /// Read one more token from this file (`PIMGATE_ACCESS_TOKEN_FILE`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for AccessApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessApiSettings")
            .field("tokens", &self.tokens.len())
            .field("token_file", &self.token_file)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` for people, `json` for log pipelines (`PIMGATE_LOG_FORMAT`).
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `pimgate=debug,info` (`PIMGATE_LOG`).
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimSettings {
    /// Page size when a list request gives no `count`.
    #[serde(default = "default_page_size")]
    pub default_page_size: i64,
    /// Largest page served (advertised as `filter.maxResults`); larger `count`s are capped.
    #[serde(default = "default_max_page_size")]
    pub max_page_size: i64,
    /// A PATCH on a group answers with its members only up to this many members (unless the
    /// request asks for `attributes=members`), so a one-member change on a very large group
    /// costs the same as on a small one.
    #[serde(default = "default_patch_members")]
    pub patch_response_members_max: i64,
}

impl Default for ScimSettings {
    fn default() -> Self {
        Self {
            default_page_size: default_page_size(),
            max_page_size: default_max_page_size(),
            patch_response_members_max: default_patch_members(),
        }
    }
}

#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Shown in logs and `pimgate token list`.
    #[serde(default)]
    pub description: Option<String>,
    /// A bearer token this connection's IdP presents. Prefer `scim_token_file` or
    /// `pimgate token create` (stored hashed in the database); for `default`,
    /// `PIMGATE_SCIM_TOKEN` sets it.
    #[serde(default)]
    pub scim_token: Option<SecretString>,
    /// Read the bearer token from this file (a mounted Kubernetes secret).
    #[serde(default)]
    pub scim_token_file: Option<PathBuf>,
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
            .finish()
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_request_timeout() -> u64 {
    30
}
fn default_max_connections() -> u32 {
    10
}
fn default_log_level() -> String {
    "info".into()
}
fn default_page_size() -> i64 {
    100
}
fn default_max_page_size() -> i64 {
    1000
}
fn default_patch_members() -> i64 {
    1000
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

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A connection as the server uses it: its name and the SHA-256 hashes of its configured
/// tokens (the secrets themselves are dropped after hashing).
#[derive(Clone)]
pub struct Connection {
    pub id: ConnectionId,
    pub description: Option<String>,
    pub token_hashes: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("tokens", &self.token_hashes.len())
            .finish()
    }
}

/// Settings checked and turned into the values the server runs with.
#[derive(Debug, Clone)]
pub struct Validated {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub database_url: SecretString,
    pub settings: Settings,
    pub connections: Vec<Connection>,
    /// SHA-256 of the access API credentials.
    pub access_api_tokens: Vec<[u8; 32]>,
    /// The validated access model (shared; a config reload swaps the whole `Arc`).
    pub access: std::sync::Arc<crate::access::model::AccessModel>,
}

/// The process environment, injected so tests can pass their own.
pub trait EnvSource {
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl<S: std::hash::BuildHasher> EnvSource for std::collections::HashMap<String, String, S> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// Which config file to read: the explicit path, else `PIMGATE_CONFIG`, else the default.
pub fn config_path(explicit: Option<&Path>, env: &dyn EnvSource) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| env.var("PIMGATE_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// Parses a config file's text (unknown keys are errors naming the key).
pub fn parse(text: &str, path: &str) -> Result<Settings, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Reads the file (a missing default file means all defaults), applies the environment and
/// validates the result.
pub fn load(path: &Path, explicit: bool, env: &dyn EnvSource) -> Result<Validated, ConfigError> {
    let shown = path.display().to_string();
    let settings = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &shown)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Settings::default(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: shown,
                source,
            });
        }
    };
    validate(apply_env(settings, env)?)
}

/// Applies the `PIMGATE_*` variables of the runtime contract over the file.
pub fn apply_env(mut s: Settings, env: &dyn EnvSource) -> Result<Settings, ConfigError> {
    if let Some(v) = env.var("PIMGATE_LISTEN") {
        s.server.listen = v;
    }
    if let Some(v) = env.var("PIMGATE_PUBLIC_URL") {
        s.server.public_url = Some(v);
    }
    if let Some(v) = env.var("PIMGATE_DATABASE_URL") {
        s.database.url = Some(SecretString::from(v));
    }
    if let Some(v) = env.var("PIMGATE_DATABASE_URL_FILE") {
        s.database.url_file = Some(PathBuf::from(v));
    }
    if let Some(v) = env.var("PIMGATE_REDIS_URL") {
        s.redis.url = Some(SecretString::from(v));
    }
    if let Some(v) = env.var("PIMGATE_LOG") {
        s.log.level = v;
    }
    if let Some(v) = env.var("PIMGATE_LOG_FORMAT") {
        s.log.format = match v.to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(invalid(
                    "PIMGATE_LOG_FORMAT",
                    format!("{other:?} is not one of text, json"),
                ));
            }
        };
    }
    if let Some(v) = env.var("PIMGATE_ACCESS_TOKEN") {
        s.access_api.tokens.push(SecretString::from(v));
    }
    if let Some(v) = env.var("PIMGATE_ACCESS_TOKEN_FILE") {
        s.access_api.token_file = Some(PathBuf::from(v));
    }
    let token = env.var("PIMGATE_SCIM_TOKEN");
    let token_file = env.var("PIMGATE_SCIM_TOKEN_FILE");
    if token.is_some() || token_file.is_some() {
        let default = s
            .connections
            .entry(DEFAULT_CONNECTION.to_owned())
            .or_default();
        if let Some(t) = token {
            default.scim_token = Some(SecretString::from(t));
        }
        if let Some(f) = token_file {
            default.scim_token_file = Some(PathBuf::from(f));
        }
    }
    Ok(s)
}

fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// Checks every value and derives what the server runs with.
pub fn validate(mut s: Settings) -> Result<Validated, ConfigError> {
    let listen: SocketAddr = s.server.listen.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!(
                "{:?} is not an address such as 127.0.0.1:8080",
                s.server.listen
            ),
        )
    })?;
    if let Some(url) = &s.server.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(invalid(
            "server.public_url",
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    if s.server.max_body_bytes < 1024 {
        return Err(invalid("server.max_body_bytes", "must be at least 1024"));
    }
    if s.server.request_timeout_seconds == 0 {
        return Err(invalid(
            "server.request_timeout_seconds",
            "must be at least 1",
        ));
    }
    if s.database.max_connections == 0 {
        return Err(invalid("database.max_connections", "must be at least 1"));
    }
    if s.scim.max_page_size < 1 {
        return Err(invalid("scim.max_page_size", "must be at least 1"));
    }
    if s.scim.default_page_size < 1 || s.scim.default_page_size > s.scim.max_page_size {
        return Err(invalid(
            "scim.default_page_size",
            "must be between 1 and scim.max_page_size",
        ));
    }
    if s.scim.patch_response_members_max < 0 {
        return Err(invalid(
            "scim.patch_response_members_max",
            "must not be negative",
        ));
    }
    s.log
        .level
        .parse::<tracing_subscriber::EnvFilter>()
        .map_err(|e| invalid("log.level", e.to_string()))?;
    let database_url = match (&s.database.url, &s.database.url_file) {
        (Some(url), _) => url.clone(),
        (None, Some(file)) => read_secret_file("database.url_file", file)?,
        (None, None) => SecretString::from(DEFAULT_DATABASE_URL),
    };
    crate::directory::sql::backend_of(database_url.expose_secret()).map_err(|e| {
        invalid(
            "database.url",
            e.to_string()
                .trim_start_matches("database_url: ")
                .to_owned(),
        )
    })?;
    if let Some(url) = &s.redis.url {
        let u = url.expose_secret();
        let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
        if !schemes.iter().any(|p| u.starts_with(p)) {
            return Err(invalid(
                "redis.url",
                "must start with redis://, rediss://, redis+unix:// or unix://",
            ));
        }
    }
    s.connections
        .entry(DEFAULT_CONNECTION.to_owned())
        .or_default();
    let mut connections = Vec::with_capacity(s.connections.len());
    for (name, c) in &s.connections {
        let key = format!("connections.{name}");
        let id = ConnectionId::parse(name).map_err(|e| invalid(&key, e.to_string()))?;
        let mut token_hashes = Vec::new();
        if let Some(t) = &c.scim_token {
            token_hashes.push(check_token(&format!("{key}.scim_token"), t)?);
        }
        if let Some(file) = &c.scim_token_file {
            let k = format!("{key}.scim_token_file");
            let t = read_secret_file(&k, file)?;
            token_hashes.push(check_token(&k, &t)?);
        }
        connections.push(Connection {
            id,
            description: c.description.clone(),
            token_hashes,
        });
    }
    let connection_ids: Vec<ConnectionId> = connections.iter().map(|c| c.id.clone()).collect();
    let access = std::sync::Arc::new(crate::access::model::validate(&s.access, &connection_ids)?);
    let mut access_api_tokens = Vec::new();
    for (i, t) in s.access_api.tokens.iter().enumerate() {
        access_api_tokens.push(check_token(&format!("access_api.tokens[{i}]"), t)?);
    }
    if let Some(file) = &s.access_api.token_file {
        let t = read_secret_file("access_api.token_file", file)?;
        access_api_tokens.push(check_token("access_api.token_file", &t)?);
    }
    if access_api_tokens.iter().any(|a| {
        connections
            .iter()
            .any(|c| crate::token::matches_any(a, &c.token_hashes))
    }) {
        return Err(invalid(
            "access_api.tokens",
            "an access API token must differ from every SCIM token",
        ));
    }
    if s.redis.key_prefix.is_empty()
        || s.redis
            .key_prefix
            .contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
    {
        return Err(invalid(
            "redis.key_prefix",
            "must be non-empty, without spaces or braces (braces are Redis Cluster hash tags)",
        ));
    }
    Ok(Validated {
        listen,
        public_url: s
            .server
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        database_url,
        settings: s,
        connections,
        access_api_tokens,
        access,
    })
}

/// Tokens shorter than 16 characters are refused: they can be guessed.
fn check_token(key: &str, token: &SecretString) -> Result<[u8; 32], ConfigError> {
    let t = token.expose_secret();
    if t.len() < 16 {
        return Err(invalid(key, "a SCIM token must be at least 16 characters"));
    }
    Ok(crate::token::hash(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = parse("[scim]\nmax_page = 3\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("max_page"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = parse("[server]\nlisten = \"127.0.0.1:1\"\n", "x").unwrap();
        let v = validate(
            apply_env(
                s,
                &env(&[
                    ("PIMGATE_LISTEN", "127.0.0.1:9999"),
                    ("PIMGATE_SCIM_TOKEN", "0123456789abcdef0123"),
                    ("PIMGATE_DATABASE_URL", "postgres://u@h/db"),
                ]),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(v.listen.port(), 9999);
        assert_eq!(v.database_url.expose_secret(), "postgres://u@h/db");
        let default = v
            .connections
            .iter()
            .find(|c| c.id.as_str() == "default")
            .unwrap();
        assert_eq!(
            default.token_hashes,
            vec![crate::token::hash("0123456789abcdef0123")]
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[server]\nlisten = \"nope\"\n", "server.listen"),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            ("[connections.Bad]\n", "connections.Bad"),
            (
                "[connections.a]\nscim_token = \"short\"\n",
                "connections.a.scim_token",
            ),
            ("[scim]\ndefault_page_size = 0\n", "scim.default_page_size"),
        ] {
            let err = validate(parse(text, "x").unwrap()).unwrap_err();
            assert!(err.to_string().starts_with(key), "{text}: {err}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = apply_env(
            Settings::default(),
            &env(&[
                ("PIMGATE_SCIM_TOKEN", "supersecretvalue-123"),
                ("PIMGATE_DATABASE_URL", "postgres://u:pw@h/db"),
            ]),
        )
        .unwrap();
        let shown = format!("{:?}", validate(s).unwrap());
        assert!(!shown.contains("supersecretvalue"), "{shown}");
        assert!(!shown.contains("pw@h"), "{shown}");
    }

    #[test]
    fn the_shipped_config_is_valid() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/pimgate.toml"))
                .unwrap();
        validate(parse(&text, "config/pimgate.toml").unwrap()).unwrap();
    }
}
