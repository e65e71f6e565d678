//! Backups (claims OPS-3, OPS-2, OPS-4): on a schedule, a consistent snapshot of the
//! database and the data directory's key files, encrypted with age to the operator's
//! recipients, kept for the retention window, and test-restored at once.
//!
//! The server cannot read old backups: they are encrypted to public keys only. To check
//! the one it just wrote, each backup is also encrypted to a key made for it alone, held in
//! memory until its test restore has read the files back from disk, then dropped.

pub mod archive;
pub mod offsite;
pub mod restore;
pub mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::audit::signing::CheckpointKey;
use crate::clock::Clock;
use crate::config::Settings;
use crate::store::Database;
use archive::{ArchiveError, FileEntry, Manifest, RestoreCheck};
use snapshot::Source;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backups are off: set backup.recipients to the operator's age public key(s)")]
    Off,
    #[error("a backup is already running")]
    Busy,
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("database: {0}")]
    Database(String),
    #[error("{0}")]
    Check(String),
}

/// The data directory's key files a backup carries, by their names in it.
pub const CHECKPOINT_KEY: &str = "audit-checkpoint.pem";
pub const KEK_FILE: &str = "vault-kek";
/// Only on deployments from before the vault.
pub const MASTER_KEY: &str = "master.key";

/// Where `settings` keep each key file a backup carries: the one list that backing up
/// reads from and restoring writes to.
pub fn key_file_paths(settings: &Settings) -> Vec<(String, PathBuf)> {
    let data_dir = &settings.data_dir;
    vec![
        (CHECKPOINT_KEY.into(), settings.audit.key_path(data_dir)),
        (KEK_FILE.into(), settings.vault.kek_path(data_dir)),
        (MASTER_KEY.into(), settings.auth.master_key_path(data_dir)),
    ]
}

/// Backup directories, each with its manifest or what is wrong with it.
pub type Listed = Vec<(PathBuf, Result<Manifest, ArchiveError>)>;

/// Key files by name, as a backup holds them.
pub type KeyFiles = Vec<(String, Zeroizing<Vec<u8>>)>;

/// Progress of a long step, for the CLI's progress line: the file and its bytes so far.
pub type Progress = Arc<dyn Fn(&str, u64) + Send + Sync>;

pub struct Backups {
    plan: Option<Plan>,
    clock: Arc<dyn Clock>,
    started: OffsetDateTime,
    running: AtomicBool,
    newest: Mutex<Option<Newest>>,
    /// When the last attempt failed before a backup was written (the cause is logged).
    failed_at: Mutex<Option<OffsetDateTime>>,
    /// The last off-site copy: the backup's id and where it went, or why it did not.
    copied: Mutex<Option<(String, Result<String, String>)>>,
}

/// A failed attempt is retried after this long, not at every minute's upkeep.
const RETRY_AFTER: Duration = Duration::hours(1);

/// What the settings make of backups when they are on.
struct Plan {
    recipients: Vec<age::x25519::Recipient>,
    dir: PathBuf,
    /// In the data directory (owner-only): the plaintext snapshot on its way to encryption.
    work: PathBuf,
    key_files: Vec<(String, PathBuf)>,
    checkpoint_key: PathBuf,
    source: Source,
    interval: Duration,
    retention: Duration,
    stale_after: Duration,
    /// The object store every backup is copied to, when `backup.s3_endpoint` is set.
    offsite: Option<offsite::Offsite>,
}

/// The newest backup, as health reports it.
#[derive(Clone, Debug)]
struct Newest {
    id: String,
    created_at: OffsetDateTime,
    check: RestoreCheck,
}

/// A backup written but not yet checked: its key for the check lives only here, and it
/// holds the backup directory's lock.
pub struct Made {
    id: String,
    partial: PathBuf,
    /// This run's own directory for plaintext on its way in and out.
    work: PathBuf,
    _lock: Option<std::fs::File>,
    created_at: OffsetDateTime,
    backend: &'static str,
    schema_version: String,
    files: Vec<FileEntry>,
    tables: BTreeMap<String, i64>,
    own_key: age::x25519::Identity,
}

impl Made {
    /// Where its files are until the check has passed judgement on them.
    pub fn dir(&self) -> &Path {
        &self.partial
    }
}

/// What health says of backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupHealth {
    /// No recipients are set: nothing is backed up.
    Off,
    Up(String),
    /// Stale, or the newest backup's test restore failed.
    Degraded(String),
}

