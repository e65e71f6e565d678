//! Sign-in throttling: failed attempts per scope.

use async_trait::async_trait;

use super::*;
use crate::store::{for_both_backends, Begin, StoreError};

/// Counts failures per scope since `$4`.
const FAILURE_COUNTS: &str = "SELECT scope, count(*), min(failed_at_ms), max(failed_at_ms)
     FROM login_failures
     WHERE scope IN ($1, $2, $3) AND failed_at_ms > $4 GROUP BY scope";

/// `(scope, count, oldest, newest)` rows, placed in the order of `scopes`.
fn failure_counts(
    rows: Vec<(Vec<u8>, i64, i64, i64)>,
    scopes: [&[u8; 32]; SCOPES],
) -> [FailureCount; SCOPES] {
    let mut counts = [FailureCount::default(); SCOPES];
    for (scope, count, oldest, newest) in rows {
        for (slot, wanted) in counts.iter_mut().zip(scopes) {
            if scope[..] == wanted[..] {
                *slot = FailureCount {
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                    oldest_ms: Some(oldest),
                    newest_ms: Some(newest),
                };
            }
        }
    }
    counts
}

#[async_trait]
pub trait ThrottleStore: Send + Sync {
    async fn failures_since(
        &self,
        scopes: [&[u8; 32]; SCOPES],
        since_ms: i64,
    ) -> Result<[FailureCount; SCOPES], StoreError>;
    /// Records an attempt against every scope before its outcome is known, and counts each
    /// scope's rows since `since_ms`, this attempt's included. When a count is above its cap
    /// the attempt is withdrawn in the same transaction and `admitted` is false.
    async fn reserve_attempt(
        &self,
        scopes: [&[u8; 32]; SCOPES],
        caps: [u32; SCOPES],
        attempt: &[u8; 16],
        at_ms: i64,
        since_ms: i64,
    ) -> Result<(bool, [FailureCount; SCOPES]), StoreError>;
    /// Withdraws an attempt that turned out not to be a failure.
    async fn release_attempt(&self, attempt: &[u8; 16]) -> Result<(), StoreError>;
    async fn prune_failures(&self, before_ms: i64) -> Result<u64, StoreError>;
}

for_both_backends! {
    #[async_trait]
    impl ThrottleStore for SqlIdentityStore<Pool> {
        async fn failures_since(
            &self,
            scopes: [&[u8; 32]; SCOPES],
            since_ms: i64,
        ) -> Result<[FailureCount; SCOPES], StoreError> {
            let rows: Vec<(Vec<u8>, i64, i64, i64)> = sqlx::query_as(FAILURE_COUNTS)
            .bind(&scopes[0][..])
            .bind(&scopes[1][..])
            .bind(&scopes[2][..])
            .bind(since_ms)
            .fetch_all(&self.0)
            .await?;
            Ok(failure_counts(rows, scopes))
        }

        async fn reserve_attempt(
            &self,
            scopes: [&[u8; 32]; SCOPES],
            caps: [u32; SCOPES],
            attempt: &[u8; 16],
            at_ms: i64,
            since_ms: i64,
        ) -> Result<(bool, [FailureCount; SCOPES]), StoreError> {
            let mut tx = self.0.write().await?;
            // Concurrent attempts on a scope take turns, so each counts the ones before it.
            let mut keys = scopes.map(|scope| {
                i64::from_be_bytes(scope[..8].try_into().expect("8 bytes of 32"))
            });
            keys.sort_unstable();
            for key in keys {
                <Pool as Begin>::lock_until_commit(&mut tx, key).await?;
            }
            sqlx::query(
                "INSERT INTO login_failures (scope, attempt, failed_at_ms)
                 VALUES ($1, $4, $5), ($2, $4, $5), ($3, $4, $5)",
            )
            .bind(&scopes[0][..])
            .bind(&scopes[1][..])
            .bind(&scopes[2][..])
            .bind(&attempt[..])
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
            let rows: Vec<(Vec<u8>, i64, i64, i64)> = sqlx::query_as(FAILURE_COUNTS)
            .bind(&scopes[0][..])
            .bind(&scopes[1][..])
            .bind(&scopes[2][..])
            .bind(since_ms)
            .fetch_all(&mut *tx)
            .await?;
            let counts = failure_counts(rows, scopes);
            let admitted = counts.iter().zip(caps).all(|(count, cap)| count.count <= cap);
            if !admitted {
                sqlx::query("DELETE FROM login_failures WHERE attempt = $1")
                    .bind(&attempt[..])
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok((admitted, counts))
        }

        async fn release_attempt(&self, attempt: &[u8; 16]) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM login_failures WHERE attempt = $1")
                .bind(&attempt[..])
                .execute(&self.0)
                .await?;
            Ok(())
        }

        async fn prune_failures(&self, before_ms: i64) -> Result<u64, StoreError> {
            let pruned = sqlx::query("DELETE FROM login_failures WHERE failed_at_ms < $1")
                .bind(before_ms)
                .execute(&self.0)
                .await?;
            Ok(pruned.rows_affected())
        }
    }
}
