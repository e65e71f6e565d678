//! Access-token signing keys.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;
use crate::store::{for_both_backends, Begin, StoreError};

#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    /// Adds a key and retires every other key at `key.created_at`, in one transaction.
    async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError>;
}

for_both_backends! {
    #[async_trait]
    impl SigningKeyStore for SqlIdentityStore<Pool> {
        async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
            let rows: Vec<(String, Vec<u8>, Vec<u8>, OffsetDateTime, Option<OffsetDateTime>)> =
                sqlx::query_as(
                    "SELECT kid, public_key, sealed_private_key, created_at, retired_at
                     FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&self.0)
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| StoredSigningKey {
                    kid: r.0,
                    public_key: r.1,
                    sealed_private_key: r.2,
                    created_at: r.3,
                    retired_at: r.4,
                })
                .collect())
        }

        async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
            let mut tx = self.0.write().await?;
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                .bind(key.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, public_key, sealed_private_key, created_at)
                 VALUES ($1, 'EdDSA', $2, $3, $4)",
            )
            .bind(&key.kid)
            .bind(&key.public_key)
            .bind(&key.sealed_private_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }
    }
}
