//! Audit storage, once for both backends: the append path every recording change takes
//! (`append`: linking events after their chain's head inside the caller's transaction, and
//! the writer's group commit), and the log's own store (`log`: reads, checkpoints, retention
//! and pruning). A chain is always reached through a [`Chain`], which carries the scope its
//! rows are read in.

mod append;
mod log;

use uuid::Uuid;

pub(crate) use append::Append;
pub use append::{AppAppend, BatchAppend};
pub use log::AuditLog;
pub(crate) use log::{Forget, Redact};

use super::chain::{Hash, SignedPoint};
use crate::access::TenantScope;
use crate::ids::TenantId;
use crate::store::StoreError;

/// One audit chain and the scope its rows are read and written in: a tenant's, as the
/// caller's verified credential names it, or — for upkeep and the operator's commands, which
/// no credential asks for — any chain by its stream id (the platform stream included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    scope: TenantScope,
}

impl Chain {
    /// The chain of the tenant a verified credential names.
    pub fn of(scope: TenantScope) -> Self {
        Self { scope }
    }

    /// A chain named by its stream for background upkeep (checkpoints, retention) and the
    /// operator's `palisade audit verify`: the system entry of TEN-2.
    pub fn for_upkeep(stream: Uuid) -> Self {
        Self {
            scope: TenantScope::for_system(TenantId::from_uuid(stream)),
        }
    }

    pub fn stream(self) -> Uuid {
        self.scope.tenant().as_uuid()
    }

    fn tenant(self) -> TenantId {
        self.scope.tenant()
    }

    fn scope(self) -> TenantScope {
        self.scope
    }
}

/// Everything the audit service needs of its store.
pub trait AuditStore: BatchAppend + AppAppend + AuditLog {}

impl<S: BatchAppend + AppAppend + AuditLog> AuditStore for S {}

pub fn micros(at: time::OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

/// A chain's recorded state.
#[derive(Clone, Debug)]
pub struct Head {
    pub stream: Uuid,
    pub seq: i64,
    pub hash: Hash,
}

/// A signed point as stored.
#[derive(Clone, Debug)]
pub struct StoredPoint {
    pub kind: String,
    pub seq: i64,
    pub hash: Hash,
    pub signed_at_us: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl StoredPoint {
    /// The point as a chain walk takes it, its signature checked against `key`.
    pub fn checked(&self, stream: &str, key: &super::signing::PublicKey) -> SignedPoint {
        let statement = super::signing::Statement::point(
            &self.kind,
            stream,
            self.seq,
            &self.hash,
            self.signed_at_us,
        );
        SignedPoint {
            seq: self.seq,
            hash: self.hash,
            valid: key.verifies(&statement, &self.key_id, &self.signature),
        }
    }
}

/// Filters of the event query (AUD-6); `before` is the cursor: events with a lower seq.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub before: Option<i64>,
    pub limit: i64,
}

fn hash_of(bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Other("a stored hash is not 32 bytes".into()))
}

struct SqlAuditStore<P>(P);

pub fn for_database(db: &crate::store::Database) -> std::sync::Arc<dyn AuditStore> {
    match db {
        crate::store::Database::Sqlite(pool) => std::sync::Arc::new(SqlAuditStore(pool.clone())),
        crate::store::Database::Postgres(pool) => std::sync::Arc::new(SqlAuditStore(pool.clone())),
    }
}

/// What differs between the backends.
trait Dialect {
    /// Whether a transaction is bound to a chain's tenant ([`BIND_TENANT`]), where
    /// row-level security reads it.
    const BINDS_TENANT: bool;
    const PRUNE: &'static str;
}

impl Dialect for sqlx::Sqlite {
    const BINDS_TENANT: bool = false;
    const PRUNE: &'static str = "DELETE FROM audit_events WHERE tenant_id = $1 AND seq <= $2";
}

impl Dialect for sqlx::Postgres {
    const BINDS_TENANT: bool = true;
    // The runtime role cannot delete events; the owner's function prunes below an anchor.
    const PRUNE: &'static str = "SELECT palisade_audit_prune($1, $2)";
}

const BIND_TENANT: &str = "SELECT set_config('palisade.tenant_id', $1, true)";
