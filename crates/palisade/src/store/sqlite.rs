//! The embedded backend: one SQLite file in the data directory, WAL mode, full fsync.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{StartupError, StoreError};
use crate::config::Settings;

/// How long a statement waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn connect(path: &Path, settings: &Settings) -> Result<SqlitePool, StartupError> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| StartupError::Connect(e.to_string()))?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // An acknowledged write must survive a crash or power loss: fsync at every commit.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(Duration::from_millis(settings.database.acquire_timeout_ms))
        .connect_with(options)
        .await
        .map_err(|e| StartupError::Connect(format!("{} ({e})", path.display())))
}

/// A write transaction. `BEGIN IMMEDIATE` takes the write lock up front, so two writers
/// queue on the busy timeout instead of one failing when it upgrades from read to write.
pub async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, StoreError> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Healthy means the database can take a write now: the probe takes the write lock and
/// gives it back, waiting at most `deadline` for another holder.
pub async fn probe(pool: &SqlitePool, deadline: Duration) -> Result<(), String> {
    let mut conn = tokio::time::timeout(deadline, pool.acquire())
        .await
        .map_err(|_| "no connection within the health deadline".to_owned())?
        .map_err(|e| e.to_string())?;
    let wait_ms = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX);
    sqlx::query(&format!("PRAGMA busy_timeout = {wait_ms}"))
        .execute(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = match sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        Ok(_) => sqlx::query("ROLLBACK")
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot take the write lock: {e}")),
    };
    let restore = format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
    if sqlx::query(&restore).execute(&mut *conn).await.is_err() {
        // A connection we cannot reset must not go back to the pool.
        let _ = conn.detach();
    }
    outcome
}
