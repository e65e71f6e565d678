//! Audit storage, once for both backends. Appending locks the chain's head row until the
//! transaction ends, so concurrent writers of one tenant link one after another (on SQLite
//! the write transaction already excludes every other writer).

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use sqlx::{QueryBuilder, Row, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::chain::{ChainedEvent, Fields, Hash, SignedPoint, GENESIS};
use super::{stream_name, AuditRecord};
use crate::access::TenantScope;
use crate::ids::{EventId, TenantId};
use crate::store::{for_both_backends, Begin, StoreError};

/// Appends events inside the caller's transaction. Tenant events go to the tenant's chain
/// (the transaction must be bound to that tenant on PostgreSQL); events without a tenant go
/// to the platform stream.
pub(crate) trait Append: Sized {
    async fn append(&mut self, event: &AuditRecord) -> Result<(), StoreError>;

    /// Appends `event` and commits: the change and its record land together or not at all.
    async fn commit_with(self, event: &AuditRecord) -> Result<(), StoreError>;

    /// As [`Append::commit_with`], for a change that narrows what sessions may do: bumps the
    /// auth epoch in the same transaction, so cached principals are re-read
    /// (`identity::principals`).
    async fn commit_narrowing(self, event: &AuditRecord) -> Result<(), StoreError>;
}

/// Run inside every transaction that narrows (or changes) what a cached principal says.
const BUMP_AUTH_EPOCH: &str = "UPDATE auth_epoch SET epoch = epoch + 1 WHERE id = 1";

/// Creates each chain's head on its first event, and locks it until the transaction ends
/// (the VALUES rows go between the two halves).
const LOCK_HEADS: &str = "INSERT INTO audit_heads (tenant_id, seq, hash) ";
const LOCKED_HEADS: &str = " ON CONFLICT (tenant_id) DO UPDATE SET seq = audit_heads.seq
     RETURNING tenant_id, seq, hash";
const MOVE_HEADS: &str = "INSERT INTO audit_heads (tenant_id, seq, hash) ";
const MOVED_HEADS: &str =
    " ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash";
const EVENT_COLUMNS: &str = "INSERT INTO audit_events (tenant_id, seq, id, occurred_at_us,
     actor_type, actor_id, actor_role, action, target_type, target_id, outcome, ip,
     user_agent, request_id, changes, prev_hash, hash) ";
/// Rows per INSERT statement: 64, 16, 4 or 1, so a connection prepares at most four
/// statements for any batch (a 64-row statement costs as much to prepare as to run), and
/// 17 parameters a row stays far below both backends' limits.
fn statement_rows(remaining: usize) -> usize {
    [64, 16, 4, 1]
        .into_iter()
        .find(|&rows| rows <= remaining)
        .unwrap_or(1)
}

/// A record rendered as the text the chain hashes.
struct Rendered<'a> {
    record: &'a AuditRecord,
    tenant: TenantId,
    id: EventId,
    /// The id's text, as the chain hashes it.
    id_text: String,
    occurred_at_us: i64,
    actor_id: String,
    ip: Option<String>,
    changes: String,
    seq: i64,
    prev_hash: Hash,
    hash: Hash,
}

impl<'a> Rendered<'a> {
    fn new(record: &'a AuditRecord) -> Self {
        let id = EventId::generate();
        Self {
            record,
            tenant: TenantId::from_uuid(record.stream()),
            id,
            id_text: id.to_string(),
            occurred_at_us: micros(record.occurred_at),
            actor_id: record.actor.id(),
            ip: record.ip.map(|ip| ip.to_string()),
            changes: serde_json::to_string(&record.changes).unwrap_or_else(|_| "{}".into()),
            seq: 0,
            prev_hash: GENESIS,
            hash: GENESIS,
        }
    }

