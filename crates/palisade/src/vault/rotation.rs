//! KEK rotation (claim SEC-2): a new KEK version is added to the file (by the operator's
//! `palisade keys rotate-kek`, or, on SQLite, by the server when the active one is older
//! than `vault.kek_rotation_days`); every instance picks it up at its next reload; the re-wrap
//! then moves each tenant's data keys onto it, one committed key at a time, so it resumes
//! after a crash from what the database says is left; old versions keep unwrapping until
//! nothing uses them and `palisade keys retire-keks` drops them. No request waits for any
//! of it: values sealed by a data key never need sealing again.
//!
//! A tenant's data key rotates too (`Secrets::rotate_data_key`): its new values are sealed
//! by the newest key at once, and the same upkeep seals its older values again under it, a
//! batch per transaction, then deletes the keys nothing seals any more.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use time::Duration;

use super::kek::{self, KekError};
use super::keys::WrappedKey;
use super::store::{DataKeyStore, WriteError};
use super::Vault;
use crate::audit::AuditRecord;
use crate::clock::Clock;
use crate::store::StoreError;

/// Data keys re-wrapped per upkeep round (each its own transaction).
pub const BATCH: u32 = 200;
/// Tenants swept per upkeep round, and values sealed again per tenant's transaction.
const RESEAL_TENANTS: u32 = 50;
const RESEAL_BATCH: u32 = 500;
/// How long a tenant's superseded data keys outlive its new one, once nothing they seal is
/// left: far beyond any transaction that read an older key as the newest before the
/// rotation and is about to seal a value with it.
const RETIRE_AFTER: Duration = Duration::minutes(10);

/// Where the vault's keys stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    /// The version new data keys are wrapped under.
    pub active: u32,
    /// Live data keys per KEK version.
    pub usage: BTreeMap<u32, u64>,
    /// Tenants whose older data keys still seal values or await their retirement.
    pub superseded: u64,
}

impl KeyStatus {
    /// Live data keys still wrapped by an older version.
    pub fn pending(&self) -> u64 {
        self.usage
            .iter()
            .filter(|(version, _)| **version < self.active)
            .map(|(_, count)| count)
            .sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a data key failed to unwrap for its re-wrap: the KEK that wrapped it is missing or altered")]
    Unsealable,
    #[error("the KEKs come from the vault.kek setting: add the new version there, not with this command")]
    NotAFile,
}

impl From<WriteError> for RotationError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Store(error) => RotationError::Store(error),
            WriteError::Vault(_) => RotationError::Unsealable,
        }
    }
}

pub struct KeyRotation {
    store: Arc<dyn DataKeyStore>,
    /// The KEKs' lifecycle (rotated, re-wrapped onto, retired) is recorded in the platform
    /// stream.
    audit: crate::audit::Audit,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    /// The KEK file, when the KEKs come from one (rotation appends to it).
    file: Option<PathBuf>,
    /// 0: never automatically.
    period: Duration,
    /// Whether this server adds a version itself when the active one is past its period:
    /// only where it is the one server of its file (SQLite). Instances on PostgreSQL each
    /// hold a copy, which rotating alone would fork; they warn instead.
    rotates_itself: bool,
    warned_overdue: AtomicBool,
    /// Whether the last sweep left values under older data keys: then it goes on each
    /// second, not each minute.
    resealing: AtomicBool,
    /// The last status upkeep saw, for health.
    last: Mutex<Option<KeyStatus>>,
}

impl KeyRotation {
    pub fn new(
        store: Arc<dyn DataKeyStore>,
        audit: crate::audit::Audit,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        file: Option<PathBuf>,
        rotation_days: u32,
        rotates_itself: bool,
    ) -> Self {
        Self {
            store,
            audit,
            vault,
            clock,
            file,
            period: Duration::days(i64::from(rotation_days)),
            rotates_itself,
            warned_overdue: AtomicBool::new(false),
            resealing: AtomicBool::new(false),
            last: Mutex::new(None),
        }
    }

    pub async fn status(&self) -> Result<KeyStatus, RotationError> {
        let status = KeyStatus {
            active: self.vault.active_kek_version(),
            usage: self.store.kek_usage().await?,
            superseded: self.store.superseded_count().await?,
        };
        *self.last.lock().expect("status lock") = Some(status.clone());
        Ok(status)
    }

    /// When the active KEK was made (unknown for one given as a value), and how long it
    /// may serve (zero: never due).
    pub fn active_kek_age(&self) -> (Option<time::OffsetDateTime>, Duration) {
        (self.vault.keks().active_since(), self.period)
    }

    pub fn active_kek_version(&self) -> u32 {
        self.vault.active_kek_version()
    }

    /// What upkeep last saw: for health, without a query per call.
    pub fn last_status(&self) -> Option<KeyStatus> {
        self.last.lock().expect("status lock").clone()
    }

    /// Re-reads the KEKs: a version another process added becomes this instance's active.
    pub fn reload(&self) -> Result<(), RotationError> {
        Ok(self.vault.keks().reload()?)
    }