impl Backups {
    /// Backups as `settings` configure them, reading from `db` (on PostgreSQL, from the
    /// backup role's URL instead).
    pub fn open(settings: &Settings, db: &Database, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let started = clock.now();
        let config = &settings.backup;
        let plan = match config.recipients.is_empty() {
            true => None,
            false => {
                let source = match db {
                    Database::Sqlite(pool) => Source::Sqlite {
                        path: pool.connect_options().get_filename().to_owned(),
                    },
                    Database::Postgres(_) => Source::Postgres {
                        url: config.database_url.clone().ok_or(
                            "backup.database_url (the backup role) is needed on PostgreSQL",
                        )?,
                        bin_dir: config.postgres_bin_dir.clone(),
                    },
                };
                let data_dir = &settings.data_dir;
                // KEKs given by `vault.kek` live in no file to carry.
                let kek_from_setting = settings.vault.kek_file_in_use(data_dir).is_none();
                let key_files = key_file_paths(settings)
                    .into_iter()
                    .filter(|(name, _)| !(kek_from_setting && name == KEK_FILE))
                    .collect();
                Some(Plan {
                    recipients: archive::recipients(&config.recipients)?,
                    dir: config.dir_in(data_dir),
                    work: data_dir.join("backup-work"),
                    key_files,
                    checkpoint_key: settings.audit.key_path(data_dir),
                    source,
                    interval: Duration::hours(config.interval_hours.into()),
                    retention: Duration::days(config.retention_days.into()),
                    stale_after: Duration::hours(config.stale_after_hours.into()),
                    offsite: offsite::Offsite::from_settings(config)?,
                })
            }
        };
        let newest = match &plan {
            Some(plan) => newest_in(&plan.dir),
            None => None,
        };
        Ok(Self {
            plan,
            clock,
            started,
            running: AtomicBool::new(false),
            newest: Mutex::new(newest),
            failed_at: Mutex::new(None),
            copied: Mutex::new(None),
        })
    }

    fn plan(&self) -> Result<&Plan, BackupError> {
        self.plan.as_ref().ok_or(BackupError::Off)
    }

    /// The backups in the directory, newest first, with what is wrong with any that cannot
    /// be read.
    pub fn list(&self) -> Result<Listed, BackupError> {
        Ok(listed(&self.plan()?.dir))
    }

    /// Health's view (claim OPS-2): degraded when the newest backup is older than
    /// `backup.stale_after_hours` or its test restore failed, or when none has been made
    /// that long after start. Health is public: it names the backup and its age, never a
    /// path or a cause (those are in the log and in `palisade backup list`).
    pub fn health(&self) -> BackupHealth {
        let Some(plan) = &self.plan else {
            return BackupHealth::Off;
        };
        let now = self.clock.now();
        let limit = plan.stale_after.whole_hours();
        let newest = self.newest.lock().expect("newest backup").clone();
        let failed_at = *self.failed_at.lock().expect("failed attempt");
        let failed_since = |at: OffsetDateTime| failed_at.is_some_and(|failed| failed >= at);
        match newest {
            None if now - self.started > plan.stale_after => {
                BackupHealth::Degraded(format!("no backup since start, {limit} h ago or more"))
            }
            None if failed_since(self.started) => BackupHealth::Up(
                "no backup yet: the last attempt failed (see the log); retried hourly".into(),
            ),
            None => BackupHealth::Up("no backup yet; the first is due".into()),
            Some(newest) => {
                let age = now - newest.created_at;
                let hours = age.as_seconds_f64() / 3600.0;
                let said = format!("newest {} is {hours:.1} h old", newest.id);
                if !newest.check.passed {
                    BackupHealth::Degraded(format!(
                        "{said}; its test restore FAILED (see `palisade backup list`)"
                    ))
                } else if age > plan.stale_after {
                    BackupHealth::Degraded(format!("{said} (over {limit} h)"))
                } else if let Some((_, Err(_))) = self.copy_of(&newest.id) {
                    BackupHealth::Degraded(format!(
                        "{said}; test restore passed; its off-site copy FAILED (see the log)"
                    ))
                } else if failed_since(newest.created_at) {
                    BackupHealth::Up(format!(
                        "{said}; test restore passed; a later attempt failed (see the log)"
                    ))
                } else if let Some((_, Ok(location))) = self.copy_of(&newest.id) {
                    BackupHealth::Up(format!("{said}; test restore passed; copied to {location}"))
                } else {
                    BackupHealth::Up(format!("{said}; test restore passed"))
                }
            }
        }
    }

