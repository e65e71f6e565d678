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
    /// Every sealed value identity keeps: signing keys' private halves, TOTP secrets.
    async fn sealed_material(&self) -> Result<Vec<(SealedPlace, Vec<u8>)>, StoreError>;
    /// Replaces the sealed value at `place` with `new` if it is still `old`.
    async fn reseal(&self, place: &SealedPlace, old: &[u8], new: &[u8])
        -> Result<bool, StoreError>;
}

/// Where identity keeps a sealed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealedPlace {
    SigningKey(String),
    Totp(UserId),
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

        async fn sealed_material(&self) -> Result<Vec<(SealedPlace, Vec<u8>)>, StoreError> {
            let keys: Vec<(String, Vec<u8>)> =
                sqlx::query_as("SELECT kid, sealed_private_key FROM signing_keys")
                    .fetch_all(&self.0)
                    .await?;
            let factors: Vec<(UserId, Vec<u8>)> =
                sqlx::query_as("SELECT user_id, sealed_secret FROM totp_factors")
                    .fetch_all(&self.0)
                    .await?;
            Ok(keys
                .into_iter()
                .map(|(kid, sealed)| (SealedPlace::SigningKey(kid), sealed))
                .chain(factors.into_iter().map(|(user, sealed)| (SealedPlace::Totp(user), sealed)))
                .collect())
        }

        async fn reseal(&self, place: &SealedPlace, old: &[u8], new: &[u8]) -> Result<bool, StoreError> {
            let mut tx = self.0.write().await?;
            let changed = match place {
                SealedPlace::SigningKey(kid) => sqlx::query(
                    "UPDATE signing_keys SET sealed_private_key = $1
                     WHERE kid = $2 AND sealed_private_key = $3",
                )
                .bind(new)
                .bind(kid)
                .bind(old)
                .execute(&mut *tx)
                .await?,
                SealedPlace::Totp(user) => sqlx::query(
                    "UPDATE totp_factors SET sealed_secret = $1
                     WHERE user_id = $2 AND sealed_secret = $3",
                )
                .bind(new)
                .bind(user)
                .bind(old)
                .execute(&mut *tx)
                .await?,
            };
            tx.commit().await?;
            Ok(changed.rows_affected() == 1)
        }
    }
}
