//! Putting a changed configuration in force while running. Only the access model reloads
//! (other settings take a restart); the swap is atomic, and a configuration that does not
//! validate is refused with a message naming the key, the running one staying in force.

use crate::access::AccessService;
use crate::config::{self, ConfigError, ConfigSource, ProcessEnv};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The access model is the one already in force.
    Unchanged { version: String },
    /// A new access model is in force and every cached claim was invalidated.
    Applied { from: String, to: String },
    /// The configuration was built in code, not read from a file: nothing to read again.
    NoSource,
}

/// Reads the configuration from `source` (file, then the process environment) and puts its
/// access model in force.
pub(super) async fn reload(
    access: &AccessService,
    source: &ConfigSource,
) -> Result<Reloaded, ConfigError> {
    let new = config::load(&source.path, source.explicit, &ProcessEnv)?;
    let old = access.model();
    if old.version() == new.access.version() {
        return Ok(Reloaded::Unchanged {
            version: old.version().to_owned(),
        });
    }
    access.reload(new.access.clone()).await;
    Ok(Reloaded::Applied {
        from: old.version().to_owned(),
        to: new.access.version().to_owned(),
    })
}

/// Reloads on every `SIGHUP`, logging each outcome once.
pub(super) async fn on_sighup(access: AccessService, source: ConfigSource) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; config reload is unavailable");
            return;
        };
        while hup.recv().await.is_some() {
            match reload(&access, &source).await {
                Ok(Reloaded::Applied { from, to }) => tracing::info!(
                    %from,
                    %to,
                    "config reloaded: new access model in force, cached claims invalidated"
                ),
                Ok(Reloaded::Unchanged { version }) => {
                    tracing::info!(%version, "config reloaded: access model unchanged");
                }
                Ok(Reloaded::NoSource) => {}
                Err(e) => tracing::error!(
                    error = %e,
                    "config reload refused; the previous config stays in force"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (access, source);
    }
}
