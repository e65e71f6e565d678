//! The database side of a backup, per backend: a consistent snapshot with every table's
//! rows counted in it, and a restore of one (into a scratch database for the automatic
//! check, or into the operator's empty target).
//!
//! SQLite: `VACUUM INTO` a file while serving (a read transaction: writers go on).
//! PostgreSQL: `pg_dump --format=custom` as the backup role, inside a snapshot exported by a
//! repeatable-read transaction that also counts the rows, so the counts are the dump's.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::archive::{ArchiveError, FileEntry};
use super::BackupError;

/// Seals the snapshot's bytes as they are read (into the backup's database file).
pub type Seal<'a> = Box<dyn FnOnce(&mut dyn Read) -> Result<FileEntry, ArchiveError> + Send + 'a>;

/// What a snapshot held.
pub struct Dumped {
    pub file: FileEntry,
    pub tables: BTreeMap<String, i64>,
    pub schema_version: String,
}

/// Where backups read the database from.
pub enum Source {
    /// The serving pool's file.
    Sqlite { pool: sqlx::SqlitePool },
    /// The backup role (BYPASSRLS: row-level security would hide rows from the dump; and
    /// CREATEDB, for the check's scratch database).
    Postgres {
        url: SecretString,
        bin_dir: Option<PathBuf>,
    },
}

impl Source {
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// Takes a consistent snapshot and hands its bytes to `seal`; `work` is a private
    /// directory for anything in plaintext on the way.
    pub async fn dump(&self, work: &Path, seal: Seal<'static>) -> Result<Dumped, BackupError> {
        match self {
            Self::Sqlite { pool } => {
                let snapshot = work.join("snapshot.db");
                let _ = std::fs::remove_file(&snapshot);
                sqlx::query("VACUUM INTO ?")
                    .bind(snapshot.to_string_lossy().into_owned())
                    .execute(pool)
                    .await
                    .map_err(|e| BackupError::Database(format!("VACUUM INTO: {e}")))?;
                let (tables, schema_version) = {
                    let mut connection = open_sqlite(&snapshot).await?;
                    let counted = count_sqlite(&mut connection).await;
                    connection.close().await.ok();
                    counted?
                };
                let sealing = snapshot.clone();
                let file = blocking(move || {
                    let mut input =
                        std::fs::File::open(&sealing).map_err(|e| ArchiveError::at(&sealing, e))?;
                    seal(&mut input)
                })
                .await;
                let _ = std::fs::remove_file(&snapshot);
                Ok(Dumped {
                    file: file?,
                    tables,
                    schema_version,
                })
            }
            Self::Postgres { url, bin_dir } => {
                let mut connection = connect_pg(url).await?;
                let mut tx = connection.begin().await.map_err(pg_error)?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?;
                let exported: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(pg_error)?;
                let (tables, schema_version) = count_pg(&mut tx).await?;
                let mut command = libpq_command(bin_dir, "pg_dump", url, None)?;
                command.args(["--format=custom", "--no-password"]);
                command.arg(format!("--snapshot={exported}"));
                let file = blocking(move || {
                    let mut child = command
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .map_err(|e| tool_failed("pg_dump", e.to_string()))?;
                    let mut output = child.stdout.take().expect("piped");
                    let sealed = seal(&mut output);
                    drop(output);
                    let finished = child
                        .wait_with_output()
                        .map_err(|e| tool_failed("pg_dump", e.to_string()))?;
                    if !finished.status.success() {
                        return Err(tool_failed(
                            "pg_dump",
                            String::from_utf8_lossy(&finished.stderr).trim().to_owned(),
                        ));
                    }
                    sealed
                })
                .await?;
                tx.commit().await.map_err(pg_error)?;
                connection.close().await.ok();
                Ok(Dumped {
                    file,
                    tables,
                    schema_version,
                })
            }
        }
    }