    /// The last off-site copy, when it was of backup `id`.
    fn copy_of(&self, id: &str) -> Option<(String, Result<String, String>)> {
        self.copied
            .lock()
            .expect("off-site copy")
            .clone()
            .filter(|(copied, _)| copied == id)
    }

    /// Whether this process is making a backup now.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Whether the schedule wants a backup now: none within the interval, and no failed
    /// attempt within the last hour.
    pub fn due(&self) -> bool {
        let Some(plan) = &self.plan else {
            return false;
        };
        let now = self.clock.now();
        let retrying = self
            .failed_at
            .lock()
            .expect("failed attempt")
            .is_some_and(|at| now - at < RETRY_AFTER);
        let newest = self.newest.lock().expect("newest backup");
        !retrying
            && newest
                .as_ref()
                .is_none_or(|newest| now - newest.created_at >= plan.interval)
    }

    /// Starts a backup in the background when one is due and none is running: on a
    /// thread of its own at the lowest CPU priority, with a runtime of its own, so that
    /// every thread it starts (SQLite's, the blocking work's, `pg_dump`) inherits the
    /// priority and serving keeps the machine (docs/benchmarks.md).
    pub fn start_if_due(self: &Arc<Self>) {
        if !self.due() || self.running.load(Ordering::SeqCst) {
            return;
        }
        let backups = self.clone();
        let started = std::thread::Builder::new()
            .name("palisade-backup".into())
            .spawn(move || {
                yield_cpu_to_serving();
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(backups.scheduled()),
                    Err(error) => tracing::error!(%error, "backup: no runtime"),
                }
            });
        if let Err(error) = started {
            tracing::error!(%error, "backup: no thread");
        }
    }

    /// The schedule's run: its outcome goes to the log.
    async fn scheduled(&self) {
        match self.run_if(true, Arc::new(|_: &str, _: u64| {})).await {
            Ok(None) | Err(BackupError::Busy) => {}
            Ok(Some(manifest)) if manifest.restore_check.passed => {
                tracing::info!(backup = %manifest.id, "backup written and test-restored")
            }
            Ok(Some(manifest)) => tracing::error!(
                backup = %manifest.id,
                problem = %manifest.restore_check.detail,
                "backup written but its test restore FAILED"
            ),
            Err(error) => tracing::error!(%error, "backup failed"),
        }
    }

    /// Makes a backup, test-restores it, keeps it (even when the check fails, for the
    /// operator to look at) and prunes those past the retention window.
    pub async fn run(&self, progress: Progress) -> Result<Manifest, BackupError> {
        self.run_if(false, progress)
            .await
            .map(|made| made.expect("an unconditional backup is made"))
    }

    /// [`Backups::run`]; with `only_if_due`, nothing when another process (sharing the
    /// directory) made one meanwhile.
    async fn run_if(
        &self,
        only_if_due: bool,
        progress: Progress,
    ) -> Result<Option<Manifest>, BackupError> {
        let _running = Running::claim(&self.running)?;
        let outcome = async {
            match self.make_if(only_if_due, progress).await? {
                Some(made) => self.check(made).await.map(Some),
                None => Ok(None),
            }
        }
        .await;
        let mut failed_at = self.failed_at.lock().expect("failed attempt");
        match &outcome {
            Ok(_) => *failed_at = None,
            Err(BackupError::Busy) => {}
            Err(_) => *failed_at = Some(self.clock.now()),
        }
        outcome
    }

    /// Writes a backup's encrypted files into a partial directory (removed again if
    /// anything fails), holding the backup directory's lock until [`Backups::check`].
    pub async fn make(&self, progress: Progress) -> Result<Made, BackupError> {
        self.make_if(false, progress)
            .await
            .map(|made| made.expect("an unconditional backup is made"))
    }

    async fn make_if(
        &self,
        only_if_due: bool,
        progress: Progress,
    ) -> Result<Option<Made>, BackupError> {
        let plan = self.plan()?;
        for dir in [&plan.dir, &plan.work] {
            crate::app::prepare_data_dir(dir).map_err(|e| BackupError::Check(e.to_string()))?;
        }
        let lock = lock_dir(&plan.dir)?;
        // Another process sharing the directory may have made one since this one looked.
        *self.newest.lock().expect("newest backup") = newest_in(&plan.dir);
        if only_if_due && !self.due() {
            return Ok(None);
        }
        sweep_stale_work(&plan.work);
        let created_at = self.clock.now();
        let id = backup_id(created_at);
        let partial = plan.dir.join(format!(".{id}.partial"));
        let work = plan.work.join(format!(
            "{id}-{}",
            crate::crypto::base64url(&crate::crypto::random_bytes::<6>())
        ));
        let made = self
            .write_into(plan, id, &partial, &work, created_at, progress)
            .await;
        match made {
            Ok(mut made) => {
                made._lock = Some(lock);
                Ok(Some(made))
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&partial);
                let _ = std::fs::remove_dir_all(&work);
                Err(error)
            }
        }
    }

    async fn write_into(
        &self,
        plan: &Plan,
        id: String,
        partial: &Path,
        work: &Path,
        created_at: OffsetDateTime,
        progress: Progress,
    ) -> Result<Made, BackupError> {
        let _ = std::fs::remove_dir_all(partial);
        for dir in [partial, work] {
            crate::app::prepare_data_dir(dir).map_err(|e| BackupError::Check(e.to_string()))?;
        }
        // Read before the snapshot: a missing key file fails the backup, not the restore.
        let bundle = key_bundle(&plan.key_files)?;
        let own_key = age::x25519::Identity::generate();
        let recipients = Arc::new(self.recipients_with(&own_key));
        let database = {
            let (dir, recipients, progress) = (partial.to_owned(), recipients.clone(), progress);
            let seal: snapshot::Seal<'static> = Box::new(move |input| {
                let recipients: Vec<&dyn age::Recipient> = recipients
                    .iter()
                    .map(|r| r as &dyn age::Recipient)
                    .collect();
                archive::seal_into(&dir, archive::DATABASE, &recipients, input, &|bytes| {
                    progress(archive::DATABASE, bytes)
                })
            });
            plan.source.dump(work, seal).await?
        };
        let recipients: Vec<&dyn age::Recipient> = recipients
            .iter()
            .map(|r| r as &dyn age::Recipient)
            .collect();
        let keys = archive::seal_into(
            partial,
            archive::KEYS,
            &recipients,
            &mut bundle.as_slice(),
            &|_| {},
        )?;
        Ok(Made {
            id,
            partial: partial.to_owned(),
            work: work.to_owned(),
            created_at,
            backend: plan.source.backend(),
            schema_version: database.schema_version,
            files: vec![database.file, keys],
            tables: database.tables,
            own_key,
            _lock: None,
        })
    }

    fn recipients_with(&self, own_key: &age::x25519::Identity) -> Vec<age::x25519::Recipient> {
        let plan = self.plan.as_ref().expect("backups are on");
        let mut recipients = plan.recipients.clone();
        recipients.push(own_key.to_public());
        recipients
    }

    /// The test restore: reads the files back from disk with the backup's own key,
    /// restores the database into a scratch one and compares every table's rows with the
    /// snapshot's. The verdict goes into the signed manifest, and the backup takes its
    /// place in the directory whatever it is.
    pub async fn check(&self, made: Made) -> Result<Manifest, BackupError> {
        let plan = self.plan()?;
        let started = Instant::now();
        let verdict = self.test_restore(plan, &made).await;
        let _ = std::fs::remove_dir_all(&made.work);
        let check = RestoreCheck {
            passed: verdict.is_ok(),
            checked_at: self.clock.now(),
            milliseconds: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
            detail: verdict.unwrap_or_else(|problem| problem),
        };
        let mut manifest = Manifest {
            format: archive::FORMAT.into(),
            id: made.id.clone(),
            created_at: made.created_at,
            backend: made.backend.into(),
            schema_version: made.schema_version.clone(),
            recipients: plan.recipients.iter().map(|r| r.to_string()).collect(),
            files: made.files.clone(),
            tables: made.tables.clone(),
            restore_check: check.clone(),
            signature: None,
        };
        let pem = Zeroizing::new(
            std::fs::read(&plan.checkpoint_key)
                .map_err(|e| ArchiveError::at(&plan.checkpoint_key, e))?,
        );
        let key = CheckpointKey::from_pem(&pem).map_err(|e| BackupError::Check(e.into()))?;
        manifest.sign(&key);
        manifest
            .write(&made.partial)
            .map_err(|e| ArchiveError::at(&made.partial, e))?;
        let done = plan.dir.join(&made.id);
        std::fs::rename(&made.partial, &done).map_err(|e| ArchiveError::at(&done, e))?;
        archive::sync_dir(&plan.dir).map_err(|e| ArchiveError::at(&plan.dir, e))?;
        *self.newest.lock().expect("newest backup") = Some(Newest {
            id: made.id.clone(),
            created_at: made.created_at,
            check,
        });
        let (dir, cutoff) = (plan.dir.clone(), self.clock.now() - plan.retention);
        let _ = tokio::task::spawn_blocking(move || prune(&dir, cutoff)).await;
        if let Some(offsite) = &plan.offsite {
            self.copy_off_site(offsite, plan, &done, &made.id, cutoff)
                .await;
        }
        // The directory's lock goes with `made`, after the pruning.
        drop(made);
        Ok(manifest)
    }

    /// Copies a checked backup to the object store and prunes the copies there as here.
    /// A failed copy leaves the backup on disk and makes health degraded.
    async fn copy_off_site(
        &self,
        offsite: &offsite::Offsite,
        plan: &Plan,
        done: &Path,
        id: &str,
        cutoff: OffsetDateTime,
    ) {
        let location = offsite.location();
        let outcome = match offsite.copy(done, id).await {
            Ok(bytes) => {
                tracing::info!(backup = %id, bytes, %location, "backup copied off-site");
                let newest_good = listed(&plan.dir)
                    .into_iter()
                    .find_map(|(_, m)| m.ok().filter(|m| m.restore_check.passed))
                    .map_or_else(|| id.to_owned(), |m| m.id);
                if let Err(error) = offsite.prune(cutoff, &newest_good).await {
                    tracing::warn!(%error, %location, "pruning old off-site copies failed");
                }
                Ok(format!("{location}{id}/"))
            }
            Err(error) => {
                tracing::error!(backup = %id, %error, %location, "the off-site copy FAILED");
                Err(error)
            }
        };
        *self.copied.lock().expect("off-site copy") = Some((id.to_owned(), outcome));
    }

    async fn test_restore(&self, plan: &Plan, made: &Made) -> Result<String, String> {
        let (dir, files) = (made.partial.clone(), made.files.clone());
        tokio::task::spawn_blocking(move || archive::verify_files(&dir, &files))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let keys = archive::open(&made.partial, archive::KEYS, &made.own_key)
            .and_then(|mut reader| read_bundle(&mut reader))
            .map_err(|e| e.to_string())?;
        for (name, _) in &plan.key_files {
            let required = name != MASTER_KEY;
            if required && !keys.iter().any(|(held, _)| held == name) {
                return Err(format!("keys.age does not hold {name}"));
            }
        }
        let database = archive::open(&made.partial, archive::DATABASE, &made.own_key)
            .map_err(|e| e.to_string())?;
        let restored = plan
            .source
            .test_restore(&made.work, Box::new(database))
            .await
            .map_err(|e| e.to_string())?;
        compare_counts(&made.tables, &restored)?;
        let rows: i64 = restored.values().sum();
        Ok(format!(
            "restored into a scratch database: {} tables, {rows} rows, as in the snapshot; {} key file(s)",
            restored.len(),
            keys.len()
        ))
    }
}

