//! The application: its state, and start-up from settings to bound listeners.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::access::ActionTable;
use crate::audit::signing::CheckpointKey;
use crate::audit::Audit;
use crate::backup::Backups;
use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, Settings};
use crate::health::ProbeCache;
use crate::http::ratelimit::BurstLog;
use crate::http::server::{self, Limits};
use crate::identity::service::Identity;
use crate::keys::ApiKeys;
use crate::ratelimit::Limiter;
use crate::relations::Relations;
use crate::services::ServiceCredentials;
use crate::store::{migrate, postgres, Database, StartupError};
use crate::telemetry::metrics::Metrics;
use crate::tenancy::members::Tenancy;
use crate::vault::kek::FileOrSetting;
use crate::vault::platform::PlatformSealer;
use crate::vault::rotation::KeyRotation;
use crate::vault::{Secrets, Vault};
use crate::webhooks::Webhooks;

/// Everything a handler may use, shared by every request.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub settings: Settings,
    pub db: Database,
    /// The one action table: Palisade's own actions and the manifest's (claim APP-1).
    pub access: Arc<ActionTable>,
    pub identity: Identity,
    pub tenancy: Tenancy,
    pub keys: ApiKeys,
    /// The app's service credentials (claim APP-2).
    pub services: ServiceCredentials,
    /// What the app says its users are to its resources (claim RBAC-5).
    pub relations: Relations,
    /// A tenant's secrets in the vault (claims SEC-1, SEC-3).
    pub secrets: Secrets,
    /// The vault's KEK versions and the re-wrap onto the newest (claim SEC-2).
    pub key_rotation: KeyRotation,
    /// Webhook endpoints, messages and their dispatcher (claims HOOK-1 to HOOK-4).
    pub webhooks: Arc<Webhooks>,
    /// Encrypted, test-restored backups on a schedule (claims OPS-3, OPS-2).
    pub backups: Arc<Backups>,
    pub audit: Audit,
    pub limiter: Limiter,
    pub burst_log: BurstLog,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub health: ProbeCache,
    /// Rendered once at start-up; served by `/api/openapi.json`.
    pub openapi_json: OnceLock<Bytes>,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StartupError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}

/// A started, not yet serving, application.
pub struct App {
    state: AppState,
    router: Router,
    listener: TcpListener,
    redirect: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    limits: Limits,
}

