//! Reading the configuration: the file, then the `PIMGATE_*` variables, merged by `figment`
//! into [`Settings`], then every value checked and derived into [`Validated`].
//!
//! The variables are the runtime contract and keep their names (`PIMGATE_LISTEN` is
//! `server.listen`, `PIMGATE_SCIM_TOKEN` the `default` connection's token, ...); they are
//! mapped explicitly rather than derived from key paths. A list variable
//! (`PIMGATE_ACCESS_TOKEN`) adds to the file's list instead of replacing it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{
    ConfigError, ConfigSource, DEFAULT_CONFIG, DEFAULT_CONNECTION, DEFAULT_DATABASE_URL, LogFormat,
    Settings, Validated,
};
use crate::connections::{Connection, ConnectionId, Registry};

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
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

/// The `PIMGATE_*` variables of the runtime contract, as one layer of nested settings.
struct EnvLayer(Value);

impl EnvLayer {
    fn read(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let mut layer = json!({});
        let mut set = |path: &[&str], value: Value| {
            let mut at = &mut layer;
            for key in path {
                at = &mut at[*key];
            }
            *at = value;
        };
        for (var, path) in [
            ("PIMGATE_LISTEN", &["server", "listen"][..]),
            ("PIMGATE_METRICS_LISTEN", &["server", "metrics_listen"]),
            ("PIMGATE_PUBLIC_URL", &["server", "public_url"]),
            ("PIMGATE_DATABASE_URL", &["database", "url"]),
            ("PIMGATE_DATABASE_URL_FILE", &["database", "url_file"]),
            ("PIMGATE_REDIS_URL", &["redis", "url"]),
            ("PIMGATE_LOG", &["log", "level"]),
            ("PIMGATE_ACCESS_TOKEN_FILE", &["access_api", "token_file"]),
            (
                "PIMGATE_KEY_ENCRYPTION_KEY_FILE",
                &["oidc", "key_encryption_key_file"],
            ),
            (
                "PIMGATE_SCIM_TOKEN",
                &["connections", DEFAULT_CONNECTION, "scim_token"],
            ),
            (
                "PIMGATE_SCIM_TOKEN_FILE",
                &["connections", DEFAULT_CONNECTION, "scim_token_file"],
            ),
        ] {
            if let Some(v) = env.var(var) {
                set(path, Value::String(v));
            }
        }
        if let Some(v) = env.var("PIMGATE_LOG_FORMAT") {
            if LogFormat::parse(&v).is_none() {
                return Err(invalid(
                    "PIMGATE_LOG_FORMAT",
                    format!("{v:?} is not one of text, json"),
                ));
            }
            set(&["log", "format"], Value::String(v));
        }
        if let Some(v) = env.var("PIMGATE_ACCESS_TOKEN") {
            set(&["access_api", "tokens"], json!([v]));
        }
        Ok(Self(layer))
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("PIMGATE_* environment variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.0).data()
    }
}

/// A figment error as a config error naming the key (and the file, when it is the file's).
fn config_error(e: figment::Error, path: &str) -> ConfigError {
    let key = e.path.join(".");
    let from_file = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.source.as_ref().is_some_and(|s| s.file_path().is_some()));
    let message = if key.is_empty() {
        e.kind.to_string()
    } else {
        format!("{key}: {}", e.kind)
    };
    match (&e.metadata, from_file) {
        (_, true) | (None, _) => ConfigError::Parse {
            path: path.to_owned(),
            message,
        },
        (Some(m), false) => invalid(
            if key.is_empty() {
                m.name.to_string()
            } else {
                key
            },
            format!("{} (from {})", e.kind, m.name),
        ),
    }
}

/// Parses a config file's text (unknown keys are errors naming the key).
pub fn parse(text: &str, path: &str) -> Result<Settings, ConfigError> {
    Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| config_error(e, path))
}

