//! The application shell: everything pimgate runs, built once from validated configuration
//! ([`App::build`]), and the server as a function of a listener and a shutdown future
//! ([`run`]). `main.rs`, the integration tests and the benchmarks all start pimgate here.
//!
//! - [`state`]: [`AppState`], one handle per capability, reached through `FromRef`;
//! - [`router`]: every feature's router, merged once, behind [`front`] (request id, span and
//!   access line, the [`guard`]'s limits, panics, metrics);
//! - [`reload`]: putting a changed configuration in force while running (`SIGHUP`).
//!
//! Only `serve` (through [`run`]) and `pimgate migrate` ([`migrate`]) change the database
//! schema; the other commands open it with [`open_store`], which says so when it is behind.

mod front;
mod guard;
mod reload;
mod router;
mod serve;
mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use self::guard::{Guard, RequestLimits};
pub use self::reload::Reloaded;
pub use self::router::router;
pub use self::serve::ConnectionLimits;
pub use self::state::{AppState, Capabilities};
use crate::access::AccessService;
use crate::access::cache::claims_cache;
use crate::access::routes::AccessApiKeys;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::config::{ConfigError, ConfigSource, Validated};
use crate::directory::events::{EventBus, audit_log};
use crate::directory::schema::{Catalogue, CatalogueError};
use crate::directory::sql::{OpenError, PoolSettings, SqlStore};
use crate::directory::{Directory, Stores};
use crate::metrics::Metrics;
use crate::ops::Readiness;
use crate::redis::{Redis, RedisConfigError, RedisOptions};
use crate::scim::{ScimOptions, ScimService};

