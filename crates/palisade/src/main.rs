//! The `palisade` command: serve, migrate, check configuration, rotate signing keys,
//! import users, the platform operator's cross-tenant commands, and audit verification.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use palisade::app::{self, App};
use palisade::clock::SystemClock;
use palisade::config::{Overrides, Settings};
use palisade::http::server::shutdown_signal;
use palisade::identity::service::Identity;
use palisade::platform::Platform;
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
    /// The access model: Palisade's actions and the app's manifest (`access.manifest`).
    Access {
        #[command(subcommand)]
        command: AccessCommand,
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
    /// The audit log: verify chains and exports.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Service credentials of the app beside Palisade, for the integration endpoints
    /// (audited in the platform stream; on PostgreSQL they need admin.database_url).
    Services {
        /// Who runs the command, for the platform audit stream [default: $USER].
        #[arg(long, global = true)]
        operator: Option<String>,
        #[command(subcommand)]
        command: ServicesCommand,
    },
    /// Backups: encrypted to the operator's age keys and test-restored (`backup.*`).
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Bring a backup back into an empty data directory (--data-dir, required) and, for a
    /// PostgreSQL backup, an empty database. Checks every file against the signed manifest
    /// first; refuses a target that is not empty.
    Restore {
        /// The backup's directory (`palisade backup list` shows them).
        backup: PathBuf,
        /// An age identity file (AGE-SECRET-KEY-1…) of one of `backup.recipients`.
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// PostgreSQL: the empty database to restore into, as a role that may restore
        /// owners, grants and rows under row-level security (a superuser, typically).
        #[arg(long, env = "PALISADE_RESTORE_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The checkpoint public key (`palisade audit key`) the manifest must be signed by;
        /// default: the key inside the backup, which proves less.
        #[arg(long, allow_hyphen_values = true)]
        public_key: Option<String>,
    },
    /// Check a running instance against every claim of the specification (OPS-7): what a
    /// client sees from outside (headers, TLS and HSTS, the signing keys, input refused)
    /// and, with --token-file, the instance's own report (`GET /api/v1/posture`). Prints
    /// each claim as pass, fail or not checkable with evidence; exits non-zero when any
    /// fails, so a cron or CI job can run it.
    Posture {
        /// The instance's base URL (https://palisade.example.com).
        #[arg(long)]
        url: String,
        /// A file holding `posture.bearer_token` (never on the command line).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// A PEM CA certificate the instance's certificate chains to, when it is not one
        /// the public roots know (a private CA).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// The report as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Platform operations across tenants (audited; on PostgreSQL they need
    /// admin.database_url, the operator's own credential).
    Admin {
        /// Who runs the command, for the platform audit stream [default: $USER].
        #[arg(long, global = true)]
        operator: Option<String>,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Make a backup now and test-restore it, showing progress.
    Now,
    /// The backups kept, newest first: when, size, and the test restore's verdict.
    List,
    /// Make an age key pair for `backup.recipients`: the private key goes to standard
    /// output (keep it off the server), the public key to standard error.
    Keygen,
}

#[derive(Subcommand)]
enum AccessCommand {
    /// Validate the manifest and print the whole action table (Markdown): every action with
    /// the built-in roles allowed it, then the app's roles. Exits non-zero naming every
    /// problem of a bad manifest.
    Table,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify hash chains and signed checkpoints: every tenant's and the platform's, or one
    /// tenant's. Exits non-zero naming the first bad event. On PostgreSQL it needs
    /// admin.database_url, as the platform commands do.
    Verify {
        /// Only this tenant's chain (`ten_…`).
        #[arg(long)]
        tenant: Option<palisade::ids::TenantId>,
    },
    /// Verify an exported file offline: its chain, its checkpoints and its signed trailer.
    VerifyExport {
        file: PathBuf,
        /// The checkpoint public key (base64url, as `GET /api/v1/audit/checkpoint-key`
        /// publishes it); default: the key file of this deployment.
        #[arg(long, allow_hyphen_values = true)]
        public_key: Option<String>,
    },
    /// Print the checkpoint public key, for verifying exports elsewhere.
    Key,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Tenants of the deployment.
    Tenants {
        #[command(subcommand)]
        command: AdminTenantsCommand,
    },
    /// Look a user up across tenants by email.
    FindUser { email: String },
}

#[derive(Subcommand)]
enum ServicesCommand {
    /// Create a credential (`pal_svc_…`); it is printed once, on standard output.
    Create { name: String },
    /// Every credential: id, name, creator, creation and revocation.
    List,
    /// Revoke a credential: refused from the next request on.
    Revoke { id: palisade::ids::ServiceId },
}

#[derive(Subcommand)]
enum AdminTenantsCommand {
    /// Every tenant, with its member count and suspension.
    List,
    /// Suspend a tenant: its sessions stop working at once.
    Suspend { tenant: palisade::ids::TenantId },
    /// Lift a suspension.
    Unsuspend { tenant: palisade::ids::TenantId },
    /// Crypto-shredding: destroy the tenant's vault keys, so every secret it stored can
    /// never be read again (by the API, or by anyone with the database and the KEK).
    /// Audited in the tenant's log and the platform stream. Needs --yes.
    DestroyKeys {
        tenant: palisade::ids::TenantId,
        /// Confirms that the tenant's secrets are to be lost for good.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a new signing key now; the previous one stays published until its tokens
    /// expire. Running servers pick the new key up within a minute.
    Rotate,
    /// Add a new vault KEK version to the KEK file; running servers take it within a minute
    /// and re-wrap every tenant's data key onto it in the background.
    RotateKek,
    /// Re-wrap every data key still under an older KEK now, showing what is left.
    Rewrap,
    /// The vault's KEK versions and the data keys each wraps.
    KekStatus,
    /// Drop from the KEK file the versions below the active one that no data key uses.
    RetireKeks,
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

/// A thread-caching allocator: under load, glibc's arenas contended on frees of memory a
/// task allocated on the other worker thread (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    if let Command::Backup {
        command: BackupCommand::Now,
    } = &cli.command
    {
        // Beside a serving instance, the backup yields the CPU to it.
        palisade::backup::yield_cpu_to_serving();
    }
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
            Command::Keys { command } => keys(&settings, command).await,
            Command::Admin { operator, command } => admin(&settings, operator, command).await,
            Command::Access {
                command: AccessCommand::Table,
            } => {
                print!("{}", settings.access.table()?.render_markdown());
                Ok(())
            }
            Command::Services { operator, command } => services(&settings, operator, command).await,
            Command::Audit { command } => audit(&settings, command).await,
            Command::Backup { command } => backup(&settings, command).await,
            Command::Restore {
                backup,
                identity,
                database_url,
                public_key,
            } => {
                anyhow::ensure!(
                    cli.data_dir.is_some(),
                    "restore needs --data-dir: the new, empty data directory to restore into"
                );
                restore(&settings, &backup, &identity, database_url, public_key).await
            }
            Command::Posture {
                url,
                token_file,
                ca_file,
                json,
            } => posture(&url, token_file.as_deref(), ca_file.as_deref(), json).await,
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

async fn posture(
    url: &str,
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    use palisade::posture::{outside, Report};
    // TLS below 1.2 is refused: a connection that succeeds is WEB-1's evidence.
    let mut client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .min_tls_version(reqwest::tls::Version::TLS_1_2);
    if let Some(file) = ca_file {
        let pem = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let client = client.build()?;
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let findings = outside::probe(&client, url)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut report = Report::of(url, at, findings);
    if let Some(file) = token_file {
        let token = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let response = client
            .get(format!("{}/api/v1/posture", url.trim_end_matches('/')))
            .bearer_auth(token.trim())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "the instance's report answered {} (is posture.bearer_token the file's token?)",
            response.status()
        );
        report = report.merged_with(response.json::<Report>().await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    anyhow::ensure!(report.failed == 0, "{} claim(s) fail", report.failed);
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    for weakening in settings.weakenings() {
        tracing::warn!(claim_weakened = weakening, "configuration weakens a claim");
        eprintln!("palisade: WARNING: {weakening}");
    }
    let app = App::build(settings).await?;
    // Before the address is announced: from then on a SIGTERM is a graceful stop.
    let stop = shutdown_signal();
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
        stop.await;
        tracing::info!("shutdown requested; finishing in-flight requests");
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The platform, connected with the operator's credential under the operator's name.
async fn platform(settings: &Settings, operator: Option<String>) -> anyhow::Result<Platform> {
    let operator = operator
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    Ok(Platform::connect(settings, operator, Arc::new(SystemClock)).await?)
}

async fn services(
    settings: &Settings,
    operator: Option<String>,
    command: ServicesCommand,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let platform = platform(settings, operator).await?;
    let outcome = match command {
        ServicesCommand::Create { name } => platform.create_service(&name).await.map(|issued| {
            eprintln!(
                "created {} ({}); the credential is shown once:",
                issued.record.id, issued.record.name
            );
            println!("{}", issued.credential.expose_secret());
        }),
        ServicesCommand::List => platform.list_services().await.map(|services| {
            for service in services {
                let revoked = service
                    .revoked_at
                    .map_or_else(String::new, |at| format!("  revoked {at}"));
                println!(
                    "{}  {}  by {}  created {}{revoked}",
                    service.id, service.name, service.created_by, service.created_at
                );
            }
        }),
        ServicesCommand::Revoke { id } => platform.revoke_service(id).await.map(|()| {
            println!("revoked {id}");
        }),
    };
    platform.close().await;
    Ok(outcome?)
}

async fn admin(
    settings: &Settings,
    operator: Option<String>,
    command: AdminCommand,
) -> anyhow::Result<()> {
    let platform = platform(settings, operator).await?;
    let outcome = match command {
        AdminCommand::Tenants {
            command: AdminTenantsCommand::List,
        } => platform.tenants().await.map(|tenants| {
            for tenant in tenants {
                let suspended = tenant
                    .suspended_at
                    .map_or_else(String::new, |at| format!("  suspended since {at}"));
                println!(
                    "{}  {}  members: {}  created {}{suspended}",
                    tenant.id, tenant.name, tenant.members, tenant.created_at
                );
            }
        }),
        AdminCommand::Tenants {
            command: AdminTenantsCommand::Suspend { tenant },
        } => platform.set_suspended(tenant, true).await.map(|()| {
            println!("suspended {tenant}");
        }),
        AdminCommand::Tenants {
            command: AdminTenantsCommand::Unsuspend { tenant },
        } => platform.set_suspended(tenant, false).await.map(|()| {
            println!("unsuspended {tenant}");
        }),
        AdminCommand::Tenants {
            command: AdminTenantsCommand::DestroyKeys { tenant, yes: false },
        } => Err(palisade::platform::PlatformError::Invalid(format!(
            "destroying {tenant}'s vault keys loses every secret it stored, for good: run again with --yes"
        ))),
        AdminCommand::Tenants {
            command: AdminTenantsCommand::DestroyKeys { tenant, yes: true },
        } => platform.destroy_data_keys(tenant).await.map(|destroyed| {
            println!("destroyed {destroyed} vault key(s) of {tenant}: its secrets can no longer be read");
        }),
        AdminCommand::FindUser { email } => {
            platform.find_user(&email).await.map(|user| match user {
                None => println!("no user with that email"),
                Some(user) => {
                    println!(
                        "{}  {}  email verified: {}",
                        user.id, user.email, user.email_verified
                    );
                    for (tenant, name, role) in user.memberships {
                        println!("  {tenant}  {name}  {role}");
                    }
                }
            })
        }
    };
    platform.close().await;
    Ok(outcome?)
}

async fn audit(settings: &Settings, command: AuditCommand) -> anyhow::Result<()> {
    use palisade::audit::signing::{CheckpointKey, PublicKey};
    let key_path = settings.audit.key_path(&settings.data_dir);
    let local_key = || -> anyhow::Result<PublicKey> {
        anyhow::ensure!(
            key_path.exists(),
            "no checkpoint key at {}: pass --public-key",
            key_path.display()
        );
        Ok(CheckpointKey::load_or_create(&key_path)?.public().clone())
    };
    match command {
        AuditCommand::Key => {
            let key = local_key()?;
            println!("{}  Ed25519  {}", key.key_id(), key.encoded());
            Ok(())
        }
        AuditCommand::VerifyExport { file, public_key } => {
            let key = match public_key {
                Some(text) => PublicKey::parse(&text).ok_or_else(|| {
                    anyhow::anyhow!("--public-key is not a base64url Ed25519 key")
                })?,
                None => local_key()?,
            };
            let input = std::fs::File::open(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let report =
                palisade::audit::export::verify_export(std::io::BufReader::new(input), &key)
                    .map_err(|problem| anyhow::anyhow!("{}: FAILED: {problem}", file.display()))?;
            println!(
                "{}: OK: {} events of {} ({}..{}), {} signed checkpoints, signed trailer",
                file.display(),
                report.events,
                report.stream,
                report.first_seq.map_or("-".into(), |s| s.to_string()),
                report.last_seq.map_or("-".into(), |s| s.to_string()),
                report.checkpoints
            );
            Ok(())
        }
        AuditCommand::Verify { tenant } => {
            let operator = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
            let platform = Platform::connect(settings, operator, Arc::new(SystemClock)).await?;
            let audit = app::open_audit(settings, platform.database(), platform.clock())?;
            let streams = match tenant {
                Some(tenant) => vec![palisade::audit::store::Chain::for_upkeep(tenant.as_uuid())],
                None => audit.streams().await?,
            };
            let mut failed = 0;
            for stream in streams {
                let verdict = audit.verify(stream).await?;
                match &verdict.first_problem {
                    None => println!(
                        "{}: OK: {} events, {} signed checkpoints",
                        verdict.stream, verdict.summary.events, verdict.summary.checkpoints
                    ),
                    Some(finding) => {
                        failed += 1;
                        println!(
                            "{}: FAILED at event {}: {}: {}",
                            verdict.stream,
                            finding.seq,
                            finding.problem.as_str(),
                            finding.detail
                        );
                    }
                }
            }
            platform.close().await;
            anyhow::ensure!(failed == 0, "{failed} chain(s) failed verification");
            Ok(())
        }
    }
}

/// Prints a long step's progress on one line of standard error.
fn progress_line() -> palisade::backup::Progress {
    Arc::new(|file: &str, bytes: u64| {
        eprint!("\r  {file}: {:.1} MiB   ", bytes as f64 / (1024.0 * 1024.0));
    })
}

async fn backup(settings: &Settings, command: BackupCommand) -> anyhow::Result<()> {
    use palisade::backup::Backups;
    if let BackupCommand::Keygen = command {
        use secrecy::ExposeSecret;
        let identity = age::x25519::Identity::generate();
        eprintln!(
            "public key (for backup.recipients): {}",
            identity.to_public()
        );
        println!("{}", identity.to_string().expose_secret());
        return Ok(());
    }
    // The live database as it is: a backup never migrates it.
    let db = palisade::store::Database::connect(settings).await?;
    palisade::store::migrate::ensure_current(&db).await?;
    let backups =
        Backups::open(settings, &db, Arc::new(SystemClock)).map_err(anyhow::Error::msg)?;
    let outcome = match command {
        BackupCommand::Now => backups.run(progress_line()).await.map(|manifest| {
            eprintln!();
            let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
            println!(
                "backup {} ({:.1} MiB): test restore {}: {}",
                manifest.id,
                bytes as f64 / (1024.0 * 1024.0),
                if manifest.restore_check.passed {
                    "passed"
                } else {
                    "FAILED"
                },
                manifest.restore_check.detail
            );
            manifest.restore_check.passed
        }),
        BackupCommand::List => backups.list().map(|listed| {
            for (path, manifest) in listed {
                match manifest {
                    Ok(m) => println!(
                        "{}  {}  {:.1} MiB  schema {}  test restore {}",
                        path.display(),
                        m.created_at,
                        m.files.iter().map(|f| f.bytes).sum::<u64>() as f64 / (1024.0 * 1024.0),
                        m.schema_version,
                        if m.restore_check.passed {
                            "passed"
                        } else {
                            "FAILED"
                        }
                    ),
                    Err(problem) => println!("{}  unreadable: {problem}", path.display()),
                }
            }
            true
        }),
        BackupCommand::Keygen => Ok(true),
    };
    db.close().await;
    anyhow::ensure!(outcome?, "the backup's test restore failed");
    Ok(())
}

async fn restore(
    settings: &Settings,
    backup: &std::path::Path,
    identity: &std::path::Path,
    database_url: Option<String>,
    public_key: Option<String>,
) -> anyhow::Result<()> {
    use palisade::backup::restore::{restore, Target};
    let identity = secrecy::SecretString::from(
        std::fs::read_to_string(identity)
            .map_err(|e| anyhow::anyhow!("{}: {e}", identity.display()))?,
    );
    let signer = public_key
        .map(|text| {
            palisade::audit::signing::PublicKey::parse(&text)
                .ok_or_else(|| anyhow::anyhow!("--public-key is not a base64url Ed25519 key"))
        })
        .transpose()?;
    let target = Target {
        key_paths: palisade::backup::key_file_paths(settings),
        data_dir: settings.data_dir.clone(),
        database_url: database_url.map(secrecy::SecretString::from),
        postgres_bin_dir: settings.backup.postgres_bin_dir.clone(),
    };
    let restored = restore(backup, &identity, signer.as_ref(), &target, progress_line()).await?;
    eprintln!();
    println!(
        "restored backup {} ({}, schema {}) into {}: {} tables, {} rows, as in the snapshot; key files: {}",
        restored.manifest.id,
        restored.manifest.backend,
        restored.manifest.schema_version,
        target.data_dir.display(),
        restored.tables,
        restored.rows,
        restored.key_files.join(", ")
    );
    if !restored.signer_given {
        eprintln!("note: the manifest was checked against the checkpoint key inside the backup; pass --public-key to check it against yours");
    }
    Ok(())
}

/// The identity service over the configured database, for administrative commands.
/// The signing keys' and the vault's key commands, with the server's own database
/// credential.
async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    if let KeysCommand::Rotate = command {
        let identity = identity(settings).await?;
        let kid = identity
            .tokens()
            .rotate(identity.store(), identity.now())
            .await?;
        println!("new signing key {kid}");
        return Ok(());
    }
    app::prepare_data_dir(&settings.data_dir)?;
    let db = app::open_database(settings).await?;
    let audit = app::open_audit(settings, &db, Arc::new(SystemClock))?;
    let rotation = app::open_vault(settings, &db, Arc::new(SystemClock), &audit)
        .await?
        .rotation;
    let print_status = |status: &palisade::vault::rotation::KeyStatus| {
        println!("active KEK version {}", status.active);
        for (version, keys) in &status.usage {
            println!("  version {version}: {keys} data key(s)");
        }
        if status.superseded > 0 {
            println!(
                "{} tenant(s) moving onto a new data key (their older ones retire once empty)",
                status.superseded
            );
        }
    };
    match command {
        KeysCommand::RotateKek => {
            let version = rotation.rotate("command").await?;
            println!("new KEK version {version}; servers re-wrap onto it within minutes (`palisade keys rewrap` does it now)");
        }
        KeysCommand::Rewrap => {
            let moved = rotation
                .rewrap_all(|left| println!("{left} data key(s) left to re-wrap"))
                .await?;
            println!("re-wrapped {moved} data key(s)");
            print_status(&rotation.status().await?);
        }
        KeysCommand::KekStatus => print_status(&rotation.status().await?),
        KeysCommand::RetireKeks => {
            let retired = rotation.retire_unused().await?;
            if retired.is_empty() {
                println!("nothing to retire: every older version still wraps a data key");
            } else {
                println!("retired KEK version(s) {retired:?}");
            }
        }
        KeysCommand::Rotate => {}
    }
    Ok(())
}

async fn identity(settings: &Settings) -> anyhow::Result<Identity> {
    app::prepare_data_dir(&settings.data_dir)?;
    let db = app::open_database(settings).await?;
    let audit = app::open_audit(settings, &db, Arc::new(SystemClock))?;
    let access = settings.access.table()?;
    let sealer = app::open_vault(settings, &db, Arc::new(SystemClock), &audit)
        .await?
        .sealer;
    Ok(Identity::start(settings, &db, Arc::new(SystemClock), audit, &access, sealer).await?)
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