/// Reads the file (a missing default file means all defaults), applies the environment and
/// validates the result.
pub fn load(path: &Path, explicit: bool, env: &dyn EnvSource) -> Result<Validated, ConfigError> {
    let shown = path.display().to_string();
    let mut figment = Figment::new();
    match std::fs::metadata(path) {
        Ok(_) => figment = figment.merge(Toml::file_exact(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
        Err(source) => {
            return Err(ConfigError::Read {
                path: shown,
                source,
            });
        }
    }
    let settings = figment
        .admerge(EnvLayer::read(env)?)
        .extract()
        .map_err(|e| config_error(e, &shown))?;
    let mut v = validate(settings)?;
    v.source = Some(ConfigSource {
        path: path.to_path_buf(),
        explicit,
    });
    Ok(v)
}

/// Settings from a file's text and an environment, for tests.
#[cfg(test)]
pub(super) fn layered(text: &str, env: &dyn EnvSource) -> Result<Settings, ConfigError> {
    Figment::from(Toml::string(text))
        .admerge(EnvLayer::read(env)?)
        .extract()
        .map_err(|e| config_error(e, "test"))
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

/// Tokens shorter than 16 characters are refused: they can be guessed.
fn check_token(key: &str, token: &SecretString) -> Result<[u8; 32], ConfigError> {
    let t = token.expose_secret();
    if t.len() < 16 {
        return Err(invalid(key, "a SCIM token must be at least 16 characters"));
    }
    Ok(crate::token::hash(t))
}

/// A number setting must be at least `min`.
fn at_least(key: &str, value: i64, min: i64) -> Result<(), ConfigError> {
    if value < min {
        let what = if min == 0 {
            "must not be negative".to_owned()
        } else {
            format!("must be at least {min}")
        };
        return Err(invalid(key, what));
    }
    Ok(())
}

fn check_server(s: &Settings) -> Result<SocketAddr, ConfigError> {
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
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    at_least(
        "server.max_body_bytes",
        n(s.server.max_body_bytes as u64),
        1024,
    )?;
    for (key, value, min) in [
        (
            "server.request_timeout_seconds",
            n(s.server.request_timeout_seconds),
            1,
        ),
        (
            "server.header_read_timeout_seconds",
            n(s.server.header_read_timeout_seconds),
            1,
        ),
        (
            "server.idle_timeout_seconds",
            n(s.server.idle_timeout_seconds),
            1,
        ),
        (
            "server.max_connections",
            n(s.server.max_connections as u64),
            1,
        ),
        (
            "server.max_concurrent_requests",
            n(s.server.max_concurrent_requests as u64),
            1,
        ),
        (
            "server.max_uri_bytes",
            n(s.server.max_uri_bytes as u64),
            256,
        ),
        (
            "server.max_header_bytes",
            n(s.server.max_header_bytes as u64),
            1024,
        ),
        (
            "scim.max_concurrent_requests",
            n(s.scim.max_concurrent_requests.unwrap_or(1) as u64),
            1,
        ),
        (
            "access_api.max_concurrent_requests",
            n(s.access_api.max_concurrent_requests.unwrap_or(1) as u64),
            1,
        ),
    ] {
        at_least(key, value, min)?;
    }
    for (i, h) in s.server.allowed_hosts.iter().enumerate() {
        if !crate::host::is_host(h) {
            return Err(invalid(
                format!("server.allowed_hosts[{i}]"),
                format!("{h:?} is not a host name or address, with an optional :port"),
            ));
        }
    }
    at_least(
        "database.max_connections",
        i64::from(s.database.max_connections),
        1,
    )?;
    at_least("scim.max_page_size", s.scim.max_page_size, 1)?;
    if s.scim.default_page_size < 1 || s.scim.default_page_size > s.scim.max_page_size {
        return Err(invalid(
            "scim.default_page_size",
            "must be between 1 and scim.max_page_size",
        ));
    }
    at_least(
        "scim.patch_response_members_max",
        s.scim.patch_response_members_max,
        0,
    )?;
    s.log
        .level
        .parse::<tracing_subscriber::EnvFilter>()
        .map_err(|e| invalid("log.level", e.to_string()))?;
    Ok(listen)
}

/// The hosts accepted without `public_url`: the configured list, or the listen address and
/// the loopback names (any port).
fn allowed_hosts(s: &Settings, listen: SocketAddr) -> Vec<String> {
    if !s.server.allowed_hosts.is_empty() {
        return s
            .server
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
    }
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "[::1]".to_owned(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        hosts.push(match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    hosts
}

fn check_stores(s: &Settings) -> Result<SecretString, ConfigError> {
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
        let schemes = [
            "redis://",
            "rediss://",
            "redis+unix://",
            "unix://",
            "redis+sentinel://",
        ];
        if !schemes.iter().any(|p| u.starts_with(p)) {
            return Err(invalid(
                "redis.url",
                "must start with redis://, rediss://, redis+unix://, unix:// or redis+sentinel://",
            ));
        }
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
    Ok(database_url)
}

fn connections(s: &Settings) -> Result<Vec<Connection>, ConfigError> {
    let mut out: Vec<Connection> = Vec::with_capacity(s.connections.len() + 1);
    let default = (DEFAULT_CONNECTION.to_owned(), Default::default());
    let missing_default = (!s.connections.contains_key(DEFAULT_CONNECTION)).then_some(&default);
    for (name, c) in s
        .connections
        .iter()
        .chain(missing_default.map(|(n, c)| (n, c)))
    {
        let key = format!("connections.{name}");
        let id = ConnectionId::parse(name).map_err(|e| invalid(&key, e.to_string()))?;
        let mut scim_token_hashes = Vec::new();
        if let Some(t) = &c.scim_token {
            scim_token_hashes.push(check_token(&format!("{key}.scim_token"), t)?);
        }
        if let Some(file) = &c.scim_token_file {
            let k = format!("{key}.scim_token_file");
            let t = read_secret_file(&k, file)?;
            scim_token_hashes.push(check_token(&k, &t)?);
        }
        // A token names its connection: shared, it would let one IdP act as another.
        for hash in &scim_token_hashes {
            if let Some(other) = out
                .iter()
                .find(|o| crate::token::matches_any(hash, &o.scim_token_hashes))
            {
                return Err(invalid(
                    &key,
                    format!(
                        "its SCIM token is also a token of connection {:?}; every connection needs tokens of its own",
                        other.id.as_str()
                    ),
                ));
            }
        }
        out.push(Connection {
            id,
            description: c.description.clone(),
            scim_token_hashes,
        });
    }
    Ok(out)
}

/// Checks every value and derives what the server runs with.
pub fn validate(s: Settings) -> Result<Validated, ConfigError> {
    let listen = check_server(&s)?;
    let database_url = check_stores(&s)?;
    let registry = Registry::new(connections(&s)?);
    let ids: Vec<ConnectionId> = registry.ids().cloned().collect();
    let access = Arc::new(crate::access::model::validate(&s.access, &ids)?);
    let mut access_api_tokens = Vec::new();
    for (i, t) in s.access_api.tokens.iter().enumerate() {
        access_api_tokens.push(check_token(&format!("access_api.tokens[{i}]"), t)?);
    }
    if let Some(file) = &s.access_api.token_file {
        let t = read_secret_file("access_api.token_file", file)?;
        access_api_tokens.push(check_token("access_api.token_file", &t)?);
    }
    if access_api_tokens
        .iter()
        .any(|a| registry.scim_token_owner(a).is_some())
    {
        return Err(invalid(
            "access_api.tokens",
            "an access API token must differ from every SCIM token",
        ));
    }
    let public_url = s
        .server
        .public_url
        .as_ref()
        .map(|u| u.trim_end_matches('/').to_owned());
    let sso = crate::oauth::settings::validate(
        public_url.as_deref(),
        s.connections
            .iter()
            .filter_map(|(name, c)| Some((name.as_str(), c.sso.as_ref()?))),
        &s.oidc,
    )?;
    let metrics_listen = match &s.server.metrics_listen {
        None => None,
        Some(raw) => {
            let addr: SocketAddr = raw.parse().map_err(|_| {
                invalid(
                    "server.metrics_listen",
                    format!("{raw:?} is not an address such as 0.0.0.0:9090"),
                )
            })?;
            if addr == listen && addr.port() != 0 {
                return Err(invalid(
                    "server.metrics_listen",
                    "must differ from server.listen (unset it to serve /metrics there)",
                ));
            }
            Some(addr)
        }
    };
    Ok(Validated {
        sso,
        allowed_hosts: allowed_hosts(&s, listen),
        listen,
        metrics_listen,
        public_url,
        database_url,
        settings: s,
        connections: registry,
        access_api_tokens,
        access,
        source: None,
    })
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
        let s = layered(
            "[server]\nlisten = \"127.0.0.1:1\"\n[access_api]\ntokens = [\"file-token-0123456789\"]\n",
            &env(&[
                ("PIMGATE_LISTEN", "127.0.0.1:9999"),
                ("PIMGATE_SCIM_TOKEN", "0123456789abcdef0123"),
                ("PIMGATE_DATABASE_URL", "postgres://u@h/db"),
                ("PIMGATE_ACCESS_TOKEN", "env-token-0123456789"),
                ("PIMGATE_LOG_FORMAT", "JSON"),
            ]),
        )
        .unwrap();
        let v = validate(s).unwrap();
        assert_eq!(v.listen.port(), 9999);
        assert_eq!(v.database_url.expose_secret(), "postgres://u@h/db");
        assert_eq!(v.settings.log.format, LogFormat::Json);
        let default = v
            .connections
            .iter()
            .find(|c| c.id.as_str() == "default")
            .unwrap();
        assert_eq!(
            default.scim_token_hashes,
            vec![crate::token::hash("0123456789abcdef0123")]
        );
        assert_eq!(
            v.access_api_tokens,
            vec![
                crate::token::hash("file-token-0123456789"),
                crate::token::hash("env-token-0123456789")
            ],
            "a list variable adds to the file's list"
        );
        let err = layered("", &env(&[("PIMGATE_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.to_string().starts_with("PIMGATE_LOG_FORMAT"), "{err}");
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
        let s = layered(
            "",
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
    fn single_sign_on_needs_a_public_url_and_names_its_keys() {
        let sso = "[connections.corp.sso]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\nclient_secret = \"upstream-secret-value\"\n";
        let err = validate(parse(sso, "x").unwrap()).unwrap_err();
        assert!(err.to_string().starts_with("server.public_url"), "{err}");
        assert!(err.to_string().contains("connections.corp.sso"), "{err}");
        let client = "[oidc.clients.pim]\nredirect_uris = [\"https://pim.example/cb\"]\n";
        let err = validate(parse(client, "x").unwrap()).unwrap_err();
        assert!(err.to_string().starts_with("server.public_url"), "{err}");
        let base = format!("[server]\npublic_url = \"https://gw.example\"\n{sso}");
        for (extra, key) in [
            ("[oidc]\nsigning_alg = \"RS256\"\n", "oidc.signing_alg"),
            (
                "[oidc.clients.pim]\nredirect_uris = [\"http://pim.example/cb\"]\n",
                "oidc.clients.pim.redirect_uris",
            ),
            (
                "[oidc.clients.pim]\nredirect_uris = [\"https://pim.example/cb\"]\nclient_secret = \"short\"\n",
                "oidc.clients.pim.client_secret",
            ),
            (
                "[oidc.clients.pim]\nredirect_uris = [\"https://pim.example/cb\"]\nconnections = [\"nope\"]\n",
                "oidc.clients.pim.connections",
            ),
        ] {
            let err = validate(parse(&format!("{base}{extra}"), "x").unwrap()).unwrap_err();
            assert!(err.to_string().starts_with(key), "{extra}: {err}");
        }
        let err = parse(&format!("{base}tenant = 1\n"), "x").unwrap_err();
        assert!(err.to_string().contains("tenant"), "{err}");
        let v = validate(parse(&base, "x").unwrap()).unwrap();
        assert!(v.sso.enabled());
        let shown = format!("{v:?}");
        assert!(!shown.contains("upstream-secret-value"), "{shown}");
    }

    #[test]
    fn the_shipped_config_is_valid() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/pimgate.toml"))
                .unwrap();
        validate(parse(&text, "config/pimgate.toml").unwrap()).unwrap();
    }
}
