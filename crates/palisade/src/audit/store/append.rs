//! The append path: events linked after their chain's head, inserted and the head moved, in
//! the caller's transaction ([`Append`]) or many chains at once in one (the writer's group
//! commit, [`BatchAppend`]). Appending locks the chain's head row until the transaction ends,
//! so concurrent writers of one tenant link one after another (on SQLite the write
//! transaction already excludes every other writer).

use std::collections::BTreeMap;

use sqlx::{QueryBuilder, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::super::app::{Appended, IdempotencyKey, Recorded, IDEMPOTENCY_WINDOW};
use super::super::chain::{Fields, Hash, GENESIS};
use super::super::{stream_name, AuditRecord};
use super::{hash_of, micros, Dialect, SqlAuditStore, BIND_TENANT};
use crate::ids::{EventId, TenantId};
use crate::store::{for_both_backends, Begin, StoreError};
use crate::webhooks::store::Outbox;

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

/// Appends events of any chains in one transaction: group commit.
#[async_trait::async_trait]
pub trait BatchAppend: Send + Sync {
    async fn append_batch(&self, events: &[AuditRecord]) -> Result<(), StoreError>;
}

/// Appends the app's events (claim APP-4) in one transaction, honouring an
/// `Idempotency-Key`: the key's row is written in the same transaction as the events, so a
/// retry after a crash either finds both or neither.
#[async_trait::async_trait]
pub trait AppAppend: Send + Sync {
    async fn append_app_events(
        &self,
        events: &[AuditRecord],
        key: Option<&IdempotencyKey>,
        now: OffsetDateTime,
    ) -> Result<Recorded, StoreError>;
    /// Deletes the idempotency keys claimed before `before` (past their window): how many.
    async fn prune_idempotency_keys(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

/// Claims a key; on PostgreSQL a concurrent claim of the same key waits for this one's end.
const CLAIM_KEY: &str =
    "INSERT INTO app_event_keys (service_id, key, body_hash, answer, created_at)
     VALUES ($1, $2, $3, '', $4) ON CONFLICT (service_id, key) DO NOTHING";
const CLAIMED_KEY: &str =
    "SELECT body_hash, answer, created_at FROM app_event_keys WHERE service_id = $1 AND key = $2";
/// A key older than the window is anyone's again.
const RECLAIM_KEY: &str = "UPDATE app_event_keys SET body_hash = $3, answer = '', created_at = $4
     WHERE service_id = $1 AND key = $2";
const ANSWER_KEY: &str = "UPDATE app_event_keys SET answer = $3 WHERE service_id = $1 AND key = $2";

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
     user_agent, request_id, changes, app, prev_hash, hash) ";
/// Rows per INSERT statement: 64, 16, 4 or 1, so a connection prepares at most four
/// statements for any batch (a 64-row statement costs as much to prepare as to run), and
/// 18 parameters a row stays far below both backends' limits.
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
    /// Its place among the events the caller gave (a batch's answer keeps their order).
    given_at: usize,
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
            given_at: 0,
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
            action: &record.action,
            target_type: &record.target_type,
            target_id: &record.target_id,
            outcome: record.outcome,
            ip: self.ip.as_deref(),
            user_agent: record.user_agent.as_deref(),
            request_id: &record.request_id,
            changes: &self.changes,
            app: record.app.as_deref(),
        }
        .link_using(&prev, buf);
        self.hash
    }
}