    /// Adds the next KEK version to the file and makes it this instance's active one;
    /// `trigger` says who asked (`command`, `schedule`), for the platform stream's record.
    pub async fn rotate(&self, trigger: &'static str) -> Result<u32, RotationError> {
        let file = self.file.as_ref().ok_or(RotationError::NotAFile)?;
        let before = self.vault.active_kek_version();
        let version = kek::rotate_file(file, self.clock.now())?;
        self.reload()?;
        let event = AuditRecord::on_platform("vault.kek_rotated", self.clock.now())
            .on("kek", version)
            .changed("kek_version", before, version)
            .changed("trigger", None::<&str>, trigger);
        self.audit.record(event).await?;
        Ok(version)
    }

    /// Removes from the file the KEK versions below the active one that wrap nothing, and
    /// records which; the versions removed.
    pub async fn retire_unused(&self) -> Result<Vec<u32>, RotationError> {
        let file = self.file.as_ref().ok_or(RotationError::NotAFile)?;
        let in_use = self.status().await?.usage.into_keys().collect();
        let retired = kek::retire_unused(file, &in_use)?;
        if !retired.is_empty() {
            let event = AuditRecord::on_platform("vault.keks_retired", self.clock.now())
                .on("kek", self.vault.active_kek_version())
                .changed("retired_kek_versions", None::<u32>, &retired);
            self.audit.record(event).await?;
        }
        Ok(retired)
    }

    /// Re-wraps up to `limit` data keys under the active KEK; how many moved.
    pub async fn rewrap_some(&self, limit: u32) -> Result<u32, RotationError> {
        let active = self.vault.active_kek_version();
        let stale = self.store.wrapped_below(active, limit).await?;
        let mut moved = 0;
        for (tenant, version) in &stale {
            let owner = tenant.unwrap_or_else(super::platform::platform_tenant);
            let rewrap = |stored: &super::keys::WrappedKey| self.vault.rewrapped(owner, stored);
            if self.store.rewrap(*tenant, *version, &rewrap).await? {
                moved += 1;
            }
        }
        if stale.len() < limit as usize {
            // The last batch: health says so at once, not at the next minute.
            let status = self.status().await?;
            if moved > 0 && status.pending() == 0 {
                let event = AuditRecord::on_platform("vault.rewrap_completed", self.clock.now())
                    .on("kek", active);
                self.audit.record(event).await?;
            }
        }
        Ok(moved)
    }

    /// Re-wraps every data key still under an older KEK, reporting the keys left after
    /// each batch; what the operator's `palisade keys rewrap` runs.
    pub async fn rewrap_all(&self, mut progress: impl FnMut(u64)) -> Result<u64, RotationError> {
        let mut total = 0;
        loop {
            let moved = self.rewrap_some(BATCH).await?;
            total += u64::from(moved);
            let left = self.status().await?.pending();
            progress(left);
            if left == 0 || moved == 0 {
                return Ok(total);
            }
        }
    }

    /// Seals the values of up to `tenants` tenants' older data keys again under their
    /// newest (a batch each), and retires the older keys once they seal nothing; how many
    /// values moved.
    pub async fn reseal_some(&self, tenants: u32) -> Result<u64, RotationError> {
        let now = self.clock.now();
        let mut moved = 0;
        let mut more = false;
        for tenant in self.store.superseded(tenants).await? {
            let reseal = |bound, old: &WrappedKey, new: &WrappedKey, sealed: &[u8]| {
                self.vault.resealed(tenant, bound, old, new, sealed)
            };
            let event =
                AuditRecord::by_system("vault.data_key_retired", tenant, now).on("tenant", tenant);
            let done = self
                .store
                .reseal(tenant, RESEAL_BATCH, &reseal, now - RETIRE_AFTER, &event)
                .await?;
            more |= done.values == RESEAL_BATCH;
            moved += u64::from(done.values);
        }
        self.resealing.store(more, Ordering::Relaxed);
        Ok(moved)
    }

    /// Upkeep each second: a batch of the re-wrap, and of the re-seal, while either is under
    /// way; the minute's round notices new work.
    pub async fn go_on(&self) -> Result<(), RotationError> {
        if self
            .last_status()
            .is_some_and(|status| status.pending() > 0)
        {
            self.rewrap_some(BATCH).await?;
        }
        if self.resealing.load(Ordering::Relaxed) {
            self.reseal_some(RESEAL_TENANTS).await?;
        }
        Ok(())
    }

    /// Upkeep, once a minute: re-read the KEKs (another process may have rotated), rotate
    /// when the active one is past its period, re-wrap a batch and re-seal one.
    pub async fn maintain(&self) -> Result<(), RotationError> {
        self.reload()?;
        let due = self.file.is_some()
            && self.period > Duration::ZERO
            && self
                .vault
                .keks()
                .active_since()
                .is_some_and(|since| self.clock.now() - since >= self.period);
        if due && self.rotates_itself {
            let version = self.rotate("schedule").await?;
            tracing::info!(
                version,
                "vault KEK rotated: the active one was past vault.kek_rotation_days"
            );
        } else if due && !self.warned_overdue.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the vault's active KEK is past vault.kek_rotation_days: run `palisade keys rotate-kek` and give every instance the new file"
            );
        }
        self.rewrap_some(BATCH).await?;
        self.reseal_some(RESEAL_TENANTS).await?;
        self.status().await?;
        Ok(())
    }
}
