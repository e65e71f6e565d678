//! Two-factor authentication: TOTP factors, recovery codes, the tenant's policy.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;
use crate::audit::{Append, AuditRecord};
use crate::ids::{SessionId, UserId};
use crate::store::{for_both_backends, Begin, StoreError};

#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn totp_factor(&self, user: UserId) -> Result<Option<TotpRecord>, StoreError>;
    /// Starts (or restarts) an unconfirmed enrolment; a confirmed factor is left alone and
    /// false returned.
    async fn begin_totp(
        &self,
        user: UserId,
        sealed_secret: &[u8],
        now: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Confirms the enrolment and marks `session` (the one that proved the code) as
    /// signed in with a second factor.
    async fn confirm_totp(
        &self,
        user: UserId,
        session: SessionId,
        step: i64,
        recovery_hashes: &[[u8; 32]],
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Accepts a code's time step once: false when it (or a later one) was used already.
    async fn spend_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError>;
    async fn spend_recovery_code(
        &self,
        user: UserId,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn remove_totp(&self, user: UserId, event: &AuditRecord) -> Result<(), StoreError>;
    async fn set_require_mfa(
        &self,
        scope: TenantScope,
        required: bool,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
}

for_both_backends! {
    #[async_trait]
    impl MfaStore for SqlIdentityStore<Pool> {
        async fn totp_factor(&self, user: UserId) -> Result<Option<TotpRecord>, StoreError> {
            let row: Option<(Vec<u8>, Option<OffsetDateTime>, i64)> = sqlx::query_as(
                "SELECT sealed_secret, confirmed_at, last_used_step FROM totp_factors
                 WHERE user_id = $1",
            )
            .bind(user)
            .fetch_optional(&self.0)
            .await?;
            Ok(row.map(|(sealed_secret, confirmed_at, last_used_step)| TotpRecord {
                sealed_secret,
                confirmed: confirmed_at.is_some(),
                last_used_step,
            }))
        }

        async fn begin_totp(
            &self,
            user: UserId,
            sealed_secret: &[u8],
            now: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = self.begin_for(event).await?;
            sqlx::query("DELETE FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NULL")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO totp_factors (user_id, sealed_secret, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(user)
            .bind(sealed_secret)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() != 1 {
                return Ok(false);
            }
            tx.commit_with(event).await?;
            Ok(true)
        }

        async fn confirm_totp(
            &self,
            user: UserId,
            session: SessionId,
            step: i64,
            recovery_hashes: &[[u8; 32]],
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = self.begin_for(event).await?;
            let confirmed = sqlx::query(
                "UPDATE totp_factors SET confirmed_at = $1, last_used_step = $2
                 WHERE user_id = $3 AND confirmed_at IS NULL AND last_used_step < $2",
            )
            .bind(event.occurred_at)
            .bind(step)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            if confirmed.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE sessions SET mfa = TRUE WHERE id = $1 AND user_id = $2")
                .bind(session)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            for hash in recovery_hashes {
                sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                    .bind(user)
                    .bind(&hash[..])
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit_narrowing(event).await?;
            Ok(true)
        }

        async fn spend_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError> {
            let spent = sqlx::query(
                "UPDATE totp_factors SET last_used_step = $1
                 WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_used_step < $1",
            )
            .bind(step)
            .bind(user)
            .execute(&self.0)
            .await?;
            Ok(spent.rows_affected() == 1)
        }

        async fn spend_recovery_code(
            &self,
            user: UserId,
            hash: &[u8; 32],
            now: OffsetDateTime,
        ) -> Result<bool, StoreError> {
            let spent = sqlx::query(
                "UPDATE recovery_codes SET used_at = $1
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(now)
            .bind(user)
            .bind(&hash[..])
            .execute(&self.0)
            .await?;
            Ok(spent.rows_affected() == 1)
        }

        async fn remove_totp(&self, user: UserId, event: &AuditRecord) -> Result<(), StoreError> {
            let mut tx = self.begin_for(event).await?;
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            // No session of the user counts as MFA any more.
            sqlx::query("UPDATE sessions SET mfa = FALSE WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            tx.commit_narrowing(event).await?;
            Ok(())
        }

        async fn set_require_mfa(
            &self,
            scope: TenantScope,
            required: bool,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            sqlx::query("UPDATE tenants SET require_mfa = $1 WHERE id = $2")
                .bind(required)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
            tx.commit_narrowing(event).await?;
            Ok(())
        }
    }
}
