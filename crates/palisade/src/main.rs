//! The `palisade` command: serve, migrate, check configuration, rotate signing keys,
//! import users.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use palisade::app::{self, App};
use palisade::clock::SystemClock;
use palisade::config::{Overrides, Settings};
use palisade::http::server::shutdown_signal;
use palisade::identity::service::Identity;
use palisade::telemetry::logging;

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Security controls for multi-tenant SaaS, each one proven"
)]
struct Cli {
    /// TOML settings file; `PALISADE_*` variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080; `:0` picks a free port).
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Data directory (default ./palisade-data), created owner-only.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (applies migrations on SQLite, or with database.migrate_url).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Access-token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a new signing key now; the previous one stays published until its tokens
    /// expire. Running servers pick the new key up within a minute.
    Rotate,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Import users with bcrypt hashes into a tenant, from JSON Lines:
    /// {"email": "…", "bcrypt_hash": "$2b$…", "role": "member"}. Hashes become argon2id at
    /// each user's next sign-in. All lines are imported, or none.
    Import {
        /// The tenant (ten_…) the users join.
        #[arg(long)]
        tenant: palisade::ids::TenantId,
        /// The JSON Lines file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration; print it with secrets hidden.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        data_dir: cli.data_dir.clone(),
    };
    let settings = match Settings::load(cli.config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("palisade: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("palisade: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The log writer outlives the runtime, so lines logged by tasks that finish during the
    // runtime's shutdown are still written.
    let log_guard = match &cli.command {
        Command::Serve => match settings.log.filter.parse() {
            Ok(filter) => Some(logging::init(filter, std::io::stdout())),
            Err(_) => {
                eprintln!("palisade: log.filter is invalid");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
            Command::Config {
                command: ConfigCommand::Check,
            } => {
                println!("{}", serde_json::to_string_pretty(&settings.describe())?);
                for weakening in settings.weakenings() {
                    eprintln!("palisade: warning: {weakening}");
                }
                eprintln!("palisade: configuration is valid");
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Rotate,
            } => {
                let identity = identity(&settings).await?;
                let kid = identity
                    .tokens()
                    .rotate(identity.store(), identity.now())
                    .await?;
                println!("new signing key {kid}");
                Ok(())
            }
            Command::Users {
                command: UsersCommand::Import { tenant, file },
            } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                let identity = identity(&settings).await?;
                let report = identity.import_bcrypt_users(tenant, &text).await?;
                println!("imported {} users", report.imported);
                for email in report.skipped_existing {
                    println!("skipped {email}: already has an account");
                }
                Ok(())
            }
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    drop(log_guard);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("palisade: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    for weakening in settings.weakenings() {
        tracing::warn!(claim_weakened = weakening, "configuration weakens a claim");
        eprintln!("palisade: WARNING: {weakening}");
    }
    let app = App::build(settings).await?;
    let state = app.state().clone();
    let data = match &state.settings.database.url {
        Some(_) => "postgres (database.url)".to_owned(),
        None => format!(
            "sqlite in {}",
            std::fs::canonicalize(&state.settings.data_dir)?.display()
        ),
    };
    let addr = app.local_addr();
    eprintln!("palisade: listening on {}://{addr}", app.scheme());
    if let Some(redirect) = app.redirect_addr() {
        eprintln!("palisade: redirecting http://{redirect} to https");
    }
    eprintln!("palisade: data: {data}");
    tracing::info!(listen = %addr, scheme = app.scheme(), data = %data, "serving");
    app.run(async {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The identity service over the configured database, for administrative commands.
async fn identity(settings: &Settings) -> anyhow::Result<Identity> {
    app::prepare_data_dir(&settings.data_dir)?;
    let db = app::open_database(settings).await?;
    Ok(Identity::start(settings, &db, Arc::new(SystemClock)).await?)
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let applied = app::run_migrations(&settings).await?;
    if applied.is_empty() {
        println!("schema is current; nothing to apply");
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}
