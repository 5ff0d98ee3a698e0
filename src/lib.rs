//! pimgate: an identity provisioning gateway for Struct PIM.
//!
//! # Layout
//! - [`config`]: layered configuration (file, then `PIMGATE_*` environment), validated once.
//! - [`directory`]: the users, groups and memberships IdPs push, per connection; the
//!   [`Store`](directory::Store) seam with its SQLite and PostgreSQL backends
//!   ([`directory::sql`]); change events ([`directory::events`]).
//! - [`scim`]: the SCIM 2.0 service provider (routes, pure PATCH/normalisation, rendering).
//! - [`access`]: PIM roles and user groups, the IdP-group mapper (pure), resolved claims,
//!   their cache (Redis or in process) and the claims read API.
//! - [`token`]: SCIM bearer tokens (hashed at rest, compared in constant time).
//! - [`ops`]: health and readiness. [`clock`]: injected time.
//! - [`app`]: shared state, router and middleware, and [`run`].
//!
//! `main.rs` only parses the command line, loads config, sets up logging, binds and calls
//! [`run`]; tests do the same on `127.0.0.1:0`.

pub mod access;
pub mod app;
pub mod clock;
pub mod config;
pub mod directory;
pub mod ops;
pub mod scim;
pub mod token;

use std::sync::Arc;

pub use app::{AppState, ScimConfig, ServeOptions, run};

use crate::clock::Clock;
use crate::config::Validated;
use crate::directory::Store;
use crate::directory::events::EventBus;
use crate::directory::sql::{OpenError, PoolSettings, SqlStore};
use crate::scim::schema::Catalogue;
use secrecy::ExposeSecret;

/// Opens (and migrates) the store named by the configuration.
pub async fn open_store(v: &Validated, catalogue: Arc<Catalogue>) -> Result<SqlStore, OpenError> {
    let store = SqlStore::open(
        v.database_url.expose_secret(),
        &PoolSettings {
            max_connections: v.settings.database.max_connections,
            ..PoolSettings::default()
        },
        catalogue,
    )
    .await?;
    store.migrate().await?;
    Ok(store)
}

/// Builds the shared state from validated configuration and an opened store: the claims
/// cache (Redis when configured, in process otherwise), the access service, and the event
/// bus that makes directory changes invalidate claims before they are acknowledged.
pub async fn build_state(
    v: &Validated,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    catalogue: Arc<Catalogue>,
) -> Result<AppState, access::cache::CacheError> {
    let redis = v
        .settings
        .redis
        .url
        .as_ref()
        .map(|u| u.expose_secret().to_owned());
    let cache = access::cache::from_url(redis.as_deref(), &v.settings.redis.key_prefix).await?;
    let access = Arc::new(access::service::AccessService::new(
        store.clone(),
        cache,
        v.access.clone(),
    ));
    Ok(AppState {
        store,
        clock,
        catalogue,
        events: EventBus::new(1024).with_listener(access.clone()),
        scim: Arc::new(ScimConfig {
            settings: v.settings.scim.clone(),
            max_body_bytes: v.settings.server.max_body_bytes,
            public_url: v.public_url.clone(),
            connections: v.connections.clone(),
        }),
        access,
        access_api_tokens: Arc::new(v.access_api_tokens.clone()),
    })
}

/// Server options from validated configuration.
pub fn serve_options(v: &Validated) -> ServeOptions {
    ServeOptions {
        request_timeout: std::time::Duration::from_secs(v.settings.server.request_timeout_seconds),
    }
}
