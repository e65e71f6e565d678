//! The one typed settings struct: built-in defaults, then a TOML file, then `PALISADE_*` variables.
//!
//! Every field is documented here, because this file is the reference an operator reads.
//! Secret settings are `SecretString`: they never reach `Debug`, a log line or `config check`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(test)]
mod reference;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Environment variables that carry this prefix are settings; nested keys use `__`
/// (`PALISADE_TLS__CERT`), and `PALISADE_DATABASE_URL` is accepted as the short form of
/// `PALISADE_DATABASE__URL`.
pub const ENV_PREFIX: &str = "PALISADE_";

/// Variables under the prefix that are not settings: the test harness's, and the target of
/// `palisade restore` (`PALISADE_RESTORE_DATABASE_URL`, an argument kept off the command
/// line).
const ENV_IGNORED_PREFIXES: &[&str] = &["test_", "restore_"];

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the API listens on. `127.0.0.1:0` picks a free port and prints it.
    pub listen: SocketAddr,
    /// Directory for the embedded database, the mail outbox and key files. Created 0700.
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub tls: TlsSettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub posture: PostureSettings,
    pub passwords: PasswordSettings,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    pub admin: AdminSettings,
    pub rate_limits: RateLimitSettings,
    pub audit: AuditSettings,
    pub access: AccessSettings,
    pub vault: VaultSettings,
    pub webhooks: WebhookSettings,
    pub backup: BackupSettings,
}

/// Backups (claims OPS-3, OPS-4): encrypted snapshots on a schedule, each test-restored,
/// reported by health (OPS-2).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSettings {
    /// The operator's age public keys (`age1…`) every backup is encrypted to; only the
    /// matching private keys (`palisade backup keygen`, or `age-keygen`) can read one, and
    /// the server holds none. Empty (the default): backups are off, logged as a weakening.
    pub recipients: Vec<String>,
    /// Where backups are written, one directory each. Default: `backups` in `data_dir`;
    /// better a disk or mount apart from the database's.
    pub dir: Option<PathBuf>,
    /// Hours between backups (default 24).
    pub interval_hours: u32,
    /// Days a backup is kept (default 30); the newest that passed its test restore is
    /// kept whatever its age.
    pub retention_days: u32,
    /// Health reports backups degraded when the newest is older than this, in hours
    /// (default 26), or when its test restore failed.
    pub stale_after_hours: u32,
    /// PostgreSQL: `postgres://…` of the backup role `pg_dump` runs as. It needs BYPASSRLS
    /// (row-level security would hide every tenant's rows from the dump) and CREATEDB (the
    /// test restore goes into a scratch database it creates and drops). Required on
    /// PostgreSQL when `recipients` is set.
    pub database_url: Option<SecretString>,
    /// PostgreSQL: the directory of `pg_dump` and `pg_restore` (default: found on `PATH`).
    /// They should be of the server's major version or newer.
    pub postgres_bin_dir: Option<PathBuf>,
    /// An S3-compatible object store every backup is copied to once test-restored, for a
    /// copy off this machine: its endpoint (`https://s3.eu-west-1.amazonaws.com`, or a
    /// MinIO, R2 or B2 endpoint). https, unless on loopback. Unset (the default): backups
    /// stay in `dir` only.
    pub s3_endpoint: Option<String>,
    /// The bucket (it must exist). Required with `s3_endpoint`.
    pub s3_bucket: Option<String>,
    /// The bucket's region (default `us-east-1`).
    pub s3_region: String,
    /// Key prefix of the copies, `{prefix}{backup id}/{file}` (default `palisade-backups/`;
    /// empty, or ending in `/`).
    pub s3_prefix: String,
    /// Access key id, allowed to put, list and delete under the prefix.
    pub s3_access_key_id: Option<String>,
    /// The access key's secret (never logged; redacted by `palisade config check`).
    pub s3_secret_access_key: Option<SecretString>,
    /// Path-style URLs (`endpoint/bucket/key`: MinIO and most compatible stores, the
    /// default); false: virtual-hosted (`bucket.endpoint/key`, as AWS prefers).
    pub s3_path_style: bool,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            recipients: Vec::new(),
            dir: None,
            interval_hours: 24,
            retention_days: 30,
            stale_after_hours: 26,
            database_url: None,
            postgres_bin_dir: None,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "us-east-1".into(),
            s3_prefix: "palisade-backups/".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_path_style: true,
        }
    }
}

impl BackupSettings {
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("backups"))
    }
}

/// Webhooks out (claims HOOK-1 to HOOK-4): where Palisade may deliver, and how long it keeps
/// trying.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Networks (CIDR, or one address) a delivery may reach although they are private,
    /// loopback, link-local or otherwise refused (claim HOOK-4): say an internal receiver
    /// at `10.2.0.0/16`. Empty (the default): only public addresses. Checked on the
    /// connection actually made, every attempt, not only when an endpoint is registered.
    pub allowed_networks: Vec<String>,
    /// A PEM file of certificate authorities a receiver's certificate may chain to, besides
    /// the public web's (an internal CA). Deliveries are https only.
    pub ca_file: Option<PathBuf>,
    /// Days an endpoint may fail every attempt before it is disabled (audited, and itself
    /// emitted as `webhook_endpoint.disabled`). 0: never.
    pub disable_after_days: u32,
    /// Deliveries in flight at once per server process.
    pub concurrency: usize,
    /// Days a message's history is kept (1 to 3650; default 30): past it, upkeep removes
    /// attempts, inbound receipts and messages with no delivery still pending, hourly. An
    /// inbound event replayed after its receipt is gone is handed on again, so keep this
    /// longer than any sender retries (Stripe: 3 days).
    pub retention_days: u32,
    /// Senders whose webhooks Palisade receives (claim HOOK-5) at
    /// `POST /api/v1/webhooks/inbound/{name}`, verifies and hands on to the app as
    /// `inbound.{name}` messages signed by Palisade. In the TOML file, a table
    /// `[webhooks.inbound.billing]` with `scheme` (`standard`: a Standard Webhooks sender;
    /// `stripe`: `Stripe-Signature: t=…,v1=…`), `secret` (the sender's signing secret;
    /// `PALISADE_WEBHOOKS__INBOUND__BILLING__SECRET` keeps it out of the file) and `tenant`
    /// (the id of the tenant whose endpoints subscribed to `inbound.billing` receive them).
    /// A name is 1–32 of `a-z`, `0-9`, `_`, starting with a letter.
    pub inbound: BTreeMap<String, InboundSource>,
}

/// One sender of inbound webhooks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSource {
    pub scheme: InboundScheme,
    pub secret: SecretString,
    pub tenant: String,
}