    fn link(&mut self, stream: &str, seq: i64, prev: Hash, buf: &mut Vec<u8>) -> Hash {
        let record = self.record;
        self.seq = seq;
        self.prev_hash = prev;
        self.hash = Fields {
            stream,
            seq,
            id: &self.id_text,
            occurred_at_us: self.occurred_at_us,
            actor_type: record.actor.kind(),
            actor_id: &self.actor_id,
            actor_role: record.actor.role(),
            action: record.action,
            target_type: record.target_type,
            target_id: &record.target_id,
            outcome: record.outcome,
            ip: self.ip.as_deref(),
            user_agent: record.user_agent.as_deref(),
            request_id: &record.request_id,
            changes: &self.changes,
        }
        .link_using(&prev, buf);
        self.hash
    }
}

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

/// The store's operations beyond appending in a caller's transaction.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events of any chains in one transaction: group commit.
    async fn append_batch(&self, events: &[AuditRecord]) -> Result<(), StoreError>;
    async fn head(&self, stream: Uuid) -> Result<Option<Head>, StoreError>;
    /// Signed points of a chain, oldest first.
    async fn points(&self, stream: Uuid) -> Result<Vec<StoredPoint>, StoreError>;
    /// Sends the chain's events in sequence order, from `from_seq`, to `to_seq` when given,
    /// into `sink`; stops early when the receiver goes away. Constant memory.
    async fn walk(
        &self,
        stream: Uuid,
        from_seq: i64,
        to_seq: Option<i64>,
        sink: mpsc::Sender<ChainedEvent>,
    ) -> Result<(), StoreError>;
    /// Every chain with a head.
    async fn streams(&self) -> Result<Vec<Uuid>, StoreError>;
    /// The key that signed the newest checkpoint, if any.
    async fn last_signer(&self) -> Result<Option<String>, StoreError>;
    /// The sequence range of a chain's events in `[from_us, to_us)`.
    async fn seq_range(
        &self,
        stream: Uuid,
        from_us: Option<i64>,
        to_us: Option<i64>,
    ) -> Result<Option<(i64, i64)>, StoreError>;
    async fn search(
        &self,
        stream: Uuid,
        filter: &EventFilter,
    ) -> Result<Vec<ChainedEvent>, StoreError>;
    /// Heads with events no checkpoint covers: `every` events past the last checkpoint, or
    /// any, when it is older than `stale_before_us`.
    async fn due_for_checkpoint(
        &self,
        every: i64,
        stale_before_us: i64,
    ) -> Result<Vec<Head>, StoreError>;
    async fn add_point(&self, stream: Uuid, point: &StoredPoint) -> Result<(), StoreError>;
    async fn set_retention(
        &self,
        stream: Uuid,
        days: Option<i32>,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
    async fn retention(&self, stream: Uuid) -> Result<Option<i32>, StoreError>;
    /// Chains that keep limited history: (stream, days).
    async fn retained(&self) -> Result<Vec<(Uuid, i32)>, StoreError>;
    /// The last event older than `cutoff_us` such that every earlier event is older too.
    async fn prunable_through(
        &self,
        stream: Uuid,
        cutoff_us: i64,
    ) -> Result<Option<(i64, Hash)>, StoreError>;
    /// Writes `anchor`, deletes the events it covers, and records `event`, atomically.
    async fn prune(
        &self,
        stream: Uuid,
        anchor: &StoredPoint,
        event: &AuditRecord,
    ) -> Result<u64, StoreError>;
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

/// The scope a chain's rows are read and written in. The audit service walks chains for
/// upkeep (checkpoints, pruning, verification) as well as for a tenant's reads, and its
/// routes have already checked the caller's own tenant: the chain's id is the tenant.
fn stream_scope(stream: Uuid) -> TenantScope {
    TenantScope::for_system(TenantId::from_uuid(stream))
}

for_both_backends! {
    const BINDS_TENANT: bool = <Db as Dialect>::BINDS_TENANT;
    const PRUNE: &str = <Db as Dialect>::PRUNE;

    /// Links `chains` (each a stream's events, streams in order) after their heads, inserts
    /// them and moves the heads: three statements for any number of chains, plus one
    /// binding per chain where row-level security needs the tenant (`bind_each`).
    async fn append_chained(
        tx: &mut Transaction<'static, Db>,
        chains: &mut [(Uuid, Vec<Rendered<'_>>)],
        bind_each: bool,
    ) -> Result<(), StoreError> {
        // Every head at once, locked in stream order: two batches never wait in a cycle.
        let mut lock = QueryBuilder::<Db>::new(LOCK_HEADS);
        lock.push_values(chains.iter(), |mut row, (stream, _)| {
            row.push_bind(TenantId::from_uuid(*stream))
                .push_bind(0i64)
                .push_bind(&GENESIS[..]);
        });
        lock.push(LOCKED_HEADS);
        let mut heads = std::collections::HashMap::with_capacity(chains.len());
        for row in lock.build().fetch_all(&mut **tx).await? {
            let stream: TenantId = row.try_get(0)?;
            let seq: i64 = row.try_get(1)?;
            heads.insert(stream.as_uuid(), (seq, hash_of(row.try_get::<&[u8], _>(2)?)?));
        }
        let mut buf = Vec::with_capacity(512);
        let mut moved = Vec::with_capacity(chains.len());
        for (stream, events) in chains.iter_mut() {
            let name = stream_name(*stream);
            let (mut seq, mut prev) = *heads
                .get(stream)
                .ok_or_else(|| StoreError::Other("an audit head was not returned".into()))?;
            for event in events.iter_mut() {
                seq += 1;
                prev = event.link(&name, seq, prev, &mut buf);
            }
            moved.push((TenantId::from_uuid(*stream), seq, prev));
        }
        if bind_each {
            for (stream, events) in chains.iter() {
                sqlx::query(BIND_TENANT)
                    .bind(stream.to_string())
                    .execute(&mut **tx)
                    .await?;
                insert_rows(tx, events.iter()).await?;
            }
        } else {
            insert_rows(tx, chains.iter().flat_map(|(_, events)| events.iter())).await?;
        }
        let mut advance = QueryBuilder::<Db>::new(MOVE_HEADS);
        advance.push_values(moved.iter(), |mut row, (tenant, seq, hash)| {
            row.push_bind(*tenant).push_bind(*seq).push_bind(&hash[..]);
        });
        advance.push(MOVED_HEADS);
        advance.build().execute(&mut **tx).await?;
        Ok(())
    }

    /// Inserts rendered events, in statements of 64, 16, 4 or 1 rows.
    async fn insert_rows<'r, 'e: 'r>(
        tx: &mut Transaction<'static, Db>,
        events: impl Iterator<Item = &'r Rendered<'e>>,
    ) -> Result<(), StoreError> {
        let events: Vec<&Rendered<'_>> = events.collect();
        let mut rest: &[&Rendered<'_>] = &events;
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(statement_rows(rest.len()));
            rest = after;
            let mut insert = QueryBuilder::<Db>::new(EVENT_COLUMNS);
            insert.push_values(chunk, |mut row, event| {
                let record = event.record;
                // Borrowed: the rows outlive the statement, and nothing is copied twice.
                row.push_bind(event.tenant)
                    .push_bind(event.seq)
                    .push_bind(event.id)
                    .push_bind(event.occurred_at_us)
                    .push_bind(record.actor.kind())
                    .push_bind(event.actor_id.as_str())
                    .push_bind(record.actor.role())
                    .push_bind(record.action)
                    .push_bind(record.target_type)
                    .push_bind(record.target_id.as_str())
                    .push_bind(record.outcome)
                    .push_bind(event.ip.as_deref())
                    .push_bind(record.user_agent.as_deref())
                    .push_bind(record.request_id.as_str())
                    .push_bind(event.changes.as_str())
                    .push_bind(&event.prev_hash[..])
                    .push_bind(&event.hash[..]);
            });
            insert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    impl Append for Transaction<'static, Db> {
        async fn append(&mut self, event: &AuditRecord) -> Result<(), StoreError> {
            // The caller's transaction is already bound to the event's tenant.
            let mut chain = [(event.stream(), vec![Rendered::new(event)])];
            append_chained(self, &mut chain, false).await
        }

        async fn commit_with(mut self, event: &AuditRecord) -> Result<(), StoreError> {
            self.append(event).await?;
            self.commit().await?;
            Ok(())
        }

        async fn commit_narrowing(mut self, event: &AuditRecord) -> Result<(), StoreError> {
            sqlx::query(BUMP_AUTH_EPOCH).execute(&mut *self).await?;
            self.commit_with(event).await
        }
    }

    fn chained_event(row: &DbRow) -> Result<ChainedEvent, sqlx::Error> {
        let tenant: TenantId = row.try_get("tenant_id")?;
        let id: EventId = row.try_get("id")?;
        let hash = |column: &str| -> Result<Hash, sqlx::Error> {
            let bytes: &[u8] = row.try_get(column)?;
            bytes.try_into().map_err(|_| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: "a stored hash is not 32 bytes".into(),
            })
        };
        Ok(ChainedEvent {
            stream: stream_name(tenant.as_uuid()),
            seq: row.try_get("seq")?,
            id: id.to_string(),
            occurred_at_us: row.try_get("occurred_at_us")?,
            actor_type: row.try_get("actor_type")?,
            actor_id: row.try_get("actor_id")?,
            actor_role: row.try_get("actor_role")?,
            action: row.try_get("action")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            outcome: row.try_get("outcome")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            request_id: row.try_get("request_id")?,
            changes: row.try_get("changes")?,
            prev_hash: hash("prev_hash")?,
            hash: hash("hash")?,
        })
    }

    #[async_trait::async_trait]
    impl AuditStore for SqlAuditStore<Pool> {
        async fn append_batch(&self, events: &[AuditRecord]) -> Result<(), StoreError> {
            let mut by_stream: BTreeMap<Uuid, Vec<Rendered<'_>>> = BTreeMap::new();
            for event in events {
                by_stream.entry(event.stream()).or_default().push(Rendered::new(event));
            }
            let mut chains: Vec<(Uuid, Vec<Rendered<'_>>)> = by_stream.into_iter().collect();
            let mut tx = self.0.write().await?;
            append_chained(&mut tx, &mut chains, BINDS_TENANT).await?;
            tx.commit().await?;
            Ok(())
        }

        async fn head(&self, stream: Uuid) -> Result<Option<Head>, StoreError> {
            let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
                .bind(TenantId::from_uuid(stream))
                .fetch_optional(&self.0)
                .await?;
            row.map(|row| {
                Ok(Head {
                    stream,
                    seq: row.try_get(0)?,
                    hash: hash_of(row.try_get::<&[u8], _>(1)?)?,
                })
            })
            .transpose()
        }

        async fn points(&self, stream: Uuid) -> Result<Vec<StoredPoint>, StoreError> {
            let rows = sqlx::query(
                "SELECT kind, seq, hash, signed_at_us, key_id, signature FROM audit_checkpoints
                 WHERE tenant_id = $1 ORDER BY seq, kind",
            )
            .bind(TenantId::from_uuid(stream))
            .fetch_all(&self.0)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(StoredPoint {
                        kind: row.try_get(0)?,
                        seq: row.try_get(1)?,
                        hash: hash_of(row.try_get::<&[u8], _>(2)?)?,
                        signed_at_us: row.try_get(3)?,
                        key_id: row.try_get(4)?,
                        signature: row.try_get(5)?,
                    })
                })
                .collect()
        }

        async fn walk(
            &self,
            stream: Uuid,
            from_seq: i64,
            to_seq: Option<i64>,
            sink: mpsc::Sender<ChainedEvent>,
        ) -> Result<(), StoreError> {
            let tenant = TenantId::from_uuid(stream);
            let mut reader = self.0.tenant_reader(stream_scope(stream)).await?;
            {
                let mut rows = sqlx::query(
                    "SELECT * FROM audit_events
                     WHERE tenant_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq",
                )
                .bind(tenant)
                .bind(from_seq)
                .bind(to_seq.unwrap_or(i64::MAX))
                .fetch(&mut *reader);
                while let Some(row) = rows.try_next().await? {
                    if sink.send(chained_event(&row)?).await.is_err() {
                        break;
                    }
                }
            }
            <Pool as Begin>::end_read(reader).await?;
            Ok(())
        }

        async fn streams(&self) -> Result<Vec<Uuid>, StoreError> {
            let streams: Vec<TenantId> =
                sqlx::query_scalar("SELECT tenant_id FROM audit_heads ORDER BY tenant_id")
                    .fetch_all(&self.0)
                    .await?;
            Ok(streams.iter().map(TenantId::as_uuid).collect())
        }

        async fn last_signer(&self) -> Result<Option<String>, StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT key_id FROM audit_checkpoints ORDER BY signed_at_us DESC LIMIT 1",
            )
            .fetch_optional(&self.0)
            .await?)
        }

        async fn seq_range(
            &self,
            stream: Uuid,
            from_us: Option<i64>,
            to_us: Option<i64>,
        ) -> Result<Option<(i64, i64)>, StoreError> {
            let tenant = TenantId::from_uuid(stream);
            let mut reader = self.0.tenant_reader(stream_scope(stream)).await?;
            let range: (Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT
                   (SELECT min(seq) FROM audit_events WHERE tenant_id = $1 AND occurred_at_us >= $2),
                   (SELECT max(seq) FROM audit_events WHERE tenant_id = $1 AND occurred_at_us < $3)",
            )
            .bind(tenant)
            .bind(from_us.unwrap_or(i64::MIN))
            .bind(to_us.unwrap_or(i64::MAX))
            .fetch_one(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            Ok(match range {
                (Some(first), Some(last)) if first <= last => Some((first, last)),
                _ => None,
            })
        }

        async fn search(
            &self,
            stream: Uuid,
            filter: &EventFilter,
        ) -> Result<Vec<ChainedEvent>, StoreError> {
            let tenant = TenantId::from_uuid(stream);
            let mut reader = self.0.tenant_reader(stream_scope(stream)).await?;
            let rows = sqlx::query(
                "SELECT * FROM audit_events
                 WHERE tenant_id = $1 AND seq < $2
                   AND ($3 IS NULL OR actor_id = $3)
                   AND ($4 IS NULL OR action = $4)
                   AND ($5 IS NULL OR target_type = $5)
                   AND ($6 IS NULL OR target_id = $6)
                   AND occurred_at_us >= $7 AND occurred_at_us < $8
                 ORDER BY seq DESC LIMIT $9",
            )
            .bind(tenant)
            .bind(filter.before.unwrap_or(i64::MAX))
            .bind(filter.actor.as_deref())
            .bind(filter.action.as_deref())
            .bind(filter.target_type.as_deref())
            .bind(filter.target_id.as_deref())
            .bind(filter.from_us.unwrap_or(i64::MIN))
            .bind(filter.to_us.unwrap_or(i64::MAX))
            .bind(filter.limit)
            .fetch_all(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            Ok(rows.iter().map(chained_event).collect::<Result<_, _>>()?)
        }

        async fn due_for_checkpoint(
            &self,
            every: i64,
            stale_before_us: i64,
        ) -> Result<Vec<Head>, StoreError> {
            let rows = sqlx::query(
                "SELECT tenant_id, seq, hash FROM audit_heads
                 WHERE seq > checkpointed_seq
                   AND (seq >= checkpointed_seq + $1 OR checkpointed_at_us <= $2)",
            )
            .bind(every)
            .bind(stale_before_us)
            .fetch_all(&self.0)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(Head {
                        stream: row.try_get::<TenantId, _>(0)?.as_uuid(),
                        seq: row.try_get(1)?,
                        hash: hash_of(row.try_get::<&[u8], _>(2)?)?,
                    })
                })
                .collect()
        }

        async fn add_point(&self, stream: Uuid, point: &StoredPoint) -> Result<(), StoreError> {
            let mut tx = self.0.write().await?;
            insert_point(&mut tx, stream, point).await?;
            sqlx::query(
                "UPDATE audit_heads SET checkpointed_seq = $2, checkpointed_at_us = $3
                 WHERE tenant_id = $1 AND checkpointed_seq < $2",
            )
            .bind(TenantId::from_uuid(stream))
            .bind(point.seq)
            .bind(point.signed_at_us)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }

        async fn set_retention(
            &self,
            stream: Uuid,
            days: Option<i32>,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let tenant = TenantId::from_uuid(stream);
            let mut tx = self.0.tenant(stream_scope(stream)).await?;
            // The event first: it creates the head when the chain has none yet.
            tx.append(event).await?;
            sqlx::query("UPDATE audit_heads SET retention_days = $2 WHERE tenant_id = $1")
                .bind(tenant)
                .bind(days)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        async fn retention(&self, stream: Uuid) -> Result<Option<i32>, StoreError> {
            let days: Option<Option<i32>> =
                sqlx::query_scalar("SELECT retention_days FROM audit_heads WHERE tenant_id = $1")
                    .bind(TenantId::from_uuid(stream))
                    .fetch_optional(&self.0)
                    .await?;
            Ok(days.flatten())
        }

        async fn retained(&self) -> Result<Vec<(Uuid, i32)>, StoreError> {
            let rows: Vec<(TenantId, i32)> = sqlx::query_as(
                "SELECT tenant_id, retention_days FROM audit_heads
                 WHERE retention_days IS NOT NULL",
            )
            .fetch_all(&self.0)
            .await?;
            Ok(rows.into_iter().map(|(t, d)| (t.as_uuid(), d)).collect())
        }

        async fn prunable_through(
            &self,
            stream: Uuid,
            cutoff_us: i64,
        ) -> Result<Option<(i64, Hash)>, StoreError> {
            let tenant = TenantId::from_uuid(stream);
            let mut reader = self.0.tenant_reader(stream_scope(stream)).await?;
            let row = sqlx::query(
                "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 AND seq = (
                   SELECT coalesce(
                     (SELECT min(seq) - 1 FROM audit_events
                      WHERE tenant_id = $1 AND occurred_at_us >= $2),
                     (SELECT max(seq) FROM audit_events WHERE tenant_id = $1)))",
            )
            .bind(tenant)
            .bind(cutoff_us)
            .fetch_optional(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            row.map(|row| Ok((row.try_get(0)?, hash_of(row.try_get::<&[u8], _>(1)?)?)))
                .transpose()
        }

        async fn prune(
            &self,
            stream: Uuid,
            anchor: &StoredPoint,
            event: &AuditRecord,
        ) -> Result<u64, StoreError> {
            let tenant = TenantId::from_uuid(stream);
            let mut tx = self.0.tenant(stream_scope(stream)).await?;
            insert_point(&mut tx, stream, anchor).await?;
            let pruned: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND seq <= $2",
            )
            .bind(tenant)
            .bind(anchor.seq)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(PRUNE)
                .bind(tenant)
                .bind(anchor.seq)
                .execute(&mut *tx)
                .await?;
            tx.commit_with(event).await?;
            Ok(pruned as u64)
        }
    }

    async fn insert_point(
        tx: &mut Transaction<'static, Db>,
        stream: Uuid,
        point: &StoredPoint,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints
               (tenant_id, seq, kind, hash, signed_at_us, key_id, signature)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(TenantId::from_uuid(stream))
        .bind(point.seq)
        .bind(&point.kind)
        .bind(&point.hash[..])
        .bind(point.signed_at_us)
        .bind(&point.key_id)
        .bind(&point.signature)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
