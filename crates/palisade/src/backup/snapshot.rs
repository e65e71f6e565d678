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
    /// The serving database's file, read through a connection of the backup's own (whose
    /// SQLite thread is the backup's, at its priority).
    Sqlite { path: PathBuf },
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
            Self::Sqlite { path } => {
                let snapshot = work.join("snapshot.db");
                let _plaintext = RemovedAtEnd(snapshot.clone());
                let mut source = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .busy_timeout(std::time::Duration::from_secs(30))
                    .connect()
                    .await
                    .map_err(|e| BackupError::Database(format!("{}: {e}", path.display())))?;
                let vacuumed = sqlx::query("VACUUM INTO ?")
                    .bind(snapshot.to_string_lossy().into_owned())
                    .execute(&mut source)
                    .await
                    .map_err(|e| BackupError::Database(format!("VACUUM INTO: {e}")));
                source.close().await.ok();
                vacuumed?;
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
                .await?;
                Ok(Dumped {
                    file,
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
                // The transaction sits idle while pg_dump reads its snapshot: no server
                // timeout may end it midway.
                sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?;
                sqlx::query("SET LOCAL statement_timeout = 0")
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
                    // Sealing that failed (a full disk) stops reading, and pg_dump then
                    // fails on its broken pipe: the sealing is the cause.
                    let sealed = sealed?;
                    if !finished.status.success() {
                        return Err(tool_failed("pg_dump", first_error(&finished.stderr)));
                    }
                    Ok(sealed)
                })
                .await?;
                // The dump is whole once pg_dump succeeded: the read-only transaction's end
                // changes nothing.
                if let Err(error) = tx.commit().await {
                    tracing::debug!(%error, "ending the backup's snapshot transaction");
                }
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
        let mut file =
            crate::crypto::create_owner_only(&target).map_err(|e| ArchiveError::at(&target, e))?;
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
            _ if !finished.status.success() => {
                Err(tool_failed("pg_restore", first_error(&finished.stderr)))
            }
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
    const TABLES: &str = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name";
    count_in::<sqlx::Sqlite>(connection, TABLES, None)
        .await
        .map_err(|e| BackupError::Database(format!("counting rows: {e}")))
}

async fn count_pg(
    connection: &mut sqlx::PgConnection,
) -> Result<(BTreeMap<String, i64>, String), BackupError> {
    const TABLES: &str =
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename";
    count_in::<sqlx::Postgres>(connection, TABLES, Some("public"))
        .await
        .map_err(pg_error)
}

/// Every table `tables` lists, with its rows, and the newest migration: one rule for both
/// backends.
async fn count_in<DB>(
    connection: &mut DB::Connection,
    tables: &'static str,
    schema: Option<&str>,
) -> Result<(BTreeMap<String, i64>, String), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
{
    let names: Vec<String> = sqlx::query_scalar::<DB, String>(tables)
        .fetch_all(&mut *connection)
        .await?;
    let mut counts = BTreeMap::new();
    for table in names {
        let statement =
            count_rows(schema, &table).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let rows: i64 = sqlx::query_scalar::<DB, i64>(&statement)
            .fetch_one(&mut *connection)
            .await?;
        counts.insert(table, rows);
    }
    const NEWEST: &str = "SELECT name FROM palisade_migrations ORDER BY version DESC";
    let version = sqlx::query_scalar::<DB, String>(NEWEST)
        .fetch_one(&mut *connection)
        .await?;
    Ok((counts, version))
}

/// `SELECT count(*)` of a table the catalog named (in `schema`, on PostgreSQL, whatever
/// the search path). Identifiers cannot be bound; a name is used only when it is a plain
/// lowercase identifier, and quoted.
fn count_rows(schema: Option<&str>, table: &str) -> Result<String, BackupError> {
    plain_identifier(table)?;
    let schema = match schema {
        Some(schema) => {
            plain_identifier(schema)?;
            format!("\"{schema}\".")
        }
        None => String::new(),
    };
    Ok(format!("SELECT count(*) FROM {schema}\"{table}\""))
}

/// A scratch database from `template0`: nothing added to `template1` can make the check
/// fail.
fn create_database(name: &str) -> Result<String, BackupError> {
    plain_identifier(name)?;
    Ok(format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
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

/// The first line of a tool's complaint: PostgreSQL's DETAIL and CONTEXT lines can quote
/// rows, and what this returns goes into the manifest and the log.
fn first_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|line| line.contains("error:") || line.contains("ERROR:"))
        .or_else(|| text.lines().next())
        .unwrap_or("no message");
    line.chars().take(300).collect()
}

/// Removes a plaintext file however the step that made it ends.
struct RemovedAtEnd(PathBuf);

impl Drop for RemovedAtEnd {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
    // Nothing inherited decides where or how the tool connects (PGHOSTADDR, PGSERVICE,
    // PGSSLMODE…): only what the URL says, as sqlx read it.
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let host = match options.get_socket() {
        Some(socket) => socket.to_string_lossy().into_owned(),
        None => options.get_host().to_owned(),
    };
    command
        .arg(format!("--dbname={database}"))
        .env("PGHOST", host)
        .env("PGPORT", options.get_port().to_string())
        .env("PGUSER", options.get_username())
        .env("PGAPPNAME", "palisade-backup")
        .env("PGSSLMODE", libpq_ssl_mode(options.get_ssl_mode()));
    let url_text = url.expose_secret();
    for (names, variable) in [
        (["sslrootcert", "ssl-root-cert"], "PGSSLROOTCERT"),
        (["sslcert", "ssl-cert"], "PGSSLCERT"),
        (["sslkey", "ssl-key"], "PGSSLKEY"),
    ] {
        if let Some(value) = names.iter().find_map(|n| query_parameter(url_text, n)) {
            command.env(variable, value);
        }
    }
    if let Some(password) = url_password(url_text) {
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

fn libpq_ssl_mode(mode: sqlx::postgres::PgSslMode) -> &'static str {
    use sqlx::postgres::PgSslMode;
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
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
            query_parameter(
                "postgres://a@b/c?x=1&ssl-root-cert=/ca.pem",
                "ssl-root-cert"
            ),
            Some("/ca.pem")
        );
    }

    #[test]
    fn only_plain_table_names_are_counted() {
        assert_eq!(
            count_rows(Some("public"), "audit_events").unwrap(),
            "SELECT count(*) FROM \"public\".\"audit_events\""
        );
        assert!(count_rows(None, "x\"; DROP TABLE users; --").is_err());
        assert!(count_rows(None, "").is_err());
    }
}