/// How an inbound source signs.
#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InboundScheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` (Standard Webhooks).
    Standard,
    /// `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
    Stripe,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allowed_networks: Vec::new(),
            ca_file: None,
            disable_after_days: 5,
            retention_days: 30,
            concurrency: 64,
            inbound: BTreeMap::new(),
        }
    }
}

impl WebhookSettings {
    pub fn allowed(&self) -> Vec<crate::http::client_ip::Cidr> {
        self.allowed_networks
            .iter()
            .filter_map(|cidr| cidr.parse().ok())
            .collect()
    }
}

/// The vault's key-encryption keys (claim SEC-1): they wrap every tenant's data key, and
/// live outside the database.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSettings {
    /// The KEK file: one `VERSION:BASE64` line per 32-byte key, the highest version the one
    /// new data keys are wrapped under. Created (0600, version 1) at first start; refused
    /// when others may read it. Default: `vault-kek` in `data_dir`. Every instance of one
    /// deployment needs the same file; keep a copy apart from the database's backups.
    pub kek_file: Option<PathBuf>,
    /// The KEKs as a value instead of a file (`1:BASE64,2:BASE64`), say from the platform's
    /// secret store; when set, the file is not read and rotation is the operator's (add a
    /// version to the value, restart, then `palisade keys rewrap`).
    pub kek: Option<SecretString>,
    /// KEK age, in days, past which a new version is due (claim SEC-2). On SQLite (one
    /// server per file) the server adds it and re-wraps every data key onto it in the
    /// background; on PostgreSQL, where each instance holds a copy of the file, servers only
    /// warn: run `palisade keys rotate-kek` and give every instance the new file. 0: never
    /// due.
    pub kek_rotation_days: u32,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            kek_file: None,
            kek: None,
            kek_rotation_days: 90,
        }
    }
}

impl VaultSettings {
    /// The KEK file, unless the KEKs come from the setting.
    pub fn kek_file_in_use(&self, data_dir: &Path) -> Option<PathBuf> {
        self.kek.is_none().then(|| self.kek_path(data_dir))
    }

    pub fn kek_path(&self, data_dir: &Path) -> PathBuf {
        self.kek_file
            .clone()
            .unwrap_or_else(|| data_dir.join("vault-kek"))
    }
}

/// The app's own authorization model (claim APP-1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSettings {
    /// The app's manifest: a TOML file declaring its resource types, actions and roles
    /// (docs/integration.md). A relative path is read from the working directory. Unset:
    /// Palisade's own actions and the five built-in roles only. Every problem in the file
    /// is named and refuses the start.
    pub manifest: Option<PathBuf>,
}

impl AccessSettings {
    /// The deployment's action table: Palisade's own, and the manifest's when one is set.
    pub fn table(
        &self,
    ) -> Result<std::sync::Arc<crate::access::ActionTable>, crate::access::manifest::ManifestError>
    {
        match &self.manifest {
            Some(path) => crate::access::manifest::load(path),
            None => Ok(crate::access::ActionTable::builtin()),
        }
    }
}

/// The audit log's checkpoints (claim AUD-3).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// The Ed25519 key (PKCS#8 PEM) that signs checkpoints, anchors and export trailers;
    /// created on first start when missing. Default: `audit-checkpoint.pem` in `data_dir`.
    /// Every instance of one deployment must use the same key.
    pub checkpoint_key_file: Option<PathBuf>,
    /// A chain is signed after this many new events…
    pub checkpoint_every: u32,
    /// …or this many seconds after its last checkpoint, whichever comes first.
    pub checkpoint_interval_secs: u32,
    /// The shortest retention a tenant may set, in days (1 to 36500; default 30). Only an
    /// Owner shortens a tenant's retention (claim AUD-5).
    pub retention_floor_days: i32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_key_file: None,
            checkpoint_every: 1_000,
            checkpoint_interval_secs: 300,
            retention_floor_days: 30,
        }
    }
}

impl AuthSettings {
    /// The master key file of deployments from before the vault (see `master_key_file`).
    pub fn master_key_path(&self, data_dir: &Path) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("master.key"))
    }
}

impl AuditSettings {
    pub fn key_path(&self, data_dir: &std::path::Path) -> PathBuf {
        self.checkpoint_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("audit-checkpoint.pem"))
    }
}

/// Per-route request limits (claim WEB-5), per principal (API key, user) or, on routes
/// without one, per client address. Each route's limit is one of these three classes
/// (`ratelimit::POLICIES`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Off only for benchmarks: logged as a weakening.
    pub enabled: bool,
    /// Writes and every route without an override.
    pub default_per_minute: u32,
    /// Reads (`GET`): looser.
    pub read_per_minute: u32,
    /// Sign-in, sign-up and the email-link requests, per client address: stricter.
    pub sign_in_per_minute: u32,
    /// The integration endpoints (`/access/v1/…`, `/oauth/…`, `/api/v1/ratelimit/…`), per
    /// service credential: the app calls
    /// them on its own users' requests, so the budget is a busy app's.
    pub integration_per_minute: u32,
    /// Limits the app names instead of giving the numbers in each call
    /// (`POST /api/v1/ratelimit/check`, key verification), so the operator tunes them in one
    /// place. In the TOML file, a table `[rate_limits.named]` of
    /// `"workorders.export" = { limit = 10, window_seconds = 60 }`, a name being 1–64 of
    /// `a-z`, `0-9`, `.`, `_`, `-`, a limit 1 to 1,000,000 and a window 1 to 86,400 s.
    pub named: BTreeMap<String, NamedLimit>,
}