impl App {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Prepares storage, applies or checks migrations, and binds the listeners.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let access = settings
            .access
            .table()
            .map_err(|e| StartError::Other(e.to_string()))?;
        prepare_data_dir(&settings.data_dir)?;
        let db = open_database(&settings).await?;
        let tls = match (&settings.tls.cert, &settings.tls.key) {
            (Some(cert), Some(key)) => {
                Some(server::tls_acceptor(cert, key).map_err(StartError::Tls)?)
            }
            _ => None,
        };
        let listener = bind(settings.listen).await?;
        let redirect = match settings.tls.redirect_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let audit = open_audit(&settings, &db, clock.clone())?;
        audit.check_key_is_shared().await;
        let OpenedVault {
            vault,
            secrets,
            rotation: key_rotation,
            sealer,
        } = open_vault(&settings, &db, clock.clone(), &audit).await?;
        let identity = Identity::start(
            &settings,
            &db,
            clock.clone(),
            audit.clone(),
            &access,
            sealer,
        )
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
        let resealed = identity
            .reseal_legacy()
            .await
            .map_err(|e| StartError::Other(format!("re-sealing under the vault: {e}")))?;
        if resealed > 0 {
            tracing::info!(
                resealed,
                "signing keys and TOTP secrets moved from the master key file under the vault"
            );
        }
        let tenancy = Tenancy::new(
            crate::tenancy::store::for_database(&db),
            &identity,
            clock.clone(),
        );
        let keys = ApiKeys::new(
            crate::keys::store::for_database(&db),
            identity.epoch_source(),
            clock.clone(),
            access.clone(),
        );
        let services = ServiceCredentials::new(
            crate::services::store::for_database(&db),
            identity.epoch_source(),
            clock.clone(),
        );
        let relations = Relations::new(
            crate::relations::store::for_database(&db),
            access.clone(),
            clock.clone(),
        );
        let sender = crate::webhooks::sender::Sender::new(
            crate::webhooks::guard::AddressPolicy::new(settings.webhooks.allowed()),
            settings.webhooks.ca_file.as_deref(),
            Arc::new(crate::webhooks::sender::SystemResolver),
        )
        .map_err(StartError::Other)?;
        let webhooks = Arc::new(Webhooks::new(
            crate::webhooks::store::for_database(&db),
            vault,
            Arc::new(sender),
            access.clone(),
            clock.clone(),
            &settings.webhooks,
        ));
        let backups =
            Arc::new(Backups::open(&settings, &db, clock.clone()).map_err(StartError::Other)?);
        let state = AppState(Arc::new(AppInner {
            webhooks,
            backups,
            relations,
            secrets,
            key_rotation,
            access,
            identity,
            audit,
            tenancy,
            keys,
            services,
            limiter: Limiter::for_database(&db),
            burst_log: BurstLog::new(),
            db,
            clock,
            metrics: Arc::new(Metrics::new()),
            health: ProbeCache::new(&settings.database),
            openapi_json: OnceLock::new(),
            settings,
        }));
        let (router, api) = crate::http::app(state.clone());
        let json = crate::http::openapi::render(&api, &state.access)
            .map_err(|e| StartError::Other(format!("rendering the OpenAPI document: {e}")))?;
        let _ = state.openapi_json.set(Bytes::from(json));
        let limits = Limits::from_settings(&state.settings);
        Ok(Self {
            state,
            router,
            listener,
            redirect,
            tls,
            limits,
        })
    }

    /// The API's bound address (the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; in-flight requests finish within the grace period.
    pub async fn run<F>(self, shutdown: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.run_with(shutdown, Upkeep::Periodic).await;
    }

    /// As [`App::run`], with the periodic work on its timer or left to the caller
    /// ([`upkeep_step`]): tests that move a frozen clock must not race a real-time ticker.
    pub async fn run_with<F>(self, shutdown: F, upkeep: Upkeep)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let shutdown = futures_util::future::FutureExt::shared(Box::pin(shutdown));
        let api_port = self.local_addr().port();
        let (upkeep, dispatcher) = match upkeep {
            Upkeep::Periodic => (
                tokio::spawn(periodic_upkeep(self.state.clone())),
                tokio::spawn(self.state.webhooks.clone().run()),
            ),
            Upkeep::Manual => (tokio::spawn(async {}), tokio::spawn(async {})),
        };
        let redirect = self.redirect.map(|listener| {
            let shutdown = shutdown.clone();
            tokio::spawn(server::serve(
                listener,
                crate::http::redirect_app(&self.state, api_port),
                None,
                self.limits,
                shutdown,
            ))
        });
        server::serve(self.listener, self.router, self.tls, self.limits, shutdown).await;
        if let Some(redirect) = redirect {
            let _ = redirect.await;
        }
        upkeep.abort();
        // A round cut short loses nothing: its leases lapse and the next start sends again.
        dispatcher.abort();
        self.state.keys.flush_last_used().await;
        if let Err(error) = self.state.audit.checkpoint_due().await {
            tracing::warn!(%error, "signing audit checkpoints at shutdown failed");
        }
        // Closing waits for checked-out connections; a stuck one must not hold the exit.
        let close = self.state.db.close();
        if tokio::time::timeout(std::time::Duration::from_secs(5), close)
            .await
            .is_err()
        {
            tracing::warn!("database pool did not close within 5 s");
        }
    }
}

