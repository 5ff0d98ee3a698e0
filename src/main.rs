//! The `pimgate` command: parse the command line, load config, set up logging, then serve or
//! run one administrative command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use pimgate::clock::{Clock, SystemClock};
use pimgate::config::{self, LogFormat, ProcessEnv, Validated};
use pimgate::connections::ConnectionId;
use pimgate::directory::{CredentialStore, Stores, TokenRow};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "pimgate",
    version,
    about = "Identity provisioning gateway for Struct PIM"
)]
struct Cli {
    /// Config file (default: $PIMGATE_CONFIG, else config/pimgate.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (applies migrations first; SIGHUP reloads the access model).
    Serve,
    /// Validate a config file (and the environment); exit non-zero naming the bad key.
    CheckConfig {
        /// The file to check (default: the --config file).
        file: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print the claims of one user with the provenance of every grant.
    Explain {
        #[arg(long, default_value = config::DEFAULT_CONNECTION)]
        connection: String,
        /// The user's pimgate id, userName or externalId.
        #[arg(long)]
        user: String,
        /// Print the claims (with provenance) as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List, per user, what a candidate config would add and remove, without applying it.
    DiffConfig {
        /// The candidate config file.
        new: PathBuf,
    },
    /// Manage SCIM bearer tokens stored (hashed) in the database.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The sign-in audit trail of a user: logins, refreshes, revocations, logouts and
    /// refused attempts, newest first.
    Audit {
        /// The user's pimgate id or userName.
        #[arg(long)]
        user: String,
        /// How many events at most.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The keys pimgate signs tokens with (single sign-on).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Show each signing key and its state (published, active, retired).
    List,
    /// Make a new signing key: published now, signing after `oidc.key_publish_lead_seconds`
    /// so verifiers' cached key sets have it first.
    Rotate {
        /// Sign with the new key at once (a key believed compromised); verifiers that cached
        /// the key set may refuse new tokens until they fetch it again.
        #[arg(long)]
        now: bool,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token for a connection and print it once.
    Create {
        #[arg(long, default_value = config::DEFAULT_CONNECTION)]
        connection: String,
        /// A label to recognise the token by (e.g. "entra-prod").
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List a connection's tokens (ids and labels, never secrets).
    List {
        #[arg(long, default_value = config::DEFAULT_CONNECTION)]
        connection: String,
    },
    /// Revoke a token by id.
    Revoke {
        #[arg(long, default_value = config::DEFAULT_CONNECTION)]
        connection: String,
        id: String,
    },
}

/// mimalloc: under load the request path allocates and frees many small buffers from
/// several threads, where it spends less time than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explicit = cli.config.is_some();
    let path = config::config_path(cli.config.as_deref(), &ProcessEnv);
    if let Command::CheckConfig { file } = &cli.command {
        let (p, explicit) = match file {
            Some(f) => (f.clone(), true),
            None => (
                path,
                explicit || std::env::var_os("PIMGATE_CONFIG").is_some(),
            ),
        };
        return match config::load(&p, explicit, &ProcessEnv) {
            Ok(v) => {
                println!(
                    "config OK: {} ({} connection(s): {})",
                    p.display(),
                    v.connections.len(),
                    v.connections
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let validated = match config::load(&path, explicit, &ProcessEnv) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Held until main returns: dropping it writes out the log lines still buffered.
    let _log_writer = match init_tracing(&validated) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, validated)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error through two shared buffers ([`pimgate::logging`]): written out
/// every 100 ms or when 64 KiB have gathered, never line by line; on a stalled stderr, lines
/// are dropped (and counted) after a wait of at most 1 s.
fn init_tracing(v: &Validated) -> std::io::Result<pimgate::logging::FlushGuard> {
    let filter =
        EnvFilter::try_new(&v.settings.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = pimgate::logging::stderr_writer()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match v.settings.log.format {
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(pimgate::logging::WithRequest(
                tracing_subscriber::fmt::format().json().flatten_event(true),
            ))
            .init(),
        LogFormat::Text => builder
            .fmt_fields(pimgate::logging::TextFields)
            .event_format(pimgate::logging::Text)
            .init(),
    }
    Ok(guard)
}

async fn dispatch(command: Command, v: Validated) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(v).await,
        Command::Migrate => {
            pimgate::app::migrate(&v).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::CheckConfig { .. } => Ok(()),
        Command::Explain {
            connection: name,
            user,
            json,
        } => {
            let conn = connection(&v, &name)?;
            let store = pimgate::app::open_store(&v).await?;
            let out = pimgate::access::admin::explain(
                &Stores::of(Arc::new(store)),
                v.access.clone(),
                &conn,
                &user,
                json,
            )
            .await?;
            println!("{out}");
            Ok(())
        }
        Command::DiffConfig { new } => {
            let candidate = config::load(&new, true, &ProcessEnv)
                .map_err(|e| anyhow::anyhow!("the candidate config is not valid: {e}"))?;
            let conns: Vec<ConnectionId> = v.connections.ids().cloned().collect();
            let store = pimgate::app::open_store(&v).await?;
            let report = pimgate::access::admin::diff_config(
                &Stores::of(Arc::new(store)),
                v.access.clone(),
                candidate.access.clone(),
                &conns,
            )
            .await?;
            print!("{report}");
            Ok(())
        }
        Command::Token { action } => {
            let store = pimgate::app::open_store(&v).await?;
            token_command(&v, &store, action).await
        }
        Command::Audit { user, limit } => {
            let store = pimgate::app::open_store(&v).await?;
            let stores = Stores::of(Arc::new(store));
            let audit = pimgate::audit::Audit::new(stores.audit.clone(), Arc::new(SystemClock));
            let lines = audit.lines_of_user(&user, limit).await?;
            if lines.is_empty() {
                eprintln!("no audit events for {user:?}");
            }
            for line in lines {
                println!("{line}");
            }
            Ok(())
        }
        Command::Keys { action } => {
            if !v.sso.enabled() {
                anyhow::bail!(
                    "single sign-on is not configured (no [oidc.clients] and no [connections.NAME.sso]): there are no signing keys"
                );
            }
            let store = pimgate::app::open_store(&v).await?;
            let keys = pimgate::app::signing_keys(
                &v,
                &Stores::of(Arc::new(store)),
                Arc::new(SystemClock),
            )?;
            match action {
                KeysAction::List => {
                    keys.maintain().await?;
                    println!("KID\tGENERATION\tALG\tPUBLISHED\tSIGNS FROM\tSTATE");
                    for (k, state) in keys.list().await? {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{state}",
                            k.kid,
                            k.generation,
                            k.alg,
                            k.created.to_rfc3339(),
                            k.signs_from.to_rfc3339()
                        );
                    }
                }
                KeysAction::Rotate { now } => {
                    keys.maintain().await?;
                    let kid = keys.rotate(now).await?;
                    if now {
                        println!("key {kid} signs from now");
                    } else {
                        println!("key {kid} is published and signs after the publish lead");
                    }
                }
            }
            Ok(())
        }
    }
}

fn connection(v: &Validated, name: &str) -> anyhow::Result<ConnectionId> {
    let id = ConnectionId::parse(name)?;
    if !v.connections.contains(&id) {
        anyhow::bail!(
            "connection {name:?} is not configured: add [connections.{name}] to the config file"
        );
    }
    Ok(id)
}

async fn token_command(
    v: &Validated,
    store: &dyn CredentialStore,
    action: TokenAction,
) -> anyhow::Result<()> {
    match action {
        TokenAction::Create {
            connection: name,
            label,
        } => {
            let conn = connection(v, &name)?;
            let secret = pimgate::token::generate();
            let row = TokenRow {
                id: uuid::Uuid::now_v7().to_string(),
                connection: conn.clone(),
                hash: pimgate::token::hash(&secret),
                label,
                created: SystemClock.now(),
            };
            store.insert_token(&row).await?;
            eprintln!(
                "token {} created for connection {conn}; it is shown only once:",
                row.id
            );
            println!("{secret}");
        }
        TokenAction::List { connection: name } => {
            let conn = connection(v, &name)?;
            for t in store.list_tokens(&conn).await? {
                println!("{}\t{}\t{}", t.id, t.created.to_rfc3339(), t.label);
            }
        }
        TokenAction::Revoke {
            connection: name,
            id,
        } => {
            let conn = connection(v, &name)?;
            if store.revoke_token(&conn, &id).await? {
                println!("token {id} revoked");
            } else {
                anyhow::bail!("connection {conn} has no token {id}");
            }
        }
    }
    Ok(())
}

async fn serve(v: Validated) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(v.listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {} (server.listen / PIMGATE_LISTEN): {e}",
            v.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let base = v
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    println!("listening on http://{addr}");
    for c in v.connections.iter() {
        println!(
            "SCIM base URL for connection {:?}: {base}/scim/{}/v2",
            c.id.as_str(),
            c.id
        );
    }
    let default_has_token = v
        .connections
        .find(config::DEFAULT_CONNECTION)
        .is_some_and(|c| !c.scim_token_hashes.is_empty());
    if !default_has_token {
        println!(
            "Get a bearer token for it: `pimgate token create --connection default` \
             (from a checkout: `cargo run --release -- token create --connection default`), \
             or start with PIMGATE_SCIM_TOKEN set."
        );
    }
    tracing::info!(%addr, "pimgate serving");
    pimgate::run(v, listener, shutdown_signal()).await?;
    tracing::info!("pimgate stopped");
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
