//! The application state: one cheap handle per capability, built once. Handlers reach the
//! part they need through `FromRef` (`State<ScimService>`, `State<AccessService>`, ...), and
//! every feature's router is generic over any state that holds its part, so no feature
//! imports this type. A new capability adds its handle to [`Capabilities`], a `FromRef` line
//! below, and its router in [`router`](super::router).
//!
//! The state is one `Arc`: the router hands a copy to every request, so a copy is one
//! reference count, however many capabilities there are.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::access::AccessService;
use crate::access::routes::AccessApiKeys;
use crate::metrics::Metrics;
use crate::oauth::OidcProvider;
use crate::ops::Readiness;
use crate::scim::ScimService;

/// Every capability's handle.
pub struct Capabilities {
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

/// Shared state: the capabilities behind one `Arc` (fields read through `Deref`).
#[derive(Clone)]
pub struct AppState(Arc<Capabilities>);

impl AppState {
    pub fn new(capabilities: Capabilities) -> Self {
        Self(Arc::new(capabilities))
    }
}

impl Deref for AppState {
    type Target = Capabilities;

    fn deref(&self) -> &Capabilities {
        &self.0
    }
}

macro_rules! from_state {
    ($($field:ident: $ty:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.0.$field.clone()
            }
        }
    )*};
}

from_state! {
    scim: ScimService,
    access: AccessService,
    access_api: AccessApiKeys,
    readiness: Readiness,
    metrics: Metrics,
    oidc: OidcProvider,
}
