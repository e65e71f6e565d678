//! Email tokens: verification and reset links.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;
use crate::audit::{Append, AuditRecord};
use crate::ids::UserId;
use crate::store::{for_both_backends, Begin, StoreError};

#[async_trait]
pub trait EmailTokenStore: Send + Sync {
    async fn issue_email_token(
        &self,
        user: UserId,
        purpose: EmailPurpose,
        hash: &[u8; 32],
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// When the user's recent tokens of `purpose` were issued, newest first (at most 10).
    async fn recent_email_tokens(
        &self,
        user: UserId,
        purpose: EmailPurpose,
    ) -> Result<Vec<OffsetDateTime>, StoreError>;
    /// The user a live, unspent token of `purpose` belongs to (not spent by this call).
    async fn email_token_user(
        &self,
        hash: &[u8; 32],
        purpose: EmailPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, StoreError>;
    /// Spends a verification token and marks the email verified; false if already spent.
    async fn verify_email(&self, hash: &[u8; 32], event: &AuditRecord) -> Result<bool, StoreError>;
}

for_both_backends! {
    #[async_trait]
    impl EmailTokenStore for SqlIdentityStore<Pool> {
        async fn issue_email_token(
            &self,
            user: UserId,
            purpose: EmailPurpose,
            hash: &[u8; 32],
            created_at: OffsetDateTime,
            expires_at: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let mut tx = self.0.write().await?;
            sqlx::query(
                "INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&hash[..])
            .bind(user)
            .bind(purpose.as_str())
            .bind(created_at)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit_with(event).await
        }

        async fn recent_email_tokens(
            &self,
            user: UserId,
            purpose: EmailPurpose,
        ) -> Result<Vec<OffsetDateTime>, StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT created_at FROM email_tokens WHERE user_id = $1 AND purpose = $2
                 ORDER BY created_at DESC LIMIT 10",
            )
            .bind(user)
            .bind(purpose.as_str())
            .fetch_all(&self.0)
            .await?)
        }

        async fn email_token_user(
            &self,
            hash: &[u8; 32],
            purpose: EmailPurpose,
            now: OffsetDateTime,
        ) -> Result<Option<UserId>, StoreError> {
            let row: Option<(UserId, OffsetDateTime)> = sqlx::query_as(
                "SELECT user_id, expires_at FROM email_tokens
                 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL",
            )
            .bind(&hash[..])
            .bind(purpose.as_str())
            .fetch_optional(&self.0)
            .await?;
            Ok(row.filter(|(_, expires_at)| now < *expires_at).map(|(user, _)| user))
        }

        async fn verify_email(
            &self,
            hash: &[u8; 32],
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = self.begin_for(event).await?;
            let spent = sqlx::query(
                "UPDATE email_tokens SET used_at = $1
                 WHERE token_hash = $2 AND purpose = 'verify_email' AND used_at IS NULL",
            )
            .bind(event.occurred_at)
            .bind(&hash[..])
            .execute(&mut *tx)
            .await?;
            if spent.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE users SET email_verified_at = $1
                 WHERE id = (SELECT user_id FROM email_tokens WHERE token_hash = $2)
                   AND email_verified_at IS NULL",
            )
            .bind(event.occurred_at)
            .bind(&hash[..])
            .execute(&mut *tx)
            .await?;
            tx.commit_narrowing(event).await?;
            Ok(true)
        }
    }
}
