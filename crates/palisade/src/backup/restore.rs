//! `palisade restore` (claim OPS-4): a backup back into an empty data directory (SQLite)
//! or an empty PostgreSQL database, with the operator's age identity. Every file is checked
//! against the manifest first, and the manifest against the checkpoint key; the restored
//! database's tables must hold the rows the snapshot held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::archive::{self, ArchiveError, Manifest};
use super::{compare_counts, read_bundle, snapshot, BackupError, Progress};
use crate::audit::signing::PublicKey;

/// Where a backup goes back to.
pub struct Target {
    /// Receives the key files and, on SQLite, `palisade.db`; must be missing or empty.
    pub data_dir: PathBuf,
    /// PostgreSQL: an empty database, reached as a role that may restore owners, grants
    /// and rows under row-level security (a superuser, typically).
    pub database_url: Option<SecretString>,
    pub postgres_bin_dir: Option<PathBuf>,
}

pub struct Restored {
    pub manifest: Manifest,
    pub tables: usize,
    pub rows: i64,
    pub key_files: Vec<String>,
    /// Whether the manifest's signature was checked against a key the operator gave
    /// (otherwise against the checkpoint key inside the backup).
    pub signer_given: bool,
}

/// Restores the backup in `dir` into `target`, opening it with the age `identity`.
pub async fn restore(
    dir: &Path,
    identity: &SecretString,
    signer: Option<&PublicKey>,
    target: &Target,
    progress: Progress,
) -> Result<Restored, BackupError> {
    let manifest = Manifest::read(dir)?;
    manifest.verify_files(dir)?;
    let identity = parse_identity(identity)?;
    let keys = archive::open(dir, archive::KEYS, &identity)
        .and_then(|mut reader| read_bundle(&mut reader))?;
    let signer_given = signer.is_some();
    let inside = keys
        .iter()
        .find(|(name, _)| name == "audit-checkpoint.pem")
        .map(|(_, pem)| checkpoint_public_key(pem))
        .transpose()?;
    let key = signer.cloned().or(inside).ok_or_else(|| {
        bad_manifest("cannot be checked: the backup holds no checkpoint key; pass --public-key")
    })?;
    if !manifest.signed_by(&key) {
        return Err(bad_manifest(
            "is not signed by the checkpoint key (changed since it was written, or another deployment's)",
        ));
    }
    refuse_unless_empty(&target.data_dir)?;
    if let Some(url) = &target.database_url {
        if !snapshot::pg_is_empty(url).await? {
            return Err(BackupError::Check(
                "the target database is not empty: restore only into a new, empty database".into(),
            ));
        }
    }
    crate::app::prepare_data_dir(&target.data_dir)
        .map_err(|e| BackupError::Database(e.to_string()))?;
    for (name, bytes) in &keys {
        let path = target.data_dir.join(name);
        let mut file =
            crate::crypto::create_owner_only(&path).map_err(|e| ArchiveError::at(&path, e))?;
        std::io::Write::write_all(&mut file, bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| ArchiveError::at(&path, e))?;
    }
    let database = archive::open(dir, archive::DATABASE, &identity)?;
    let total = manifest.file(archive::DATABASE)?.bytes;
    let reporting = Box::new(Reporting {
        inner: database,
        read: 0,
        total,
        progress,
    });
    let restored: BTreeMap<String, i64> = match (&target.database_url, manifest.backend.as_str()) {
        (None, "sqlite") => {
            snapshot::restore_sqlite_file(reporting, &target.data_dir.join("palisade.db")).await?
        }
        (Some(url), "postgres") => {
            snapshot::restore_pg(&target.postgres_bin_dir, url, None, reporting, false).await?;
            snapshot::count_tables_at(url).await?
        }
        (_, backend) => {
            return Err(BackupError::Check(format!(
                "this backup is of {backend}: restore it with{} --database-url",
                if backend == "postgres" { "" } else { "out" }
            )))
        }
    };
    compare_counts(&manifest.tables, &restored).map_err(BackupError::Check)?;
    Ok(Restored {
        tables: restored.len(),
        rows: restored.values().sum(),
        key_files: keys.into_iter().map(|(name, _)| name).collect(),
        signer_given,
        manifest,
    })
}

fn parse_identity(text: &SecretString) -> Result<age::x25519::Identity, BackupError> {
    // An identity file may hold comments (`age-keygen` writes some) around the key line.
    text.expose_secret()
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("AGE-SECRET-KEY-"))
        .and_then(|line| line.parse::<age::x25519::Identity>().ok())
        .ok_or_else(|| {
            BackupError::Check(
                "the identity file holds no age secret key (AGE-SECRET-KEY-1…)".into(),
            )
        })
}

fn checkpoint_public_key(pem: &[u8]) -> Result<PublicKey, BackupError> {
    crate::audit::signing::CheckpointKey::from_pem(pem)
        .map(|key| key.public().clone())
        .map_err(|_| bad_manifest("cannot be checked: the backup's checkpoint key is unreadable"))
}

fn bad_manifest(problem: &str) -> BackupError {
    BackupError::Archive(ArchiveError::Bad {
        name: archive::MANIFEST.into(),
        problem: problem.into(),
    })
}

fn refuse_unless_empty(dir: &Path) -> Result<(), BackupError> {
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    match occupied {
        true => Err(BackupError::Check(format!(
            "{} is not empty: restore only into a new data directory",
            dir.display()
        ))),
        false => Ok(()),
    }
}

/// Reports the bytes read of the database file (encrypted size, near enough) as it goes.
struct Reporting<R> {
    inner: R,
    read: u64,
    total: u64,
    progress: Progress,
}

impl<R: std::io::Read> std::io::Read for Reporting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.read;
        self.read += n as u64;
        if n == 0 || self.read / (8 << 20) != before / (8 << 20) {
            (self.progress)(archive::DATABASE, self.read.min(self.total));
        }
        Ok(n)
    }
}