/// Lowers the calling thread's CPU priority to the least (nice 19), for it and every thread
/// and process it starts: a backup's work yields to serving.
pub fn yield_cpu_to_serving() {
    #[cfg(unix)]
    if let Err(error) = rustix::process::setpriority_process(None, 19) {
        tracing::debug!(%error, "backup: cannot lower the CPU priority");
    }
}

/// Claims the in-process flag for one run, released however the run ends.
struct Running<'a>(&'a AtomicBool);

impl<'a> Running<'a> {
    fn claim(flag: &'a AtomicBool) -> Result<Self, BackupError> {
        match flag.swap(true, Ordering::SeqCst) {
            true => Err(BackupError::Busy),
            false => Ok(Self(flag)),
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The backup directory's lock: one backup at a time among every process writing there
/// (the server's schedule, `palisade backup now`, instances sharing the directory).
fn lock_dir(dir: &Path) -> Result<std::fs::File, BackupError> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ArchiveError::at(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::Busy),
        Err(std::fs::TryLockError::Error(e)) => Err(ArchiveError::at(&path, e).into()),
    }
}

/// Plaintext a crashed run left in the work directory (under the lock, no run is using it).
fn sweep_stale_work(work: &Path) {
    if let Ok(entries) = std::fs::read_dir(work) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes backups made before `cutoff` (never the newest that passed its check) and
/// partial ones a crash left behind. Runs under the directory's lock.
fn prune(dir: &Path, cutoff: OffsetDateTime) {
    let listed = listed(dir);
    let newest_good = listed
        .iter()
        .find(|(_, m)| m.as_ref().is_ok_and(|m| m.restore_check.passed))
        .map(|(path, _)| path.clone());
    for (path, manifest) in &listed {
        let expired = manifest.as_ref().is_ok_and(|m| m.created_at < cutoff);
        if expired && Some(path) != newest_good.as_ref() {
            if let Err(error) = std::fs::remove_dir_all(path) {
                tracing::warn!(%error, path = %path.display(), "pruning an old backup failed");
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".partial") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// `20261207T142000Z`: sorts as it was made.
fn backup_id(at: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Every backup directory under `dir` (not the partial ones), newest first.
fn listed(dir: &Path) -> Listed {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    found.sort();
    found.reverse();
    found
        .into_iter()
        .map(|path| {
            let manifest = Manifest::read(&path);
            (path, manifest)
        })
        .collect()
}

fn newest_in(dir: &Path) -> Option<Newest> {
    listed(dir).into_iter().find_map(|(_, manifest)| {
        manifest.ok().map(|m| Newest {
            id: m.id,
            created_at: m.created_at,
            check: m.restore_check,
        })
    })
}

/// The key files as one JSON document: `{"files": {name: base64}}`.
fn key_bundle(files: &[(String, PathBuf)]) -> Result<Zeroizing<Vec<u8>>, ArchiveError> {
    let mut encoded = serde_json::Map::new();
    for (name, path) in files {
        // The KEK file and the checkpoint key must be there; `master.key` only on
        // deployments from before the vault.
        if name == MASTER_KEY && !path.exists() {
            continue;
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| ArchiveError::at(path, e))?);
        encoded.insert(
            name.clone(),
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(&*bytes)),
        );
    }
    let document = serde_json::json!({ "files": encoded });
    Ok(Zeroizing::new(
        serde_json::to_vec(&document).expect("a key bundle serializes"),
    ))
}

/// The key files of a bundle, by name.
pub fn read_bundle(reader: &mut dyn std::io::Read) -> Result<KeyFiles, ArchiveError> {
    let bad = |problem: String| ArchiveError::Bad {
        name: archive::KEYS.into(),
        problem,
    };
    let mut text = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut text)
        .map_err(|e| bad(format!("does not decrypt whole ({e})")))?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Bundle {
        files: BTreeMap<String, String>,
    }
    let bundle: Bundle =
        serde_json::from_slice(&text).map_err(|_| bad("is not a key bundle".into()))?;
    bundle
        .files
        .into_iter()
        .map(|(name, encoded)| {
            let plain = [CHECKPOINT_KEY, KEK_FILE, MASTER_KEY].contains(&name.as_str());
            if !plain {
                return Err(bad("names a file that is not a key file".into()));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|_| bad("holds a file that is not base64".into()))?;
            Ok((name, Zeroizing::new(bytes)))
        })
        .collect()
}

/// Every table's rows after the restore equal the snapshot's, by name.
fn compare_counts(
    snapshot: &BTreeMap<String, i64>,
    restored: &BTreeMap<String, i64>,
) -> Result<(), String> {
    for (table, rows) in snapshot {
        match restored.get(table) {
            None => return Err(format!("table {table} is missing after the restore")),
            Some(back) if back != rows => {
                return Err(format!(
                    "table {table} has {back} rows after the restore, {rows} in the snapshot"
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = restored.keys().find(|t| !snapshot.contains_key(*t)) {
        return Err(format!("table {extra} appears only after the restore"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backups_name_sorts_by_when_it_was_made() {
        let at = OffsetDateTime::from_unix_timestamp(1_796_634_303).unwrap();
        assert_eq!(backup_id(at), "20261207T090503Z");
        assert!(backup_id(at) < backup_id(at + Duration::seconds(1)));
    }

    #[test]
    fn counts_that_differ_are_named() {
        let snapshot = BTreeMap::from([("users".to_owned(), 3), ("tenants".to_owned(), 1)]);
        assert!(compare_counts(&snapshot, &snapshot.clone()).is_ok());
        let mut fewer = snapshot.clone();
        fewer.insert("users".into(), 2);
        assert_eq!(
            compare_counts(&snapshot, &fewer).unwrap_err(),
            "table users has 2 rows after the restore, 3 in the snapshot"
        );
        fewer.remove("users");
        assert!(compare_counts(&snapshot, &fewer)
            .unwrap_err()
            .contains("missing"));
    }
}