    /// Restores `plaintext` (a snapshot as `dump` made it) into a scratch database, checks
    /// it, counts its tables and removes it: the automatic test restore.
    pub async fn test_restore(
        &self,
        work: &Path,
        plaintext: Box<dyn Read + Send>,
    ) -> Result<BTreeMap<String, i64>, BackupError> {
        match self {
            Self::Sqlite { .. } => {
                let scratch = work.join("restore-check.db");
                let counted = restore_sqlite_file(plaintext, &scratch).await;
                let _ = std::fs::remove_file(&scratch);
                counted
            }
            Self::Postgres { url, bin_dir } => {
                let name = format!("palisade_restore_check_{}", hex::encode(rand_bytes()));
                let mut admin = connect_pg(url).await?;
                sqlx::query(&create_database(&name)?)
                    .execute(&mut admin)
                    .await
                    .map_err(pg_error)?;
                let restored = restore_pg(bin_dir, url, Some(&name), plaintext, true).await;
                let counted = match restored {
                    Ok(()) => match connect_pg_to(url, &name).await {
                        Ok(mut scratch) => {
                            let counted = count_pg(&mut scratch).await.map(|(tables, _)| tables);
                            scratch.close().await.ok();
                            counted
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                let dropped = sqlx::query(&drop_database(&name)?)
                    .execute(&mut admin)
                    .await
                    .map_err(pg_error);
                admin.close().await.ok();
                let counted = counted?;
                dropped?;
                Ok(counted)
            }
        }
    }
}

/// Writes `plaintext` as a SQLite file at `path` and checks it: integrity, then counts.
pub async fn restore_sqlite_file(
    mut plaintext: Box<dyn Read + Send>,
    path: &Path,
) -> Result<BTreeMap<String, i64>, BackupError> {
    let target = path.to_owned();
    blocking(move || {
        let mut file = std::fs::File::create(&target).map_err(|e| ArchiveError::at(&target, e))?;
        std::io::copy(&mut plaintext, &mut file).map_err(|e| ArchiveError::Bad {
            name: super::archive::DATABASE.into(),
            problem: format!("does not decrypt whole ({e})"),
        })?;
        file.sync_all().map_err(|e| ArchiveError::at(&target, e))
    })
    .await?;
    let mut connection = open_sqlite(path).await?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut connection)
        .await
        .map_err(|e| BackupError::Database(format!("integrity check: {e}")))?;
    let counted = if integrity == "ok" {
        count_sqlite(&mut connection)
            .await
            .map(|(tables, _)| tables)
    } else {
        Err(BackupError::Check(format!(
            "the restored database fails SQLite's integrity check: {integrity}"
        )))
    };
    connection.close().await.ok();
    counted
}

/// Restores a `pg_dump` archive with `pg_restore` into `database` (or the URL's own).
/// `scratch`: no owners and no grants (the check only counts); otherwise both are kept, as
/// the dump has them, for a server to run on.
pub async fn restore_pg(
    bin_dir: &Option<PathBuf>,
    url: &SecretString,
    database: Option<&str>,
    mut plaintext: Box<dyn Read + Send>,
    scratch: bool,
) -> Result<(), BackupError> {
    let mut command = libpq_command(bin_dir, "pg_restore", url, database)?;
    command.args(["--exit-on-error", "--single-transaction", "--no-password"]);
    if scratch {
        command.args(["--no-owner", "--no-privileges"]);
    }
    blocking(move || {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| tool_failed("pg_restore", e.to_string()))?;
        let mut input = child.stdin.take().expect("piped");
        let copied = std::io::copy(&mut plaintext, &mut input);
        drop(input);
        let finished = child
            .wait_with_output()
            .map_err(|e| tool_failed("pg_restore", e.to_string()))?;
        // A decryption error cuts the input short, and pg_restore then fails too: the
        // decryption is the cause. pg_restore failing first breaks the pipe: it is.
        match copied {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(ArchiveError::Bad {
                name: super::archive::DATABASE.into(),
                problem: format!("does not decrypt whole ({e})"),
            }),
            _ if !finished.status.success() => Err(tool_failed(
                "pg_restore",
                String::from_utf8_lossy(&finished.stderr).trim().to_owned(),
            )),
            _ => Ok(()),
        }
    })
    .await
}

/// Whether the database at `url` has no table yet (a restore's target must be empty).
pub async fn pg_is_empty(url: &SecretString) -> Result<bool, BackupError> {
    let mut connection = connect_pg(url).await?;
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&mut connection)
            .await
            .map_err(pg_error)?;
    connection.close().await.ok();
    Ok(tables == 0)
}

/// Every table's rows in the database at `url` (as its role sees them).
pub async fn count_tables_at(url: &SecretString) -> Result<BTreeMap<String, i64>, BackupError> {
    let mut connection = connect_pg(url).await?;
    let counted = count_pg(&mut connection).await.map(|(tables, _)| tables);
    connection.close().await.ok();
    counted
}

async fn open_sqlite(path: &Path) -> Result<SqliteConnection, BackupError> {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| BackupError::Database(format!("{}: {e}", path.display())))
}

async fn count_sqlite(
    connection: &mut SqliteConnection,
) -> Result<(BTreeMap<String, i64>, String), BackupError> {
    let failed = |e: sqlx::Error| BackupError::Database(format!("counting rows: {e}"));
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(failed)?;
    let mut counts = BTreeMap::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(&count_rows(&table)?)
            .fetch_one(&mut *connection)
            .await
            .map_err(failed)?;
        counts.insert(table, count);
    }
    let version: String =
        sqlx::query_scalar("SELECT name FROM palisade_migrations ORDER BY version DESC")
            .fetch_one(&mut *connection)
            .await
            .map_err(failed)?;
    Ok((counts, version))
}

async fn count_pg(
    connection: &mut sqlx::PgConnection,
) -> Result<(BTreeMap<String, i64>, String), BackupError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(pg_error)?;
    let mut counts = BTreeMap::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(&count_rows(&table)?)
            .fetch_one(&mut *connection)
            .await
            .map_err(pg_error)?;
        counts.insert(table, count);
    }
    let version: String =
        sqlx::query_scalar("SELECT name FROM palisade_migrations ORDER BY version DESC")
            .fetch_one(&mut *connection)
            .await
            .map_err(pg_error)?;
    Ok((counts, version))
}