/// One named limit of the app's: `limit` units per `window_seconds`.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamedLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            default_per_minute: 60,
            read_per_minute: 600,
            sign_in_per_minute: 10,
            integration_per_minute: 600_000,
            named: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// `postgres://…` of the platform operator's role (BYPASSRLS, in the group
    /// `palisade_platform`), used only by `palisade admin …`, never by the server. Unset on
    /// PostgreSQL: platform commands refuse to run. SQLite needs none.
    pub database_url: Option<SecretString>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` of the runtime role (owns nothing, no BYPASSRLS). Unset: embedded SQLite.
    pub url: Option<SecretString>,
    /// `postgres://…` of the schema owner; `migrate` needs it, and `serve` applies pending
    /// migrations with it when set. Unset: `serve` refuses a schema that is not current.
    pub migrate_url: Option<SecretString>,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before it fails with 503.
    pub acquire_timeout_ms: u64,
    /// How long the health check waits for the database before calling it down.
    pub health_timeout_ms: u64,
    /// A database probe's result is reused for this long, so a flood of health checks
    /// cannot compete with real writes for the database. 0 probes on every call.
    pub health_cache_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest request body accepted; larger ones get 413. A body is received whole (up to
    /// this) before the request's credentials are checked, so each request reads the auth
    /// state once, as it is after the request arrived. A secret's writes (`POST
    /// /api/v1/secrets`, `PUT /api/v1/secrets/{id}`) take up to 392 KiB whatever this says:
    /// a 64 KiB value with JSON's escapes.
    pub body_limit_bytes: usize,
    /// Whole-request deadline, body upload included; past it the answer is 503 `timeout`.
    pub request_timeout_ms: u64,
    /// Deadline for a client to send the request headers (slowloris guard).
    pub header_read_timeout_ms: u64,
    /// Open connections beyond this wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long a SIGTERM waits for in-flight requests before the process exits anyway.
    pub shutdown_grace_ms: u64,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed when they are
    /// the peer. Empty: the peer address is always the client.
    pub trusted_proxies: Vec<String>,
    /// Origins (`https://app.example.com`, scheme, host and port only) of browser apps that
    /// may call the API from their pages, credentials included; their preflights are
    /// answered. Empty: no cross-origin access.
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain. With `key`, the API listener speaks TLS 1.2+ and sends HSTS.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Plain-HTTP listener that redirects every request to HTTPS.
    pub redirect_listen: Option<SocketAddr>,
    /// Host name the redirect targets. Unset: the request's Host header (validated).
    pub public_host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Level filter: `info`, or per target, `info,sqlx=warn`.
    pub filter: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// `/metrics` demands `Authorization: Bearer <token>` (at least 16 characters). Unset
    /// (the default), nobody may scrape: every scrape is 401.
    pub bearer_token: Option<SecretString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostureSettings {
    /// `GET /api/v1/posture` (claim OPS-7: this instance checked against every claim)
    /// demands `Authorization: Bearer <token>` (at least 16 characters); `palisade posture
    /// --token` sends it. Unset (the default), the report is served to nobody: run
    /// `palisade posture` without `--token` for the checks made from outside.
    pub bearer_token: Option<SecretString>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordSettings {
    /// argon2id memory in KiB; OWASP's floor is 19456 (19 MiB).
    pub argon2_memory_kib: u32,
    /// argon2id passes; OWASP's floor is 2.
    pub argon2_iterations: u32,
    /// Hashes computed at once on the blocking pool; more wait in a queue. Default: one
    /// fewer than the machine's cores, at least one, so a burst of sign-ins never takes
    /// every core from the requests around it (docs/benchmarks.md, the soak).
    pub max_concurrent_hashes: usize,
    /// Hash requests allowed to wait; beyond it the answer is 503, not unbounded memory.
    pub max_queued_hashes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `iss` of access tokens: usually the public URL of this deployment.
    pub issuer: String,
    /// `aud` of access tokens: the API that accepts them.
    pub audience: String,
    /// Access token lifetime (claim ID-3: 15 minutes by default).
    pub access_token_ttl_secs: u64,
    /// A session not refreshed for this long ends (claim ID-5).
    pub session_idle_secs: u64,
    /// A session ends this long after sign-in, however active (claim ID-5).
    pub session_absolute_secs: u64,
    /// A new signing key replaces the active one after this many days (claim ID-8).
    pub signing_key_rotation_days: u32,
    /// The refresh cookie's `Secure` flag. Turn off only for plain-HTTP local development.
    pub cookie_secure: bool,
    /// Failed sign-ins allowed per (email, IP) within the window (claim ID-9).
    pub max_failures_per_email_ip: u32,
    /// Failed sign-ins allowed per IP, whatever the email, within the window.
    pub max_failures_per_ip: u32,
    /// The window, in seconds, the two limits above count failed sign-ins over.
    pub failure_window_secs: u64,
    /// Past this many failures of one account within the window, from any addresses, its
    /// sign-ins are slowed, never locked out (claim ID-9): one attempt per
    /// `account_failure_spacing_secs`, so guesses spread over many addresses stay few and
    /// the owner still gets in after a short wait.
    pub slow_after_account_failures: u32,
    /// Seconds between the sign-ins a slowed account is allowed (above).
    pub account_failure_spacing_secs: u64,
    /// Password-reset links expire after this long (claim ID-11: 30 minutes).
    pub reset_token_ttl_secs: u64,
    /// Email-verification links expire after this long (claim ID-11: 24 hours).
    pub verification_token_ttl_secs: u64,
    /// The master key file (32 bytes, base64) that sealed signing keys and TOTP secrets
    /// before the vault. Read only when it exists: what it sealed opens, and is re-sealed
    /// under the vault's platform data key at start-up; after that it may be deleted. Never
    /// created. Unset: `<data_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// `smtps://user:pass@host:465` or `smtp://host:587?tls=required`. Unset: mail is
    /// written to `<data_dir>/outbox` for an operator to read (claim ID-13).
    pub smtp_url: Option<SecretString>,
    /// The From header of every mail.
    pub from: String,
    /// Base of the links in mails (verification, reset): the web app's public URL.
    pub link_base_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("palisade-data"),
            database: DatabaseSettings::default(),
            http: HttpSettings::default(),
            tls: TlsSettings::default(),
            log: LogSettings::default(),
            metrics: MetricsSettings::default(),
            posture: PostureSettings::default(),
            passwords: PasswordSettings::default(),
            auth: AuthSettings::default(),
            mail: MailSettings::default(),
            admin: AdminSettings::default(),
            rate_limits: RateLimitSettings::default(),
            audit: AuditSettings::default(),
            access: AccessSettings::default(),
            vault: VaultSettings::default(),
            webhooks: WebhookSettings::default(),
            backup: BackupSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            migrate_url: None,
            max_connections: 16,
            acquire_timeout_ms: 3_000,
            health_timeout_ms: 2_000,
            health_cache_ms: 1_000,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            max_connections: 4_096,
            shutdown_grace_ms: 30_000,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
        }
    }
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            max_concurrent_hashes: std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1).max(1)),
            max_queued_hashes: 256,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "palisade".to_owned(),
            audience: "palisade-api".to_owned(),
            access_token_ttl_secs: 15 * 60,
            session_idle_secs: 8 * 3600,
            session_absolute_secs: 30 * 24 * 3600,
            signing_key_rotation_days: 30,
            cookie_secure: true,
            max_failures_per_email_ip: 5,
            max_failures_per_ip: 50,
            failure_window_secs: 15 * 60,
            slow_after_account_failures: 20,
            account_failure_spacing_secs: 30,
            reset_token_ttl_secs: 30 * 60,
            verification_token_ttl_secs: 24 * 3600,
            master_key_file: None,
        }
    }
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Palisade <no-reply@localhost>".to_owned(),
            link_base_url: "http://127.0.0.1:8080".to_owned(),
        }
    }
}