/// Why pimgate could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error(transparent)]
    Redis(#[from] RedisConfigError),
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error(transparent)]
    Keys(#[from] crate::oauth::keys::KeyError),
    #[error("the server stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Opens the store the configuration names, leaving its schema as it is, and checks that
/// the schema is current (`pimgate migrate` brings it up to date).
pub async fn open_store(config: &Validated) -> Result<SqlStore, RunError> {
    let store = open(config, Arc::new(Catalogue::load()?)).await?;
    store.check_schema().await?;
    Ok(store)
}

/// Applies the database migrations the configuration's store needs.
pub async fn migrate(config: &Validated) -> Result<(), RunError> {
    let store = open(config, Arc::new(Catalogue::load()?)).await?;
    store.migrate().await?;
    store.close().await;
    Ok(())
}

async fn open(config: &Validated, catalogue: Arc<Catalogue>) -> Result<SqlStore, OpenError> {
    SqlStore::open(
        config.database_url.expose_secret(),
        &PoolSettings {
            max_connections: config.settings.database.max_connections,
            statement_timeout: Duration::from_secs(config.settings.server.request_timeout_seconds),
            ..PoolSettings::default()
        },
        catalogue,
    )
    .await
}

/// Everything pimgate runs, built and not yet serving.
pub struct App {
    state: AppState,
    sso_enabled: bool,
    /// `server.metrics_listen`, bound: `/metrics` is served there alone.
    metrics_listener: Option<TcpListener>,
    stores: Stores,
    audit_retention: Duration,
    clock: Arc<dyn Clock>,
    store: SqlStore,
    guard: Guard,
    connections: ConnectionLimits,
    source: Option<ConfigSource>,
}

impl App {
    /// Opens and migrates the store, connects Redis (when configured) and builds every
    /// service. An unreachable Redis is not an error: pimgate starts without it and uses it
    /// once it answers.
    pub async fn build(config: Validated, clock: Arc<dyn Clock>) -> Result<App, RunError> {
        crate::tls::install_crypto_provider();
        let catalogue = Arc::new(Catalogue::load()?);
        let store = open(&config, catalogue.clone()).await?;
        store.migrate().await?;
        let stores = Stores::of(Arc::new(store.clone()));
        let redis = match &config.settings.redis.url {
            Some(url) => Some(
                Redis::connect(
                    url.expose_secret(),
                    &config.settings.redis.key_prefix,
                    RedisOptions {
                        clock: clock.clone(),
                        ..RedisOptions::default()
                    },
                )
                .await?,
            ),
            None => None,
        };
        let metrics = Metrics::new();
        metrics.set_connections(config.connections.ids().map(ToString::to_string));
        {
            let probe = store.clone();
            metrics.set_pool_probe(Arc::new(move || probe.pool_usage()));
        }
        let registry = Arc::new(config.connections.clone());
        let flow = crate::ephemeral::ephemeral(redis.clone(), clock.clone());
        let access = AccessService::new(
            &stores,
            claims_cache(redis, config.settings.redis.near_cache_entries),
            config.access.clone(),
            registry.clone(),
        )
        .with_metrics(metrics.clone());
        tracing::info!(
            backend = ?stores.health.backend(),
            cache = access.cache_kind(),
            access_model = access.model().version(),
            sign_in_state = flow.kind(),
            "pimgate built"
        );
        let keys = signing_keys(&config, &stores, clock.clone())?;
        let sessions = build_sessions(&config, &stores, &keys, flow.clone(), &metrics, &clock);
        // Claims are invalidated, and a deprovisioned user's sessions ended, by every
        // committed change before it is acknowledged.
        let events = EventBus::new(1024)
            .with_listener(Arc::new(access.clone()))
            .with_listener(Arc::new(crate::oauth::deprovision::GrantRevoker::new(
                sessions.clone(),
                stores.users.clone(),
            )));
        let directory = Directory::new(&stores, clock.clone(), events);
        let oidc = build_oidc(
            &config,
            OidcParts {
                grants: stores.grants.clone(),
                access: &access,
                directory: &directory,
                flow,
                keys,
                sessions,
                metrics: metrics.clone(),
                clock: clock.clone(),
            },
        )
        .await?;
        let s = &config.settings;
        let scim = ScimService::new(
            directory.clone(),
            catalogue,
            registry,
            stores.credentials.clone(),
            access.cache(),
            ScimOptions {
                default_page_size: s.scim.default_page_size,
                max_page_size: s.scim.max_page_size,
                patch_response_members_max: s.scim.patch_response_members_max,
                max_body_bytes: s.server.max_body_bytes,
                public_url: config.public_url.clone(),
                allowed_hosts: config.allowed_hosts.clone(),
            },
        );
        let state = AppState::new(Capabilities {
            scim,
            access,
            access_api: AccessApiKeys::new(config.access_api_tokens.clone()),
            readiness: Readiness::new(stores.health.clone()),
            metrics,
            oidc,
        });
        let request_timeout = Duration::from_secs(s.server.request_timeout_seconds);
        // Three quarters of the database pool per tenant: one cannot take it all.
        let share = (s.database.max_connections as usize * 3 / 4).max(1);
        let guard = Guard::new(
            RequestLimits {
                request_timeout,
                max_uri_bytes: s.server.max_uri_bytes,
                max_header_bytes: s.server.max_header_bytes,
                max_concurrent_requests: s.server.max_concurrent_requests,
                scim_share: s.scim.max_concurrent_requests.unwrap_or(share),
                access_share: s.access_api.max_concurrent_requests.unwrap_or(share),
            },
            &config.connections,
        );
        let connections = ConnectionLimits {
            max_connections: connection_cap(s.server.max_connections),
            max_head_bytes: s.server.max_uri_bytes + s.server.max_header_bytes + 8 * 1024,
            header_read_timeout: Duration::from_secs(s.server.header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(s.server.idle_timeout_seconds),
            drain_timeout: request_timeout,
        };
        Ok(App {
            sso_enabled: config.sso.enabled(),
            metrics_listener: match config.metrics_listen {
                Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                    RunError::Serve(std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot listen on {addr} (server.metrics_listen / PIMGATE_METRICS_LISTEN): {e}"
                        ),
                    ))
                })?),
                None => None,
            },
            audit_retention: config.sso.provider.audit_retention,
            stores: stores.clone(),
            clock: clock.clone(),
            state,
            store,
            guard,
            connections,
            source: config.source,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Starts serving on `listener` until `shutdown` resolves, then stops accepting and
    /// drains in-flight requests. With a configuration file behind it, `SIGHUP` reloads it.
    pub fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Running {
        let mut tasks = vec![tokio::spawn(audit_log(
            self.state.scim.directory().events().subscribe(),
        ))];
        if self.sso_enabled {
            tasks.push(tokio::spawn(maintain_keys(
                self.state.oidc.keys().clone(),
                self.stores.clone(),
                self.audit_retention,
                self.clock.clone(),
            )));
        }
        if let Some(source) = &self.source {
            tasks.push(tokio::spawn(reload::on_sighup(
                self.state.access.clone(),
                source.clone(),
            )));
        }
        let app = router(
            self.state.clone(),
            self.guard,
            self.metrics_listener.is_none(),
        );
        let metrics_addr = self
            .metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok());
        if let Some(listener) = self.metrics_listener {
            if let Some(addr) = metrics_addr {
                tracing::info!(%addr, "metrics served on their own address");
            }
            let metrics = crate::metrics::router().with_state(self.state.metrics.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, metrics).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            }));
        }
        let server = tokio::spawn(serve::serve(listener, app, self.connections, shutdown));
        Running {
            metrics_addr,
            state: self.state,
            store: self.store,
            source: self.source,
            server,
            tasks,
        }
    }
}

