//! The application state: one cheap handle per capability, built once. Handlers reach the
//! part they need through `FromRef` (`State<ScimService>`, `State<AccessService>`, ...), and
//! every feature's router is generic over any state that holds its part, so no feature
//! imports this type. A new capability adds its handle here and its router in
//! [`router`](super::router).

use axum::extract::FromRef;

use crate::access::AccessService;
use crate::access::routes::AccessApiKeys;
use crate::metrics::Metrics;
use crate::oauth::OidcProvider;
use crate::ops::Readiness;
use crate::scim::ScimService;

/// Shared state (every field is a cheap handle).
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The SCIM 2.0 service provider over the directory.
    pub scim: ScimService,
    /// Claims: resolution, cache and invalidation.
    pub access: AccessService,
    /// The claims API's service credentials.
    pub access_api: AccessApiKeys,
    /// What `/readyz` checks.
    pub readiness: Readiness,
    /// The registry `/metrics` reports.
    pub metrics: Metrics,
    /// Single sign-on: the OpenID provider for the PIM, over each connection's IdP.
    pub oidc: OidcProvider,
}
