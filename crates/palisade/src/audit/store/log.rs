//! The log's own store: a chain's events, head and signed points read in the chain's scope,
//! checkpoints added, retention kept and history pruned below a signed anchor.

use futures_util::TryStreamExt;
use sqlx::{Row, Transaction};
use tokio::sync::mpsc;

use super::super::chain::{ChainedEvent, Hash};
use super::super::redaction::ErasedPerson;
use super::super::signing::LogSigner;
use super::super::{stream_name, AuditRecord};
use super::{hash_of, Append, Chain, Dialect, EventFilter, Head, SqlAuditStore, StoredPoint};
use crate::ids::{EventId, TenantId};
use crate::store::{for_both_backends, Begin, StoreError};

/// The log's own operations: reading a chain, signing it, keeping and pruning its history.
#[async_trait::async_trait]
pub trait AuditLog: Send + Sync {
    async fn head(&self, chain: Chain) -> Result<Option<Head>, StoreError>;
    /// Signed points of a chain, oldest first.
    async fn points(&self, chain: Chain) -> Result<Vec<StoredPoint>, StoreError>;
    /// Sends the chain's events in sequence order, from `from_seq`, to `to_seq` when given,
    /// into `sink`; stops early when the receiver goes away. Constant memory.
    async fn walk(
        &self,
        chain: Chain,
        from_seq: i64,
        to_seq: Option<i64>,
        sink: mpsc::Sender<ChainedEvent>,
    ) -> Result<(), StoreError>;
    /// Every chain with a head, for upkeep and the operator's verify.
    async fn streams(&self) -> Result<Vec<Chain>, StoreError>;
    /// The key that signed the newest checkpoint, if any.
    async fn last_signer(&self) -> Result<Option<String>, StoreError>;
    /// The sequence range of a chain's events in `[from_us, to_us)`.
    async fn seq_range(
        &self,
        chain: Chain,
        from_us: Option<i64>,
        to_us: Option<i64>,
    ) -> Result<Option<(i64, i64)>, StoreError>;
    async fn search(
        &self,
        chain: Chain,
        filter: &EventFilter,
    ) -> Result<Vec<ChainedEvent>, StoreError>;
    /// Heads with events no checkpoint covers: `every` events past the last checkpoint, or
    /// any, when it is older than `stale_before_us`.
    async fn due_for_checkpoint(
        &self,
        every: i64,
        stale_before_us: i64,
    ) -> Result<Vec<Head>, StoreError>;
    async fn add_point(&self, chain: Chain, point: &StoredPoint) -> Result<(), StoreError>;
    async fn set_retention(
        &self,
        chain: Chain,
        days: Option<i32>,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
    async fn retention(&self, chain: Chain) -> Result<Option<i32>, StoreError>;
    /// Chains that keep limited history: (chain, days), for upkeep.
    async fn retained(&self) -> Result<Vec<(Chain, i32)>, StoreError>;
    /// The last event older than `cutoff_us` such that every earlier event is older too.
    async fn prunable_through(
        &self,
        chain: Chain,
        cutoff_us: i64,
    ) -> Result<Option<(i64, Hash)>, StoreError>;
    /// Writes `anchor`, deletes the events it covers, and records `event`, atomically.
    async fn prune(
        &self,
        chain: Chain,
        anchor: &StoredPoint,
        event: &AuditRecord,
    ) -> Result<u64, StoreError>;
}

/// Erasure's redactions (claim OPS-5), inside the caller's transaction: on PostgreSQL it
/// must be bound to the chain's tenant (the platform stream's is the nil id).
pub(crate) trait Redact {
    /// Redacts `person`'s data from every event of chain `stream` holding some, each row
    /// signed by `redactor`: how many events changed.
    async fn redact_person(
        &mut self,
        stream: uuid::Uuid,
        person: &ErasedPerson<'_>,
        signer: &LogSigner,
    ) -> Result<u64, StoreError>;
}

/// A deleted tenant's log (claim OPS-5), inside the caller's transaction bound to it: what
/// retention does, all at once. An anchor is signed at the chain's head and every event up
/// to it deleted; the head and the signed points stay (they hold only hashes), so the
/// chain still verifies, as one that ended where the anchor says.
pub(crate) trait Forget {
    /// The anchor's (seq, hash); None for a chain that never had an event.
    async fn forget_chain(
        &mut self,
        chain: Chain,
        signer: &LogSigner,
        at_us: i64,
    ) -> Result<Option<(i64, Hash)>, StoreError>;
}

/// The events that may hold a person's data (`ErasedPerson` decides): what they did from
/// an address or a user agent, anonymous attempts on their account, and what was done to
/// their email. A scan of the chain: erasure is rare, and no append pays for an index on
/// targets.
const HOLDING_PERSON: &str = "SELECT * FROM audit_events WHERE tenant_id = $1
     AND (((actor_id = $2 OR (actor_type = 'anonymous' AND target_type = 'user'
                              AND target_id = $2))
           AND (ip IS NOT NULL OR user_agent IS NOT NULL))
          OR (target_type = 'email' AND target_id = $3))";
const REDACT: &str = "UPDATE audit_events SET ip = $3, user_agent = $4, target_id = $5,
     redaction = $6 WHERE tenant_id = $1 AND seq = $2";

for_both_backends! {
    const PRUNE: &str = <Db as Dialect>::PRUNE;

    impl Forget for Transaction<'static, Db> {
        async fn forget_chain(
            &mut self,
            chain: Chain,
            signer: &LogSigner,
            at_us: i64,
        ) -> Result<Option<(i64, Hash)>, StoreError> {
            let head: Option<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
                    .bind(chain.tenant())
                    .fetch_optional(&mut **self)
                    .await?;
            let Some((seq, hash)) = head else {
                return Ok(None);
            };
            let hash = hash_of(&hash)?;
            let anchor = signer.point("anchor", chain.stream(), seq, hash, at_us);
            insert_point(self, chain, &anchor).await?;
            sqlx::query(PRUNE)
                .bind(chain.tenant())
                .bind(seq)
                .execute(&mut **self)
                .await?;
            Ok(Some((seq, hash)))
        }
    }