/// Periodic work: every second, notice principal changes made by other processes and sign
/// the audit chains that are due, and re-wrap a batch of vault keys while a KEK rotation is
/// under way; every minute, reload and rotate signing keys and the vault's KEKs, prune old
/// failure counts and rate-limit state, write API keys' last use, and start a backup when
/// one is due; every hour, apply audit retention and forget the app's idempotency keys and
/// webhook history past their windows.
async fn periodic_upkeep(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        upkeep_step(&state, n % 60 == 59, n % 3600 == 3599).await;
    }
}

/// Webhook history past its retention, tenant by tenant: every tenant has an audit chain,
/// whose list the upkeep may read across tenants.
pub async fn prune_webhooks(state: &AppState) -> Result<u64, String> {
    let chains = state.audit.streams().await.map_err(|e| e.to_string())?;
    let tenants = chains
        .into_iter()
        .map(|chain| crate::ids::TenantId::from_uuid(chain.stream()));
    state
        .webhooks
        .prune(tenants)
        .await
        .map_err(|e| e.to_string())
}

/// Whether the periodic work runs on its own timer (serving) or only when called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upkeep {
    Periodic,
    Manual,
}

/// One round of the periodic work: the every-second tasks, and the minute's and the
/// hour's when `minute` and `hour` say so. Failures are logged, never fatal.
pub async fn upkeep_step(state: &AppState, minute: bool, hour: bool) {
    if let Err(error) = state.identity.poll().await {
        tracing::debug!(%error, "principal epoch poll failed");
    }
    if let Err(error) = state.audit.checkpoint_due().await {
        tracing::warn!(%error, "signing audit checkpoints failed");
    }
    if let Err(error) = state.key_rotation.go_on().await {
        tracing::warn!(%error, "re-wrapping or re-sealing vault keys failed");
    }
    if hour {
        if let Err(error) = state.audit.enforce_retention().await {
            tracing::warn!(%error, "applying audit retention failed");
        }
        if let Err(error) = state.audit.prune_idempotency_keys().await {
            tracing::warn!(%error, "pruning the app's idempotency keys failed");
        }
        if let Err(error) = prune_webhooks(state).await {
            tracing::warn!(%error, "pruning webhook history failed");
        }
    }
    if minute {
        if let Err(error) = state.identity.maintain().await {
            tracing::warn!(%error, "identity upkeep failed; retrying in a minute");
        }
        state.keys.flush_last_used().await;
        let now_us = crate::audit::store::micros(state.clock.now());
        if let Err(error) = state.limiter.prune(now_us).await {
            tracing::warn!(%error, "pruning rate-limit state failed");
        }
        if let Err(error) = state.key_rotation.maintain().await {
            tracing::warn!(%error, "vault KEK upkeep failed; retrying in a minute");
        }
        state.backups.start_if_due();
    }
}

/// The vault over `db`: its KEKs (the file made on first start, or the setting), the
/// secrets, the KEK rotation, and the platform's sealer for Palisade's own material (which
/// still opens what the master key file sealed, while that file exists).
pub async fn open_vault(
    settings: &Settings,
    db: &Database,
    clock: Arc<dyn Clock>,
    audit: &Audit,
) -> Result<OpenedVault, StartError> {
    let keks = FileOrSetting::load(
        settings.vault.kek.as_ref(),
        &settings.vault.kek_path(&settings.data_dir),
        clock.now(),
    )
    .map_err(|e| StartError::Other(e.to_string()))?;
    let vault = Arc::new(Vault::new(Arc::new(keks)));
    let master_path = settings.auth.master_key_path(&settings.data_dir);
    let legacy = match master_path.exists() {
        true => Some(
            crate::crypto::SealingKey::load_or_create(&master_path)
                .map_err(|e| StartError::Other(e.to_string()))?,
        ),
        false => None,
    };
    let sealer = PlatformSealer::load(
        &vault,
        crate::vault::store::platform_keys_for_database(db).as_ref(),
        legacy,
        clock.now(),
    )
    .await
    .map_err(|e| StartError::Other(e.to_string()))?;
    let secrets = Secrets::new(
        crate::vault::store::for_database(db),
        vault.clone(),
        audit.clone(),
        clock.clone(),
    );
    let vault_for_others = vault.clone();
    let rotation = KeyRotation::new(
        crate::vault::store::data_keys_for_database(db),
        audit.clone(),
        vault,
        clock,
        settings.vault.kek_file_in_use(&settings.data_dir),
        settings.vault.kek_rotation_days,
        matches!(db, Database::Sqlite(_)),
    );
    Ok(OpenedVault {
        vault: vault_for_others,
        secrets,
        rotation,
        sealer: Arc::new(sealer),
    })
}

