//! Storage: one pool per process, SQLite (embedded default) or PostgreSQL (scale-out).
//!
//! Each capability owns a store trait and its two implementations (`identity::store`, …);
//! this module owns what they share: connecting, migrations, transactions bound to a
//! tenant, the health probe, and the error type that separates "database unreachable"
//! (503, retry) from everything else (500, logged).

pub mod migrate;
pub mod postgres;
pub mod shared_read;
pub mod sqlite;

use std::time::{Duration, Instant};

use std::ops::DerefMut;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use crate::access::TenantScope;
use crate::config::{Backend, Settings};
use crate::ids::{ApiKeyId, TenantId, UserId};

/// Writes a store implementation once and stamps it for both backends. Inside, `Db` names
/// the backend's sqlx database and `Pool` its pool; statements use `$1`-style parameters,
/// which SQLite and PostgreSQL both read, and ids bind as themselves (`crate::ids`).
macro_rules! for_both_backends {
    ($($item:item)*) => {
        const _: () = {
            #[allow(unused_imports)]
            use ::sqlx::Sqlite as Db;
            #[allow(dead_code)]
            type Pool = ::sqlx::SqlitePool;
            #[allow(dead_code)]
            type DbRow = ::sqlx::sqlite::SqliteRow;
            $($item)*
        };
        const _: () = {
            #[allow(unused_imports)]
            use ::sqlx::Postgres as Db;
            #[allow(dead_code)]
            type Pool = ::sqlx::PgPool;
            #[allow(dead_code)]
            type DbRow = ::sqlx::postgres::PgRow;
            $($item)*
        };
    };
}
pub(crate) use for_both_backends;

/// The advisory-lock key of a tenant's membership changes (PostgreSQL): two concurrent
/// demotions cannot both see the other Owner, and a relation written for a member cannot
/// outlive the member's concurrent removal.
pub(crate) fn membership_lock(tenant: TenantId) -> i64 {
    let bytes = tenant.as_uuid().into_bytes();
    i64::from_be_bytes(bytes[8..].try_into().expect("8 of 16 bytes"))
}

/// How each backend opens the transactions a store needs. On PostgreSQL the binding is what
/// row-level security reads; on SQLite a write transaction takes the lock up front.
pub(crate) trait Begin {
    type Db: sqlx::Database;
    /// Writes global data (users, sessions): no tenant bound.
    async fn write(&self) -> Result<Transaction<'static, Self::Db>, StoreError>;
    /// Reads or writes one tenant's rows; on PostgreSQL RLS sees only the scope's tenant
    /// (claim TEN-2): the scope comes from a verified credential or the system entry.
    async fn tenant(
        &self,
        scope: TenantScope,
    ) -> Result<Transaction<'static, Self::Db>, StoreError>;
    /// A connection that reads one tenant's rows: on PostgreSQL a bound transaction, on
    /// SQLite a plain pooled connection (one statement needs no transaction, and the hot
    /// path of every authenticated request saves two). End it with [`Begin::end_read`].
    type Reader: DerefMut<Target = <Self::Db as sqlx::Database>::Connection> + Send;
    async fn tenant_reader(&self, scope: TenantScope) -> Result<Self::Reader, StoreError>;
    async fn end_read(reader: Self::Reader) -> Result<(), StoreError>;
    /// Serialises writers of `key` until the transaction ends: a PostgreSQL advisory lock;
    /// on SQLite the write transaction already excludes every other writer.
    async fn lock_until_commit(
        tx: &mut Transaction<'static, Self::Db>,
        key: i64,
    ) -> Result<(), StoreError>;
    /// Binds a write transaction to another tenant: one transaction that must change
    /// several tenants, as a person's erasure does, binds each in turn (SQLite has nothing
    /// to bind).
    async fn rebind(
        tx: &mut Transaction<'static, Self::Db>,
        scope: TenantScope,
    ) -> Result<(), StoreError>;
    /// Reads a user's own memberships across tenants.
    async fn user_read(&self, user: UserId) -> Result<Transaction<'static, Self::Db>, StoreError>;
    /// Reads the one credential a client presented (an API key, a tenant token), before
    /// its tenant is known.
    async fn presented_read(
        &self,
        presented: Presented,
    ) -> Result<Transaction<'static, Self::Db>, StoreError>;
}

/// A credential a client presented, by its public id: what a [`Begin::presented_read`]
/// may see.
#[derive(Clone, Copy, Debug)]
pub enum Presented {
    ApiKey(ApiKeyId),
    TenantToken(crate::ids::TenantTokenId),
}

impl Begin for SqlitePool {
    type Db = Sqlite;
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        sqlite::begin_write(self).await
    }
    async fn tenant(
        &self,
        _scope: TenantScope,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        sqlite::begin_write(self).await
    }
    async fn lock_until_commit(
        _tx: &mut Transaction<'static, Sqlite>,
        _key: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn rebind(
        _tx: &mut Transaction<'static, Sqlite>,
        _scope: TenantScope,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    type Reader = PoolConnection<Sqlite>;
    async fn tenant_reader(
        &self,
        _scope: TenantScope,
    ) -> Result<PoolConnection<Sqlite>, StoreError> {
        Ok(self.acquire().await?)
    }
    async fn end_read(_reader: PoolConnection<Sqlite>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn user_read(&self, _user: UserId) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.begin().await?)
    }
    async fn presented_read(
        &self,
        _presented: Presented,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.begin().await?)
    }
}