/// `SELECT count(*)` of a table the catalog named. Identifiers cannot be bound; a name is
/// used only when it is a plain lowercase identifier, and quoted.
fn count_rows(table: &str) -> Result<String, BackupError> {
    plain_identifier(table)?;
    Ok(format!("SELECT count(*) FROM \"{table}\""))
}

fn create_database(name: &str) -> Result<String, BackupError> {
    plain_identifier(name)?;
    Ok(format!("CREATE DATABASE \"{name}\""))
}

fn drop_database(name: &str) -> Result<String, BackupError> {
    plain_identifier(name)?;
    Ok(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
}

fn plain_identifier(name: &str) -> Result<(), BackupError> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match plain {
        true => Ok(()),
        false => Err(BackupError::Database(
            "a table name in the catalog is not a plain identifier".into(),
        )),
    }
}

fn rand_bytes() -> [u8; 8] {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

async fn connect_pg(url: &SecretString) -> Result<sqlx::PgConnection, BackupError> {
    let options =
        crate::store::postgres::options(url).map_err(|e| BackupError::Database(e.to_string()))?;
    sqlx::PgConnection::connect_with(&options.application_name("palisade-backup"))
        .await
        .map_err(|e| BackupError::Database(crate::store::postgres::describe_connect_error(&e)))
}

async fn connect_pg_to(
    url: &SecretString,
    database: &str,
) -> Result<sqlx::PgConnection, BackupError> {
    let options = crate::store::postgres::options(url)
        .map_err(|e| BackupError::Database(e.to_string()))?
        .database(database);
    sqlx::PgConnection::connect_with(&options.application_name("palisade-backup"))
        .await
        .map_err(|e| BackupError::Database(crate::store::postgres::describe_connect_error(&e)))
}

fn pg_error(error: sqlx::Error) -> BackupError {
    BackupError::Database(crate::store::postgres::describe_connect_error(&error))
}

fn tool_failed(tool: &str, why: String) -> ArchiveError {
    ArchiveError::Bad {
        name: tool.to_owned(),
        problem: format!("failed: {why}"),
    }
}

/// A libpq tool connected by the URL's parts in its environment: the password never
/// appears on a command line, where other local users could read it.
fn libpq_command(
    bin_dir: &Option<PathBuf>,
    tool: &str,
    url: &SecretString,
    database: Option<&str>,
) -> Result<Command, BackupError> {
    let options =
        crate::store::postgres::options(url).map_err(|e| BackupError::Database(e.to_string()))?;
    let program = match bin_dir {
        Some(dir) => dir.join(tool),
        None => PathBuf::from(tool),
    };
    let database = database.or(options.get_database()).unwrap_or("postgres");
    let mut command = Command::new(program);
    command
        .arg(format!("--dbname={database}"))
        .env("PGHOST", options.get_host())
        .env("PGPORT", options.get_port().to_string())
        .env("PGUSER", options.get_username())
        .env("PGAPPNAME", "palisade-backup")
        .env_remove("PGPASSWORD");
    if let Some(mode) = ssl_mode(url.expose_secret()) {
        command.env("PGSSLMODE", mode);
    }
    if let Some(password) = url_password(url.expose_secret()) {
        command.env("PGPASSWORD", password.as_str());
    }
    Ok(command)
}

/// The password of a `postgres://user:password@host/db` URL (or its `password=` query
/// parameter), percent-decoded.
fn url_password(url: &str) -> Option<zeroize::Zeroizing<String>> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let in_userinfo = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password);
    let encoded = in_userinfo.or_else(|| query_parameter(url, "password"))?;
    let bytes = encoded.as_bytes();
    let mut decoded = zeroize::Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                let pair = std::str::from_utf8(hex).ok()?;
                decoded.push(u8::from_str_radix(pair, 16).ok()?);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded.to_vec())
        .ok()
        .map(zeroize::Zeroizing::new)
}

fn ssl_mode(url: &str) -> Option<String> {
    query_parameter(url, "sslmode").map(str::to_owned)
}

fn query_parameter<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Runs blocking file and process work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ArchiveError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BackupError::Database(format!("a backup task failed: {e}")))?
        .map_err(BackupError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_password_is_read_percent_decoded_and_only_from_its_userinfo() {
        let password = |url: &str| url_password(url).map(|p| p.as_str().to_owned());
        assert_eq!(
            password("postgres://backup:s%40cr%3At@db:5432/app?sslmode=verify-full").as_deref(),
            Some("s@cr:t")
        );
        assert_eq!(password("postgres://backup@db/app"), None);
        assert_eq!(
            password("postgres://db/app?password=x%21").as_deref(),
            Some("x!")
        );
        assert_eq!(
            ssl_mode("postgres://a@b/c?x=1&sslmode=require").as_deref(),
            Some("require")
        );
    }

    #[test]
    fn only_plain_table_names_are_counted() {
        assert!(count_rows("audit_events").is_ok());
        assert!(count_rows("x\"; DROP TABLE users; --").is_err());
        assert!(count_rows("").is_err());
    }
}
