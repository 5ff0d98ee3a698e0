//! One connection's IdP, as pimgate's relying party (OIDC Core §3.1, with the `openidconnect`
//! crate): discovery, cached; the authorization request with PKCE S256, `state` and
//! `nonce`; the code exchange; and ID token validation per OIDC Core §3.1.3.7.
//!
//! What the crate leaves to us, done here:
//! - the IdP's JWKS is fetched again when a token names an unknown `kid` (the IdP rotated
//!   its keys), with one fetch in flight and at most one per [`JWKS_REFETCH_MS`];
//! - the algorithms are an allow-list of asymmetric ones (never `none`, never `HS*`: an
//!   HMAC "keyed" with the IdP's public key is refused), narrowed to what discovery lists;
//! - `exp` and `iat` are checked on the injected clock with [`CLOCK_SKEW_MS`] of leeway;
//! - Entra multi-tenant issuers (`https://login.microsoftonline.com/{tenantid}/v2.0`) are
//!   matched against the token's `tid`, which must be in the connection's `tenants`; the
//!   issuer check is never switched off;
//! - `azp`, when present, must be our client id.

use std::sync::Arc;

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, LoginHint, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::SsoError;
use super::settings::Upstream;
use crate::clock::{Clock, Timestamp};

/// Leeway for the IdP's clock on `exp` and `iat`.
pub const CLOCK_SKEW_MS: u64 = 60_000;
/// The least time between two fetches of an IdP's JWKS: a flood of tokens naming unknown
/// keys makes at most one fetch per this interval (a login waits for the interval instead).
pub const JWKS_REFETCH_MS: u64 = 1_000;
/// Discovery is read again after this long.
const DISCOVERY_TTL_MS: u64 = 60 * 60 * 1000;
/// After a failed discovery, how long before the IdP is tried again.
const DISCOVERY_RETRY_MS: u64 = 5_000;
/// Largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// The signature algorithms accepted from any IdP.
const ASYMMETRIC: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The event a back-channel logout token must carry (Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old a logout token may be (its `iat`), beyond the clock skew.
const LOGOUT_TOKEN_MAX_AGE_MS: u64 = 10 * 60 * 1000;
/// Longest logout token read.
const MAX_LOGOUT_TOKEN_BYTES: usize = 16 * 1024;

/// What was discovered about the IdP.
struct Discovered {
    metadata: CoreProviderMetadata,
    /// RP-Initiated Logout 1.0: where to end the person's session at the IdP.
    end_session_endpoint: Option<url::Url>,
    jwks: CoreJsonWebKeySet,
    fetched: Timestamp,
    jwks_fetched: Timestamp,
}

/// What the IdP vouched for, after every check.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    /// Every claim of the ID token.
    pub claims: Map<String, Value>,
    /// The ID token itself (the `id_token_hint` of a later logout at the IdP).
    pub raw: String,
}

/// A back-channel logout token, verified: whose sessions at the IdP ended.
#[derive(Debug, Clone)]
pub struct LogoutClaims {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
}

/// A login in flight at the IdP: what the callback needs to finish it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UpstreamPending {
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A connection's IdP.
pub struct UpstreamIdp {
    pub settings: Arc<Upstream>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    metrics: crate::metrics::Metrics,
    discovered: Mutex<Option<Arc<Discovered>>>,
    /// When discovery last failed: for [`DISCOVERY_RETRY_MS`] after, sign-ins fail at once
    /// instead of queueing for the IdP.
    failed_at: std::sync::Mutex<Option<Timestamp>>,
    /// Held while a JWKS fetch is in flight: one at a time.
    jwks_fetch: Mutex<()>,
}

impl std::fmt::Debug for UpstreamIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamIdp")
            .field("connection", &self.settings.connection)
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// Reads a JSON document of at most [`MAX_DOCUMENT_BYTES`].
async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let mut resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
}