/// The OpenID provider and its signing keys. Without single sign-on configured nothing is
/// read or made (no key-encryption key file appears); the endpoints then answer 404.
struct OidcParts<'a> {
    grants: Arc<dyn crate::directory::GrantStore>,
    access: &'a AccessService,
    directory: &'a Directory,
    flow: Arc<dyn crate::ephemeral::Ephemeral>,
    keys: crate::oauth::keys::SigningKeys,
    sessions: crate::oauth::sessions::Sessions,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
}

/// Browser sessions, the audit trail and the back-channel logout sender.
fn build_sessions(
    config: &Validated,
    stores: &Stores,
    keys: &crate::oauth::keys::SigningKeys,
    flow: Arc<dyn crate::ephemeral::Ephemeral>,
    metrics: &Metrics,
    clock: &Arc<dyn Clock>,
) -> crate::oauth::sessions::Sessions {
    let sso = &config.sso;
    let p = &sso.provider;
    let logouts = crate::oauth::backchannel::LogoutSender::new(
        keys.clone(),
        sso.enabled().then(|| sso.issuer.clone()).flatten(),
        p.clone(),
        clock.clone(),
        metrics.clone(),
    );
    crate::oauth::sessions::Sessions::new(crate::oauth::sessions::SessionParts {
        store: stores.sessions.clone(),
        hot: flow,
        logouts,
        audit: crate::audit::Audit::new(stores.audit.clone(), clock.clone()),
        metrics: metrics.clone(),
        clock: clock.clone(),
        idle: p.session_idle,
        max: p.session_max,
        secure: sso
            .issuer
            .as_deref()
            .is_some_and(|i| i.starts_with("https://")),
    })
}

async fn build_oidc(
    config: &Validated,
    parts: OidcParts<'_>,
) -> Result<crate::oauth::OidcProvider, RunError> {
    let sso = &config.sso;
    let p = &sso.provider;
    let OidcParts {
        grants,
        access,
        directory,
        flow,
        keys,
        sessions,
        metrics,
        clock,
    } = parts;
    if sso.enabled() {
        // The first key before the first request; the maintenance task retries a failure.
        if let Err(e) = keys.maintain().await {
            tracing::error!(error = %e, "signing keys could not be prepared; retrying in the background");
        }
    }
    Ok(crate::oauth::OidcProvider::new(
        crate::oauth::service::ProviderParts {
            issuer: sso.enabled().then(|| sso.issuer.clone()).flatten(),
            provider: p.clone(),
            sso: crate::sso::SsoService::new(&sso.upstream, clock.clone(), metrics.clone()),
            metrics,
            access: access.clone(),
            directory: directory.clone(),
            grants,
            keys,
            flow,
            sessions,
            clock,
        },
    ))
}

