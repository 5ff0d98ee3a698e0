//! Single-sign-on settings: `[connections.NAME.sso]` (pimgate as a relying party of each
//! connection's IdP) and `[oidc]` (pimgate as the PIM's OpenID provider), as written and
//! validated into [`SsoConfig`]. Every problem names its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::connections::ConnectionId;
pub use crate::sso::settings::{MatchAttribute, Unprovisioned, Upstream};

/// `[connections.NAME.sso]`: how pimgate signs people of this connection in at their IdP.
/// The redirect URI to register there is `{public_url}/sso/NAME/callback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoSettings {
    /// The IdP's issuer (`https://login.microsoftonline.com/<tenant>/v2.0`,
    /// `https://example.okta.com`); its discovery document is read from
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// Read the client secret from this file instead.
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for (`openid` is always asked for).
    #[serde(default = "default_sso_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token claim naming the person (`sub`; Entra: `oid`).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The SCIM attribute that claim must equal: `externalId` or `userName`.
    #[serde(default = "default_match_attribute")]
    pub match_attribute: String,
    /// A person signing in who was never provisioned: `deny`, or `create` (just in time).
    #[serde(default = "default_unprovisioned")]
    pub unprovisioned: String,
    /// The ID-token claim holding group values (read unless the connection's
    /// `token_groups` is `ignore`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// E-mail domains of this connection's people, for choosing the IdP from `login_hint`.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Entra multi-tenant apps (an issuer with `{tenantid}`): the tenant ids let in.
    #[serde(default)]
    pub tenants: Vec<String>,
}

fn default_sso_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_match_attribute() -> String {
    "externalId".into()
}
fn default_unprovisioned() -> String {
    "deny".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}

/// `[oidc]`: pimgate as the PIM's OpenID provider. The issuer is `server.public_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// `ES256` or `EdDSA`.
    pub signing_alg: String,
    pub access_token_ttl_seconds: u64,
    pub id_token_ttl_seconds: u64,
    /// The absolute lifetime of a refresh token (rotation keeps the end where it was).
    pub refresh_token_ttl_seconds: u64,
    /// A refresh token not used for this long stops working.
    pub refresh_token_idle_seconds: u64,
    /// A pimgate browser session that signs no client in for this long ends.
    pub session_idle_seconds: u64,
    /// A pimgate browser session ends this long after its sign-in at the IdP, however used.
    pub session_max_seconds: u64,
    /// Audit events are kept this long.
    pub audit_retention_days: u64,
    /// The 32-byte key that encrypts signing keys at rest (`PIMGATE_KEY_ENCRYPTION_KEY_FILE`).
    /// Unset: generated on first start under `./data` and reused.
    pub key_encryption_key_file: Option<PathBuf>,
    /// A new signing key is made this often.
    pub key_rotation_days: u64,
    /// A new key is published this long before it signs, so every verifier's cached JWKS
    /// has it first.
    pub key_publish_lead_seconds: u64,
    /// The PIM and any other application signing people in through pimgate, by `client_id`.
    pub clients: BTreeMap<String, OidcClientSettings>,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            signing_alg: "ES256".into(),
            access_token_ttl_seconds: 300,
            id_token_ttl_seconds: 300,
            refresh_token_ttl_seconds: 28_800,
            refresh_token_idle_seconds: 7_200,
            session_idle_seconds: 28_800,
            session_max_seconds: 86_400,
            audit_retention_days: 90,
            key_encryption_key_file: None,
            key_rotation_days: 30,
            key_publish_lead_seconds: 600,
            clients: BTreeMap::new(),
        }
    }
}

/// `[oidc.clients.NAME]`: an application signing people in; NAME is its `client_id`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OidcClientSettings {
    /// Absent: a public client (PKCE required).
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    /// Where codes may be sent, compared exactly.
    pub redirect_uris: Vec<String>,
    /// Where pimgate may send the browser after a logout the client started, compared exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// OpenID Connect Back-Channel Logout 1.0: pimgate POSTs a logout token here whenever a
    /// session the client is signed in to ends.
    pub backchannel_logout_uri: Option<String>,
    /// The connections whose people may sign in to it (default: every connection with `sso`).
    pub connections: Option<Vec<String>>,
}