impl Begin for PgPool {
    type Db = Postgres;
    async fn write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.begin().await?)
    }
    async fn tenant(
        &self,
        scope: TenantScope,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        postgres::begin_bound(self, postgres::TENANT_SETTING, scope.tenant().as_uuid()).await
    }
    async fn lock_until_commit(
        tx: &mut Transaction<'static, Postgres>,
        key: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
    async fn rebind(
        tx: &mut Transaction<'static, Postgres>,
        scope: TenantScope,
    ) -> Result<(), StoreError> {
        postgres::bind(tx, postgres::TENANT_SETTING, scope.tenant().as_uuid()).await
    }
    type Reader = Transaction<'static, Postgres>;
    async fn tenant_reader(
        &self,
        scope: TenantScope,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        postgres::begin_bound(self, postgres::TENANT_SETTING, scope.tenant().as_uuid()).await
    }
    async fn end_read(reader: Transaction<'static, Postgres>) -> Result<(), StoreError> {
        Ok(reader.commit().await?)
    }
    async fn user_read(&self, user: UserId) -> Result<Transaction<'static, Postgres>, StoreError> {
        postgres::begin_bound(self, postgres::USER_SETTING, user.as_uuid()).await
    }
    async fn presented_read(
        &self,
        presented: Presented,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let (setting, id) = match presented {
            Presented::ApiKey(key) => (postgres::KEY_SETTING, key.as_uuid()),
            Presented::TenantToken(token) => (postgres::TENANT_TOKEN_SETTING, token.as_uuid()),
        };
        postgres::begin_bound(self, setting, id).await
    }
}

/// The process's connection pool.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Asked inside a store's transaction, of the object a change would act on: may the caller
/// act on what it grants (claim RBAC-6)? Checked under the transaction, so the object seen
/// is the one changed.
pub type MayActOn<'a> = &'a (dyn Fn(&crate::access::actions::Entitlement) -> bool + Send + Sync);

/// A role as stored; an unknown one is the database's fault, not the caller's.
pub fn stored_role(text: &str) -> Result<crate::access::Role, StoreError> {
    crate::access::Role::parse(text)
        .ok_or_else(|| StoreError::Other(format!("unknown role {text:?}").into()))
}

/// The outcome of a change guarded by [`MayActOn`]; nothing is written unless `Done`.
#[derive(Debug, PartialEq, Eq)]
pub enum Guarded<T> {
    Done(T),
    NotFound,
    Forbidden,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is saturated; the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database's disk is full: writes fail until space returns; reads still work.
    #[error("database storage full: {0}")]
    Full(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_full(&error) {
            Self::Full(Box::new(error))
        } else if is_unavailable(&error) {
            Self::Unavailable(Box::new(error))
        } else {
            Self::Other(Box::new(error))
        }
    }
}

/// SQLite's FULL (13, ENOSPC underneath) or PostgreSQL's disk_full (53100).
fn is_full(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    let code = db.code();
    let code = code.as_deref().unwrap_or("");
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        code.parse::<u32>()
            .is_ok_and(|extended| extended & 0xff == 13)
    } else {
        code == "53100"
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        // A peer speaking garbage (a connection cut mid-handshake, a proxy gone wrong) is
        // a database we cannot reach, not a bug of ours.
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Primary result codes: BUSY (5), LOCKED (6), READONLY (8), IOERR (10),
                // CANTOPEN (14).
                code.parse::<u32>()
                    .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6 | 8 | 10 | 14))
            } else {
                // PostgreSQL: connection exceptions (08…), shutdown (57P…), insufficient
                // resources (53…), retryable conflicts (40001, 40P01), cancelled or timed-out
                // statements (57014), and a read-only server after a fail-over (25006).
                code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || matches!(code, "40001" | "40P01" | "57014" | "25006")
            }
        }
        _ => false,
    }
}

/// What went wrong while connecting or preparing the schema at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot prepare the data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("{0}")]
    Schema(String),
    #[error("{0}")]
    Role(String),
}

/// How the health check saw the database.
#[derive(Debug, Clone)]
pub struct Probe {
    pub up: bool,
    pub latency: Duration,
    pub detail: Option<String>,
}

impl Database {
    /// Opens the pool the settings describe. Migrations are not applied here.
    pub async fn connect(settings: &Settings) -> Result<Self, StartupError> {
        match settings.backend() {
            Backend::Sqlite { path } => sqlite::connect(&path, settings).await.map(Self::Sqlite),
            Backend::Postgres { url } => postgres::connect(url, settings).await.map(Self::Postgres),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Checks the database can do its job within `deadline`.
    pub async fn probe(&self, deadline: Duration) -> Probe {
        let started = Instant::now();
        let outcome = match self {
            Self::Sqlite(pool) => sqlite::probe(pool, deadline).await,
            Self::Postgres(pool) => tokio::time::timeout(deadline, postgres::probe(pool))
                .await
                .unwrap_or_else(|_| Err("no answer within the health deadline".into())),
        };
        Probe {
            up: outcome.is_ok(),
            latency: started.elapsed(),
            detail: outcome.err(),
        }
    }

    /// Pool size and idle connections, for the metrics endpoint.
    pub fn pool_stats(&self) -> (u32, usize) {
        match self {
            Self::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Self::Postgres(pool) => (pool.size(), pool.num_idle()),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => sqlite::close(pool).await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}
