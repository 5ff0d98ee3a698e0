//! The OpenID provider's service: every step of a sign-in, from the PIM's authorization
//! request through the company IdP and back, to the tokens. Handlers ([`super::routes`])
//! only extract, call one function here and map the result.
//!
//! A sign-in, step by step:
//! 1. [`OidcProvider::authorize`] checks the client and its exact `redirect_uri` (a bad one is
//!    never redirected to), the request (`response_type=code`, `openid` scope, PKCE S256,
//!    required for public clients), chooses the connection, and sends the browser to its
//!    IdP. The login waits in the [`Ephemeral`] store under its `state`, bound to the
//!    browser by a cookie whose hash it keeps.
//! 2. [`OidcProvider::callback`] takes the login (once), checks the cookie and the IdP's
//!    answer, validates the ID token ([`crate::sso::upstream`]), matches the person to the
//!    connection's SCIM user (`subject_claim` = `match_attribute`), refuses a deactivated or
//!    unprovisioned person (or creates one just in time), and sends the browser back to the
//!    client with a single-use code (60 s).
//! 3. [`OidcProvider::token`] redeems the code (once: a replay revokes the grant it made) or
//!    a refresh token, resolving the user's claims again, and signs the tokens.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::{OAuthError, TokenFailure};
use super::keys::SigningKeys;
use super::pages::FailurePage;
use super::sessions::{NewSession, SESSION_COOKIE, Sessions};
use super::settings::{Client, MatchAttribute, Provider, Unprovisioned};
use super::tokens::{
    ACCESS_TOKEN_TYP, AccessClaims, AccessTokenClaims, IdTokenClaims, TokenRejected, seconds, sign,
    verify_access_token,
};
use crate::access::AccessService;
use crate::access::claims::Claims;
use crate::access::model::TokenGroups;
use crate::access::service::UserLookup;
use crate::audit::{Audit, Entry, Outcome};
use crate::clock::{Clock, Timestamp};
use crate::connections::ConnectionId;
use crate::directory::{Directory, GrantRow, GrantStore, SessionRow, SessionSelector, UserDoc};
use crate::ephemeral::Ephemeral;
use crate::sso::SsoService;
use crate::sso::upstream::UpstreamPending;

/// How long a person has to sign in at the IdP.
const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// How long an authorization code lives.
const CODE_TTL: Duration = Duration::from_secs(60);
/// Longest `state`, `nonce` and `login_hint` accepted from a client.
const MAX_PARAM: usize = 512;
/// Most group values read from one login token.
const MAX_TOKEN_GROUPS: usize = 1000;

/// The prefix of the cookie that binds a login to its browser.
pub const LOGIN_COOKIE: &str = "pimgate_login_";

fn random() -> String {
    crate::token::random_b64url()
}

fn sha256_hex(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// A new correlation id for a failure page and its log line.
pub fn correlation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What a client asked for at `/authorize`, once checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub scope: String,
    pub prompt: Option<String>,
    pub login_hint: Option<String>,
}

/// A login waiting for the IdP.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    connection: String,
    upstream: UpstreamPending,
    /// SHA-256 of the browser's login cookie.
    browser: String,
    request: AuthRequest,
}

/// An authorization code waiting to be redeemed.
#[derive(Debug, Serialize, Deserialize)]
struct IssuedCode {
    request: AuthRequest,
    connection: String,
    user_id: String,
    token_groups: Option<Vec<String>>,
    auth_time: i64,
    /// The grant its redemption makes (named in advance, so a replay can revoke it).
    grant_id: String,
    /// The login token's groups were an overage marker.
    #[serde(default)]
    groups_overage: bool,
    /// The pimgate session the sign-in belongs to.
    #[serde(default)]
    session_id: Option<String>,
}

/// A logout waiting for the IdP to send the browser back.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogout {
    /// Where to send the browser at the end, with the client's `state` (already checked).
    to: Option<String>,
}

/// Where `/authorize` sends the browser.
#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// To the IdP, with the login cookie to set.
    ToIdp { location: String, cookie: String },
    /// Let the person choose a connection: (label, link) pairs.
    Choose(Vec<(String, String)>),
    /// Back to the client with an RFC 6749 §4.1.2.1 error.
    ErrorRedirect(String),
    /// Back to the client with a code: the person's pimgate session signed them in.
    FromSession(String),
    /// A failure page (the client or its redirect URI cannot be trusted).
    Page(FailurePage),
}

/// Where the callback sends the browser.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Back to the client (with a code or an error), clearing the login cookie (and
    /// setting the session cookie of a completed sign-in).
    ToClient {
        location: String,
        clear_cookie: String,
        session_cookie: Option<String>,
    },
    Page(FailurePage),
}

/// Where a logout sends the browser.
#[derive(Debug)]
pub enum LogoutOutcome {
    /// Somewhere else (the IdP's end-session endpoint, or the client's registered
    /// post-logout URI), clearing the session cookie.
    Redirect {
        location: String,
        clear_cookie: String,
    },
    /// "You are signed out", clearing the session cookie.
    SignedOut {
        clear_cookie: String,
    },
    /// "Sign out?": a logout without `id_token_hint` ends the browser's session only when
    /// the person confirms (a POST, which a cross-site page cannot make with the
    /// SameSite=Lax session cookie). The parameters go back in the form.
    Confirm {
        /// The logout endpoint the form posts to (`{issuer}/oauth/logout`).
        action: String,
        params: Vec<(String, String)>,
    },
    Page(FailurePage),
}

/// The token endpoint's answer.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub id_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// How a client authenticated at the token endpoint.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    /// From `Authorization: Basic` (already URL-decoded), if used.
    pub basic: Option<(String, String)>,
    /// `client_id` and `client_secret` of the form.
    pub form_id: Option<String>,
    pub form_secret: Option<String>,
}

/// The OpenID provider (a cheap handle).
#[derive(Clone)]
pub struct OidcProvider {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: Option<String>,
    provider: Arc<Provider>,
    sso: SsoService,
    access: AccessService,
    directory: Directory,
    grants: Arc<dyn GrantStore>,
    keys: SigningKeys,
    flow: Arc<dyn Ephemeral>,
    sessions: Sessions,
    metrics: crate::metrics::Metrics,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

/// The parts [`OidcProvider`] is built from.
pub struct ProviderParts {
    pub issuer: Option<String>,
    pub provider: Arc<Provider>,
    pub sso: SsoService,
    pub access: AccessService,
    pub directory: Directory,
    pub grants: Arc<dyn GrantStore>,
    pub keys: SigningKeys,
    pub flow: Arc<dyn Ephemeral>,
    pub sessions: Sessions,
    pub metrics: crate::metrics::Metrics,
    pub clock: Arc<dyn Clock>,
}

fn page(
    status: StatusCode,
    title: &'static str,
    message: impl Into<String>,
    log: &str,
) -> FailurePage {
    let id = correlation_id();
    let message = message.into();
    if status.is_server_error() {
        tracing::error!(correlation_id = %id, reason = log, "sign-in failed: {title}");
    } else {
        tracing::warn!(correlation_id = %id, reason = log, "sign-in refused: {title}");
    }
    FailurePage {
        status,
        title,
        message,
        correlation_id: id,
    }
}

fn unavailable(detail: &str) -> FailurePage {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable right now",
        "pimgate cannot complete sign-ins at the moment. Please try again in a minute.",
        detail,
    )
}

/// `redirect_uri` with the parameters appended to its query.
fn with_params(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => redirect_uri.to_owned(),
    }
}