/// A settings problem, naming the key.
#[derive(Debug)]
pub struct SettingsError {
    pub key: String,
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError {
        key: key.into(),
        message: message.into(),
    }
}

/// The algorithm pimgate signs its tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Es256,
    EdDsa,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ES256" => Some(SigningAlg::Es256),
            "EdDSA" => Some(SigningAlg::EdDsa),
            _ => None,
        }
    }
}

/// A downstream client, validated.
#[derive(Clone)]
pub struct Client {
    pub id: String,
    /// SHA-256 of the secret; `None` for a public client (PKCE required).
    pub secret_hash: Option<[u8; 32]>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// Whose people may sign in to it, in name order (never empty).
    pub connections: Vec<ConnectionId>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("confidential", &self.secret_hash.is_some())
            .field("redirect_uris", &self.redirect_uris)
            .field("backchannel_logout_uri", &self.backchannel_logout_uri)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

/// The OpenID provider's settings, validated.
#[derive(Debug, Clone)]
pub struct Provider {
    pub signing_alg: SigningAlg,
    pub access_token_ttl: Duration,
    pub id_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub refresh_token_idle: Duration,
    pub session_idle: Duration,
    pub session_max: Duration,
    pub audit_retention: Duration,
    pub key_encryption_key_file: Option<PathBuf>,
    pub key_rotation: Duration,
    pub key_publish_lead: Duration,
    pub clients: BTreeMap<String, Client>,
}

/// Everything single sign-on runs with.
#[derive(Debug, Clone)]
pub struct SsoConfig {
    /// `server.public_url`: the issuer. `None` only when nothing below is configured.
    pub issuer: Option<String>,
    pub upstream: BTreeMap<ConnectionId, Arc<Upstream>>,
    pub provider: Arc<Provider>,
}

impl SsoConfig {
    /// Whether any client or connection uses single sign-on.
    pub fn enabled(&self) -> bool {
        !self.upstream.is_empty() || !self.provider.clients.is_empty()
    }
}

fn secret(
    key: &str,
    inline: Option<&SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, SettingsError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            "set the secret or its file (`*_secret_file`), not both",
        )),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let t = text.trim();
            if t.is_empty() {
                return Err(invalid(
                    format!("{key}_file"),
                    format!("{} is empty", path.display()),
                ));
            }
            Ok(Some(SecretString::from(t.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// Whether `raw` is an absolute `https` URL, or `http` to a loopback host (development and
/// tests), without a fragment.
fn web_url(raw: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!("{raw:?} must not have a fragment"));
    }
    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        "http" => Err(format!("{raw:?} must use https (http only to localhost)")),
        _ => Err(format!("{raw:?} must be an https URL")),
    }
}

