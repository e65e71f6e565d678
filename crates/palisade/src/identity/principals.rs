//! Principals cached per session, so an authenticated request need not read the database
//! beyond one counter (claims ID-6, ID-7 stay exact).
//!
//! Every write that changes what a session may do bumps `auth_epoch` in its transaction.
//! A cached principal is used only while the epoch it was read under is current:
//! - PostgreSQL (several instances): the epoch is read from the database for every request,
//!   one single-row read instead of the four-table join, and one statement answers all the
//!   requests that asked while the previous one ran ([`SharedRead`]) — each still from a
//!   statement that began after it asked;
//! - SQLite (one server per file): the epoch is a counter in memory, bumped right after
//!   this process commits such a write, and when a once-a-second poll sees the database's
//!   counter move (a change made by another process, such as an administrative command).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::store::{IdentityStore, PrincipalRecord};
use crate::ids::{SessionId, TenantId};
use crate::store::shared_read::SharedRead;
use crate::store::StoreError;

const CAPACITY: usize = 16_384;

type Key = (SessionId, TenantId);

/// Records cached under the auth epoch they were read in; a record of an older epoch is
/// never returned. Shared by sessions' principals and API keys.
pub struct EpochMap<K, V> {
    entries: Mutex<HashMap<K, (i64, V)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> EpochMap<K, V> {
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &K, epoch: i64) -> Option<V> {
        let entries = self.entries.lock().expect("epoch map lock");
        match entries.get(key) {
            Some((cached_epoch, value)) if *cached_epoch == epoch => Some(value.clone()),
            _ => None,
        }
    }

    pub fn put(&self, key: K, epoch: i64, value: V) {
        let mut entries = self.entries.lock().expect("epoch map lock");
        if entries.len() >= CAPACITY {
            entries.retain(|_, (cached_epoch, _)| *cached_epoch == epoch);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (epoch, value));
    }

    /// The record cached for `key` under `epoch`, or the one `load` reads (then cached);
    /// `load`'s `None` is `missing`.
    pub async fn get_or_load<E, F>(
        &self,
        key: K,
        epoch: i64,
        load: F,
        missing: impl FnOnce() -> E,
    ) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<Option<V>, E>>,
    {
        if let Some(value) = self.get(&key, epoch) {
            return Ok(value);
        }
        let value = load.await?.ok_or_else(missing)?;
        self.put(key, epoch, value.clone());
        Ok(value)
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Default for EpochMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

tokio::task_local! {
    /// The auth epoch this request read, once (PostgreSQL).
    static REQUEST_EPOCH: Cell<Option<i64>>;
}

/// Runs one request with its own epoch memo: at most one epoch read however many
/// credentials it checks.
pub async fn one_epoch_read<F: std::future::Future>(request: F) -> F::Output {
    REQUEST_EPOCH.scope(Cell::new(None), request).await
}

/// The next epoch read of this request goes to the database again (after this process's
/// own narrowing write).
fn forget_request_epoch() {
    let _ = REQUEST_EPOCH.try_with(|memo| memo.set(None));
}

pub struct PrincipalCache {
    entries: EpochMap<Key, PrincipalRecord>,
    epoch: Epoch,
}

enum Epoch {
    /// This process is the only server on the database (SQLite).
    Local(LocalEpoch),
    Shared(Arc<SharedRead<i64>>),
}

struct LocalEpoch {
    generation: AtomicI64,
    last_seen_in_database: AtomicI64,
}

impl PrincipalCache {
    /// `local_epoch`: this process is the only server on the database (SQLite).
    pub fn new(local_epoch: bool, store: Arc<dyn IdentityStore>) -> Self {
        let epoch = if local_epoch {
            Epoch::Local(LocalEpoch {
                generation: AtomicI64::new(0),
                last_seen_in_database: AtomicI64::new(i64::MIN),
            })
        } else {
            Epoch::Shared(SharedRead::new(move || {
                let store = store.clone();
                async move { store.auth_epoch().await }
            }))
        };
        Self {
            entries: EpochMap::new(),
            epoch,
        }
    }

    /// The epoch a principal read now is current for. On PostgreSQL it is read from the
    /// database once per request, after the whole request arrived (`http::frame`), by a
    /// statement that began after this call — so a change committed by any instance before
    /// the request arrived holds for all of it, whichever credentials it checks.
    pub async fn epoch(&self) -> Result<i64, StoreError> {
        match &self.epoch {
            Epoch::Local(local) => Ok(local.generation.load(Ordering::Acquire)),
            Epoch::Shared(read) => {
                if let Ok(Some(epoch)) = REQUEST_EPOCH.try_with(Cell::get) {
                    return Ok(epoch);
                }
                let epoch = read.get().await?;
                let _ = REQUEST_EPOCH.try_with(|memo| memo.set(Some(epoch)));
                Ok(epoch)
            }
        }
    }

    pub fn get(&self, session: SessionId, tenant: TenantId, epoch: i64) -> Option<PrincipalRecord> {
        self.entries.get(&(session, tenant), epoch)
    }

    pub fn put(&self, session: SessionId, tenant: TenantId, epoch: i64, record: PrincipalRecord) {
        self.entries.put((session, tenant), epoch, record);
    }

    /// Called after this process committed a principal-changing write.
    pub fn changed(&self) {
        if let Epoch::Local(local) = &self.epoch {
            local.generation.fetch_add(1, Ordering::AcqRel);
        }
        // What this request read before its own write is no longer current.
        forget_request_epoch();
    }

    /// Notices writes made by other processes (SQLite only; a no-op on PostgreSQL).
    pub async fn poll(&self, store: &dyn IdentityStore) -> Result<(), StoreError> {
        if let Epoch::Local(local) = &self.epoch {
            let current = store.auth_epoch().await?;
            if local.last_seen_in_database.swap(current, Ordering::AcqRel) != current {
                local.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }
}
