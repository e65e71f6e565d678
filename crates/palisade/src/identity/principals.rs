//! Principals cached per session, so an authenticated request need not read the database
//! beyond one counter (claims ID-6, ID-7 stay exact).
//!
//! Every write that changes what a session may do bumps `auth_epoch` in its transaction.
//! A cached principal is used only while the epoch it was read under is current:
//! - PostgreSQL (several instances): the epoch is read from the database on every request,
//!   one single-row read instead of the four-table join;
//! - SQLite (one server per file): the epoch is a counter in memory, bumped right after
//!   this process commits such a write, and when a once-a-second poll sees the database's
//!   counter move (a change made by another process, such as an administrative command).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use super::store::{IdentityStore, PrincipalRecord};
use crate::ids::{SessionId, TenantId};
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

/// The next epoch read of this request goes to the database again (after its body was
/// received, or after this process's own narrowing write).
pub fn forget_request_epoch() {
    let _ = REQUEST_EPOCH.try_with(|memo| memo.set(None));
}

pub struct PrincipalCache {
    entries: EpochMap<Key, PrincipalRecord>,
    local: Option<LocalEpoch>,
}

struct LocalEpoch {
    generation: AtomicI64,
    last_seen_in_database: AtomicI64,
}

impl PrincipalCache {
    /// `local_epoch`: this process is the only server on the database (SQLite).
    pub fn new(local_epoch: bool) -> Self {
        Self {
            entries: EpochMap::new(),
            local: local_epoch.then(|| LocalEpoch {
                generation: AtomicI64::new(0),
                last_seen_in_database: AtomicI64::new(i64::MIN),
            }),
        }
    }

    /// The epoch a principal read now is current for. On PostgreSQL it is read from the
    /// database at most once per phase of a request — once for the credentials checked
    /// before its body (the rate limiter's and the handler's look at one credential), once
    /// after the body arrived ([`forget_request_epoch`]) — so a change committed by any
    /// instance before that read holds for the rest of the request.
    pub async fn epoch(&self, store: &dyn IdentityStore) -> Result<i64, StoreError> {
        match &self.local {
            Some(local) => Ok(local.generation.load(Ordering::Acquire)),
            None => {
                if let Ok(Some(epoch)) = REQUEST_EPOCH.try_with(Cell::get) {
                    return Ok(epoch);
                }
                let epoch = store.auth_epoch().await?;
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
        if let Some(local) = &self.local {
            local.generation.fetch_add(1, Ordering::AcqRel);
        }
        // What this request read before its own write is no longer current.
        forget_request_epoch();
    }

    /// Notices writes made by other processes (SQLite only; a no-op on PostgreSQL).
    pub async fn poll(&self, store: &dyn IdentityStore) -> Result<(), StoreError> {
        if let Some(local) = &self.local {
            let current = store.auth_epoch().await?;
            if local.last_seen_in_database.swap(current, Ordering::AcqRel) != current {
                local.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }
}