impl OidcProvider {
    pub fn new(p: ProviderParts) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer: p.issuer,
                provider: p.provider,
                sso: p.sso,
                access: p.access,
                directory: p.directory,
                grants: p.grants,
                keys: p.keys,
                flow: p.flow,
                sessions: p.sessions,
                metrics: p.metrics,
                clock: p.clock,
            }),
        }
    }

    /// The issuer (`server.public_url`); `None`: single sign-on is not configured.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.inner.keys
    }

    fn audit(&self) -> &Audit {
        self.inner.sessions.audit()
    }

    /// Whether cookies are marked `Secure` (an https issuer).
    fn secure(&self) -> bool {
        self.issuer().is_some_and(|i| i.starts_with("https://"))
    }

    /// The discovery document (OpenID Connect Discovery 1.0 §3).
    pub fn discovery(&self) -> Option<Value> {
        let iss = self.issuer()?;
        Some(json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oauth/authorize"),
            "token_endpoint": format!("{iss}/oauth/token"),
            "userinfo_endpoint": format!("{iss}/oauth/userinfo"),
            "jwks_uri": format!("{iss}/oauth/jwks"),
            "revocation_endpoint": format!("{iss}/oauth/revoke"),
            "introspection_endpoint": format!("{iss}/oauth/introspect"),
            "end_session_endpoint": format!("{iss}/oauth/logout"),
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.inner.provider.signing_alg.as_str()],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "offline_access"],
            "prompt_values_supported": ["none", "login"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "sid",
                "preferred_username", "connection", "roles", "userGroups", "permissions",
                "configVersion"
            ],
            "authorization_response_iss_parameter_supported": true,
        }))
    }

    /// The permission order the `permissions` bitset of tokens uses now.
    pub fn permission_order(&self) -> Value {
        let model = self.inner.access.model();
        json!({
            "configVersion": model.version(),
            "permissions": super::tokens::permission_order(&model),
        })
    }

    // ------------------------------------------------------------------- /authorize

    /// Step 1 (module docs). `params` is the query (or form) of the request.
    /// `cookies` are the request's cookies by name (the session cookie signs a person in
    /// without a trip to the IdP).
    pub async fn authorize(
        &self,
        params: &BTreeMap<String, String>,
        cookies: &BTreeMap<String, String>,
    ) -> AuthorizeOutcome {
        let Some(iss) = self.issuer() else {
            return AuthorizeOutcome::Page(page(
                StatusCode::NOT_FOUND,
                "Single sign-on is not set up",
                "This pimgate has no applications configured for sign-in.",
                "no issuer",
            ));
        };
        let p = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let Some(client) = p("client_id").and_then(|id| self.inner.provider.clients.get(id)) else {
            return AuthorizeOutcome::Page(page(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "The application that sent you here is not registered with pimgate. Ask its administrator to check its client id.",
                "unknown client_id",
            ));
        };
        let Some(redirect_uri) =
            p("redirect_uri").filter(|r| client.redirect_uris.iter().any(|u| u == r))
        else {
            return AuthorizeOutcome::Page(page(
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                "The application asked to send you back to an address it has not registered, so pimgate will not send you there.",
                "redirect_uri missing or not registered",
            ));
        };
        let state = p("state").map(str::to_owned);
        let back = |error: &str, description: &str| {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(s) = &state {
                params.push(("state", s));
            }
            params.push(("iss", iss));
            tracing::info!(client = %client.id, error, description, "authorization request refused");
            AuthorizeOutcome::ErrorRedirect(with_params(redirect_uri, &params))
        };
        if p("request").is_some() || p("request_uri").is_some() {
            return back("request_not_supported", "request objects are not supported");
        }
        if p("response_type") != Some("code") {
            return back(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
        if let Some(mode) = p("response_mode")
            && mode != "query"
        {
            return back("invalid_request", "only response_mode=query is supported");
        }
        let scope = p("scope").unwrap_or_default();
        if !scope.split(' ').any(|s| s == "openid") {
            return back("invalid_scope", "the scope must include openid");
        }
        for k in ["state", "nonce", "login_hint", "scope"] {
            if p(k).is_some_and(|v| v.len() > MAX_PARAM) {
                return back(
                    "invalid_request",
                    &format!("{k} is longer than {MAX_PARAM} characters"),
                );
            }
        }
        let challenge = p("code_challenge");
        match (challenge, p("code_challenge_method")) {
            (None, _) if client.secret_hash.is_none() => {
                return back(
                    "invalid_request",
                    "PKCE is required: send code_challenge with code_challenge_method=S256",
                );
            }
            (Some(_), Some(m)) if m != "S256" => {
                return back("invalid_request", "code_challenge_method must be S256");
            }
            (Some(_), None) => {
                return back("invalid_request", "code_challenge_method must be S256");
            }
            (Some(c), _)
                if c.len() < 43
                    || c.len() > 128
                    || !c
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                return back(
                    "invalid_request",
                    "code_challenge is not a base64url S256 challenge",
                );
            }
            _ => {}
        }
        let prompt = p("prompt");
        if let Some(pr) = prompt {
            let values: Vec<&str> = pr.split(' ').collect();
            if values.contains(&"none") && values.len() > 1 {
                return back(
                    "invalid_request",
                    "prompt=none cannot be combined with other values",
                );
            }
        }
        let upstream_prompt = prompt.and_then(|pr| {
            let v: Vec<&str> = pr.split(' ').collect();
            if v.contains(&"none") {
                Some("none")
            } else if v.contains(&"login") {
                Some("login")
            } else {
                None
            }
        });
        let login_hint = p("login_hint");
        let request = AuthRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            state: state.clone(),
            nonce: p("nonce").map(str::to_owned),
            code_challenge: challenge.map(str::to_owned),
            scope: scope.to_owned(),
            prompt: upstream_prompt.map(str::to_owned),
            login_hint: login_hint.map(str::to_owned),
        };
        // A live pimgate session for one of the client's connections signs the person in
        // at once (unless the client asks for a fresh login).
        // `max_age` (OIDC Core §3.1.2.1): a session signed in longer ago than that is not
        // used; the IdP is asked to authenticate the person again.
        let max_age_ms = p("max_age")
            .and_then(|m| m.parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000));
        if upstream_prompt != Some("login")
            && let Some(value) = cookies.get(SESSION_COOKIE)
        {
            let now = self.inner.clock.now();
            match self.inner.sessions.live(value).await {
                Ok(Some(session))
                    if client.connections.contains(&session.connection)
                        && p("connection").is_none_or(|c| c == session.connection.as_str())
                        && max_age_ms.is_none_or(|m| now.millis_since(session.auth_time) <= m) =>
                {
                    return match self.code_from_session(&request, &session).await {
                        Ok(location) => AuthorizeOutcome::FromSession(location),
                        Err(page) => AuthorizeOutcome::Page(page),
                    };
                }
                Ok(_) => {}
                Err(e) => return AuthorizeOutcome::Page(unavailable(&e.to_string())),
            }
        }
        // The connection: the client's only one, the one asked for, the login hint's domain,
        // or the person's choice.
        let conn = if client.connections.len() == 1 {
            client.connections[0].clone()
        } else if let Some(asked) = p("connection") {
            match client.connections.iter().find(|c| c.as_str() == asked) {
                Some(c) => c.clone(),
                None => {
                    return AuthorizeOutcome::Page(page(
                        StatusCode::BAD_REQUEST,
                        "Unknown sign-in option",
                        format!("{asked:?} is not a way to sign in to this application."),
                        "connection not allowed for client",
                    ));
                }
            }
        } else if let Some(c) =
            login_hint.and_then(|h| self.inner.sso.by_domain(h, &client.connections))
        {
            c.clone()
        } else {
            if upstream_prompt == Some("none") {
                return back(
                    "interaction_required",
                    "the person must choose how to sign in",
                );
            }
            let links = client
                .connections
                .iter()
                .map(|c| {
                    let mut q: Vec<(&str, &str)> = params
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    q.push(("connection", c.as_str()));
                    let query = serde_urlencoded::to_string(&q).unwrap_or_default();
                    (c.to_string(), format!("{iss}/oauth/authorize?{query}"))
                })
                .collect();
            return AuthorizeOutcome::Choose(links);
        };
        let Some(idp) = self.inner.sso.idp(&conn) else {
            return AuthorizeOutcome::Page(unavailable("connection without sso"));
        };
        let login_state = random();
        let (location, upstream) = match idp.begin(&login_state, upstream_prompt, login_hint).await
        {
            Ok(x) => x,
            Err(e) => {
                return AuthorizeOutcome::Page(page(
                    StatusCode::BAD_GATEWAY,
                    "Your organisation's sign-in service cannot be reached",
                    "pimgate could not reach the identity provider of your organisation. Please try again later; if it persists, tell your administrator.",
                    &e.to_string(),
                ));
            }
        };
        let cookie_value = random();
        let pending = PendingLogin {
            connection: conn.to_string(),
            upstream,
            browser: sha256_hex(&cookie_value),
            request,
        };
        let Ok(record) = serde_json::to_string(&pending) else {
            return AuthorizeOutcome::Page(unavailable("cannot encode login"));
        };
        if let Err(e) = self
            .inner
            .flow
            .put(
                &format!("login:{}", sha256_hex(&login_state)),
                &record,
                LOGIN_TTL,
            )
            .await
        {
            return AuthorizeOutcome::Page(unavailable(&e.to_string()));
        }
        AuthorizeOutcome::ToIdp {
            location: location.to_string(),
            cookie: self.cookie(&login_state, &cookie_value, LOGIN_TTL.as_secs()),
        }
    }

    fn cookie_name(login_state: &str) -> String {
        format!("{LOGIN_COOKIE}{}", &sha256_hex(login_state)[..16])
    }

    fn cookie(&self, login_state: &str, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}; Path=/sso/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            Self::cookie_name(login_state),
            if self.secure() { "; Secure" } else { "" }
        )
    }

    // ------------------------------------------------------------------- callback

    /// Step 2 (module docs): the IdP sent the browser back to `/sso/{connection}/callback`.
    /// `cookies` are the request's cookies by name.
    pub async fn callback(
        &self,
        connection: &str,
        params: &BTreeMap<String, String>,
        cookies: &BTreeMap<String, String>,
    ) -> CallbackOutcome {
        let p = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let expired = || {
            CallbackOutcome::Page(page(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired",
                "This sign-in link has expired or was already used. Go back to the application and sign in again.",
                "unknown, expired or replayed state",
            ))
        };
        let Some(login_state) = p("state").filter(|s| s.len() <= MAX_PARAM) else {
            return expired();
        };
        let key = format!("login:{}", sha256_hex(login_state));
        let record = match self.inner.flow.take(&key).await {
            Ok(Some(r)) => r,
            Ok(None) => return expired(),
            Err(e) => return CallbackOutcome::Page(unavailable(&e.to_string())),
        };
        let Ok(pending) = serde_json::from_str::<PendingLogin>(&record) else {
            return expired();
        };
        let clear_cookie = self.cookie(login_state, "", 0);
        let out = self
            .finish_login(connection, login_state, &pending, params, cookies)
            .await;
        match out {
            Ok((location, session_cookie)) => CallbackOutcome::ToClient {
                location,
                clear_cookie,
                session_cookie,
            },
            Err(page) => {
                self.audit().record(
                    "login",
                    Outcome::Refused,
                    Entry {
                        connection: Some(connection.to_owned()),
                        client_id: Some(pending.request.client_id.clone()),
                        reason: Some(format!("{} ({})", page.title, page.correlation_id)),
                        ..Entry::default()
                    },
                );
                CallbackOutcome::Page(page)
            }
        }
    }

    async fn finish_login(
        &self,
        connection: &str,
        login_state: &str,
        pending: &PendingLogin,
        params: &BTreeMap<String, String>,
        cookies: &BTreeMap<String, String>,
    ) -> Result<(String, Option<String>), FailurePage> {
        let p = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let iss = self.issuer().unwrap_or_default();
        let req = &pending.request;
        if pending.connection != connection {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired",
                "This sign-in link does not belong to this sign-in. Go back to the application and sign in again.",
                "callback on another connection than the login",
            ));
        }
        let browser_ok = cookies
            .get(&Self::cookie_name(login_state))
            .is_some_and(|v| {
                crate::token::matches_any(
                    &Sha256::digest(v.as_bytes()).into(),
                    &[hex_array(&pending.browser)],
                )
            });
        if !browser_ok {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Sign-in started in another browser",
                "This sign-in was started in another browser or tab, or your browser refused pimgate's cookie. Go back to the application and sign in again.",
                "login cookie missing or not matching",
            ));
        }
        let Ok(conn) = ConnectionId::parse(connection) else {
            return Err(unavailable("bad connection"));
        };
        let Some(idp) = self.inner.sso.idp(&conn) else {
            return Err(unavailable("connection without sso"));
        };
        let back = |error: &str, description: &str| {
            let mut ps = vec![("error", error), ("error_description", description)];
            if let Some(s) = &req.state {
                ps.push(("state", s));
            }
            ps.push(("iss", iss));
            with_params(&req.redirect_uri, &ps)
        };
        if let Some(error) = p("error") {
            let silent = [
                "login_required",
                "interaction_required",
                "consent_required",
                "account_selection_required",
            ];
            if req.prompt.as_deref() == Some("none") && silent.contains(&error) {
                tracing::info!(
                    connection,
                    error,
                    "silent sign-in not possible; the client is told"
                );
                return Ok((
                    back(error, "the identity provider needs the person to sign in"),
                    None,
                ));
            }
            let described = p("error_description").unwrap_or_default();
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Your organisation's sign-in did not complete",
                format!("Your identity provider answered: {error}. {described}"),
                &format!("IdP error {error}: {described}"),
            ));
        }
        // RFC 9207: an `iss` in the answer must be this IdP's (a multi-tenant Entra issuer
        // names the tenant instead; the ID token's check covers it).
        let multi_tenant = ["/organizations/v2.0", "/common/v2.0"]
            .iter()
            .any(|t| idp.settings.issuer.ends_with(t));
        if let Some(their_iss) = p("iss")
            && !multi_tenant
            && their_iss.trim_end_matches('/') != idp.settings.issuer
        {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Your organisation's sign-in did not complete",
                "The answer did not come from your organisation's identity provider.",
                "iss parameter of the callback is not the IdP's issuer (mix-up)",
            ));
        }
        let Some(code) = p("code") else {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Your organisation's sign-in did not complete",
                "Your identity provider sent you back without a result. Go back to the application and sign in again.",
                "callback without code",
            ));
        };
        let identity = match idp.finish(code, &pending.upstream).await {
            Ok(i) => i,
            Err(crate::sso::SsoError::Discovery(e)) => {
                return Err(page(
                    StatusCode::BAD_GATEWAY,
                    "Your organisation's sign-in service cannot be reached",
                    "pimgate could not complete the sign-in with your organisation's identity provider. Please try again later.",
                    &e,
                ));
            }
            Err(e) => {
                return Err(page(
                    StatusCode::BAD_REQUEST,
                    "Your organisation's sign-in could not be verified",
                    "pimgate could not verify the answer of your organisation's identity provider. Go back to the application and sign in again.",
                    &e.to_string(),
                ));
            }
        };
        let s = &idp.settings;
        let Some(subject) = identity
            .claims
            .get(&s.subject_claim)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        else {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Your account could not be identified",
                format!(
                    "Your identity provider did not say who you are (its token has no {:?} claim). Tell your administrator.",
                    s.subject_claim
                ),
                "subject claim missing",
            ));
        };
        let user_id = self
            .match_person(&conn, s, subject, &identity.claims)
            .await?;
        let model = self.inner.access.model();
        let reads_token = model
            .connection(&conn)
            .is_some_and(|c| c.token_groups != TokenGroups::Ignore);
        let token_groups = if reads_token {
            token_groups(&identity.claims, &s.groups_claim, &conn)
        } else {
            None
        };
        let groups_overage = reads_token && token_groups.is_none();
        let claims = self
            .claims_to_sign_in(&conn, &user_id, token_groups.clone())
            .await?;
        let auth_time = self.inner.clock.now();
        let (session, cookie_value) = self
            .inner
            .sessions
            .start(NewSession {
                connection: conn.clone(),
                user_id: user_id.clone(),
                upstream_sub: identity
                    .claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .unwrap_or(subject)
                    .to_owned(),
                upstream_sid: identity
                    .claims
                    .get("sid")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                upstream_id_token: Some(identity.raw.clone()),
                token_groups: token_groups.clone(),
                groups_overage,
                auth_time,
            })
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        let location = self
            .issue_code(req, &session, &claims.user_name, "idp")
            .await?;
        let cookie = self
            .inner
            .sessions
            .cookie(&cookie_value, self.inner.provider.session_max.as_secs());
        Ok((location, Some(cookie)))
    }

    /// A code for the client from the person's live session (no trip to the IdP): their
    /// claims now decide, as at a sign-in.
    async fn code_from_session(
        &self,
        req: &AuthRequest,
        session: &SessionRow,
    ) -> Result<String, FailurePage> {
        let claims = self
            .claims_to_sign_in(
                &session.connection,
                &session.user_id,
                session.token_groups.clone(),
            )
            .await?;
        self.issue_code(req, session, &claims.user_name, "session")
            .await
    }

    /// The claims of a person signing in now: they must exist, be active and have some
    /// access, else the page that says which.
    async fn claims_to_sign_in(
        &self,
        conn: &ConnectionId,
        user_id: &str,
        token_groups: Option<Vec<String>>,
    ) -> Result<Claims, FailurePage> {
        let claims = match self
            .inner
            .access
            .claims_at_login(conn, user_id, token_groups)
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => return Err(not_provisioned()),
            Err(e) => return Err(unavailable(&e.to_string())),
        };
        if !claims.active {
            return Err(deactivated());
        }
        if claims.roles.is_empty() && claims.user_groups.is_empty() {
            return Err(no_access());
        }
        Ok(claims)
    }

    /// Issues the single-use code of a sign-in in `session` and says where the browser goes.
    async fn issue_code(
        &self,
        req: &AuthRequest,
        session: &SessionRow,
        user_name: &str,
        how: &'static str,
    ) -> Result<String, FailurePage> {
        let iss = self.issuer().unwrap_or_default();
        let code = random();
        let issued = IssuedCode {
            request: req.clone(),
            connection: session.connection.to_string(),
            user_id: session.user_id.clone(),
            token_groups: session.token_groups.clone(),
            auth_time: session.auth_time.0,
            grant_id: uuid::Uuid::now_v7().to_string(),
            groups_overage: session.groups_overage,
            session_id: Some(session.id.clone()),
        };
        let record = serde_json::to_string(&issued).map_err(|e| unavailable(&e.to_string()))?;
        self.inner
            .flow
            .put(&format!("code:{}", sha256_hex(&code)), &record, CODE_TTL)
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        self.audit().record(
            "login",
            Outcome::Ok,
            Entry {
                user_name: Some(user_name.to_owned()),
                ..Entry::user(&session.connection, session.user_id.clone())
                    .client(req.client_id.clone())
                    .session(Some(session.id.clone()))
                    .reason(format!("signed in through the {how}"))
            },
        );
        let mut ps = vec![("code", code.as_str())];
        if let Some(st) = &req.state {
            ps.push(("state", st));
        }
        ps.push(("iss", iss));
        Ok(with_params(&req.redirect_uri, &ps))
    }

    /// The connection's user the IdP's subject names (created just in time when the
    /// connection says so).
    async fn match_person(
        &self,
        conn: &ConnectionId,
        s: &super::settings::Upstream,
        subject: &str,
        claims: &Map<String, Value>,
    ) -> Result<String, FailurePage> {
        let lookup = match s.match_attribute {
            MatchAttribute::ExternalId => UserLookup::ExternalId(subject.to_owned()),
            MatchAttribute::UserName => UserLookup::UserName(subject.to_owned()),
        };
        match self.inner.access.find_user(conn, &lookup).await {
            Ok(Some(id)) => return Ok(id),
            Ok(None) => {}
            Err(e) => return Err(unavailable(&e.to_string())),
        }
        if s.unprovisioned == Unprovisioned::Deny {
            return Err(not_provisioned());
        }
        // Just in time: the user SCIM will later adopt by externalId (or userName).
        let claim = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        let mut attrs = Map::new();
        let user_name = match s.match_attribute {
            MatchAttribute::UserName => subject,
            MatchAttribute::ExternalId => claim("preferred_username")
                .or(claim("email"))
                .unwrap_or(subject),
        };
        attrs.insert("userName".into(), json!(user_name));
        if s.match_attribute == MatchAttribute::ExternalId {
            attrs.insert("externalId".into(), json!(subject));
        }
        if let Some(n) = claim("name") {
            attrs.insert("displayName".into(), json!(n));
        }
        if let Some(e) = claim("email") {
            attrs.insert(
                "emails".into(),
                json!([{"value": e, "type": "work", "primary": true}]),
            );
        }
        attrs.insert("active".into(), json!(true));
        let doc = UserDoc::new(attrs).map_err(|e| {
            page(StatusCode::BAD_REQUEST, "Your account could not be created", "Your identity provider's details about you could not be stored. Tell your administrator.", &e.to_string())
        })?;
        match self.inner.directory.create_user(conn, doc).await {
            Ok(rec) => {
                tracing::info!(connection = %conn, user = %rec.id, "user created just in time at sign-in");
                Ok(rec.id)
            }
            Err(e) => Err(page(
                StatusCode::CONFLICT,
                "Your account could not be created",
                "An account with your user name already exists but is not linked to your identity. Tell your administrator.",
                &e.to_string(),
            )),
        }
    }

    // ------------------------------------------------------------------- /token

    /// The client of a token, revocation or introspection request: single sign-on must be
    /// configured and the client authenticated.
    fn configured_client(&self, creds: &ClientCredentials) -> Result<&Client, TokenFailure> {
        if self.issuer().is_none() {
            return Err(OAuthError::invalid_request("single sign-on is not configured").into());
        }
        Ok(self.authenticate_client(creds)?)
    }

    fn authenticate_client(&self, creds: &ClientCredentials) -> Result<&Client, OAuthError> {
        let (id, secret) = match (&creds.basic, &creds.form_id) {
            (Some(_), Some(_)) if creds.form_secret.is_some() => {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method",
                ));
            }
            (Some((id, secret)), form_id) => {
                if form_id.as_ref().is_some_and(|f| f != id) {
                    return Err(OAuthError::invalid_client(
                        "client_id does not match the credentials",
                    ));
                }
                (id.as_str(), Some(secret.as_str()))
            }
            (None, Some(id)) => (id.as_str(), creds.form_secret.as_deref()),
            (None, None) => {
                return Err(OAuthError::invalid_client(
                    "client authentication is missing",
                ));
            }
        };
        let client = self
            .inner
            .provider
            .clients
            .get(id)
            .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
        match (&client.secret_hash, secret) {
            (Some(hash), Some(s))
                if crate::token::matches_any(
                    &crate::token::hash(s),
                    std::slice::from_ref(hash),
                ) =>
            {
                Ok(client)
            }
            (Some(_), _) => Err(OAuthError::invalid_client("client authentication failed")),
            (None, None) => Ok(client),
            (None, Some(_)) => Err(OAuthError::invalid_client(
                "this client is public: it has no secret",
            )),
        }
    }

    /// Step 3 (module docs): the token endpoint (RFC 6749 §3.2).
    pub async fn token(
        &self,
        form: &BTreeMap<String, String>,
        creds: &ClientCredentials,
    ) -> Result<TokenResponse, TokenFailure> {
        let client = self.configured_client(creds)?;
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.redeem_code(client, form).await,
            Some("refresh_token") => self.refresh(client, form).await,
            Some(_) => Err(OAuthError::new(
                "unsupported_grant_type",
                "use authorization_code or refresh_token",
            )
            .into()),
            None => Err(OAuthError::invalid_request("grant_type is missing").into()),
        }
    }

    async fn redeem_code(
        &self,
        client: &Client,
        form: &BTreeMap<String, String>,
    ) -> Result<TokenResponse, TokenFailure> {
        let code = form
            .get("code")
            .filter(|c| !c.is_empty() && c.len() <= MAX_PARAM)
            .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
        let hash = sha256_hex(code);
        let Some(record) = self.inner.flow.take(&format!("code:{hash}")).await? else {
            // Single use: a code seen again revokes what its first use issued (RFC 6749 §4.1.2).
            if let Some(grant_id) = self.inner.flow.get(&format!("used:{hash}")).await? {
                let revoked = self
                    .inner
                    .grants
                    .revoke_grant(&grant_id, self.inner.clock.now())
                    .await?;
                tracing::warn!(client = %client.id, grant = %grant_id, revoked, "an authorization code was used twice; its grant is revoked");
                self.audit().record(
                    "token",
                    Outcome::Refused,
                    Entry {
                        client_id: Some(client.id.clone()),
                        reason: Some(format!(
                            "an authorization code was used twice; sign-in {grant_id} revoked"
                        )),
                        ..Entry::default()
                    },
                );
            }
            return Err(
                OAuthError::invalid_grant("the code is invalid, expired or already used").into(),
            );
        };
        let issued: IssuedCode = serde_json::from_str(&record)
            .map_err(|_| OAuthError::invalid_grant("the code is invalid"))?;
        // Remember the redemption first, so a replay racing this request still revokes.
        let marker_ttl = self
            .inner
            .provider
            .refresh_token_ttl
            .max(self.inner.provider.access_token_ttl);
        self.inner
            .flow
            .put(&format!("used:{hash}"), &issued.grant_id, marker_ttl)
            .await?;
        let req = &issued.request;
        if req.client_id != client.id {
            return Err(OAuthError::invalid_grant("the code was issued to another client").into());
        }
        if form.get("redirect_uri") != Some(&req.redirect_uri) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            )
            .into());
        }
        match (&req.code_challenge, form.get("code_verifier")) {
            (Some(challenge), Some(verifier)) => {
                let ok_form = (43..=128).contains(&verifier.len())
                    && verifier
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
                let computed = B64.encode(Sha256::digest(verifier.as_bytes()));
                if !ok_form
                    || !crate::token::matches_any(
                        &crate::token::hash(&computed),
                        &[crate::token::hash(challenge)],
                    )
                {
                    return Err(OAuthError::invalid_grant(
                        "code_verifier does not match the code_challenge",
                    )
                    .into());
                }
            }
            (Some(_), None) => {
                return Err(OAuthError::invalid_grant("code_verifier is missing").into());
            }
            (None, Some(_)) => {
                return Err(
                    OAuthError::invalid_grant("no code_challenge was sent for this code").into(),
                );
            }
            (None, None) => {}
        }
        let conn = ConnectionId::parse(&issued.connection)
            .map_err(|_| OAuthError::invalid_grant("the code is invalid"))?;
        let now = self.inner.clock.now();
        // The session may have ended (a logout, deprovisioning) since the code was issued.
        if let Some(sid) = &issued.session_id {
            let live = self
                .inner
                .sessions
                .get(sid)
                .await?
                .is_some_and(|s| s.ended.is_none());
            if !live {
                return Err(OAuthError::invalid_grant("the sign-in session has ended").into());
            }
        }
        let wants_refresh =
            client.secret_hash.is_some() && req.scope.split(' ').any(|s| s == "offline_access");
        let refresh = wants_refresh.then(|| format!("pgr_{}", random()));
        let grant = GrantRow {
            id: issued.grant_id.clone(),
            client_id: client.id.clone(),
            connection: conn.clone(),
            user_id: issued.user_id.clone(),
            scope: req.scope.clone(),
            token_groups: issued.token_groups.clone(),
            auth_time: Timestamp(issued.auth_time),
            created: now,
            expires: now.plus_millis(
                u64::try_from(self.inner.provider.refresh_token_ttl.as_millis())
                    .unwrap_or(u64::MAX),
            ),
            refresh_hash: refresh.as_deref().map(sha256_hex),
            revoked: None,
            groups_overage: issued.groups_overage,
            session_id: issued.session_id.clone(),
            last_used: Some(now),
        };
        let claims = self.current_claims(&grant).await?;
        self.inner.grants.insert_grant(&grant).await?;
        let mut resp = self
            .mint(client, &grant, &claims, req.nonce.clone())
            .await?;
        if refresh.is_some() {
            self.inner.metrics.token_issued(&client.id, "refresh_token");
        }
        resp.refresh_token = refresh;
        Ok(resp)
    }

    async fn refresh(
        &self,
        client: &Client,
        form: &BTreeMap<String, String>,
    ) -> Result<TokenResponse, TokenFailure> {
        let token = form
            .get("refresh_token")
            .filter(|t| !t.is_empty() && t.len() <= MAX_PARAM)
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
        let invalid =
            || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
        let hash = sha256_hex(token);
        let Some(grant) = self.inner.grants.grant_by_refresh(&hash).await? else {
            // A refresh token rotated away and presented again: someone else holds a copy.
            // The whole grant ends.
            if let Some(grant_id) = self.inner.grants.grant_of_used_refresh(&hash).await? {
                let revoked = self
                    .inner
                    .grants
                    .revoke_grant(&grant_id, self.inner.clock.now())
                    .await?;
                tracing::warn!(client = %client.id, grant = %grant_id, revoked, "a rotated refresh token was used again; its grant is revoked");
                let owner = self.inner.grants.grant(&grant_id).await?;
                self.audit().record(
                    "refresh",
                    Outcome::Refused,
                    Entry {
                        connection: owner.as_ref().map(|g| g.connection.to_string()),
                        user_id: owner.as_ref().map(|g| g.user_id.clone()),
                        client_id: Some(client.id.clone()),
                        session_id: owner.and_then(|g| g.session_id),
                        reason: Some(format!(
                            "a rotated refresh token was used again (a stolen-token sign): sign-in {grant_id} revoked"
                        )),
                        ..Entry::default()
                    },
                );
            }
            return Err(invalid().into());
        };
        let now = self.inner.clock.now();
        let refused = |why: &str| {
            self.audit().record(
                "refresh",
                Outcome::Refused,
                Entry::user(&grant.connection, grant.user_id.clone())
                    .client(client.id.clone())
                    .session(grant.session_id.clone())
                    .reason(why),
            );
        };
        if grant.client_id != client.id {
            return Err(invalid().into());
        }
        if grant.revoked.is_some() {
            refused("the sign-in was revoked or its session ended");
            return Err(invalid().into());
        }
        if grant.expires <= now {
            refused("the refresh token reached its absolute lifetime");
            return Err(invalid().into());
        }
        if self.idle(&grant, now) {
            refused("the refresh token was not used within its idle lifetime");
            return Err(invalid().into());
        }
        if let Some(asked) = form.get("scope") {
            let granted: Vec<&str> = grant.scope.split(' ').collect();
            if asked.split(' ').any(|s| !granted.contains(&s)) {
                return Err(
                    OAuthError::new("invalid_scope", "a refresh cannot widen the scope").into(),
                );
            }
        }
        let claims = match self.current_claims(&grant).await {
            Ok(c) => c,
            Err(e) => {
                refused("the user no longer exists or is deactivated");
                return Err(e);
            }
        };
        // Rotation: the presented token is spent; a concurrent use of it lost the race and is
        // treated as a reuse.
        let next = format!("pgr_{}", random());
        if !self
            .inner
            .grants
            .rotate_refresh(&grant.id, &hash, &sha256_hex(&next), now)
            .await?
        {
            self.inner.grants.revoke_grant(&grant.id, now).await?;
            tracing::warn!(client = %client.id, grant = %grant.id, "a refresh token was used twice at once; its grant is revoked");
            refused("a refresh token was used twice at once: the sign-in is revoked");
            return Err(invalid().into());
        }
        if let Some(sid) = &grant.session_id {
            self.inner.sessions.seen(sid).await;
        }
        let mut resp = self.mint(client, &grant, &claims, None).await?;
        self.inner.metrics.token_issued(&client.id, "refresh_token");
        resp.refresh_token = Some(next);
        self.audit().record(
            "refresh",
            Outcome::Ok,
            Entry::user(&grant.connection, grant.user_id.clone())
                .client(client.id.clone())
                .session(grant.session_id.clone()),
        );
        Ok(resp)
    }

    /// Whether a grant's refresh token has gone unused longer than its idle lifetime.
    fn idle(&self, grant: &GrantRow, now: Timestamp) -> bool {
        let last = grant.last_used.unwrap_or(grant.created);
        now.millis_since(last)
            > u64::try_from(self.inner.provider.refresh_token_idle.as_millis()).unwrap_or(u64::MAX)
    }

    // ------------------------------------------------------------------- revoke, introspect

    /// The grant a presented token (refresh token or access token) belongs to, for the
    /// client that presents it; `None` when it names no live grant of that client. An access
    /// token also yields its claims.
    async fn grant_of_token(
        &self,
        client: &Client,
        token: &str,
    ) -> Result<Option<(GrantRow, Option<AccessTokenClaims>)>, TokenFailure> {
        let iss = self.issuer().unwrap_or_default();
        if token.len() > 8 * 1024 {
            return Ok(None);
        }
        if token.starts_with("pgr_") {
            let grant = self
                .inner
                .grants
                .grant_by_refresh(&sha256_hex(token))
                .await?;
            return Ok(grant
                .filter(|g| g.client_id == client.id)
                .map(|g| (g, None)));
        }
        match verify_access_token(&self.inner.keys, iss, token, self.inner.clock.now()).await {
            Ok(at) if at.client_id == client.id => {
                let grant = self.inner.grants.grant(&at.sid).await?;
                Ok(grant
                    .filter(|g| g.user_id == at.sub && g.client_id == client.id)
                    .map(|g| (g, Some(at))))
            }
            Ok(_) => Ok(None),
            Err(TokenRejected::Keys(e)) => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// RFC 7009 revocation: a refresh or access token ends its whole grant. Unknown tokens
    /// and tokens of other clients are answered the same (200), as the RFC asks.
    pub async fn revoke(
        &self,
        form: &BTreeMap<String, String>,
        creds: &ClientCredentials,
    ) -> Result<(), TokenFailure> {
        let client = self.configured_client(creds)?;
        let token = form_token(form)?;
        if let Some((grant, _)) = self.grant_of_token(client, token).await? {
            let revoked = self
                .inner
                .grants
                .revoke_grant(&grant.id, self.inner.clock.now())
                .await?;
            tracing::info!(client = %client.id, grant = %grant.id, revoked, "grant revoked by its client");
            self.audit().record(
                "revoke",
                Outcome::Ok,
                Entry::user(&grant.connection, grant.user_id.clone())
                    .client(client.id.clone())
                    .session(grant.session_id.clone())
                    .reason(format!("sign-in {} revoked by its client", grant.id)),
            );
        }
        Ok(())
    }

    /// RFC 7662 introspection, for the client the token was issued to: active only while the
    /// grant is live and the user exists, is active and still has access.
    pub async fn introspect(
        &self,
        form: &BTreeMap<String, String>,
        creds: &ClientCredentials,
    ) -> Result<Value, TokenFailure> {
        let client = self.configured_client(creds)?;
        let token = form_token(form)?;
        let inactive = json!({ "active": false });
        let Some((grant, at)) = self.grant_of_token(client, token).await? else {
            return Ok(inactive);
        };
        let now = self.inner.clock.now();
        if grant.revoked.is_some()
            || (at.is_none() && (grant.expires <= now || self.idle(&grant, now)))
        {
            return Ok(inactive);
        }
        let claims = match self.current_claims(&grant).await {
            Ok(c) if !(c.roles.is_empty() && c.user_groups.is_empty()) => c,
            Ok(_) | Err(TokenFailure::OAuth(_)) => return Ok(inactive),
            Err(e) => return Err(e),
        };
        let iss = self.issuer().unwrap_or_default();
        Ok(match at {
            Some(at) => json!({
                "active": true,
                "token_type": "Bearer",
                "iss": iss,
                "sub": at.sub,
                "aud": at.aud,
                "client_id": at.client_id,
                "scope": at.scope,
                "exp": at.exp,
                "iat": at.iat,
                "jti": at.jti,
                "sid": at.sid,
                "connection": claims.connection,
            }),
            None => json!({
                "active": true,
                "token_type": "refresh_token",
                "iss": iss,
                "sub": grant.user_id,
                "client_id": grant.client_id,
                "scope": grant.scope,
                "exp": seconds(grant.expires),
                "sid": grant.id,
                "connection": claims.connection,
            }),
        })
    }

    /// The user's claims now; a user gone or deactivated ends the grant.
    async fn current_claims(&self, grant: &GrantRow) -> Result<Claims, TokenFailure> {
        let claims = self
            .inner
            .access
            .claims_at_login(
                &grant.connection,
                &grant.user_id,
                grant.token_groups.clone(),
            )
            .await?;
        match claims {
            Some(c) if c.active => Ok(c),
            _ => {
                Err(OAuthError::invalid_grant("the user no longer exists or is deactivated").into())
            }
        }
    }

    async fn mint(
        &self,
        client: &Client,
        grant: &GrantRow,
        claims: &Claims,
        nonce: Option<String>,
    ) -> Result<TokenResponse, TokenFailure> {
        let iss = self.issuer().unwrap_or_default().to_owned();
        let now = self.inner.clock.now();
        let p = &self.inner.provider;
        let model = self.inner.access.model();
        let access = AccessClaims::of(claims, &model);
        let exp =
            |ttl: Duration| seconds(now) + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let at = AccessTokenClaims {
            iss: iss.clone(),
            sub: grant.user_id.clone(),
            aud: client.id.clone(),
            exp: exp(p.access_token_ttl),
            iat: seconds(now),
            auth_time: seconds(grant.auth_time),
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: client.id.clone(),
            scope: grant.scope.clone(),
            sid: grant.id.clone(),
            access: access.clone(),
        };
        let idt = IdTokenClaims {
            iss,
            sub: grant.user_id.clone(),
            aud: client.id.clone(),
            exp: exp(p.id_token_ttl),
            iat: seconds(now),
            auth_time: seconds(grant.auth_time),
            nonce,
            azp: client.id.clone(),
            sid: grant.id.clone(),
            preferred_username: grant
                .scope
                .split(' ')
                .any(|s| s == "profile")
                .then(|| claims.user_name.clone()),
            access,
        };
        let access_token = sign(&self.inner.keys, ACCESS_TOKEN_TYP, &at).await?;
        let id_token = sign(&self.inner.keys, "JWT", &idt).await?;
        self.inner.metrics.token_issued(&client.id, "access_token");
        self.inner.metrics.token_issued(&client.id, "id_token");
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: p.access_token_ttl.as_secs(),
            id_token,
            refresh_token: None,
            scope: grant.scope.clone(),
        })
    }

    // ------------------------------------------------------------------- logout

    /// RP-Initiated Logout 1.0 at `end_session_endpoint` (`/oauth/logout`): ends the
    /// person's pimgate session (the one `id_token_hint` names, and the browser's own when it
    /// is the same person's), revokes every sign-in made in it, tells the clients over the
    /// back channel, then ends the session at the IdP when it offers that, and finally sends
    /// the browser to the client's registered `post_logout_redirect_uri` (or says "signed out").
    pub async fn end_session(
        &self,
        params: &BTreeMap<String, String>,
        cookies: &BTreeMap<String, String>,
        confirmed: bool,
    ) -> LogoutOutcome {
        let Some(iss) = self.issuer() else {
            return LogoutOutcome::Page(page(
                StatusCode::NOT_FOUND,
                "Single sign-on is not set up",
                "This pimgate has no applications configured for sign-in.",
                "no issuer",
            ));
        };
        let p = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let bad_link = |why: &str| {
            LogoutOutcome::Page(page(
                StatusCode::BAD_REQUEST,
                "This sign-out link is not valid",
                "The application sent you to sign out with a link pimgate cannot trust, so nothing was changed. Close the browser to end your session, or ask the application's administrator.",
                why,
            ))
        };
        for k in [
            "state",
            "client_id",
            "post_logout_redirect_uri",
            "ui_locales",
            "logout_hint",
        ] {
            if p(k).is_some_and(|v| v.len() > MAX_PARAM) {
                return bad_link(&format!("{k} is too long"));
            }
        }
        // The hint: one of our own ID tokens (an expired one is fine).
        let hint = match p("id_token_hint") {
            None => None,
            Some(t) => match super::tokens::verify_id_token_hint(&self.inner.keys, iss, t).await {
                Ok(h) => Some(h),
                Err(super::tokens::TokenRejected::UnknownKey) => {
                    // Signed by a key retired since: the browser's session still decides.
                    tracing::info!("id_token_hint signed by a retired key; ignored");
                    None
                }
                Err(super::tokens::TokenRejected::Keys(e)) => {
                    return LogoutOutcome::Page(unavailable(&e.to_string()));
                }
                Err(e) => return bad_link(&format!("id_token_hint refused: {e}")),
            },
        };
        let client_id = match (p("client_id"), &hint) {
            (Some(c), Some(h)) if c != h.aud => {
                return bad_link("client_id is not the audience of id_token_hint");
            }
            (Some(c), _) => Some(c.to_owned()),
            (None, Some(h)) => Some(h.aud.clone()),
            (None, None) => None,
        };
        let client = client_id
            .as_deref()
            .and_then(|c| self.inner.provider.clients.get(c));
        if client_id.is_some() && client.is_none() {
            return bad_link("unknown client_id");
        }
        // Where to go at the end: only a URI the client registered.
        let to = match p("post_logout_redirect_uri") {
            None => None,
            Some(u) => {
                let Some(c) = client else {
                    return bad_link("post_logout_redirect_uri without client_id or id_token_hint");
                };
                if !c.post_logout_redirect_uris.iter().any(|r| r == u) {
                    return bad_link("post_logout_redirect_uri is not registered for the client");
                }
                let mut ps = vec![];
                if let Some(st) = p("state") {
                    ps.push(("state", st));
                }
                Some(with_params(u, &ps))
            }
        };
        // The sessions: the hint's, and the browser's.
        let mut session: Option<SessionRow> = None;
        if let Some(h) = &hint {
            match self.inner.grants.grant(&h.sid).await {
                Ok(Some(g)) if g.user_id == h.sub => {
                    if let Some(sid) = &g.session_id {
                        match self.inner.sessions.get(sid).await {
                            Ok(s) => session = s,
                            Err(e) => return LogoutOutcome::Page(unavailable(&e.to_string())),
                        }
                    } else if let Err(e) = self
                        .inner
                        .grants
                        .revoke_grant(&g.id, self.inner.clock.now())
                        .await
                    {
                        return LogoutOutcome::Page(unavailable(&e.to_string()));
                    }
                }
                Ok(_) => {}
                Err(e) => return LogoutOutcome::Page(unavailable(&e.to_string())),
            }
        }
        let browser = match cookies.get(SESSION_COOKIE) {
            Some(v) => match self.inner.sessions.live(v).await {
                Ok(s) => s,
                Err(e) => return LogoutOutcome::Page(unavailable(&e.to_string())),
            },
            None => None,
        };
        if hint.is_none() && browser.is_some() && !confirmed {
            return LogoutOutcome::Confirm {
                action: format!("{iss}/oauth/logout"),
                params: params
                    .iter()
                    .filter(|(k, _)| {
                        ["client_id", "post_logout_redirect_uri", "state"].contains(&k.as_str())
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
        }
        let mut ending: Vec<SessionRow> = session.into_iter().collect();
        if let Some(b) = browser {
            let same_person = ending
                .first()
                .is_none_or(|s| s.connection == b.connection && s.user_id == b.user_id);
            if same_person && ending.iter().all(|s| s.id != b.id) {
                ending.push(b);
            }
        }
        for s in &ending {
            if let Err(e) = self
                .inner
                .sessions
                .end(SessionSelector::Id(s.id.clone()), "logout")
                .await
            {
                return LogoutOutcome::Page(unavailable(&e.to_string()));
            }
        }
        let clear_cookie = self.inner.sessions.cookie("", 0);
        // At the IdP, when it can end sessions: it sends the browser back to
        // /sso/NAME/logged-out, which finishes here.
        if let Some(s) = ending.iter().find(|s| s.ended.is_none())
            && let Some(idp) = self.inner.sso.idp(&s.connection)
        {
            let state = random();
            let back = format!("{iss}/sso/{}/logged-out", s.connection);
            if let Some(location) = idp
                .end_session_url(s.upstream_id_token.as_deref(), &back, &state)
                .await
            {
                let record =
                    serde_json::to_string(&PendingLogout { to: to.clone() }).unwrap_or_default();
                match self
                    .inner
                    .flow
                    .put(
                        &format!("logout:{}", sha256_hex(&state)),
                        &record,
                        LOGIN_TTL,
                    )
                    .await
                {
                    Ok(()) => {
                        return LogoutOutcome::Redirect {
                            location: location.to_string(),
                            clear_cookie,
                        };
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the IdP logout cannot be followed; ending at pimgate only");
                    }
                }
            }
        }
        match to {
            Some(location) => LogoutOutcome::Redirect {
                location,
                clear_cookie,
            },
            None => LogoutOutcome::SignedOut { clear_cookie },
        }
    }

    /// The IdP sent the browser back after ending its session (`/sso/NAME/logged-out`).
    pub async fn logged_out(&self, params: &BTreeMap<String, String>) -> LogoutOutcome {
        let clear_cookie = self.inner.sessions.cookie("", 0);
        let pending = match params.get("state").filter(|s| s.len() <= MAX_PARAM) {
            Some(state) => match self
                .inner
                .flow
                .take(&format!("logout:{}", sha256_hex(state)))
                .await
            {
                Ok(r) => r.and_then(|r| serde_json::from_str::<PendingLogout>(&r).ok()),
                Err(e) => return LogoutOutcome::Page(unavailable(&e.to_string())),
            },
            None => None,
        };
        match pending.and_then(|p| p.to) {
            Some(location) => LogoutOutcome::Redirect {
                location,
                clear_cookie,
            },
            None => LogoutOutcome::SignedOut { clear_cookie },
        }
    }

    /// OIDC Back-Channel Logout 1.0 receiver (`/sso/NAME/backchannel-logout`): the IdP says
    /// a session of its ended; the pimgate sessions it started end, with their sign-ins.
    pub async fn backchannel_logout(
        &self,
        connection: &str,
        form: &BTreeMap<String, String>,
    ) -> Result<usize, TokenFailure> {
        let refuse = |why: String| {
            self.audit().record(
                "logout",
                Outcome::Refused,
                Entry {
                    connection: Some(connection.to_owned()),
                    reason: Some(format!("back-channel logout refused: {why}")),
                    ..Entry::default()
                },
            );
            TokenFailure::from(OAuthError::invalid_request(why))
        };
        let conn = ConnectionId::parse(connection).ok();
        let Some((conn, idp)) = conn.and_then(|c| self.inner.sso.idp(&c).map(|i| (c, i.clone())))
        else {
            return Err(refuse("no single sign-on for this connection".into()));
        };
        let token = form
            .get("logout_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refuse("logout_token is missing".into()))?;
        let claims = match idp.verify_logout_token(token).await {
            Ok(c) => c,
            Err(crate::sso::SsoError::Discovery(e)) => {
                return Err(TokenFailure::Upstream(e));
            }
            Err(e) => return Err(refuse(e.to_string())),
        };
        // Each logout token once (replay within its lifetime is refused).
        let fresh = self
            .inner
            .flow
            .put_new(
                &format!("bcl-jti:{conn}:{}", sha256_hex(&claims.jti)),
                "1",
                Duration::from_secs(30 * 60),
            )
            .await?;
        if !fresh {
            return Err(refuse(
                "the logout token was already used (jti replayed)".into(),
            ));
        }
        let which = match (&claims.sid, &claims.sub) {
            (Some(sid), _) => SessionSelector::UpstreamSid(conn.clone(), sid.clone()),
            (None, Some(sub)) => SessionSelector::UpstreamSub(conn.clone(), sub.clone()),
            (None, None) => return Err(refuse("neither sid nor sub".into())),
        };
        let ended = self.inner.sessions.end(which, "idp logout").await?;
        tracing::info!(connection = %conn, grants = ended.len(), "back-channel logout from the IdP");
        Ok(ended.len())
    }

    // ------------------------------------------------------------------- userinfo

    /// The full claims document of the access token's user (docs/claims.md), with `sub`.
    pub async fn userinfo(&self, bearer: Option<&str>) -> Result<Value, TokenFailure> {
        let iss = self
            .issuer()
            .ok_or(TokenFailure::Bearer("single sign-on is not configured"))?;
        let token = bearer.ok_or(TokenFailure::Bearer("an access token is required"))?;
        let at =
            match verify_access_token(&self.inner.keys, iss, token, self.inner.clock.now()).await {
                Ok(at) => at,
                Err(TokenRejected::Keys(e)) => return Err(e.into()),
                Err(e) => {
                    tracing::info!(reason = %e, "userinfo refused an access token");
                    return Err(TokenFailure::Bearer(
                        "the access token is invalid or expired",
                    ));
                }
            };
        let grant = self.inner.grants.grant(&at.sid).await?;
        let Some(grant) = grant.filter(|g| g.revoked.is_none() && g.user_id == at.sub) else {
            return Err(TokenFailure::Bearer("the access token has been revoked"));
        };
        let claims = self
            .current_claims(&grant)
            .await
            .map_err(|_| TokenFailure::Bearer("the user no longer exists or is deactivated"))?;
        let mut doc =
            serde_json::to_value(&claims).map_err(|e| TokenFailure::Internal(e.to_string()))?;
        if let Some(o) = doc.as_object_mut() {
            o.insert("sub".into(), json!(grant.user_id));
        }
        Ok(doc)
    }
}

/// The `token` of a revocation or introspection form.
fn form_token(form: &BTreeMap<String, String>) -> Result<&str, OAuthError> {
    form.get("token")
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))
}

fn hex_array(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let _ = hex::decode_to_slice(h, &mut out);
    out
}

fn not_provisioned() -> FailurePage {
    page(
        StatusCode::FORBIDDEN,
        "Your account is not set up here",
        "You signed in with your organisation, but your account has not been provisioned to this application. Ask your administrator to assign you to it.",
        "person not provisioned",
    )
}

fn no_access() -> FailurePage {
    page(
        StatusCode::FORBIDDEN,
        "You have no access to this application",
        "You signed in, but none of your groups gives you access to this application. Ask your administrator for access.",
        "no roles and no user groups",
    )
}

fn deactivated() -> FailurePage {
    page(
        StatusCode::FORBIDDEN,
        "Your account is deactivated",
        "Your organisation has deactivated your access to this application. Ask your administrator if you think this is a mistake.",
        "user deactivated",
    )
}

/// The group values of a login token. Entra's overage marker (`_claim_names` naming the
/// groups claim, or `hasgroups`) is never read as "no groups": it gives `None`, and the
/// SCIM groups are used, which the log says.
fn token_groups(
    claims: &Map<String, Value>,
    name: &str,
    conn: &ConnectionId,
) -> Option<Vec<String>> {
    match claims.get(name) {
        Some(Value::Array(values)) => Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .take(MAX_TOKEN_GROUPS)
                .map(str::to_owned)
                .collect(),
        ),
        Some(Value::String(one)) => Some(vec![one.clone()]),
        _ => {
            let overage = claims
                .get("_claim_names")
                .and_then(Value::as_object)
                .is_some_and(|n| n.contains_key(name))
                || claims
                    .get("hasgroups")
                    .is_some_and(|v| v == &json!(true) || v == &json!("true"));
            if overage {
                tracing::warn!(connection = %conn, claim = name, "the login token's groups were replaced by an overage marker; using the SCIM-provisioned groups");
                None
            } else {
                Some(Vec::new())
            }
        }
    }
}