for_both_backends! {
    const BINDS_TENANT: bool = <Db as Dialect>::BINDS_TENANT;

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
        // Each change's webhook announcement (HOOK-2) is written beside its event, in the
        // same transaction, bound to the same tenant.
        if bind_each {
            for (stream, events) in chains.iter() {
                sqlx::query(BIND_TENANT)
                    .bind(stream.to_string())
                    .execute(&mut **tx)
                    .await?;
                insert_rows(tx, events.iter()).await?;
                for event in events {
                    tx.announce(event.record).await?;
                }
            }
        } else {
            insert_rows(tx, chains.iter().flat_map(|(_, events)| events.iter())).await?;
            for event in chains.iter().flat_map(|(_, events)| events.iter()) {
                tx.announce(event.record).await?;
            }
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
                    .push_bind(record.action.as_ref())
                    .push_bind(record.target_type.as_ref())
                    .push_bind(record.target_id.as_str())
                    .push_bind(record.outcome)
                    .push_bind(event.ip.as_deref())
                    .push_bind(record.user_agent.as_deref())
                    .push_bind(record.request_id.as_str())
                    .push_bind(event.changes.as_str())
                    .push_bind(record.app.as_deref())
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

    #[async_trait::async_trait]
    impl BatchAppend for SqlAuditStore<Pool> {
        async fn append_batch(&self, events: &[AuditRecord]) -> Result<(), StoreError> {
            let mut chains = by_stream(events);
            let mut tx = self.0.write().await?;
            append_chained(&mut tx, &mut chains, BINDS_TENANT).await?;
            tx.commit().await?;
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl AppAppend for SqlAuditStore<Pool> {
        async fn append_app_events(
            &self,
            events: &[AuditRecord],
            key: Option<&IdempotencyKey>,
            now: OffsetDateTime,
        ) -> Result<Recorded, StoreError> {
            let mut tx = self.0.write().await?;
            if let Some(key) = key {
                let claimed = sqlx::query(CLAIM_KEY)
                    .bind(key.service)
                    .bind(&key.key)
                    .bind(&key.body_sha256[..])
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if claimed == 0 {
                    let (body_hash, answer, created_at): (Vec<u8>, String, OffsetDateTime) =
                        sqlx::query_as(CLAIMED_KEY)
                            .bind(key.service)
                            .bind(&key.key)
                            .fetch_one(&mut *tx)
                            .await?;
                    if created_at > now - IDEMPOTENCY_WINDOW {
                        if !crate::crypto::constant_time_eq(&body_hash, &key.body_sha256) {
                            return Ok(Recorded::KeyReused);
                        }
                        let first = serde_json::from_str(&answer).map_err(|error| {
                            StoreError::Other(format!("a stored idempotent answer: {error}").into())
                        })?;
                        return Ok(Recorded::Replayed(first));
                    }
                    sqlx::query(RECLAIM_KEY)
                        .bind(key.service)
                        .bind(&key.key)
                        .bind(&key.body_sha256[..])
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let mut chains = by_stream(events);
            append_chained(&mut tx, &mut chains, BINDS_TENANT).await?;
            let appended = in_given_order(events.len(), &chains);
            if let Some(key) = key {
                let answer = serde_json::to_string(&appended)
                    .map_err(|error| StoreError::Other(error.to_string().into()))?;
                sqlx::query(ANSWER_KEY)
                    .bind(key.service)
                    .bind(&key.key)
                    .bind(answer)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Recorded::Appended(appended))
        }

        async fn prune_idempotency_keys(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
            let mut tx = self.0.write().await?;
            let pruned = sqlx::query("DELETE FROM app_event_keys WHERE created_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(pruned)
        }
    }
}

/// Events grouped by chain, chains in stream order (the order their heads are locked in);
/// each rendered event remembers its place in `events`.
fn by_stream(events: &[AuditRecord]) -> Vec<(Uuid, Vec<Rendered<'_>>)> {
    let mut by_stream: BTreeMap<Uuid, Vec<Rendered<'_>>> = BTreeMap::new();
    for (at, event) in events.iter().enumerate() {
        let mut rendered = Rendered::new(event);
        rendered.given_at = at;
        by_stream.entry(event.stream()).or_default().push(rendered);
    }
    by_stream.into_iter().collect()
}

/// Where each event landed, in the order the caller gave them.
fn in_given_order(count: usize, chains: &[(Uuid, Vec<Rendered<'_>>)]) -> Vec<Appended> {
    let mut appended: Vec<Option<Appended>> = vec![None; count];
    for event in chains.iter().flat_map(|(_, events)| events) {
        appended[event.given_at] = Some(Appended {
            id: event.id,
            tenant_id: event.tenant,
            seq: event.seq,
            hash: event.hash,
        });
    }
    appended.into_iter().flatten().collect()
}
