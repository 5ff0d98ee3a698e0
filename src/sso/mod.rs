//! Single sign-on upstream: pimgate as the relying party of each connection's IdP (Entra ID,
//! Okta, any OpenID provider). [`upstream`] talks to one IdP; [`SsoService`] holds one per
//! connection with an `[sso]` table. Matching the person to the directory and issuing the
//! PIM's tokens is the OpenID provider's part ([`crate::oauth`]).

pub mod settings;
pub mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::connections::ConnectionId;
use settings::Upstream;
use upstream::UpstreamIdp;

/// How long a call to an IdP may take.
const IDP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in at an IdP failed.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// Discovery or the IdP's keys could not be read (or say something we refuse).
    #[error("the IdP cannot be used: {0}")]
    Discovery(String),
    /// The IdP refused to redeem its code (replayed, expired, wrong PKCE verifier).
    #[error("{0}")]
    Exchange(String),
    /// The ID token failed a check of OIDC Core §3.1.3.7.
    #[error("the IdP's ID token was refused: {0}")]
    IdToken(String),
    /// Signed by a key id the IdP's JWKS does not have (re-fetched then).
    #[error("the ID token is signed by an unknown key")]
    UnknownKey,
    /// A back-channel logout token failed a check of Back-Channel Logout 1.0 §2.6.
    #[error("the logout token was refused: {0}")]
    LogoutToken(String),
}

/// The IdPs of every connection with single sign-on.
#[derive(Debug, Clone)]
pub struct SsoService {
    idps: Arc<BTreeMap<ConnectionId, Arc<UpstreamIdp>>>,
}

impl SsoService {
    pub fn new(
        upstream: &BTreeMap<ConnectionId, Arc<Upstream>>,
        clock: Arc<dyn Clock>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        crate::tls::install_crypto_provider();
        // Redirects are not followed (an IdP's documents are where discovery says), and
        // every call is bounded in time.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(IDP_TIMEOUT)
            .connect_timeout(IDP_TIMEOUT)
            .user_agent(concat!("pimgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let idps = upstream
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    Arc::new(UpstreamIdp::new(
                        s.clone(),
                        http.clone(),
                        clock.clone(),
                        metrics.clone(),
                    )),
                )
            })
            .collect();
        Self {
            idps: Arc::new(idps),
        }
    }

    pub fn idp(&self, conn: &ConnectionId) -> Option<&Arc<UpstreamIdp>> {
        self.idps.get(conn)
    }

    /// The connection whose `domains` hold this e-mail address's domain, among `among`.
    pub fn by_domain<'a>(
        &self,
        email: &str,
        among: &'a [ConnectionId],
    ) -> Option<&'a ConnectionId> {
        let domain = email.rsplit_once('@')?.1.to_ascii_lowercase();
        among.iter().find(|c| {
            self.idps
                .get(*c)
                .is_some_and(|i| i.settings.domains.contains(&domain))
        })
    }
}