impl AuthSettings {
    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }
}

/// Overrides given on the command line; they win over every other source.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(String),
    #[error("configuration is invalid:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Where the storage lives, decided once from the settings.
pub enum Backend<'a> {
    Sqlite { path: PathBuf },
    Postgres { url: &'a SecretString },
}

impl Settings {
    /// Loads defaults ← `file` ← `PALISADE_*` ← `overrides`, then checks the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        // vars() would panic on any non-UTF-8 variable, even one that is not ours.
        let mut env = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str().filter(|k| k.starts_with(ENV_PREFIX)) else {
                continue;
            };
            let value = value
                .into_string()
                .map_err(|_| ConfigError::Load(format!("{key} is not valid UTF-8")))?;
            env.push((key.to_owned(), value));
        }
        Self::load_from(file, env, overrides)
    }

    /// As [`Settings::load`], with the environment given explicitly (tests use this).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = merge_env(figment, env);
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Load(describe_figment_error(e)))?;
        if let Some(listen) = overrides.listen {
            settings.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            settings.data_dir = dir.clone();
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Every rule a configuration must meet; all problems are reported at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: &str| {
            if !ok {
                problems.push(problem.to_owned());
            }
        };
        check(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir must not be empty",
        );
        for (name, limit) in [
            ("default_per_minute", self.rate_limits.default_per_minute),
            ("read_per_minute", self.rate_limits.read_per_minute),
            ("sign_in_per_minute", self.rate_limits.sign_in_per_minute),
            (
                "integration_per_minute",
                self.rate_limits.integration_per_minute,
            ),
        ] {
            check(
                (1..=60_000_000).contains(&limit),
                &format!("rate_limits.{name} must be 1 to 60000000"),
            );
        }
        for (name, limit) in &self.rate_limits.named {
            check(
                crate::ratelimit::routes::is_limit_name(name),
                &format!("rate_limits.named: {name:?} is not a name (1 to 64 of a-z, 0-9, '.', '_', '-')"),
            );
            check(
                (1..=1_000_000).contains(&limit.limit)
                    && (1..=86_400).contains(&limit.window_seconds),
                &format!("rate_limits.named.{name}: limit 1 to 1000000, window_seconds 1 to 86400"),
            );
        }
        check(
            self.vault.kek_rotation_days <= 3650,
            "vault.kek_rotation_days must be 0 (never automatically) to 3650",
        );
        if let Err(problem) = crate::backup::archive::recipients(&self.backup.recipients) {
            check(false, &problem);
        }
        check(
            (1..=24 * 365).contains(&self.backup.interval_hours)
                && (1..=24 * 3650).contains(&self.backup.stale_after_hours),
            "backup.interval_hours and backup.stale_after_hours must be at least 1",
        );
        check(
            (1..=3650).contains(&self.backup.retention_days),
            "backup.retention_days must be 1 to 3650",
        );
        check(
            self.backup.recipients.is_empty()
                || self.database.url.is_none()
                || self.backup.database_url.is_some(),
            "backup.database_url (the backup role, BYPASSRLS and CREATEDB) is required on PostgreSQL when backup.recipients is set",
        );
        if let Some(endpoint) = &self.backup.s3_endpoint {
            let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|prefix| endpoint.starts_with(prefix));
            check(
                endpoint.starts_with("https://") || local,
                "backup.s3_endpoint must be an https URL (http only on loopback)",
            );
            check(
                self.backup.s3_bucket.is_some()
                    && self.backup.s3_access_key_id.is_some()
                    && self.backup.s3_secret_access_key.is_some(),
                "backup.s3_endpoint needs backup.s3_bucket, s3_access_key_id and s3_secret_access_key",
            );
            check(
                !self.backup.recipients.is_empty(),
                "backup.s3_endpoint copies backups, which need backup.recipients",
            );
        }
        check(
            self.backup.s3_prefix.is_empty() || self.backup.s3_prefix.ends_with('/'),
            "backup.s3_prefix must be empty or end with /",
        );
        for network in &self.webhooks.allowed_networks {
            if let Err(problem) = network.parse::<crate::http::client_ip::Cidr>() {
                check(false, &format!("webhooks.allowed_networks: {problem}"));
            }
        }
        check(
            self.webhooks.disable_after_days <= 365,
            "webhooks.disable_after_days must be 0 (never) to 365",
        );
        check(
            (1..=3650).contains(&self.webhooks.retention_days),
            "webhooks.retention_days must be 1 to 3650",
        );
        check(
            (1..=1024).contains(&self.webhooks.concurrency),
            "webhooks.concurrency must be 1 to 1024",
        );
        for (name, source) in &self.webhooks.inbound {
            check(
                crate::webhooks::inbound::is_source_name(name),
                &format!("webhooks.inbound: {name:?} is not a name (1 to 32 of a-z, 0-9, '_', starting with a letter)"),
            );
            if let Some(problem) = crate::webhooks::inbound::source_problem(source) {
                check(false, &format!("webhooks.inbound.{name}: {problem}"));
            }
        }
        check(
            (1..=1_000_000).contains(&self.audit.checkpoint_every),
            "audit.checkpoint_every must be 1 to 1000000",
        );
        check(
            (1..=86_400).contains(&self.audit.checkpoint_interval_secs),
            "audit.checkpoint_interval_secs must be 1 to 86400",
        );
        check(
            (1..=36_500).contains(&self.audit.retention_floor_days),
            "audit.retention_floor_days must be 1 to 36500",
        );
        for (name, url) in [
            ("database.url", &self.database.url),
            ("database.migrate_url", &self.database.migrate_url),
            ("admin.database_url", &self.admin.database_url),
        ] {
            if let Some(url) = url {
                let url = url.expose_secret();
                check(
                    url.starts_with("postgres://") || url.starts_with("postgresql://"),
                    &format!("{name} must start with postgres:// (the value is not shown)"),
                );
            }
        }
        check(
            self.database.migrate_url.is_none() || self.database.url.is_some(),
            "database.migrate_url is set but database.url is not",
        );
        check(
            (1..=1024).contains(&self.database.max_connections),
            "database.max_connections must be between 1 and 1024",
        );
        check(
            self.database.acquire_timeout_ms > 0 && self.database.health_timeout_ms > 0,
            "database timeouts must be positive",
        );
        check(
            (1024..=64 * 1024 * 1024).contains(&self.http.body_limit_bytes),
            "http.body_limit_bytes must be between 1 KiB and 64 MiB",
        );
        check(
            self.http.request_timeout_ms > 0 && self.http.header_read_timeout_ms > 0,
            "http timeouts must be positive",
        );
        for proxy in &self.http.trusted_proxies {
            if let Err(problem) = proxy.parse::<crate::http::client_ip::Cidr>() {
                check(false, &format!("http.trusted_proxies: {problem}"));
            }
        }
        for origin in &self.http.cors_origins {
            check(
                crate::http::cors::is_origin(origin),
                &format!("http.cors_origins: {origin:?} is not an origin (scheme://host[:port], lower case, no path)"),
            );
        }
        check(
            self.http.max_connections > 0,
            "http.max_connections must be positive",
        );
        check(
            self.tls.cert.is_some() == self.tls.key.is_some(),
            "tls.cert and tls.key must be set together",
        );
        check(
            self.tls.redirect_listen.is_none() || self.tls.enabled(),
            "tls.redirect_listen needs tls.cert and tls.key",
        );
        if let Some(host) = &self.tls.public_host {
            check(
                host.parse::<axum::http::uri::Authority>()
                    .is_ok_and(|a| a.port().is_none() && a.as_str() == host),
                "tls.public_host must be a bare host name (no scheme, port or path)",
            );
        }
        check(
            self.log
                .filter
                .parse::<tracing_subscriber::filter::Targets>()
                .is_ok(),
            "log.filter is not a valid filter (example: info,sqlx=warn)",
        );
        // Weaker than OWASP's argon2id floor would break claim ID-1: refused, not just logged.
        check(
            self.passwords.argon2_memory_kib >= 19_456,
            "passwords.argon2_memory_kib must be at least 19456 (OWASP minimum, claim ID-1)",
        );
        check(
            self.passwords.argon2_iterations >= 2,
            "passwords.argon2_iterations must be at least 2 (OWASP minimum, claim ID-1)",
        );
        check(
            self.passwords.max_concurrent_hashes > 0,
            "passwords.max_concurrent_hashes must be positive",
        );
        let auth = &self.auth;
        check(
            (60..=24 * 3600).contains(&auth.access_token_ttl_secs),
            "auth.access_token_ttl_secs must be between 60 and 86400",
        );
        check(
            auth.session_idle_secs >= auth.access_token_ttl_secs
                && auth.session_absolute_secs >= auth.session_idle_secs,
            "auth: access_token_ttl_secs <= session_idle_secs <= session_absolute_secs",
        );
        check(
            (1..=365).contains(&auth.signing_key_rotation_days),
            "auth.signing_key_rotation_days must be between 1 and 365",
        );
        check(
            auth.max_failures_per_email_ip >= 1
                && auth.max_failures_per_ip >= auth.max_failures_per_email_ip
                && auth.failure_window_secs >= 60,
            "auth: failure caps must be positive, the per-IP cap at least the per-email one, the window at least 60 s",
        );
        check(
            auth.slow_after_account_failures >= auth.max_failures_per_email_ip
                && (1..=3600).contains(&auth.account_failure_spacing_secs),
            "auth: slow_after_account_failures at least max_failures_per_email_ip, account_failure_spacing_secs 1 to 3600",
        );
        check(
            (60..=24 * 3600).contains(&auth.reset_token_ttl_secs)
                && (60..=7 * 24 * 3600).contains(&auth.verification_token_ttl_secs),
            "auth: reset tokens live 60 s to 24 h, verification tokens 60 s to 7 days",
        );
        check(
            !auth.issuer.is_empty() && !auth.audience.is_empty(),
            "auth.issuer and auth.audience must not be empty",
        );
        if let Some(url) = &self.mail.smtp_url {
            let url = url.expose_secret();
            check(
                url.starts_with("smtp://") || url.starts_with("smtps://"),
                "mail.smtp_url must start with smtp:// or smtps:// (the value is not shown)",
            );
        }
        check(
            self.mail.from.parse::<lettre::message::Mailbox>().is_ok(),
            "mail.from must be a mailbox, like: Palisade <no-reply@example.com>",
        );
        check(
            self.mail.link_base_url.starts_with("https://")
                || self.mail.link_base_url.starts_with("http://"),
            "mail.link_base_url must be an http(s) URL",
        );
        if let Some(token) = &self.metrics.bearer_token {
            check(
                token.expose_secret().len() >= 16,
                "metrics.bearer_token must be at least 16 characters",
            );
        }
        if let Some(token) = &self.posture.bearer_token {
            check(
                token.expose_secret().len() >= 16,
                "posture.bearer_token must be at least 16 characters",
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    pub fn backend(&self) -> Backend<'_> {
        match &self.database.url {
            Some(url) => Backend::Postgres { url },
            None => Backend::Sqlite {
                path: self.data_dir.join("palisade.db"),
            },
        }
    }

    /// The parsed `http.trusted_proxies` (validated at load; anything unparsable is dropped).
    pub fn trusted_proxies(&self) -> Vec<crate::http::client_ip::Cidr> {
        self.http
            .trusted_proxies
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }

    /// The effective configuration as an operator may see it: secrets say only whether set.
    pub fn describe(&self) -> serde_json::Value {
        let secret = |s: &Option<SecretString>| match s {
            Some(_) => "[set, not shown]",
            None => "[not set]",
        };
        serde_json::json!({
            "listen": self.listen.to_string(),
            "data_dir": self.data_dir.display().to_string(),
            "database": {
                "backend": if self.database.url.is_some() { "postgres" } else { "sqlite" },
                "url": secret(&self.database.url),
                "migrate_url": secret(&self.database.migrate_url),
                "max_connections": self.database.max_connections,
                "acquire_timeout_ms": self.database.acquire_timeout_ms,
                "health_timeout_ms": self.database.health_timeout_ms,
                "health_cache_ms": self.database.health_cache_ms,
            },
            "http": {
                "body_limit_bytes": self.http.body_limit_bytes,
                "request_timeout_ms": self.http.request_timeout_ms,
                "header_read_timeout_ms": self.http.header_read_timeout_ms,
                "max_connections": self.http.max_connections,
                "shutdown_grace_ms": self.http.shutdown_grace_ms,
                "trusted_proxies": self.http.trusted_proxies,
                "cors_origins": self.http.cors_origins,
            },
            "tls": {
                "enabled": self.tls.enabled(),
                "cert": self.tls.cert.as_ref().map(|p| p.display().to_string()),
                "key": self.tls.key.as_ref().map(|p| p.display().to_string()),
                "redirect_listen": self.tls.redirect_listen.map(|a| a.to_string()),
                "public_host": self.tls.public_host,
            },
            "log": { "filter": self.log.filter },
            "metrics": { "bearer_token": secret(&self.metrics.bearer_token) },
            "posture": { "bearer_token": secret(&self.posture.bearer_token) },
            "passwords": {
                "argon2_memory_kib": self.passwords.argon2_memory_kib,
                "argon2_iterations": self.passwords.argon2_iterations,
                "max_concurrent_hashes": self.passwords.max_concurrent_hashes,
                "max_queued_hashes": self.passwords.max_queued_hashes,
            },
            "auth": {
                "issuer": self.auth.issuer,
                "audience": self.auth.audience,
                "access_token_ttl_secs": self.auth.access_token_ttl_secs,
                "session_idle_secs": self.auth.session_idle_secs,
                "session_absolute_secs": self.auth.session_absolute_secs,
                "signing_key_rotation_days": self.auth.signing_key_rotation_days,
                "cookie_secure": self.auth.cookie_secure,
                "max_failures_per_email_ip": self.auth.max_failures_per_email_ip,
                "max_failures_per_ip": self.auth.max_failures_per_ip,
                "failure_window_secs": self.auth.failure_window_secs,
                "slow_after_account_failures": self.auth.slow_after_account_failures,
                "account_failure_spacing_secs": self.auth.account_failure_spacing_secs,
                "reset_token_ttl_secs": self.auth.reset_token_ttl_secs,
                "verification_token_ttl_secs": self.auth.verification_token_ttl_secs,
                "master_key_file": self.auth.master_key_file.as_ref().map(|p| p.display().to_string()),
            },
            "admin": { "database_url": secret(&self.admin.database_url) },
            "rate_limits": {
                "enabled": self.rate_limits.enabled,
                "default_per_minute": self.rate_limits.default_per_minute,
                "read_per_minute": self.rate_limits.read_per_minute,
                "sign_in_per_minute": self.rate_limits.sign_in_per_minute,
                "integration_per_minute": self.rate_limits.integration_per_minute,
                "named": self.rate_limits.named,
            },
            "vault": {
                "kek_file": self.vault.kek_path(&self.data_dir).display().to_string(),
                "kek": secret(&self.vault.kek),
                "kek_rotation_days": self.vault.kek_rotation_days,
            },
            "webhooks": {
                "allowed_networks": self.webhooks.allowed_networks,
                "ca_file": self.webhooks.ca_file.as_ref().map(|p| p.display().to_string()),
                "disable_after_days": self.webhooks.disable_after_days,
                "retention_days": self.webhooks.retention_days,
                "concurrency": self.webhooks.concurrency,
                "inbound": self.webhooks.inbound.iter().map(|(name, source)| {
                    (name.clone(), serde_json::json!({
                        "scheme": source.scheme,
                        "secret": "[set, not shown]",
                        "tenant": source.tenant,
                    }))
                }).collect::<serde_json::Map<_, _>>(),
            },
            "backup": {
                "recipients": self.backup.recipients,
                "dir": self.backup.dir_in(&self.data_dir).display().to_string(),
                "interval_hours": self.backup.interval_hours,
                "retention_days": self.backup.retention_days,
                "stale_after_hours": self.backup.stale_after_hours,
                "database_url": secret(&self.backup.database_url),
                "postgres_bin_dir": self.backup.postgres_bin_dir.as_ref().map(|p| p.display().to_string()),
                "s3_endpoint": self.backup.s3_endpoint,
                "s3_bucket": self.backup.s3_bucket,
                "s3_region": self.backup.s3_region,
                "s3_prefix": self.backup.s3_prefix,
                "s3_access_key_id": self.backup.s3_access_key_id,
                "s3_secret_access_key": secret(&self.backup.s3_secret_access_key),
                "s3_path_style": self.backup.s3_path_style,
            },
            "audit": {
                "checkpoint_key_file": self.audit.key_path(&self.data_dir).display().to_string(),
                "checkpoint_every": self.audit.checkpoint_every,
                "checkpoint_interval_secs": self.audit.checkpoint_interval_secs,
                "retention_floor_days": self.audit.retention_floor_days,
            },
            "mail": {
                "smtp_url": secret(&self.mail.smtp_url),
                "from": self.mail.from,
                "link_base_url": self.mail.link_base_url,
            },
        })
    }

    /// Settings that are valid but weaken a claim; `serve` logs each one loudly.
    pub fn weakenings(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.rate_limits.enabled {
            out.push("WEB-5: rate limits are off (rate_limits.enabled = false)");
        }
        if self.backup.recipients.is_empty() {
            out.push("OPS-3: backups are off: set backup.recipients to the operator's age public key(s) (`palisade backup keygen` makes a pair)");
        }
        if !self.webhooks.allowed_networks.is_empty() {
            out.push("HOOK-4: webhook deliveries may reach the private networks in webhooks.allowed_networks");
        }
        if self.tls.enabled() && self.tls.redirect_listen.is_none() {
            out.push(
                "WEB-1: TLS is on but no plain-HTTP redirect listener is set (tls.redirect_listen)",
            );
        }
        if let Some(url) = &self.database.url {
            if let Ok(options) = url
                .expose_secret()
                .parse::<sqlx::postgres::PgConnectOptions>()
            {
                use sqlx::postgres::PgSslMode;
                let local = matches!(options.get_host(), "localhost" | "127.0.0.1" | "::1")
                    || options.get_host().starts_with('/');
                let verified = matches!(
                    options.get_ssl_mode(),
                    PgSslMode::VerifyCa | PgSslMode::VerifyFull
                );
                if !local && !verified {
                    out.push("database.url: PostgreSQL over the network without sslmode=verify-full; traffic may be plaintext or unauthenticated");
                }
            }
        }
        if let Some(url) = &self.mail.smtp_url {
            let url = url.expose_secret();
            let plaintext = url.starts_with("smtp://") && !url.contains("tls=required");
            let local = ["smtp://127.0.0.1", "smtp://localhost", "smtp://[::1]"]
                .iter()
                .any(|prefix| url.starts_with(prefix));
            if plaintext && !local {
                out.push("ID-13: mail.smtp_url is plaintext SMTP to another host; verification and reset links travel unencrypted (use smtps:// or ?tls=required)");
            }
        }
        if self.admin.database_url.is_some() {
            out.push("TEN-6: admin.database_url (the platform operator's BYPASSRLS role) is in the server's configuration; keep it only where `palisade admin` runs");
        }
        if !self.auth.cookie_secure {
            out.push("ID-3: auth.cookie_secure is off; the refresh cookie may travel over plain HTTP (local development only)");
        }
        if self.auth.access_token_ttl_secs > 15 * 60 {
            out.push(
                "ID-3: access tokens live longer than 15 minutes (auth.access_token_ttl_secs)",
            );
        }
        if self.auth.session_idle_secs > 8 * 3600
            || self.auth.session_absolute_secs > 30 * 24 * 3600
        {
            out.push("ID-5: sessions outlive the 8 h idle / 30 day absolute defaults");
        }
        if self.auth.max_failures_per_email_ip > 5 || self.auth.failure_window_secs < 15 * 60 {
            out.push(
                "ID-9: more than 5 failed sign-ins per 15 minutes are allowed per (email, IP)",
            );
        }
        if self.auth.reset_token_ttl_secs > 30 * 60
            || self.auth.verification_token_ttl_secs > 24 * 3600
        {
            out.push("ID-11: reset or verification links outlive 30 minutes / 24 hours");
        }
        if !self.tls.enabled() && !self.listen.ip().is_loopback() {
            out.push("WEB-1: serving plain HTTP on a non-loopback address; terminate TLS in front or set tls.cert/tls.key");
        }
        out
    }
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// Layers `PALISADE_*` variables over `figment`, from an explicit list so tests need not
/// touch the process environment. Values are typed the way figment types any env value.
fn merge_env(mut figment: Figment, env: impl IntoIterator<Item = (String, String)>) -> Figment {
    let (typed, lists) = typed_setting_paths();
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        if ENV_IGNORED_PREFIXES.iter().any(|p| rest.starts_with(p)) {
            continue;
        }
        let path = match rest.as_str() {
            "database_url" => "database.url".to_owned(),
            "database_migrate_url" => "database.migrate_url".to_owned(),
            "admin_database_url" => "admin.database_url".to_owned(),
            other => other.replace("__", "."),
        };
        // Only numeric and boolean settings are typed from the text; every other setting
        // (addresses, paths, URLs, tokens) stays text even when it looks like a number.
        // A list (`http.cors_origins`, `backup.recipients`) is given comma-separated.
        let value: figment::value::Value = if typed.contains(&path) {
            raw.parse().unwrap_or_else(|never| match never {})
        } else if lists.contains(&path) {
            let items: Vec<String> = raw
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect();
            items.into()
        } else {
            raw.into()
        };
        figment =
            figment.merge(Serialized::default(&path, value).profile(figment::Profile::Default));
    }
    figment
}

