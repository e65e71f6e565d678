//! Identity's storage: the trait the service uses and its SQLite and PostgreSQL versions.

use async_trait::async_trait;
use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;

use crate::audit::{self, AuditRecord};
use crate::ids::{TenantId, UserId};
use crate::store::{postgres, sqlite, Database, StoreError};

/// A sign-up, as the service has prepared it: every value validated, the password hashed.
pub struct NewAccount {
    pub user_id: UserId,
    pub email: String,
    pub password_hash: String,
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SignupOutcome {
    Created,
    /// Nothing was written: the email belongs to an existing user.
    EmailTaken,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Creates the tenant, the user and the Owner membership, and records `event`, in one
    /// transaction: all of it is written or none.
    async fn create_account(
        &self,
        account: &NewAccount,
        event: &AuditRecord,
    ) -> Result<SignupOutcome, StoreError>;
}

pub fn for_database(db: &Database) -> Box<dyn IdentityStore> {
    match db {
        Database::Sqlite(pool) => Box::new(SqliteIdentityStore(pool.clone())),
        Database::Postgres(pool) => Box::new(PgIdentityStore(pool.clone())),
    }
}

/// The unique index on `users.email` decides races between two sign-ups of one address.
fn taken_or(error: sqlx::Error) -> Result<SignupOutcome, StoreError> {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => Ok(SignupOutcome::EmailTaken),
        _ => Err(error.into()),
    }
}

pub struct SqliteIdentityStore(SqlitePool);

#[async_trait]
impl IdentityStore for SqliteIdentityStore {
    async fn create_account(
        &self,
        account: &NewAccount,
        event: &AuditRecord,
    ) -> Result<SignupOutcome, StoreError> {
        let mut tx = sqlite::begin_write(&self.0).await?;
        let tenant = account.tenant_id.as_uuid().hyphenated();
        let user = account.user_id.as_uuid().hyphenated();
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(tenant)
            .bind(&account.tenant_name)
            .bind(account.created_at)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, tokens_valid_after, created_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(user)
        .bind(&account.email)
        .bind(&account.password_hash)
        .bind(account.created_at)
        .bind(account.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(error) = inserted {
            return taken_or(error);
        }
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?, ?, 'owner', ?)",
        )
        .bind(tenant)
        .bind(user)
        .bind(account.created_at)
        .execute(&mut *tx)
        .await?;
        audit::append_sqlite(&mut tx, event).await?;
        tx.commit().await?;
        Ok(SignupOutcome::Created)
    }
}

pub struct PgIdentityStore(PgPool);

#[async_trait]
impl IdentityStore for PgIdentityStore {
    async fn create_account(
        &self,
        account: &NewAccount,
        event: &AuditRecord,
    ) -> Result<SignupOutcome, StoreError> {
        let mut tx = postgres::begin_for_tenant(&self.0, account.tenant_id).await?;
        let tenant = account.tenant_id.as_uuid();
        let user = account.user_id.as_uuid();
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant)
            .bind(&account.tenant_name)
            .bind(account.created_at)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, tokens_valid_after, created_at)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(user)
        .bind(&account.email)
        .bind(&account.password_hash)
        .bind(account.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(error) = inserted {
            return taken_or(error);
        }
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(tenant)
        .bind(user)
        .bind(account.created_at)
        .execute(&mut *tx)
        .await?;
        audit::append_postgres(&mut tx, event).await?;
        tx.commit().await?;
        Ok(SignupOutcome::Created)
    }
}