/// One call to the IdP's token endpoint for `openidconnect`, on our client (its timeouts,
/// no redirects) and with the answer capped at [`MAX_DOCUMENT_BYTES`].
async fn bounded_call(
    http: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, std::io::Error> {
    let (parts, body) = req.into_parts();
    let mut resp = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(std::io::Error::other)? {
        if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(std::io::Error::other(format!(
                "the answer is larger than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let mut out = openidconnect::HttpResponse::new(bytes);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn chrono_of(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.0).unwrap_or_default()
}

fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl UpstreamIdp {
    pub fn new(
        settings: Arc<Upstream>,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Self {
            settings,
            http,
            clock,
            metrics,
            discovered: Mutex::new(None),
            failed_at: std::sync::Mutex::new(None),
            jwks_fetch: Mutex::new(()),
        }
    }

    /// Runs one call to the IdP, timing it for the metrics under `endpoint`.
    async fn timed<T, E>(
        &self,
        endpoint: &'static str,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let out = call.await;
        self.metrics.upstream_call(
            self.settings.connection.as_str(),
            endpoint,
            started.elapsed().as_secs_f64(),
            out.is_ok(),
        );
        out
    }

    /// The discovery document and JWKS, read when missing or older than an hour. One
    /// discovery at a time per IdP.
    async fn discovered(&self) -> Result<Arc<Discovered>, SsoError> {
        let recent_failure = match self.failed_at.lock() {
            Ok(f) => *f,
            Err(p) => *p.into_inner(),
        };
        if let Some(at) = recent_failure
            && self.clock.now().millis_since(at) < DISCOVERY_RETRY_MS
        {
            return Err(SsoError::Discovery(
                "the IdP failed moments ago; not trying again yet".into(),
            ));
        }
        let result = self.discover().await;
        let mut failed = match self.failed_at.lock() {
            Ok(f) => f,
            Err(p) => p.into_inner(),
        };
        *failed = result.is_err().then(|| self.clock.now());
        result
    }

    async fn discover(&self) -> Result<Arc<Discovered>, SsoError> {
        let mut slot = self.discovered.lock().await;
        let now = self.clock.now();
        if let Some(d) = slot.as_ref()
            && now.millis_since(d.fetched) < DISCOVERY_TTL_MS
        {
            return Ok(d.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let document: Value = self
            .timed("discovery", fetch_json(&self.http, &url))
            .await
            .map_err(SsoError::Discovery)?;
        let end_session_endpoint = document
            .get("end_session_endpoint")
            .and_then(Value::as_str)
            .and_then(|u| url::Url::parse(u).ok())
            .filter(|u| matches!(u.scheme(), "https" | "http"));
        let metadata: CoreProviderMetadata = serde_json::from_value(document)
            .map_err(|e| SsoError::Discovery(format!("{url}: {e}")))?;
        let discovered_issuer = metadata.issuer().as_str().trim_end_matches('/');
        if discovered_issuer.contains("{tenantid}") {
            if self.settings.tenants.is_empty() {
                return Err(SsoError::Discovery(format!(
                    "the IdP's issuer {discovered_issuer} is multi-tenant: list the tenants let in under connections.{}.sso.tenants",
                    self.settings.connection
                )));
            }
        } else if discovered_issuer != self.settings.issuer {
            return Err(SsoError::Discovery(format!(
                "the discovery document names issuer {discovered_issuer}, not the configured {}",
                self.settings.issuer
            )));
        }
        let jwks: CoreJsonWebKeySet = self
            .timed("jwks", fetch_json(&self.http, metadata.jwks_uri().as_str()))
            .await
            .map_err(SsoError::Discovery)?;
        let d = Arc::new(Discovered {
            metadata,
            end_session_endpoint,
            jwks,
            fetched: now,
            jwks_fetched: now,
        });
        *slot = Some(d.clone());
        Ok(d)
    }

    /// Fetches the JWKS again after a token named a key we do not have: one fetch in flight,
    /// and at least [`JWKS_REFETCH_MS`] after the last one (waiting for that, if need be).
    /// Whether a newer set came.
    async fn refetch_jwks(&self, seen: &Arc<Discovered>) -> Result<bool, SsoError> {
        let _one = self.jwks_fetch.lock().await;
        let current = self.discovered().await?;
        if !Arc::ptr_eq(&current, seen) {
            // Another request fetched while this one waited.
            return Ok(true);
        }
        let since = self.clock.now().millis_since(current.jwks_fetched);
        if since < JWKS_REFETCH_MS {
            tokio::time::sleep(std::time::Duration::from_millis(JWKS_REFETCH_MS - since)).await;
        }
        let now = self.clock.now();
        let jwks: CoreJsonWebKeySet = self
            .timed(
                "jwks",
                fetch_json(&self.http, current.metadata.jwks_uri().as_str()),
            )
            .await
            .map_err(SsoError::Discovery)?;
        tracing::info!(connection = %self.settings.connection, "re-fetched the IdP's keys after an unknown key id");
        let d = Arc::new(Discovered {
            metadata: current.metadata.clone(),
            end_session_endpoint: current.end_session_endpoint.clone(),
            jwks,
            fetched: current.fetched,
            jwks_fetched: now,
        });
        *self.discovered.lock().await = Some(d);
        Ok(true)
    }

    fn client(
        &self,
        d: &Discovered,
    ) -> Result<
        openidconnect::core::CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SsoError,
    > {
        let redirect = RedirectUrl::new(self.settings.redirect_uri.clone())
            .map_err(|e| SsoError::Discovery(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Where to send the browser: the IdP's authorization endpoint with our `state`, a new
    /// nonce and PKCE challenge (kept in the returned [`UpstreamPending`]).
    pub async fn begin(
        &self,
        state: &str,
        prompt: Option<&str>,
        login_hint: Option<&str>,
    ) -> Result<(url::Url, UpstreamPending), SsoError> {
        let d = self.discovered().await?;
        let client = self.client(&d)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = random_token();
        let state = state.to_owned();
        let n = nonce.clone();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(n),
            )
            .set_pkce_challenge(challenge);
        for s in self.settings.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        match prompt {
            Some("none") => req = req.add_prompt(CoreAuthPrompt::None),
            Some("login") => req = req.add_prompt(CoreAuthPrompt::Login),
            _ => {}
        }
        if let Some(h) = login_hint {
            req = req.set_login_hint(LoginHint::new(h.to_owned()));
        }
        let (url, _, _) = req.url();
        Ok((
            url,
            UpstreamPending {
                nonce,
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// Redeems the IdP's code and validates the ID token it answers with.
    pub async fn finish(
        &self,
        code: &str,
        pending: &UpstreamPending,
    ) -> Result<VerifiedIdentity, SsoError> {
        let d = self.discovered().await?;
        let client = self.client(&d)?;
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SsoError::Discovery(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        let response = self
            .timed(
                "token",
                exchange.request_async(&|req| bounded_call(self.http.clone(), req)),
            )
            .await
            .map_err(|e| SsoError::Exchange(describe_token_error(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::IdToken("the IdP answered without an ID token".into()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        match self.verify(&d, id_token, &nonce) {
            Err(SsoError::UnknownKey) => {
                if self.refetch_jwks(&d).await? {
                    let d = self.discovered().await?;
                    self.verify(&d, id_token, &nonce)
                } else {
                    Err(SsoError::IdToken(
                        "signed by a key the IdP does not publish".into(),
                    ))
                }
            }
            other => other,
        }
    }

    fn verify(
        &self,
        d: &Discovered,
        id_token: &openidconnect::core::CoreIdToken,
        nonce: &Nonce,
    ) -> Result<VerifiedIdentity, SsoError> {
        let s = &self.settings;
        let advertised = d.metadata.id_token_signing_alg_values_supported();
        let allowed: Vec<CoreJwsSigningAlgorithm> = ASYMMETRIC
            .iter()
            .filter(|a| advertised.contains(a))
            .cloned()
            .collect();
        let template = d.metadata.issuer().as_str().contains("{tenantid}");
        let now = self.clock.now();
        let skewed_now = chrono_of(Timestamp(now.0 - CLOCK_SKEW_MS as i64));
        let latest_iat = chrono_of(now.plus_millis(CLOCK_SKEW_MS));
        let issuer = IssuerUrl::new(d.metadata.issuer().as_str().to_owned())
            .map_err(|e| SsoError::Discovery(e.to_string()))?;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(s.client_id.clone()),
            issuer,
            d.jwks.clone(),
        )
        .set_allowed_algs(allowed)
        .require_issuer_match(!template)
        .set_time_fn(move || skewed_now)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > latest_iat {
                Err(format!("issued in the future ({iat})"))
            } else {
                Ok(())
            }
        });
        if let Err(e) = id_token.claims(&verifier, nonce) {
            use openidconnect::{ClaimsVerificationError as C, SignatureVerificationError as S};
            return Err(match e {
                C::SignatureVerification(S::NoMatchingKey) => SsoError::UnknownKey,
                other => SsoError::IdToken(other.to_string()),
            });
        }
        // The claims are verified; read them all (the crate types only the standard ones).
        let raw = id_token.to_string();
        let payload = raw.split('.').nth(1).unwrap_or_default();
        let claims: Map<String, Value> = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| SsoError::IdToken("unreadable claims".into()))?
        };
        if template {
            let tid = claims
                .get("tid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let expected = d.metadata.issuer().as_str().replace("{tenantid}", tid);
            let iss = claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if tid.is_empty() || iss != expected || !s.tenants.iter().any(|t| t == tid) {
                return Err(SsoError::IdToken(format!(
                    "issuer {iss:?} (tenant {tid:?}) is not one of the tenants let in"
                )));
            }
        }
        if let Some(azp) = claims.get("azp").and_then(Value::as_str)
            && azp != s.client_id
        {
            return Err(SsoError::IdToken(format!("azp {azp:?} is not this client")));
        }
        Ok(VerifiedIdentity { claims, raw })
    }

    /// Where to send the browser to end the person's session at the IdP (RP-Initiated
    /// Logout 1.0), when its discovery document names an `end_session_endpoint`; `None` when
    /// it does not or cannot be read now.
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
        state: &str,
    ) -> Option<url::Url> {
        let d = self.discovered().await.ok()?;
        let mut u = d.end_session_endpoint.clone()?;
        {
            let mut q = u.query_pairs_mut();
            if let Some(h) = id_token_hint {
                q.append_pair("id_token_hint", h);
            }
            q.append_pair("client_id", &self.settings.client_id)
                .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
                .append_pair("state", state);
        }
        Some(u)
    }

    /// Validates a back-channel logout token (Back-Channel Logout 1.0 §2.6): the signature
    /// by one of the IdP's keys (re-fetched once on an unknown `kid`) with an allowed
    /// asymmetric algorithm, `iss`, `aud`, `iat` (and `exp` when present) on the injected
    /// clock, the logout event, `sid` or `sub`, and no `nonce`. Replay (`jti`) is the
    /// caller's check.
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, SsoError> {
        if token.len() > MAX_LOGOUT_TOKEN_BYTES {
            return Err(SsoError::LogoutToken(format!(
                "longer than {MAX_LOGOUT_TOKEN_BYTES} bytes"
            )));
        }
        let d = self.discovered().await?;
        match self.check_logout_token(&d, token) {
            Err(SsoError::UnknownKey) => {
                if self.refetch_jwks(&d).await? {
                    let d = self.discovered().await?;
                    match self.check_logout_token(&d, token) {
                        Err(SsoError::UnknownKey) => Err(SsoError::LogoutToken(
                            "signed by a key the IdP does not publish".into(),
                        )),
                        other => other,
                    }
                } else {
                    Err(SsoError::LogoutToken(
                        "signed by a key the IdP does not publish".into(),
                    ))
                }
            }
            other => other,
        }
    }

    fn check_logout_token(&self, d: &Discovered, token: &str) -> Result<LogoutClaims, SsoError> {
        let bad = |m: &str| SsoError::LogoutToken(m.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a signed JWT"))?;
        let alg_name = serde_json::to_value(header.alg)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let advertised = d.metadata.id_token_signing_alg_values_supported();
        let allowed = ASYMMETRIC
            .iter()
            .filter(|a| advertised.contains(a))
            .any(|a| {
                serde_json::to_value(a)
                    .ok()
                    .is_some_and(|v| v.as_str() == Some(alg_name.as_str()))
            });
        if !allowed {
            return Err(bad(&format!("the algorithm {alg_name:?} is not allowed")));
        }
        // The IdP's keys, one by one (a key of a type we cannot read is skipped, not fatal).
        let keys: Vec<jsonwebtoken::jwk::Jwk> = serde_json::to_value(&d.jwks)
            .ok()
            .and_then(|v| v.get("keys").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|k| serde_json::from_value(k).ok())
            .collect();
        let jwk = match &header.kid {
            Some(kid) => keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid.as_str())),
            None if keys.len() == 1 => keys.first(),
            None => None,
        }
        .ok_or(SsoError::UnknownKey)?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
            .map_err(|e| bad(&format!("the IdP's key cannot be used: {e}")))?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        // Time, audience and issuer are checked below (on the injected clock; the issuer
        // may be an Entra tenant template).
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| bad(&format!("signature: {e}")))?
            .claims;
        let text = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let template = d.metadata.issuer().as_str().contains("{tenantid}");
        let iss = text("iss").ok_or_else(|| bad("no iss"))?;
        let expected_iss = if template {
            let tid = text("tid").unwrap_or_default();
            if !self.settings.tenants.contains(&tid) {
                return Err(bad("the tenant is not let in"));
            }
            d.metadata.issuer().as_str().replace("{tenantid}", &tid)
        } else {
            d.metadata.issuer().as_str().to_owned()
        };
        if iss.trim_end_matches('/') != expected_iss.trim_end_matches('/') {
            return Err(bad("iss is not the IdP"));
        }
        let for_us = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.settings.client_id,
            Some(Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(self.settings.client_id.as_str())),
            _ => false,
        };
        if !for_us {
            return Err(bad("aud is not this client"));
        }
        let now_ms = self.clock.now().0;
        let skew = CLOCK_SKEW_MS as i64;
        let iat_ms = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("no iat"))?
            .saturating_mul(1000);
        if iat_ms > now_ms + skew {
            return Err(bad("issued in the future"));
        }
        if iat_ms < now_ms - skew - LOGOUT_TOKEN_MAX_AGE_MS as i64 {
            return Err(bad("issued too long ago"));
        }
        if let Some(exp) = claims.get("exp") {
            let exp_ms = exp
                .as_i64()
                .ok_or_else(|| bad("exp is not a number"))?
                .saturating_mul(1000);
            if exp_ms <= now_ms - skew {
                return Err(bad("expired"));
            }
        }
        let event_ok = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !event_ok {
            return Err(bad("events has no back-channel logout event"));
        }
        if claims.contains_key("nonce") {
            return Err(bad("a logout token must not carry a nonce"));
        }
        let sid = text("sid");
        let sub = text("sub");
        if sid.is_none() && sub.is_none() {
            return Err(bad("neither sid nor sub"));
        }
        let jti = text("jti").ok_or_else(|| bad("no jti"))?;
        Ok(LogoutClaims { sid, sub, jti })
    }
}

fn describe_token_error<E: std::error::Error>(
    e: &openidconnect::RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    // Never the answer's body: it may hold tokens.
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            format!("the IdP refused the code: {}", r.error())
        }
        openidconnect::RequestTokenError::Request(e) => {
            format!("the IdP's token endpoint could not be reached: {e}")
        }
        openidconnect::RequestTokenError::Parse(_, _) => {
            "the IdP's token endpoint answered something unreadable".to_owned()
        }
        openidconnect::RequestTokenError::Other(s) => format!("the IdP's token endpoint: {s}"),
    }
}