/// The vault as start-up opens it: the hierarchy itself (for the webhooks' signing
/// secrets), the secrets service, the KEK rotation and the platform's sealer.
pub struct OpenedVault {
    pub vault: Arc<Vault>,
    pub secrets: Secrets,
    pub rotation: KeyRotation,
    pub sealer: Arc<PlatformSealer>,
}

/// The audit log over `db`, with its checkpoint key (created on first start).
pub fn open_audit(
    settings: &Settings,
    db: &Database,
    clock: Arc<dyn Clock>,
) -> Result<Audit, StartError> {
    let key = CheckpointKey::load_or_create(&settings.audit.key_path(&settings.data_dir))
        .map_err(|e| StartError::Other(e.to_string()))?;
    Ok(Audit::new(
        crate::audit::store::for_database(db),
        key,
        clock,
        settings.audit.clone(),
    ))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind {
        addr,
        reason: e.to_string(),
    })
}

/// Creates the data directory owner-only (0700) and refuses one others can read.
pub fn prepare_data_dir(dir: &Path) -> Result<PathBuf, StartupError> {
    let fail = |reason: String| StartupError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(e.to_string()))?;
        let mode = std::fs::metadata(dir)
            .map_err(|e| fail(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "permissions are {:o}; it holds secrets and must be owner-only (chmod 700)",
                mode & 0o777
            )));
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    std::fs::canonicalize(dir).map_err(|e| fail(e.to_string()))
}

/// Connects, brings the schema up to date (or checks it is), and on PostgreSQL verifies the
/// runtime role cannot bypass row-level security. SQLite always migrates; PostgreSQL
/// migrates when given the owner's URL and otherwise demands a current schema.
pub async fn open_database(settings: &Settings) -> Result<Database, StartupError> {
    let db = Database::connect(settings).await?;
    match settings.backend() {
        Backend::Sqlite { .. } => {
            migrate::apply(&db).await?;
        }
        Backend::Postgres { .. } => {
            if settings.database.migrate_url.is_some() {
                run_migrations(settings).await?;
            }
            postgres::check_runtime_role(match &db {
                Database::Postgres(pool) => pool,
                Database::Sqlite(_) => unreachable!("backend is postgres"),
            })
            .await?;
            migrate::ensure_current(&db).await?;
        }
    }
    Ok(db)
}

/// Applies pending migrations as the schema owner (PostgreSQL) or on the SQLite file.
pub async fn run_migrations(settings: &Settings) -> Result<Vec<&'static str>, StartupError> {
    match settings.backend() {
        Backend::Sqlite { .. } => {
            prepare_data_dir(&settings.data_dir)?;
            let db = Database::connect(settings).await?;
            let applied = migrate::apply(&db).await;
            db.close().await;
            applied
        }
        Backend::Postgres { .. } => {
            let url = settings.database.migrate_url.as_ref().ok_or_else(|| {
                StartupError::Schema(
                    "migrating PostgreSQL needs database.migrate_url (the schema owner)".into(),
                )
            })?;
            let owner = postgres::connect(url, settings).await?;
            let db = Database::Postgres(owner);
            let applied = migrate::apply(&db).await;
            db.close().await;
            applied
        }
    }
}
