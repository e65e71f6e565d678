//! The embedded backend: one SQLite file in the data directory, WAL mode, full fsync.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Sqlite, SqlitePool, Transaction};

use super::{StartupError, StoreError};
use crate::config::Settings;

pub async fn connect(path: &Path, settings: &Settings) -> Result<SqlitePool, StartupError> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| StartupError::Connect(e.to_string()))?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // An acknowledged write must survive a crash or power loss: fsync at every commit.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Checkpoints run beside the writers (below), not inside a writer's commit, where
        // copying the log back into the file would stall every request behind it. The
        // automatic one stays as a backstop for a log the background one cannot reset.
        .pragma("wal_autocheckpoint", "16384")
        // Waiting for another writer's lock is waiting for the database, bounded alike.
        .busy_timeout(Duration::from_millis(settings.database.acquire_timeout_ms));
    let pool_of = |connections: u32| {
        SqlitePoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_millis(settings.database.acquire_timeout_ms))
            .after_release(|connection, _| Box::pin(async move { still_usable(connection).await }))
            .connect_with(options.clone())
    };
    let failed = |e: sqlx::Error| StartupError::Connect(format!("{} ({e})", path.display()));
    let pool = pool_of(settings.database.max_connections)
        .await
        .map_err(failed)?;
    let writer = pool_of(1).await.map_err(failed)?;
    WRITERS
        .lock()
        .expect("the writers' registry")
        .insert(path.to_owned(), writer);
    tokio::spawn(checkpoint_wal(pool.clone()));
    Ok(pool)
}

/// Each open database file's one connection for write transactions. SQLite takes one
/// writer at a time; writers of this process queue for this connection in order (the
/// pool's fair, async wait) rather than on the file lock, whose busy handler sleeps a
/// loser for up to 100 ms at a time and lets a later writer overtake it. Another process
/// (the operator's CLI) still waits on the lock, within the busy timeout.
static WRITERS: LazyLock<Mutex<HashMap<PathBuf, SqlitePool>>> = LazyLock::new(Default::default);

fn writer_of(pool: &SqlitePool) -> Option<SqlitePool> {
    let options = pool.connect_options();
    let writers = WRITERS.lock().expect("the writers' registry");
    writers.get(options.get_filename()).cloned()
}

/// Closes the file's write connection with its pool.
pub async fn close(pool: &SqlitePool) {
    let path = pool.connect_options().get_filename().to_owned();
    let writer = WRITERS.lock().expect("the writers' registry").remove(&path);
    if let Some(writer) = writer {
        writer.close().await;
    }
    pool.close().await;
}

/// Whether a released connection may go back to the pool. SQLite rolls a transaction back
/// by itself on some errors (a full disk, for one); the driver's own rollback then fails
/// and it keeps counting the transaction as open, so every later `BEGIN` on that
/// connection would fail. Such a connection is closed instead. A dropped transaction's
/// rollback may still be queued: the ping lets it run before the second look.
async fn still_usable(connection: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !connection.is_in_transaction() {
        return Ok(true);
    }
    connection.ping().await?;
    Ok(!connection.is_in_transaction())
}

/// Copies the write-ahead log back into the database file a few times a second, without
/// waiting for readers or blocking writers (`PASSIVE`), until the pool closes.
async fn checkpoint_wal(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(%error, "WAL checkpoint skipped");
        }
    }
}

/// A write transaction, on the file's write connection ([`WRITERS`]). `BEGIN IMMEDIATE`
/// takes the write lock up front, so a writer of another process makes it wait on the busy
/// timeout instead of failing when it upgrades from read to write.
pub async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, StoreError> {
    match writer_of(pool) {
        Some(writer) => Ok(writer.begin_with("BEGIN IMMEDIATE").await?),
        None => Ok(pool.begin_with("BEGIN IMMEDIATE").await?),
    }
}

/// Healthy means the file is there and can take a write now. The probe opens its own
/// connection (so a deleted file is not silently recreated and no pooled connection is left
/// with changed settings), takes the write lock and gives it back, waiting at most
/// `deadline` for another holder.
pub async fn probe(pool: &SqlitePool, deadline: Duration) -> Result<(), String> {
    let options = (*pool.connect_options())
        .clone()
        .create_if_missing(false)
        .busy_timeout(deadline);
    let mut conn = tokio::time::timeout(deadline, options.connect())
        .await
        .map_err(|_| "no connection within the health deadline".to_owned())?
        .map_err(|e| e.to_string())?;
    let outcome = match sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await {
        Ok(_) => sqlx::query("ROLLBACK")
            .execute(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot take the write lock: {e}")),
    };
    let _ = conn.close().await;
    outcome
}