/// The signing keys of this configuration's store. Without single sign-on configured no
/// key-encryption key is read or made (the keys are then never used).
pub fn signing_keys(
    config: &Validated,
    stores: &Stores,
    clock: Arc<dyn Clock>,
) -> Result<crate::oauth::keys::SigningKeys, RunError> {
    use crate::oauth::keys::{Kek, KeyPolicy, SigningKeys};
    let sso = &config.sso;
    let p = &sso.provider;
    let kek = if sso.enabled() {
        let (kek, path, generated) = Kek::load(p.key_encryption_key_file.as_deref())?;
        if generated && stores.health.backend() == crate::directory::Backend::Postgres {
            tracing::warn!(path = %path.display(), "signing keys are encrypted with a key generated under ./data; every replica must share that file: set oidc.key_encryption_key_file (PIMGATE_KEY_ENCRYPTION_KEY_FILE) to a mounted secret");
        }
        kek
    } else {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        Kek::from_bytes(&bytes)?
    };
    Ok(SigningKeys::new(
        stores.keys.clone(),
        kek,
        clock,
        KeyPolicy {
            alg: p.signing_alg,
            rotation: p.key_rotation,
            publish_lead: p.key_publish_lead,
            max_token_ttl: p.access_token_ttl.max(p.id_token_ttl),
        },
    ))
}

/// Makes the first signing key, rotates on schedule and removes expired keys: at start and
/// every minute. A failure is logged and tried again at the next round.
async fn maintain_keys(
    keys: crate::oauth::keys::SigningKeys,
    stores: Stores,
    audit_retention: Duration,
    clock: Arc<dyn Clock>,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if let Err(e) = keys.maintain().await {
            tracing::error!(error = %e, "signing-key maintenance failed; retrying in a minute");
        }
        // Grants whose refresh tokens expired a day ago go.
        let before = Timestamp(clock.now().0 - 24 * 60 * 60 * 1000);
        match stores.grants.purge_grants(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(grants = n, "removed expired sign-in grants"),
            Err(e) => tracing::warn!(error = %e, "expired grants could not be removed"),
        }
        match stores.sessions.purge_sessions(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "removed expired or ended sessions"),
            Err(e) => tracing::warn!(error = %e, "expired sessions could not be removed"),
        }
        let old = Timestamp(
            clock.now().0 - i64::try_from(audit_retention.as_millis()).unwrap_or(i64::MAX / 2),
        );
        match stores.audit.purge_audit(old).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                events = n,
                "removed audit events past oidc.audit_retention_days"
            ),
            Err(e) => tracing::warn!(error = %e, "old audit events could not be removed"),
        }
    }
}

/// The open-connection cap, kept below the file-descriptor limit (raised to its hard
/// maximum first), with room for the database, Redis and log files.
fn connection_cap(configured: usize) -> usize {
    const RESERVED: u64 = 256;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let fits = usize::try_from(limit.saturating_sub(RESERVED))
        .unwrap_or(usize::MAX)
        .max(1);
    if configured > fits {
        tracing::warn!(
            configured,
            capped = fits,
            descriptor_limit = limit,
            "server.max_connections is above what the file-descriptor limit allows; capped"
        );
    }
    configured.min(fits)
}

/// A serving pimgate.
pub struct Running {
    /// Where `/metrics` is served when `server.metrics_listen` is set.
    metrics_addr: Option<std::net::SocketAddr>,
    state: AppState,
    store: SqlStore,
    source: Option<ConfigSource>,
    server: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The bound `server.metrics_listen` address, if set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// The store, for operators' tools and tests that take it away.
    pub fn store(&self) -> &SqlStore {
        &self.store
    }

    /// Reads the configuration again from where it came from and puts what changed in force
    /// (what `SIGHUP` does). A configuration that does not validate is refused and the
    /// running one stays.
    pub async fn reload(&self) -> Result<Reloaded, ConfigError> {
        match &self.source {
            Some(source) => reload::reload(&self.state.access, source).await,
            None => Ok(Reloaded::NoSource),
        }
    }

    /// Waits until the server has stopped (after `shutdown`), then closes the store.
    pub async fn wait(self) -> Result<(), RunError> {
        let served = self.server.await;
        for t in &self.tasks {
            t.abort();
        }
        self.store.close().await;
        served??;
        Ok(())
    }
}

/// Starts pimgate on `listener` with `config` and the system clock (see [`App::serve`]).
pub async fn start(
    config: Validated,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, RunError> {
    Ok(App::build(config, Arc::new(SystemClock))
        .await?
        .serve(listener, shutdown))
}

/// Runs pimgate on `listener` until `shutdown` resolves.
pub async fn run(
    config: Validated,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    start(config, listener, shutdown).await?.wait().await
}
