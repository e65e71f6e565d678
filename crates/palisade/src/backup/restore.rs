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
    /// Receives, on SQLite, `palisade.db`; must be missing or empty.
    pub data_dir: PathBuf,
    /// Where each key file of the backup goes (by its name in the backup: the settings'
    /// `vault.kek_file`, `audit.checkpoint_key_file`, `auth.master_key_file`); none may
    /// exist yet.
    pub key_paths: Vec<(String, PathBuf)>,
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
        .find(|(name, _)| name == super::CHECKPOINT_KEY)
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
    let matching = matches!(
        (&target.database_url, manifest.backend.as_str()),
        (None, "sqlite") | (Some(_), "postgres")
    );
    if !matching {
        return Err(BackupError::Check(format!(
            "this backup is of {}: restore it with{} --database-url",
            manifest.backend,
            if manifest.backend == "postgres" {
                ""
            } else {
                "out"
            }
        )));
    }
    // Opening the database file checks the identity against it too, before anything is
    // written.
    let database = archive::open(dir, archive::DATABASE, &identity)?;
    let total = manifest.file(archive::DATABASE)?.bytes;
    refuse_unless_empty(&target.data_dir)?;
    let key_paths: Vec<(&Vec<u8>, &PathBuf)> = keys
        .iter()
        .map(|(name, bytes)| {
            target
                .key_paths
                .iter()
                .find(|(wanted, _)| wanted == name)
                .map(|(_, path)| (&**bytes, path))
                .ok_or_else(|| BackupError::Check(format!("no place is configured for {name}")))
        })
        .collect::<Result<_, _>>()?;
    if let Some((_, path)) = key_paths.iter().find(|(_, path)| path.exists()) {
        return Err(BackupError::Check(format!(
            "{} exists: restore only where no key file is yet",
            path.display()
        )));
    }
    if let Some(url) = &target.database_url {
        if !snapshot::pg_is_empty(url).await? {
            return Err(BackupError::Check(
                "the target database is not empty: restore only into a new, empty database".into(),
            ));
        }
    }
    let created_dir = !target.data_dir.exists();
    let mut written = Written {
        files: Vec::new(),
        dir: created_dir.then(|| target.data_dir.clone()),
        kept: false,
    };
    crate::app::prepare_data_dir(&target.data_dir)
        .map_err(|e| BackupError::Database(e.to_string()))?;
    for (bytes, path) in key_paths {
        written.files.push(path.clone());
        let mut file =
            crate::crypto::create_owner_only(path).map_err(|e| ArchiveError::at(path, e))?;
        std::io::Write::write_all(&mut file, bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| ArchiveError::at(path, e))?;
    }
    let reporting = Box::new(Reporting {
        inner: database,
        read: 0,
        total,
        progress,
    });
    let restored: BTreeMap<String, i64> = match &target.database_url {
        None => {
            let path = target.data_dir.join("palisade.db");
            written.files.push(path.clone());
            snapshot::restore_sqlite_file(reporting, &path).await?
        }
        Some(url) => {
            // One transaction: a failure leaves the database as empty as it was.
            snapshot::restore_pg(&target.postgres_bin_dir, url, None, reporting, false).await?;
            snapshot::count_tables_at(url).await?
        }
    };
    compare_counts(&manifest.tables, &restored).map_err(BackupError::Check)?;
    written.kept = true;
    Ok(Restored {
        tables: restored.len(),
        rows: restored.values().sum(),
        key_files: keys.into_iter().map(|(name, _)| name).collect(),
        signer_given,
        manifest,
    })
}

/// What a restore wrote, removed again unless it finished: a failed restore leaves the
/// target as it found it, so the next attempt is not refused as "not empty".
struct Written {
    files: Vec<PathBuf>,
    dir: Option<PathBuf>,
    kept: bool,
}

impl Drop for Written {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
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
