//! Accounts: sign-up, users, memberships, passwords.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;
use crate::audit::{Append, AuditRecord};
use crate::ids::{TenantId, UserId};
use crate::store::{for_both_backends, Begin, StoreError};

/// The unique index on `users.email` decides races between two sign-ups of one address.
fn taken_or(error: sqlx::Error) -> Result<SignupOutcome, StoreError> {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => Ok(SignupOutcome::EmailTaken),
        _ => Err(error.into()),
    }
}

const CHANGE_PASSWORD: &str =
    "UPDATE users SET password_hash = $1, tokens_valid_after = $2 WHERE id = $3";
/// A reset link proves the mailbox: the address counts as verified from then on.
const RESET_PASSWORD: &str = "UPDATE users SET password_hash = $1, tokens_valid_after = $2,
         email_verified_at = COALESCE(email_verified_at, $2)
     WHERE id = $3";

type UserRow = (
    UserId,
    String,
    String,
    Option<OffsetDateTime>,
    OffsetDateTime,
);

fn user_from(row: UserRow) -> UserRecord {
    UserRecord {
        id: row.0,
        email: row.1,
        password_hash: row.2,
        email_verified_at: row.3,
        tokens_valid_after: row.4,
    }
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates the tenant, the user and the Owner membership, and records `event`.
    async fn create_account(
        &self,
        account: &NewAccount,
        event: &AuditRecord,
    ) -> Result<SignupOutcome, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Adds users and their memberships of `tenant` in one transaction; emails that
    /// already have an account are skipped and returned. None: no such tenant.
    async fn import_users(
        &self,
        tenant: TenantId,
        users: &[ImportedUser],
        event: &AuditRecord,
    ) -> Result<Option<Vec<String>>, StoreError>;
    async fn user_by_id(&self, user: UserId) -> Result<Option<UserRecord>, StoreError>;
    /// The user's memberships in every tenant, oldest first.
    async fn memberships(&self, user: UserId) -> Result<Vec<MembershipRecord>, StoreError>;
    /// Replaces an imported (bcrypt) hash with argon2id after a successful sign-in.
    async fn upgrade_password_hash(
        &self,
        user: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), StoreError>;
    /// Sets a new password and ends every session and token of the user (claim ID-7);
    /// with `reset_token`, also spends that token in the same transaction, and writes
    /// nothing (false) when it was spent meanwhile.
    async fn replace_password(
        &self,
        user: UserId,
        new_hash: &str,
        reset_token: Option<&[u8; 32]>,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
}

for_both_backends! {
    #[async_trait]
    impl AccountStore for SqlIdentityStore<Pool> {
        async fn create_account(
            &self,
            account: &NewAccount,
            event: &AuditRecord,
        ) -> Result<SignupOutcome, StoreError> {
            // Sign-up makes the tenant: no credential names it yet.
            let mut tx = self
                .0
                .tenant(TenantScope::for_system(account.tenant_id))
                .await?;
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(account.tenant_id)
                .bind(&account.tenant_name)
                .bind(account.created_at)
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO users (id, email, password_hash, tokens_valid_after, created_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(account.user_id)
            .bind(&account.email)
            .bind(&account.password_hash)
            .bind(account.created_at)
            .execute(&mut *tx)
            .await;
            if let Err(error) = inserted {
                return taken_or(error);
            }
            sqlx::query(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at)
                 VALUES ($1, $2, 'owner', $3)",
            )
            .bind(account.tenant_id)
            .bind(account.user_id)
            .bind(account.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit_with(event).await?;
            Ok(SignupOutcome::Created)
        }

        async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
            let row: Option<UserRow> = sqlx::query_as(
                "SELECT id, email, password_hash, email_verified_at, tokens_valid_after
                 FROM users WHERE email = $1",
            )
            .bind(email)
            .fetch_optional(&self.0)
            .await?;
            Ok(row.map(user_from))
        }

        async fn import_users(
            &self,
            tenant: TenantId,
            users: &[ImportedUser],
            event: &AuditRecord,
        ) -> Result<Option<Vec<String>>, StoreError> {
            // The operator's import command: no request names the tenant.
            let mut tx = self.0.tenant(TenantScope::for_system(tenant)).await?;
            let exists: Option<TenantId> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            let now = event.occurred_at;
            let mut skipped = Vec::new();
            for user in users {
                let inserted = sqlx::query(
                    // The system they come from vouches for their addresses.
                    "INSERT INTO users (id, email, password_hash, tokens_valid_after, created_at,
                         email_verified_at)
                     VALUES ($1, $2, $3, $4, $4, $4) ON CONFLICT (email) DO NOTHING",
                )
                .bind(user.id)
                .bind(&user.email)
                .bind(&user.password_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    skipped.push(user.email.clone());
                    continue;
                }
                sqlx::query(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant)
                .bind(user.id)
                .bind(user.role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit_with(event).await?;
            Ok(Some(skipped))
        }

        async fn user_by_id(&self, user: UserId) -> Result<Option<UserRecord>, StoreError> {
            let row: Option<UserRow> = sqlx::query_as(
                "SELECT id, email, password_hash, email_verified_at, tokens_valid_after
                 FROM users WHERE id = $1",
            )
            .bind(user)
            .fetch_optional(&self.0)
            .await?;
            Ok(row.map(user_from))
        }

        async fn memberships(&self, user: UserId) -> Result<Vec<MembershipRecord>, StoreError> {
            let mut tx = self.0.user_read(user).await?;
            let rows: Vec<(TenantId, String, String, bool, Option<OffsetDateTime>)> = sqlx::query_as(
                "SELECT tenant_id, tenant_name, role, require_mfa, suspended_at
                 FROM user_memberships WHERE user_id = $1
                 ORDER BY created_at, tenant_id",
            )
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            rows.into_iter()
                .map(|(tenant_id, tenant_name, role_text, require_mfa, suspended_at)| {
                    Ok(MembershipRecord {
                        tenant_id,
                        tenant_name,
                        role: stored_role(&role_text)?,
                        require_mfa,
                        suspended: suspended_at.is_some(),
                    })
                })
                .collect()
        }

        async fn upgrade_password_hash(
            &self,
            user: UserId,
            old_hash: &str,
            new_hash: &str,
        ) -> Result<(), StoreError> {
            // Only if unchanged meanwhile: a concurrent password change wins.
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(user)
                .bind(old_hash)
                .execute(&self.0)
                .await?;
            Ok(())
        }

        async fn replace_password(
            &self,
            user: UserId,
            new_hash: &str,
            reset_token: Option<&[u8; 32]>,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = self.begin_for(event).await?;
            let now = event.occurred_at;
            if let Some(hash) = reset_token {
                let spent = sqlx::query(
                    "UPDATE email_tokens SET used_at = $1
                     WHERE token_hash = $2 AND user_id = $3 AND purpose = 'reset_password'
                       AND used_at IS NULL",
                )
                .bind(now)
                .bind(&hash[..])
                .bind(user)
                .execute(&mut *tx)
                .await?;
                if spent.rows_affected() != 1 {
                    return Ok(false);
                }
            }
            // Every other reset link of the user dies with the old password.
            sqlx::query(
                "UPDATE email_tokens SET used_at = $1
                 WHERE user_id = $2 AND purpose = 'reset_password' AND used_at IS NULL",
            )
            .bind(now)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            // A reset link proves the mailbox as a verification link does.
            let replace = if reset_token.is_some() {
                sqlx::query(RESET_PASSWORD)
            } else {
                sqlx::query(CHANGE_PASSWORD)
            };
            replace
                .bind(new_hash)
                .bind(now)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = 'password_changed'
                 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            tx.commit_narrowing(event).await?;
            Ok(true)
        }
    }
}
