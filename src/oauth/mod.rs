//! Single sign-on downstream: pimgate as the OpenID provider the PIM (or any OIDC client)
//! signs people in with, through the connection's IdP ([`crate::sso`]).
//!
//! - [`settings`]: `[oidc]` and `[connections.NAME.sso]`, validated;
//! - [`service`]: [`OidcProvider`], every step of a sign-in;
//! - [`routes`]: discovery, authorize, the IdP callback, token, userinfo, JWKS;
//! - [`keys`]: signing keys in the store, encrypted at rest, rotated;
//! - [`tokens`]: the ID and access tokens (RFC 9068) and their compact access claims;
//! - [`sessions`]: pimgate browser sessions (store, hot state in Redis), ended by logout,
//!   the IdP's back-channel logout or deprovisioning; [`backchannel`]: logout tokens sent
//!   to the clients;
//! - [`deprovision`]: a SCIM deactivation or deletion ends the user's sessions;
//! - [`pages`]: what a person sees when sign-in fails; [`error`]: RFC 6749 errors.

pub mod backchannel;
pub mod deprovision;
pub mod error;
pub mod keys;
pub mod pages;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod settings;
pub mod tokens;

pub use service::OidcProvider;