/// Validates the single-sign-on settings. `sso` is each connection's `[sso]` table.
pub fn validate<'a>(
    public_url: Option<&str>,
    sso: impl Iterator<Item = (&'a str, &'a SsoSettings)>,
    oidc: &OidcSettings,
) -> Result<SsoConfig, SettingsError> {
    let mut upstream = BTreeMap::new();
    let mut domains: BTreeMap<String, String> = BTreeMap::new();
    for (name, s) in sso {
        let key = format!("connections.{name}.sso");
        let Some(base) = public_url else {
            return Err(invalid(
                "server.public_url",
                format!(
                    "{key} is configured, but single sign-on needs server.public_url (PIMGATE_PUBLIC_URL): it is the issuer and the base of the redirect URI"
                ),
            ));
        };
        let connection = ConnectionId::parse(name)
            .map_err(|e| invalid(format!("connections.{name}"), e.to_string()))?;
        let issuer = s.issuer.trim_end_matches('/').to_owned();
        web_url(&issuer).map_err(|m| invalid(format!("{key}.issuer"), m))?;
        if issuer.contains('{') {
            return Err(invalid(
                format!("{key}.issuer"),
                "give the issuer discovery is read from (Entra multi-tenant: https://login.microsoftonline.com/organizations/v2.0) and list the tenants in `tenants`",
            ));
        }
        if s.client_id.trim().is_empty() {
            return Err(invalid(format!("{key}.client_id"), "must not be empty"));
        }
        let client_secret = secret(
            &format!("{key}.client_secret"),
            s.client_secret.as_ref(),
            s.client_secret_file.as_deref(),
        )?;
        let mut scopes: Vec<String> = vec!["openid".into()];
        for sc in &s.scopes {
            if sc.is_empty() || sc.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    format!("{key}.scopes"),
                    format!("{sc:?} is not a scope"),
                ));
            }
            if !scopes.contains(sc) {
                scopes.push(sc.clone());
            }
        }
        let match_attribute = match s.match_attribute.as_str() {
            "externalId" => MatchAttribute::ExternalId,
            "userName" => MatchAttribute::UserName,
            other => {
                return Err(invalid(
                    format!("{key}.match_attribute"),
                    format!("{other:?} is not one of externalId, userName"),
                ));
            }
        };
        let unprovisioned = match s.unprovisioned.as_str() {
            "deny" => Unprovisioned::Deny,
            "create" => Unprovisioned::Create,
            other => {
                return Err(invalid(
                    format!("{key}.unprovisioned"),
                    format!("{other:?} is not one of deny, create"),
                ));
            }
        };
        for (k, v) in [
            ("subject_claim", &s.subject_claim),
            ("groups_claim", &s.groups_claim),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(format!("{key}.{k}"), "must not be empty"));
            }
        }
        let mut own_domains = Vec::new();
        for d in &s.domains {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || !crate::host::is_host(&d) || d.contains(':') {
                return Err(invalid(
                    format!("{key}.domains"),
                    format!("{d:?} is not an e-mail domain"),
                ));
            }
            if let Some(other) = domains.insert(d.clone(), name.to_owned()) {
                return Err(invalid(
                    format!("{key}.domains"),
                    format!(
                        "{d:?} is also a domain of connection {other:?}; a domain names one connection"
                    ),
                ));
            }
            own_domains.push(d);
        }
        upstream.insert(
            connection.clone(),
            Arc::new(Upstream {
                redirect_uri: format!("{base}/sso/{name}/callback"),
                connection,
                issuer,
                client_id: s.client_id.trim().to_owned(),
                client_secret,
                scopes,
                subject_claim: s.subject_claim.clone(),
                match_attribute,
                unprovisioned,
                groups_claim: s.groups_claim.clone(),
                domains: own_domains,
                tenants: s.tenants.clone(),
            }),
        );
    }
    let provider = provider(public_url, oidc, &upstream)?;
    Ok(SsoConfig {
        issuer: public_url.map(str::to_owned),
        upstream,
        provider: Arc::new(provider),
    })
}