    impl Redact for Transaction<'static, Db> {
        async fn redact_person(
            &mut self,
            stream: uuid::Uuid,
            person: &ErasedPerson<'_>,
            signer: &LogSigner,
        ) -> Result<u64, StoreError> {
            let tenant = TenantId::from_uuid(stream);
            let rows = sqlx::query(HOLDING_PERSON)
                .bind(tenant)
                .bind(person.actor_id)
                .bind(person.email)
                .fetch_all(&mut **self)
                .await?;
            let mut redacted = 0;
            for row in rows {
                let mut event = chained_event(&row)?;
                if !signer.redact(&mut event, person) {
                    continue;
                }
                sqlx::query(REDACT)
                    .bind(tenant)
                    .bind(event.seq)
                    .bind(event.ip.as_deref())
                    .bind(event.user_agent.as_deref())
                    .bind(event.target_id.as_str())
                    .bind(event.redaction.as_deref())
                    .execute(&mut **self)
                    .await?;
                redacted += 1;
            }
            Ok(redacted)
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
            app: row.try_get("app")?,
            prev_hash: hash("prev_hash")?,
            hash: hash("hash")?,
            redaction: row.try_get("redaction")?,
        })
    }

    #[async_trait::async_trait]
    impl AuditLog for SqlAuditStore<Pool> {
        async fn head(&self, chain: Chain) -> Result<Option<Head>, StoreError> {
            let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE tenant_id = $1")
                .bind(chain.tenant())
                .fetch_optional(&self.0)
                .await?;
            row.map(|row| {
                Ok(Head {
                    stream: chain.stream(),
                    seq: row.try_get(0)?,
                    hash: hash_of(row.try_get::<&[u8], _>(1)?)?,
                })
            })
            .transpose()
        }

        async fn points(&self, chain: Chain) -> Result<Vec<StoredPoint>, StoreError> {
            let rows = sqlx::query(
                "SELECT kind, seq, hash, signed_at_us, key_id, signature FROM audit_checkpoints
                 WHERE tenant_id = $1 ORDER BY seq, kind",
            )
            .bind(chain.tenant())
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
            chain: Chain,
            from_seq: i64,
            to_seq: Option<i64>,
            sink: mpsc::Sender<ChainedEvent>,
        ) -> Result<(), StoreError> {
            let tenant = chain.tenant();
            let mut reader = self.0.tenant_reader(chain.scope()).await?;
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

        async fn streams(&self) -> Result<Vec<Chain>, StoreError> {
            let streams: Vec<TenantId> =
                sqlx::query_scalar("SELECT tenant_id FROM audit_heads ORDER BY tenant_id")
                    .fetch_all(&self.0)
                    .await?;
            Ok(streams.iter().map(|t| Chain::for_upkeep(t.as_uuid())).collect())
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
            chain: Chain,
            from_us: Option<i64>,
            to_us: Option<i64>,
        ) -> Result<Option<(i64, i64)>, StoreError> {
            let tenant = chain.tenant();
            let mut reader = self.0.tenant_reader(chain.scope()).await?;
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
            chain: Chain,
            filter: &EventFilter,
        ) -> Result<Vec<ChainedEvent>, StoreError> {
            let tenant = chain.tenant();
            let mut reader = self.0.tenant_reader(chain.scope()).await?;
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

        async fn add_point(&self, chain: Chain, point: &StoredPoint) -> Result<(), StoreError> {
            let mut tx = self.0.write().await?;
            insert_point(&mut tx, chain, point).await?;
            sqlx::query(
                "UPDATE audit_heads SET checkpointed_seq = $2, checkpointed_at_us = $3
                 WHERE tenant_id = $1 AND checkpointed_seq < $2",
            )
            .bind(chain.tenant())
            .bind(point.seq)
            .bind(point.signed_at_us)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }

        async fn set_retention(
            &self,
            chain: Chain,
            days: Option<i32>,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let tenant = chain.tenant();
            let mut tx = self.0.tenant(chain.scope()).await?;
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

        async fn retention(&self, chain: Chain) -> Result<Option<i32>, StoreError> {
            let days: Option<Option<i32>> =
                sqlx::query_scalar("SELECT retention_days FROM audit_heads WHERE tenant_id = $1")
                    .bind(chain.tenant())
                    .fetch_optional(&self.0)
                    .await?;
            Ok(days.flatten())
        }

        async fn retained(&self) -> Result<Vec<(Chain, i32)>, StoreError> {
            let rows: Vec<(TenantId, i32)> = sqlx::query_as(
                "SELECT tenant_id, retention_days FROM audit_heads
                 WHERE retention_days IS NOT NULL",
            )
            .fetch_all(&self.0)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(t, d)| (Chain::for_upkeep(t.as_uuid()), d))
                .collect())
        }

        async fn prunable_through(
            &self,
            chain: Chain,
            cutoff_us: i64,
        ) -> Result<Option<(i64, Hash)>, StoreError> {
            let tenant = chain.tenant();
            let mut reader = self.0.tenant_reader(chain.scope()).await?;
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
            chain: Chain,
            anchor: &StoredPoint,
            event: &AuditRecord,
        ) -> Result<u64, StoreError> {
            let tenant = chain.tenant();
            let mut tx = self.0.tenant(chain.scope()).await?;
            insert_point(&mut tx, chain, anchor).await?;
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
        chain: Chain,
        point: &StoredPoint,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints
               (tenant_id, seq, kind, hash, signed_at_us, key_id, signature)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(chain.tenant())
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
