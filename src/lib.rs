//! pimgate: an identity provisioning gateway for Struct PIM.
//!
//! # Layout
//! By capability, from the shell down; an arrow only ever points down this list.
//! - [`app`]: the shell. [`run`] builds everything from validated configuration and serves
//!   it; [`AppState`] holds one handle per capability; the router merges every feature's
//!   routes once; `SIGHUP` reloads.
//! - [`scim`]: the SCIM 2.0 service provider (routes, pure PATCH/normalisation, rendering),
//!   over the directory. [`access`]: PIM roles and user groups, the IdP-group mapper
//!   (pure), resolved claims, their cache and the claims read API. [`ops`]: health and
//!   readiness. [`metrics`]: `/metrics`.
//! - [`oauth`]: pimgate as the PIM's OpenID provider (discovery, authorize, token, userinfo,
//!   JWKS, signing keys, the tokens); [`sso`]: pimgate as the relying party of each
//!   connection's IdP. [`ephemeral`]: the single-use records of sign-ins (Redis or memory).
//! - [`config`]: layered configuration (file, then `PIMGATE_*` environment), validated once.
//! - [`directory`]: the users, groups and memberships IdPs push, per connection, in the
//!   directory's own terms: the attribute catalogue, the [`Directory`](directory::Directory)
//!   service (every change with its event, after commit), the store roles and their SQLite
//!   and PostgreSQL backends.
//! - [`redis`]: the shared Redis connection (cluster, TLS, timeouts, circuit breaker).
//! - [`connections`]: the registry of configured connections. [`token`]: bearer tokens
//!   (hashed at rest, compared in constant time). [`clock`]: injected time. [`tls`]: the
//!   process's TLS crypto provider.
//!
//! `main.rs` only parses the command line, loads config, sets up logging, binds and calls
//! [`run`]; tests and benchmarks start the same [`App`] on `127.0.0.1:0`.

pub mod access;
pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod connections;
pub mod deadline;
pub mod directory;
pub mod ephemeral;
pub mod host;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod ops;
pub mod redis;
pub mod scim;
pub mod sso;
pub mod tls;
pub mod token;

pub use app::{App, AppState, Reloaded, RunError, Running, run, start};