fn provider(
    public_url: Option<&str>,
    oidc: &OidcSettings,
    upstream: &BTreeMap<ConnectionId, Arc<Upstream>>,
) -> Result<Provider, SettingsError> {
    let signing_alg = SigningAlg::parse(&oidc.signing_alg).ok_or_else(|| {
        invalid(
            "oidc.signing_alg",
            format!("{:?} is not one of ES256, EdDSA", oidc.signing_alg),
        )
    })?;
    for (key, value, min) in [
        (
            "oidc.access_token_ttl_seconds",
            oidc.access_token_ttl_seconds,
            10,
        ),
        ("oidc.id_token_ttl_seconds", oidc.id_token_ttl_seconds, 10),
        (
            "oidc.refresh_token_ttl_seconds",
            oidc.refresh_token_ttl_seconds,
            60,
        ),
        (
            "oidc.refresh_token_idle_seconds",
            oidc.refresh_token_idle_seconds,
            60,
        ),
        ("oidc.session_idle_seconds", oidc.session_idle_seconds, 60),
        ("oidc.session_max_seconds", oidc.session_max_seconds, 60),
        ("oidc.audit_retention_days", oidc.audit_retention_days, 1),
        ("oidc.key_rotation_days", oidc.key_rotation_days, 1),
    ] {
        if value < min {
            return Err(invalid(key, format!("must be at least {min}")));
        }
    }
    if oidc.session_idle_seconds > oidc.session_max_seconds {
        return Err(invalid(
            "oidc.session_idle_seconds",
            "must not be longer than oidc.session_max_seconds",
        ));
    }
    if oidc.key_publish_lead_seconds >= oidc.key_rotation_days.saturating_mul(86_400) {
        return Err(invalid(
            "oidc.key_publish_lead_seconds",
            "must be shorter than oidc.key_rotation_days",
        ));
    }
    let mut clients = BTreeMap::new();
    for (id, c) in &oidc.clients {
        let key = format!("oidc.clients.{id}");
        if public_url.is_none() {
            return Err(invalid(
                "server.public_url",
                format!(
                    "{key} is configured, but pimgate as an OpenID provider needs server.public_url (PIMGATE_PUBLIC_URL): it is the issuer"
                ),
            ));
        }
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(invalid(
                &key,
                "a client_id is 1-128 printable ASCII characters",
            ));
        }
        let secret_hash = match secret(
            &format!("{key}.client_secret"),
            c.client_secret.as_ref(),
            c.client_secret_file.as_deref(),
        )? {
            Some(s) if s.expose_secret().len() < 16 => {
                return Err(invalid(
                    format!("{key}.client_secret"),
                    "a client secret must be at least 16 characters",
                ));
            }
            Some(s) => Some(crate::token::hash(s.expose_secret())),
            None => None,
        };
        if c.redirect_uris.is_empty() {
            return Err(invalid(
                format!("{key}.redirect_uris"),
                "list at least one redirect URI",
            ));
        }
        for (k, list) in [
            ("redirect_uris", &c.redirect_uris),
            ("post_logout_redirect_uris", &c.post_logout_redirect_uris),
        ] {
            for u in list {
                web_url(u).map_err(|m| invalid(format!("{key}.{k}"), m))?;
            }
        }
        if let Some(u) = &c.backchannel_logout_uri {
            web_url(u).map_err(|m| invalid(format!("{key}.backchannel_logout_uri"), m))?;
        }
        let connections: Vec<ConnectionId> = match &c.connections {
            None => upstream.keys().cloned().collect(),
            Some(names) => {
                let mut out = Vec::new();
                for n in names {
                    match ConnectionId::parse(n)
                        .ok()
                        .filter(|id| upstream.contains_key(id))
                    {
                        Some(id) => out.push(id),
                        None => {
                            return Err(invalid(
                                format!("{key}.connections"),
                                format!("{n:?} is not a connection with an [sso] table"),
                            ));
                        }
                    }
                }
                out.sort();
                out.dedup();
                out
            }
        };
        if connections.is_empty() {
            return Err(invalid(
                format!("{key}.connections"),
                "no connection with single sign-on ([connections.NAME.sso]) to sign people in through",
            ));
        }
        clients.insert(
            id.clone(),
            Client {
                id: id.clone(),
                secret_hash,
                redirect_uris: c.redirect_uris.clone(),
                post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
                backchannel_logout_uri: c.backchannel_logout_uri.clone(),
                connections,
            },
        );
    }
    Ok(Provider {
        signing_alg,
        access_token_ttl: Duration::from_secs(oidc.access_token_ttl_seconds),
        id_token_ttl: Duration::from_secs(oidc.id_token_ttl_seconds),
        refresh_token_ttl: Duration::from_secs(oidc.refresh_token_ttl_seconds),
        refresh_token_idle: Duration::from_secs(oidc.refresh_token_idle_seconds),
        session_idle: Duration::from_secs(oidc.session_idle_seconds),
        session_max: Duration::from_secs(oidc.session_max_seconds),
        audit_retention: Duration::from_secs(oidc.audit_retention_days.saturating_mul(86_400)),
        key_encryption_key_file: oidc.key_encryption_key_file.clone(),
        key_rotation: Duration::from_secs(oidc.key_rotation_days.saturating_mul(86_400)),
        key_publish_lead: Duration::from_secs(oidc.key_publish_lead_seconds),
        clients,
    })
}
