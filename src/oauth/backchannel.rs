//! Back-channel logout towards the clients (OpenID Connect Back-Channel Logout 1.0): when a
//! session ends (logout at pimgate, a back-channel logout from the IdP, SCIM deprovisioning),
//! every client that registered a `backchannel_logout_uri` and was signed in to it gets a
//! logout token naming the ended sign-in (`sid`, the grant) and the person (`sub`).
//!
//! Deliveries never block the request that ended the session: each runs as a task of its
//! own, at most [`MAX_IN_FLIGHT`] at once and [`MAX_QUEUED`] waiting (beyond that a
//! delivery is dropped and logged), retried with exponential backoff on a network error,
//! a 5xx, 408 or 429, up to [`MAX_ATTEMPTS`] times. A 2xx is success; any other 4xx is the
//! client refusing the token, which a retry would not change. Deliveries waiting when the
//! process stops are lost (the grants are revoked either way, so the tokens stop working).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;

use super::keys::SigningKeys;
use super::settings::Provider;
use super::tokens::{LOGOUT_TOKEN_TYP, LogoutTokenClaims, seconds, sign};
use crate::clock::Clock;
use crate::directory::EndedGrant;
use crate::metrics::Metrics;
use crate::sso::upstream::BACKCHANNEL_LOGOUT_EVENT;

/// Deliveries in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Deliveries waiting or in flight before new ones are dropped.
pub const MAX_QUEUED: usize = 10_000;
/// Tries per delivery (the waits between them: 1, 2, 4, 8 s).
pub const MAX_ATTEMPTS: u32 = 5;
/// How long one POST may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a logout token is valid (it covers every retry).
const LOGOUT_TOKEN_TTL_SECONDS: i64 = 120;

/// The outcome of one delivery, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    Refused,
    Failed,
    Dropped,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Refused => "refused",
            Delivery::Failed => "failed",
            Delivery::Dropped => "dropped",
        }
    }
}

/// Sends logout tokens to clients (a cheap handle).
#[derive(Clone)]
pub struct LogoutSender {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    keys: SigningKeys,
    issuer: Option<String>,
    provider: Arc<Provider>,
    clock: Arc<dyn Clock>,
    permits: Semaphore,
    queued: AtomicUsize,
    metrics: Metrics,
}

impl std::fmt::Debug for LogoutSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutSender")
            .field("queued", &self.inner.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LogoutSender {
    pub fn new(
        keys: SigningKeys,
        issuer: Option<String>,
        provider: Arc<Provider>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(DELIVERY_TIMEOUT)
            .user_agent(concat!("pimgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                http,
                keys,
                issuer,
                provider,
                clock,
                permits: Semaphore::new(MAX_IN_FLIGHT),
                queued: AtomicUsize::new(0),
                metrics,
            }),
        }
    }

    /// Tells every client with a back-channel logout URI that these grants ended; returns
    /// at once.
    pub fn send(&self, ended: &[EndedGrant]) {
        for g in ended {
            let Some(uri) = self
                .inner
                .provider
                .clients
                .get(&g.client_id)
                .and_then(|c| c.backchannel_logout_uri.clone())
            else {
                continue;
            };
            if self.inner.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
                self.inner.queued.fetch_sub(1, Ordering::AcqRel);
                tracing::error!(client = %g.client_id, grant = %g.grant_id, "back-channel logout dropped: {MAX_QUEUED} deliveries are already waiting");
                self.inner
                    .metrics
                    .backchannel_delivery(&g.client_id, Delivery::Dropped.as_str());
                continue;
            }
            let inner = self.inner.clone();
            let grant = g.clone();
            tokio::spawn(async move {
                let outcome = deliver(&inner, &uri, &grant).await;
                inner.queued.fetch_sub(1, Ordering::AcqRel);
                inner
                    .metrics
                    .backchannel_delivery(&grant.client_id, outcome.as_str());
            });
        }
    }
}

async fn deliver(inner: &Inner, uri: &str, g: &EndedGrant) -> Delivery {
    let Some(iss) = inner.issuer.clone() else {
        return Delivery::Failed;
    };
    let now = seconds(inner.clock.now());
    let claims = LogoutTokenClaims {
        iss,
        sub: g.user_id.clone(),
        aud: g.client_id.clone(),
        iat: now,
        exp: now + LOGOUT_TOKEN_TTL_SECONDS,
        jti: uuid::Uuid::new_v4().to_string(),
        sid: g.grant_id.clone(),
        events: json!({ BACKCHANNEL_LOGOUT_EVENT: {} }),
    };
    let token = match sign(&inner.keys, LOGOUT_TOKEN_TYP, &claims).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, client = %g.client_id, "a logout token could not be signed");
            return Delivery::Failed;
        }
    };
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=MAX_ATTEMPTS {
        let result = {
            let Ok(_permit) = inner.permits.acquire().await else {
                return Delivery::Failed;
            };
            inner
                .http
                .post(uri)
                .header("cache-control", "no-store")
                .form(&[("logout_token", token.as_str())])
                .send()
                .await
        };
        match result {
            Ok(r) if r.status().is_success() => {
                tracing::info!(client = %g.client_id, grant = %g.grant_id, attempt, "back-channel logout delivered");
                return Delivery::Delivered;
            }
            Ok(r)
                if r.status().is_client_error()
                    && r.status() != reqwest::StatusCode::REQUEST_TIMEOUT
                    && r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::warn!(client = %g.client_id, grant = %g.grant_id, status = %r.status(), "the client refused a back-channel logout token");
                return Delivery::Refused;
            }
            Ok(r) => {
                tracing::warn!(client = %g.client_id, grant = %g.grant_id, status = %r.status(), attempt, "back-channel logout not accepted; retrying");
            }
            Err(e) => {
                tracing::warn!(client = %g.client_id, grant = %g.grant_id, error = %e, attempt, "back-channel logout could not be delivered; retrying");
            }
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!(client = %g.client_id, grant = %g.grant_id, "back-channel logout failed after {MAX_ATTEMPTS} attempts");
    Delivery::Failed
}