type Paths = std::collections::HashSet<String>;

/// Dotted paths of the settings whose values are numbers or booleans, and of those that
/// are lists, read off the defaults' description so neither can drift from the struct.
fn typed_setting_paths() -> (Paths, Paths) {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut (Paths, Paths)) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, child, out);
                }
            }
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                out.0.insert(prefix.to_owned());
            }
            serde_json::Value::Array(_) => {
                out.1.insert(prefix.to_owned());
            }
            _ => {}
        }
    }
    let mut out = Default::default();
    walk("", &Settings::default().describe(), &mut out);
    out
}

fn describe_figment_error(error: figment::Error) -> String {
    // figment names the key and the source; values are not part of its messages for
    // type errors we would care about, but we strip them regardless by naming only the kind.
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::from("(top level)")
            } else {
                e.path.join(".")
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            let kind = match &e.kind {
                figment::error::Kind::UnknownField(field, _) => {
                    format!("unknown setting `{field}`")
                }
                figment::error::Kind::MissingField(field) => format!("missing setting `{field}`"),
                // figment's "actual" quotes the value, which may be a secret: name the type only.
                figment::error::Kind::InvalidType(_, expected) => {
                    format!("expected {expected} (the value is not shown)")
                }
                figment::error::Kind::InvalidValue(_, expected) => {
                    format!("invalid value, expected {expected}")
                }
                figment::error::Kind::UnknownVariant(_, expected) => {
                    format!("unknown variant, expected one of {expected:?}")
                }
                // A TOML syntax error quotes the offending source line, which may hold a
                // secret: keep its first line (the position) and last (the reason) only.
                figment::error::Kind::Message(message) => {
                    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
                    let first = lines.next().unwrap_or("");
                    match lines.next_back() {
                        Some(last) if !last.contains('|') => format!("{first}: {last}"),
                        _ => first.to_owned(),
                    }
                }
                other => other.to_string(),
            };
            format!("{key}: {kind} (from {source})")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palisade.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        Settings::load_from(
            file.map(|_| path.as_path()),
            env(vars),
            &Overrides::default(),
        )
    }

    #[test]
    fn with_nothing_configured_the_server_is_local_and_embedded() {
        let settings = load(None, &[]).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.data_dir, PathBuf::from("palisade-data"));
        assert!(matches!(settings.backend(), Backend::Sqlite { .. }));
        // The one choice no default can make: whose key the backups are encrypted to.
        let weakened = settings.weakenings();
        assert_eq!(weakened.len(), 1, "{weakened:?}");
        assert!(weakened[0].starts_with("OPS-3: backups are off"));
    }

    #[test]
    fn a_list_setting_is_read_comma_separated_from_the_environment() {
        let one = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let settings = load(
            None,
            &[
                ("PALISADE_BACKUP__RECIPIENTS", &format!("{one}, {one}")),
                ("PALISADE_HTTP__CORS_ORIGINS", "https://app.example.com"),
            ],
        )
        .unwrap();
        assert_eq!(settings.backup.recipients, vec![one, one]);
        assert_eq!(settings.http.cors_origins, vec!["https://app.example.com"]);
        assert!(settings.weakenings().is_empty());
        let refused = load(None, &[("PALISADE_BACKUP__RECIPIENTS", "age1nope")]).unwrap_err();
        assert!(refused
            .to_string()
            .contains("backup.recipients[0] is not an age public key"));
    }

    #[test]
    fn the_environment_overrides_the_file_and_flags_override_both() {
        let file = "listen = \"127.0.0.1:7000\"\ndata_dir = \"/from/file\"\n[http]\nbody_limit_bytes = 4096\n";
        let settings = load(
            Some(file),
            &[
                ("PALISADE_LISTEN", "127.0.0.1:7001"),
                ("PALISADE_HTTP__REQUEST_TIMEOUT_MS", "1234"),
                ("PALISADE_DATABASE_URL", "postgres://app@db/palisade"),
            ],
        )
        .unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(settings.data_dir, PathBuf::from("/from/file"));
        assert_eq!(settings.http.body_limit_bytes, 4096);
        assert_eq!(settings.http.request_timeout_ms, 1234);
        assert!(matches!(settings.backend(), Backend::Postgres { .. }));

        let flags = Overrides {
            listen: Some("127.0.0.1:7002".parse().unwrap()),
            data_dir: Some(PathBuf::from("/from/flag")),
        };
        let settings =
            Settings::load_from(None, env(&[("PALISADE_LISTEN", "127.0.0.1:7001")]), &flags)
                .unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:7002");
        assert_eq!(settings.data_dir, PathBuf::from("/from/flag"));
    }

    #[test]
    fn unknown_settings_are_refused_wherever_they_come_from() {
        let error = load(Some("[http]\nbody_limt = 1\n"), &[]).unwrap_err();
        assert!(error.to_string().contains("body_limt"), "{error}");
        let error = load(None, &[("PALISADE_LISTN", "x")]).unwrap_err();
        assert!(error.to_string().contains("listn"), "{error}");
        // The test harness's own variables share the prefix and are not settings.
        assert!(load(None, &[("PALISADE_TEST_BACKEND", "postgres")]).is_ok());
    }

    #[test]
    fn invalid_values_are_all_reported_and_weak_hashing_is_refused() {
        let error = load(
            None,
            &[
                ("PALISADE_PASSWORDS__ARGON2_MEMORY_KIB", "4096"),
                ("PALISADE_HTTP__BODY_LIMIT_BYTES", "10"),
                ("PALISADE_TLS__CERT", "/cert.pem"),
            ],
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("argon2_memory_kib"), "{text}");
        assert!(text.contains("body_limit_bytes"), "{text}");
        assert!(text.contains("tls.cert and tls.key"), "{text}");
    }

    // claim: APP-7
    #[test]
    fn named_limits_are_read_from_the_file_and_each_bad_one_is_named() {
        let settings = load(
            Some("[rate_limits.named]\n\"workorders.export\" = { limit = 10, window_seconds = 60 }\n"),
            &[],
        )
        .unwrap();
        let export = settings.rate_limits.named["workorders.export"];
        assert_eq!((export.limit, export.window_seconds), (10, 60));
        let error = load(
            Some("[rate_limits.named]\n\"Bad Name\" = { limit = 1, window_seconds = 1 }\nzero = { limit = 0, window_seconds = 60 }\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("\"Bad Name\" is not a name"), "{error}");
        assert!(error.contains("rate_limits.named.zero"), "{error}");
        let unknown = load(
            Some("[rate_limits.named]\nx = { limit = 1, window_seconds = 1, burst = 2 }\n"),
            &[],
        );
        assert!(unknown.is_err(), "an unknown field of a limit is refused");
    }

    #[test]
    fn secret_settings_never_appear_in_debug_output_or_the_description() {
        let settings = load(
            None,
            &[
                (
                    "PALISADE_DATABASE_URL",
                    "postgres://app:hunter2-pw@db/palisade",
                ),
                (
                    "PALISADE_METRICS__BEARER_TOKEN",
                    "metrics-secret-0123456789",
                ),
            ],
        )
        .unwrap();
        let shown = format!("{settings:?}{}", settings.describe());
        assert!(!shown.contains("hunter2-pw"), "{shown}");
        assert!(!shown.contains("metrics-secret"), "{shown}");
        let error = load(
            None,
            &[("PALISADE_DATABASE_URL", "mysql://u:hunter2-pw@db")],
        )
        .unwrap_err();
        assert!(!error.to_string().contains("hunter2-pw"), "{error}");
    }

    #[test]
    fn text_settings_that_look_like_numbers_or_booleans_stay_text() {
        let settings = load(
            None,
            &[
                ("PALISADE_DATA_DIR", "2024"),
                ("PALISADE_METRICS__BEARER_TOKEN", "12345678901234567890"),
                ("PALISADE_LOG__FILTER", "true"),
                ("PALISADE_HTTP__BODY_LIMIT_BYTES", "2048"),
            ],
        );
        let settings = settings.map_err(|e| e.to_string());
        let settings = match settings {
            Ok(s) => s,
            Err(e) => {
                // "true" is not a valid filter; everything else must have loaded.
                assert!(e.contains("log.filter"), "{e}");
                load(
                    None,
                    &[
                        ("PALISADE_DATA_DIR", "2024"),
                        ("PALISADE_METRICS__BEARER_TOKEN", "12345678901234567890"),
                        ("PALISADE_HTTP__BODY_LIMIT_BYTES", "2048"),
                    ],
                )
                .unwrap()
            }
        };
        assert_eq!(settings.data_dir, PathBuf::from("2024"));
        assert_eq!(
            settings
                .metrics
                .bearer_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some("12345678901234567890".to_owned())
        );
        assert_eq!(settings.http.body_limit_bytes, 2048);
    }

    #[test]
    fn tls_without_a_redirect_listener_is_logged_as_a_weakening() {
        let settings = load(
            None,
            &[
                ("PALISADE_TLS__CERT", "/c.pem"),
                ("PALISADE_TLS__KEY", "/k.pem"),
            ],
        )
        .unwrap();
        let weakened = settings.weakenings();
        assert_eq!(
            weakened
                .iter()
                .filter(|w| w.starts_with("WEB-1: TLS is on but no plain-HTTP redirect"))
                .count(),
            1,
            "{weakened:?}"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A numeric setting from the environment is taken exactly when it is an
            /// integer in range; anything else is refused, naming the setting.
            #[test]
            fn a_numeric_setting_is_taken_exactly_or_refused_by_name(
                number in any::<i64>(),
                small in 0i64..70_000_000,
                junk in proptest::collection::vec(any::<char>(), 0..12),
                pick in 0u8..3,
            ) {
                let junk: String = junk.into_iter().collect();
                let text = match pick {
                    0 => number.to_string(),
                    1 => small.to_string(),
                    _ => junk,
                };
                let loaded = load(None, &[("PALISADE_RATE_LIMITS__DEFAULT_PER_MINUTE", &text)]);
                let expected = text
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=60_000_000).contains(n));
                match (loaded, expected) {
                    (Ok(settings), Some(n)) => {
                        prop_assert_eq!(settings.rate_limits.default_per_minute, n)
                    }
                    (Err(error), None) => {
                        prop_assert!(error.to_string().contains("default_per_minute"), "{}", error)
                    }
                    (Ok(settings), None) => prop_assert!(
                        false,
                        "{:?} taken as {}",
                        text,
                        settings.rate_limits.default_per_minute
                    ),
                    (Err(error), Some(_)) => prop_assert!(false, "{:?} refused: {}", text, error),
                }
            }

            /// Whatever the file holds, loading answers with settings or an error: it never
            /// panics, and the database password in it is never repeated.
            #[test]
            fn any_file_is_loaded_or_refused_without_echoing_the_database_password(
                text in proptest::collection::vec(any::<char>(), 0..200),
                keep_url in any::<bool>(),
            ) {
                let mut file: String = text.into_iter().collect();
                if keep_url {
                    file = format!("[database]\nurl = \"postgres://app:hunter2-secret@db/p\"\n{file}");
                }
                if let Err(error) = load(Some(&file), &[]) {
                    prop_assert!(!error.to_string().contains("hunter2-secret"), "{}", error);
                }
            }
        }
    }
}
