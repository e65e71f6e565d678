//! Webhook storage, written once for both backends: a tenant's endpoints, subscriptions,
//! signing secrets (sealed in the endpoint's transaction by the tenant's data key),
//! messages and attempts — tenant rows, under row-level security on PostgreSQL — and the
//! delivery queue, ids and times only, that every instance's dispatcher claims from
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's one writer serialises claims).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row};
use time::OffsetDateTime;

use super::events;
use crate::access::TenantScope;
use crate::audit::{Append, AuditRecord};
use crate::ids::{AttemptId, EndpointId, MessageId, SigningSecretId, TenantId};
use crate::store::{for_both_backends, Begin, Database, StoreError};
use crate::vault::keys::{VaultError, WrappedKey};
use crate::vault::store::TenantDataKey;
use crate::vault::Vault;

/// An endpoint as stored (never its secrets).
#[derive(Clone, Debug)]
pub struct EndpointRecord {
    pub id: EndpointId,
    pub tenant: TenantId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// `manual` or `failing`, when disabled.
    pub disabled_reason: Option<String>,
    pub failing_since_us: Option<i64>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub id: AttemptId,
    pub endpoint: EndpointId,
    pub message: MessageId,
    pub attempted_us: i64,
    pub succeeded: bool,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub response: String,
}

/// A new signing secret: sealed inside the store's transaction, once the tenant's data key
/// is read (or made).
pub struct NewSigningSecret<'a> {
    pub id: SigningSecretId,
    pub tenant: TenantId,
    pub key: &'a super::signing::SigningKey,
    pub vault: &'a Vault,
    pub at: OffsetDateTime,
}

impl NewSigningSecret<'_> {
    fn sealed_by(&self, dek: &WrappedKey) -> Result<Vec<u8>, VaultError> {
        self.vault.seal(
            self.tenant,
            dek,
            crate::vault::keys::Bound::SigningSecret(self.id),
            self.key.bytes(),
        )
    }
}

/// A message the app sends.
pub struct NewMessage {
    pub id: MessageId,
    pub event_type: String,
    pub body: String,
    pub created_at_us: i64,
}

/// An `Idempotency-Key` with the SHA-256 of the request it came with.
pub struct MessageKey<'a> {
    pub key: &'a str,
    pub request_sha256: [u8; 32],
}

/// A verified inbound event (HOOK-5): which source's, and the sender's id for it.
pub struct InboundEvent<'a> {
    pub tenant: TenantId,
    pub source: &'a str,
    pub event_id: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Recorded, and handed on as the message.
    New,
    /// Received before: the message that handed it on then.
    Duplicate(MessageId),
    /// The source's tenant does not exist.
    NoTenant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    New,
    /// The key was used before with the same request: that message.
    Replayed(MessageId),
    /// The key was used before with another request.
    KeyReused,
}

/// What a manual retry puts back in the queue.
#[derive(Clone, Copy, Debug)]
pub enum Retry {
    /// One message, whatever became of it.
    Message(MessageId),
    /// Every message since then (unix microseconds) not yet delivered: failed for good,
    /// or waiting for a retry (sent now).
    FailedSince(i64),
}

/// A delivery a dispatcher holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Claimed {
    pub tenant: TenantId,
    pub message: MessageId,
    pub endpoint: EndpointId,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// A signing secret as stored, with what opens it (None: the tenant's key was destroyed).
#[derive(Clone)]
pub struct StoredSecret {
    pub id: SigningSecretId,
    pub data_key: Option<WrappedKey>,
    pub sealed: Vec<u8>,
}

/// A claimed delivery with what sending it takes; `url` None: the endpoint is disabled.
pub struct Job {
    pub claimed: Claimed,
    pub url: Option<String>,
    pub body: String,
    pub secrets: Vec<StoredSecret>,
}

/// What became of one claimed delivery.
pub struct Finished {
    pub claimed: Claimed,
    /// The attempt made; None when none was (a disabled endpoint).
    pub attempt: Option<AttemptRecord>,
    pub next: Next,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Succeeded,
    RetryAt(i64),
    Failed,
}

/// Builds the audit event of an endpoint disabled after failing too long.
pub type DisabledEvent<'a> = &'a (dyn Fn(TenantId, EndpointId) -> AuditRecord + Send + Sync);

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_endpoint(
        &self,
        scope: TenantScope,
        endpoint: &EndpointRecord,
        secret: NewSigningSecret<'_>,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
    async fn endpoints(&self, scope: TenantScope) -> Result<Vec<EndpointRecord>, StoreError>;
    async fn endpoint(
        &self,
        scope: TenantScope,
        id: EndpointId,
    ) -> Result<Option<EndpointRecord>, StoreError>;
    /// Writes `endpoint`'s url, description, subscriptions and state; false if gone.
    async fn update_endpoint(
        &self,
        scope: TenantScope,
        endpoint: &EndpointRecord,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    async fn delete_endpoint(
        &self,
        scope: TenantScope,
        id: EndpointId,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Adds `secret`; the ones before sign until `old_until_us`. False if the endpoint is
    /// gone.
    async fn rotate_secret(
        &self,
        scope: TenantScope,
        id: EndpointId,
        secret: NewSigningSecret<'_>,
        old_until_us: i64,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// The app's message, to every enabled endpoint of the tenant subscribed to its type.
    async fn send(
        &self,
        scope: TenantScope,
        message: &NewMessage,
        key: Option<MessageKey<'_>>,
        event: &AuditRecord,
    ) -> Result<Sent, StoreError>;
    /// A verified inbound event, recorded once per source and event id in the same
    /// transaction as `message`, which hands it on to the source's tenant's endpoints.
    async fn receive(
        &self,
        inbound: &InboundEvent<'_>,
        message: &NewMessage,
        event: &AuditRecord,
    ) -> Result<Received, StoreError>;
    /// An endpoint's attempts, newest first, older than `before_us`; None if it is gone.
    async fn attempts(
        &self,
        scope: TenantScope,
        endpoint: EndpointId,
        before_us: Option<i64>,
        limit: i64,
    ) -> Result<Option<Vec<AttemptRecord>>, StoreError>;
    /// Puts deliveries to `endpoint` back in the queue, due at `now_us`; how many, or None
    /// if the endpoint is gone.
    async fn retry(
        &self,
        scope: TenantScope,
        endpoint: EndpointId,
        which: Retry,
        now_us: i64,
        event: &AuditRecord,
    ) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` due deliveries of any tenant, held until `lease_until_us`.
    async fn claim(
        &self,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError>;
    async fn jobs(&self, claimed: &[Claimed], now_us: i64) -> Result<Vec<Job>, StoreError>;
    /// Records attempts and moves deliveries on; endpoints failing since before
    /// `disable_before_us` are disabled (audited by `disabled`). Returns them.
    async fn finish(
        &self,
        finished: &[Finished],
        now_us: i64,
        disable_before_us: Option<i64>,
        disabled: DisabledEvent<'_>,
    ) -> Result<Vec<EndpointId>, StoreError>;
    /// Forgets a tenant's delivery history from before `cutoff_us`: attempts, inbound
    /// receipts, and messages none of whose deliveries is still pending (their deliveries
    /// go with them). Answers the rows removed.
    async fn prune(&self, tenant: TenantId, cutoff_us: i64) -> Result<u64, StoreError>;
}

/// Writes Palisade's own announcement of an audited change (HOOK-2) in the change's
/// transaction: the outbox row, and a delivery to each enabled endpoint subscribed.
pub(crate) trait Outbox {
    async fn announce(&mut self, record: &AuditRecord) -> Result<(), StoreError>;
}

pub fn for_database(db: &Database) -> std::sync::Arc<dyn WebhookStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlWebhookStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlWebhookStore(pool.clone())),
    }
}

struct SqlWebhookStore<P>(P);

/// What differs between the backends.
trait Dialect {
    const BINDS_TENANT: bool;
    const CLAIM: &'static str;
}

impl Dialect for sqlx::Sqlite {
    const BINDS_TENANT: bool = false;
    const CLAIM: &'static str = "UPDATE webhook_deliveries SET leased_until_us = $2
         WHERE rowid IN (SELECT rowid FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_us <= $1 AND leased_until_us <= $1
             ORDER BY next_attempt_us LIMIT $3)
         RETURNING tenant_id, message_id, endpoint_id, attempts";
}

impl Dialect for sqlx::Postgres {
    const BINDS_TENANT: bool = true;
    // Two instances never claim one row: the second skips what the first has locked.
    const CLAIM: &'static str = "UPDATE webhook_deliveries d SET leased_until_us = $2
         FROM (SELECT message_id, endpoint_id FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_us <= $1 AND leased_until_us <= $1
             ORDER BY next_attempt_us LIMIT $3 FOR UPDATE SKIP LOCKED) due
         WHERE d.message_id = due.message_id AND d.endpoint_id = due.endpoint_id
         RETURNING d.tenant_id, d.message_id, d.endpoint_id, d.attempts";
}

const BIND_TENANT: &str = "SELECT set_config('palisade.tenant_id', $1, true)";

macro_rules! endpoint_columns {
    () => {
        "SELECT id, tenant_id, url, description, enabled, disabled_reason, failing_since_us,
             created_by, created_at, updated_at
         FROM webhook_endpoints"
    };
}

const ENDPOINTS_OF_TENANT: &str = concat!(
    endpoint_columns!(),
    " WHERE tenant_id = $1 ORDER BY created_at, id"
);
const ONE_ENDPOINT: &str = concat!(endpoint_columns!(), " WHERE tenant_id = $1 AND id = $2");

const INSERT_SECRET: &str = "INSERT INTO webhook_signing_secrets
         (id, tenant_id, endpoint_id, dek_version, sealed, created_at, expires_us)
     VALUES ($1, $2, $3, $4, $5, $6, NULL)";

const INSERT_SUBSCRIPTION: &str =
    "INSERT INTO webhook_subscriptions (tenant_id, endpoint_id, event_type) VALUES ($1, $2, $3)";

/// A delivery of message `$1` (type `$3`) to every enabled endpoint of tenant `$2`
/// subscribed to it, due at `$4`.
const FAN_OUT: &str = "INSERT INTO webhook_deliveries
         (message_id, endpoint_id, tenant_id, state, attempts, next_attempt_us)
     SELECT $1, s.endpoint_id, $2, 'pending', 0, $4
     FROM webhook_subscriptions s JOIN webhook_endpoints e ON e.id = s.endpoint_id
     WHERE s.tenant_id = $2 AND s.event_type = $3 AND e.enabled";

/// Retry schedule after each failed attempt: attempts 2 to 8 wait this long after the one
/// before (the first is immediate), as Standard Webhooks senders commonly do.
pub const RETRY_DELAYS_SECS: [i64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];

for_both_backends! {
    const CLAIM: &str = <Db as Dialect>::CLAIM;

    fn endpoint_from(row: &DbRow) -> Result<EndpointRecord, StoreError> {
        Ok(EndpointRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant_id")?,
            url: row.try_get("url")?,
            description: row.try_get("description")?,
            event_types: Vec::new(),
            enabled: row.try_get("enabled")?,
            disabled_reason: row.try_get("disabled_reason")?,
            failing_since_us: row.try_get("failing_since_us")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    fn attempt_from(row: &DbRow) -> Result<AttemptRecord, StoreError> {
        Ok(AttemptRecord {
            id: row.try_get("id")?,
            endpoint: row.try_get("endpoint_id")?,
            message: row.try_get("message_id")?,
            attempted_us: row.try_get("attempted_us")?,
            succeeded: row.try_get("succeeded")?,
            status_code: row.try_get("status_code")?,
            latency_ms: row.try_get("latency_ms")?,
            response: row.try_get("response")?,
        })
    }

    /// Each endpoint's subscriptions, filled in.
    async fn with_subscriptions(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: TenantId,
        mut endpoints: Vec<EndpointRecord>,
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT endpoint_id, event_type FROM webhook_subscriptions
             WHERE tenant_id = $1 ORDER BY event_type",
        )
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let id: EndpointId = row.try_get(0)?;
            if let Some(endpoint) = endpoints.iter_mut().find(|e| e.id == id) {
                endpoint.event_types.push(row.try_get(1)?);
            }
        }
        Ok(endpoints)
    }

    async fn insert_secret(
        conn: &mut sqlx::Transaction<'static, Db>,
        tenant: TenantId,
        endpoint: EndpointId,
        secret: &NewSigningSecret<'_>,
    ) -> Result<(), StoreError> {
        let new_key = |version| secret.vault.new_data_key(tenant, version);
        let key = conn.tenant_data_key(tenant, &new_key, secret.at).await?;
        let sealed = secret
            .sealed_by(&key)
            .map_err(|_| StoreError::Other("a signing secret could not be sealed".into()))?;
        sqlx::query(INSERT_SECRET)
            .bind(secret.id)
            .bind(tenant)
            .bind(endpoint)
            .bind(i32::try_from(key.version).unwrap_or(i32::MAX))
            .bind(sealed)
            .bind(secret.at)
            .execute(&mut **conn)
            .await?;
        Ok(())
    }

    async fn insert_subscriptions(
        conn: &mut <Db as sqlx::Database>::Connection,
        endpoint: &EndpointRecord,
    ) -> Result<(), StoreError> {
        for event_type in &endpoint.event_types {
            sqlx::query(INSERT_SUBSCRIPTION)
                .bind(endpoint.tenant)
                .bind(endpoint.id)
                .bind(event_type)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Writes `message` and a delivery to each endpoint subscribed; false (nothing written)
    /// when `key` was used before.
    async fn insert_message(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: TenantId,
        message: &NewMessage,
        key: Option<&MessageKey<'_>>,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO webhook_messages
                 (id, tenant_id, event_type, body, idempotency_key, request_sha256, created_at_us)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
        )
        .bind(message.id)
        .bind(tenant)
        .bind(&message.event_type)
        .bind(&message.body)
        .bind(key.map(|k| k.key))
        .bind(key.map(|k| k.request_sha256.to_vec()))
        .bind(message.created_at_us)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(FAN_OUT)
            .bind(message.id)
            .bind(tenant)
            .bind(&message.event_type)
            .bind(message.created_at_us)
            .execute(&mut *conn)
            .await?;
        Ok(true)
    }

    async fn endpoint_exists(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: TenantId,
        endpoint: EndpointId,
    ) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(endpoint)
                .fetch_optional(&mut *conn)
                .await?
                .is_some(),
        )
    }

    async fn bind_tenant(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: TenantId,
    ) -> Result<(), StoreError> {
        if <Db as Dialect>::BINDS_TENANT {
            sqlx::query(BIND_TENANT)
                .bind(tenant.as_uuid().to_string())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    impl Outbox for sqlx::Transaction<'static, Db> {
        async fn announce(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
            let (Some((event_type, data)), Some(tenant)) =
                (events::announced(record), record.tenant_id)
            else {
                return Ok(());
            };
            let id = MessageId::generate();
            let at_us = crate::audit::store::micros(record.occurred_at);
            // Kept only when an endpoint will receive it.
            let kept = sqlx::query(
                "INSERT INTO webhook_messages (id, tenant_id, event_type, body, created_at_us)
                 SELECT $1, $2, $3, $4, $5
                 WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s
                     JOIN webhook_endpoints e ON e.id = s.endpoint_id
                     WHERE s.tenant_id = $2 AND s.event_type = $3 AND e.enabled)",
            )
            .bind(id)
            .bind(tenant)
            .bind(event_type)
            .bind(events::body(event_type, record.occurred_at, &data))
            .bind(at_us)
            .execute(&mut **self)
            .await?;
            if kept.rows_affected() == 1 {
                sqlx::query(FAN_OUT)
                    .bind(id)
                    .bind(tenant)
                    .bind(event_type)
                    .bind(at_us)
                    .execute(&mut **self)
                    .await?;
            }
            Ok(())
        }
    }

    #[async_trait]
    impl WebhookStore for SqlWebhookStore<Pool> {
        async fn create_endpoint(
            &self,
            scope: TenantScope,
            endpoint: &EndpointRecord,
            secret: NewSigningSecret<'_>,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let mut tx = self.0.tenant(scope).await?;
            sqlx::query(
                "INSERT INTO webhook_endpoints (id, tenant_id, url, description, enabled,
                     disabled_reason, failing_since_us, created_by, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $8)",
            )
            .bind(endpoint.id)
            .bind(scope.tenant())
            .bind(&endpoint.url)
            .bind(&endpoint.description)
            .bind(endpoint.enabled)
            .bind(endpoint.disabled_reason.as_deref())
            .bind(&endpoint.created_by)
            .bind(endpoint.created_at)
            .execute(&mut *tx)
            .await?;
            insert_subscriptions(&mut tx, endpoint).await?;
            insert_secret(&mut tx, scope.tenant(), endpoint.id, &secret).await?;
            tx.commit_with(event).await
        }

        async fn endpoints(&self, scope: TenantScope) -> Result<Vec<EndpointRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let rows = sqlx::query(ENDPOINTS_OF_TENANT)
            .bind(tenant)
            .fetch_all(&mut *reader)
            .await?;
            let endpoints = rows.iter().map(endpoint_from).collect::<Result<Vec<_>, _>>()?;
            let endpoints = with_subscriptions(&mut reader, tenant, endpoints).await?;
            <Pool as Begin>::end_read(reader).await?;
            Ok(endpoints)
        }

        async fn endpoint(
            &self,
            scope: TenantScope,
            id: EndpointId,
        ) -> Result<Option<EndpointRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let row = sqlx::query(ONE_ENDPOINT)
                .bind(tenant)
                .bind(id)
                .fetch_optional(&mut *reader)
                .await?;
            let found = match row {
                None => None,
                Some(row) => with_subscriptions(&mut reader, tenant, vec![endpoint_from(&row)?])
                    .await?
                    .pop(),
            };
            <Pool as Begin>::end_read(reader).await?;
            Ok(found)
        }

        async fn update_endpoint(
            &self,
            scope: TenantScope,
            endpoint: &EndpointRecord,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = self.0.tenant(scope).await?;
            let updated = sqlx::query(
                "UPDATE webhook_endpoints SET url = $3, description = $4, enabled = $5,
                     disabled_reason = $6, failing_since_us = $7, updated_at = $8
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(scope.tenant())
            .bind(endpoint.id)
            .bind(&endpoint.url)
            .bind(&endpoint.description)
            .bind(endpoint.enabled)
            .bind(endpoint.disabled_reason.as_deref())
            .bind(endpoint.failing_since_us)
            .bind(endpoint.updated_at)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM webhook_subscriptions WHERE tenant_id = $1 AND endpoint_id = $2")
                .bind(scope.tenant())
                .bind(endpoint.id)
                .execute(&mut *tx)
                .await?;
            insert_subscriptions(&mut tx, endpoint).await?;
            tx.commit_with(event).await?;
            Ok(true)
        }

        async fn delete_endpoint(
            &self,
            scope: TenantScope,
            id: EndpointId,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = self.0.tenant(scope).await?;
            let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                .bind(scope.tenant())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if deleted.rows_affected() != 1 {
                return Ok(false);
            }
            tx.commit_with(event).await?;
            Ok(true)
        }

        async fn rotate_secret(
            &self,
            scope: TenantScope,
            id: EndpointId,
            secret: NewSigningSecret<'_>,
            old_until_us: i64,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            // Secrets whose overlap has ended go; the live ones sign until the new overlap
            // ends.
            let now_us = crate::audit::store::micros(secret.at);
            sqlx::query(
                "DELETE FROM webhook_signing_secrets
                 WHERE tenant_id = $1 AND endpoint_id = $2 AND expires_us <= $3",
            )
            .bind(tenant)
            .bind(id)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
            let kept = sqlx::query(
                "UPDATE webhook_signing_secrets SET expires_us = $3
                 WHERE tenant_id = $1 AND endpoint_id = $2
                   AND (expires_us IS NULL OR expires_us > $3)",
            )
            .bind(tenant)
            .bind(id)
            .bind(old_until_us)
            .execute(&mut *tx)
            .await?;
            if kept.rows_affected() == 0 {
                return Ok(false);
            }
            insert_secret(&mut tx, tenant, id, &secret).await?;
            tx.commit_with(event).await?;
            Ok(true)
        }

        async fn send(
            &self,
            scope: TenantScope,
            message: &NewMessage,
            key: Option<MessageKey<'_>>,
            event: &AuditRecord,
        ) -> Result<Sent, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            if !insert_message(&mut tx, tenant, message, key.as_ref()).await? {
                let key = key.ok_or_else(|| StoreError::Other("a message id was reused".into()))?;
                let (first, hash): (MessageId, Vec<u8>) = sqlx::query_as(
                    "SELECT id, request_sha256 FROM webhook_messages
                     WHERE tenant_id = $1 AND idempotency_key = $2",
                )
                .bind(tenant)
                .bind(key.key)
                .fetch_one(&mut *tx)
                .await?;
                return Ok(if crate::crypto::constant_time_eq(&hash, &key.request_sha256) {
                    Sent::Replayed(first)
                } else {
                    Sent::KeyReused
                });
            }
            tx.commit_with(event).await?;
            Ok(Sent::New)
        }

        async fn receive(
            &self,
            inbound: &InboundEvent<'_>,
            message: &NewMessage,
            event: &AuditRecord,
        ) -> Result<Received, StoreError> {
            let tenant = inbound.tenant;
            let mut tx = self.0.tenant(TenantScope::for_system(tenant)).await?;
            let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !exists {
                return Ok(Received::NoTenant);
            }
            // A concurrent duplicate waits here for the first one's commit, then finds it.
            let recorded = sqlx::query(
                "INSERT INTO webhook_inbound_events
                     (tenant_id, source, event_id, message_id, received_at_us)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, source, event_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(inbound.source)
            .bind(inbound.event_id)
            .bind(message.id)
            .bind(message.created_at_us)
            .execute(&mut *tx)
            .await?;
            if recorded.rows_affected() == 0 {
                let first: MessageId = sqlx::query_scalar(
                    "SELECT message_id FROM webhook_inbound_events
                     WHERE tenant_id = $1 AND source = $2 AND event_id = $3",
                )
                .bind(tenant)
                .bind(inbound.source)
                .bind(inbound.event_id)
                .fetch_one(&mut *tx)
                .await?;
                return Ok(Received::Duplicate(first));
            }
            insert_message(&mut tx, tenant, message, None).await?;
            tx.commit_with(event).await?;
            Ok(Received::New)
        }

        async fn attempts(
            &self,
            scope: TenantScope,
            endpoint: EndpointId,
            before_us: Option<i64>,
            limit: i64,
        ) -> Result<Option<Vec<AttemptRecord>>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let exists = endpoint_exists(&mut reader, tenant, endpoint).await?;
            let rows = if exists {
                sqlx::query(
                    "SELECT id, endpoint_id, message_id, attempted_us, succeeded, status_code,
                         latency_ms, response
                     FROM webhook_attempts
                     WHERE tenant_id = $1 AND endpoint_id = $2 AND attempted_us < $3
                     ORDER BY attempted_us DESC, id DESC LIMIT $4",
                )
                .bind(tenant)
                .bind(endpoint)
                .bind(before_us.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&mut *reader)
                .await?
            } else {
                Vec::new()
            };
            <Pool as Begin>::end_read(reader).await?;
            if !exists {
                return Ok(None);
            }
            Ok(Some(rows.iter().map(attempt_from).collect::<Result<_, _>>()?))
        }

        async fn retry(
            &self,
            scope: TenantScope,
            endpoint: EndpointId,
            which: Retry,
            now_us: i64,
            event: &AuditRecord,
        ) -> Result<Option<u64>, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let exists = endpoint_exists(&mut tx, tenant, endpoint).await?;
            if !exists {
                return Ok(None);
            }
            let requeued = match which {
                Retry::Message(message) => {
                    // A message the endpoint was never sent (it subscribed later) is sent
                    // now, if it is the tenant's.
                    sqlx::query(
                        "INSERT INTO webhook_deliveries
                             (message_id, endpoint_id, tenant_id, state, attempts, next_attempt_us)
                         SELECT id, $2, tenant_id, 'pending', 0, $3 FROM webhook_messages
                         WHERE tenant_id = $1 AND id = $4
                         ON CONFLICT (message_id, endpoint_id) DO UPDATE
                             SET state = 'pending', next_attempt_us = excluded.next_attempt_us,
                                 leased_until_us = 0",
                    )
                    .bind(tenant)
                    .bind(endpoint)
                    .bind(now_us)
                    .bind(message)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                }
                Retry::FailedSince(since_us) => sqlx::query(
                    "UPDATE webhook_deliveries SET state = 'pending', next_attempt_us = $3,
                         leased_until_us = 0
                     WHERE tenant_id = $1 AND endpoint_id = $2 AND state <> 'succeeded'
                       AND message_id IN (SELECT id FROM webhook_messages
                           WHERE tenant_id = $1 AND created_at_us >= $4)",
                )
                .bind(tenant)
                .bind(endpoint)
                .bind(now_us)
                .bind(since_us)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            tx.commit_with(event).await?;
            Ok(Some(requeued))
        }

        async fn claim(
            &self,
            now_us: i64,
            lease_until_us: i64,
            limit: i64,
        ) -> Result<Vec<Claimed>, StoreError> {
            let mut tx = self.0.write().await?;
            let rows = sqlx::query(CLAIM)
                .bind(now_us)
                .bind(lease_until_us)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows.iter()
                .map(|row| {
                    Ok(Claimed {
                        tenant: row.try_get(0)?,
                        message: row.try_get(1)?,
                        endpoint: row.try_get(2)?,
                        attempts: u32::try_from(row.try_get::<i32, _>(3)?).unwrap_or(0),
                    })
                })
                .collect()
        }

        async fn jobs(&self, claimed: &[Claimed], now_us: i64) -> Result<Vec<Job>, StoreError> {
            let mut jobs = Vec::with_capacity(claimed.len());
            if claimed.is_empty() {
                return Ok(jobs);
            }
            let mut tenants: Vec<TenantId> = claimed.iter().map(|c| c.tenant).collect();
            tenants.sort();
            tenants.dedup();
            let mut tx = self.0.write().await?;
            for tenant in tenants {
                bind_tenant(&mut tx, tenant).await?;
                let mine: Vec<&Claimed> = claimed.iter().filter(|c| c.tenant == tenant).collect();
                let mut messages: Vec<MessageId> = mine.iter().map(|c| c.message).collect();
                messages.sort();
                messages.dedup();
                let mut endpoints: Vec<EndpointId> = mine.iter().map(|c| c.endpoint).collect();
                endpoints.sort();
                endpoints.dedup();
                // Each message's body, each endpoint's url (None: disabled) and live
                // secrets, read and decoded once for every delivery that needs them.
                let mut query = QueryBuilder::<Db>::new(
                    "SELECT id, body FROM webhook_messages WHERE tenant_id = ",
                );
                query.push_bind(tenant).push(" AND id IN (");
                let mut ids = query.separated(", ");
                for id in &messages {
                    ids.push_bind(*id);
                }
                query.push(")");
                let mut bodies: HashMap<MessageId, String> = HashMap::new();
                for row in query.build().fetch_all(&mut *tx).await? {
                    bodies.insert(row.try_get(0)?, row.try_get(1)?);
                }
                let mut query = QueryBuilder::<Db>::new(
                    "SELECT id, url, enabled FROM webhook_endpoints WHERE tenant_id = ",
                );
                query.push_bind(tenant).push(" AND id IN (");
                let mut ids = query.separated(", ");
                for id in &endpoints {
                    ids.push_bind(*id);
                }
                query.push(")");
                let mut urls: HashMap<EndpointId, Option<String>> = HashMap::new();
                for row in query.build().fetch_all(&mut *tx).await? {
                    let enabled: bool = row.try_get(2)?;
                    urls.insert(row.try_get(0)?, enabled.then(|| row.try_get(1)).transpose()?);
                }
                let mut query = QueryBuilder::<Db>::new(
                    "SELECT s.endpoint_id, s.id, s.sealed, s.dek_version, k.kek_version, k.wrapped
                     FROM webhook_signing_secrets s
                     LEFT JOIN tenant_data_keys k
                         ON k.tenant_id = s.tenant_id AND k.version = s.dek_version
                     WHERE s.tenant_id = ",
                );
                query.push_bind(tenant);
                query.push(" AND (s.expires_us IS NULL OR s.expires_us > ");
                query.push_bind(now_us);
                query.push(") AND s.endpoint_id IN (");
                let mut ids = query.separated(", ");
                for id in &endpoints {
                    ids.push_bind(*id);
                }
                query.push(") ORDER BY s.created_at DESC, s.id DESC");
                let mut secrets: HashMap<EndpointId, Vec<StoredSecret>> = HashMap::new();
                for secret in query.build().fetch_all(&mut *tx).await? {
                    let wrapped: Option<Vec<u8>> = secret.try_get(5)?;
                    let kek_version: Option<i32> = secret.try_get(4)?;
                    let dek_version: i32 = secret.try_get(3)?;
                    secrets.entry(secret.try_get(0)?).or_default().push(StoredSecret {
                        id: secret.try_get(1)?,
                        sealed: secret.try_get(2)?,
                        data_key: match (wrapped, kek_version) {
                            (Some(wrapped), Some(kek_version)) => Some(WrappedKey {
                                version: u32::try_from(dek_version).unwrap_or(0),
                                kek_version: u32::try_from(kek_version).unwrap_or(0),
                                wrapped,
                            }),
                            _ => None,
                        },
                    });
                }
                for c in mine {
                    let (Some(body), Some(url)) = (bodies.get(&c.message), urls.get(&c.endpoint))
                    else {
                        continue;
                    };
                    jobs.push(Job {
                        claimed: *c,
                        url: url.clone(),
                        body: body.clone(),
                        secrets: secrets.get(&c.endpoint).cloned().unwrap_or_default(),
                    });
                }
            }
            tx.commit().await?;
            Ok(jobs)
        }

        async fn prune(&self, tenant: TenantId, cutoff_us: i64) -> Result<u64, StoreError> {
            let mut tx = self.0.tenant(TenantScope::for_system(tenant)).await?;
            let attempts = sqlx::query(
                "DELETE FROM webhook_attempts WHERE tenant_id = $1 AND attempted_us < $2",
            )
            .bind(tenant)
            .bind(cutoff_us)
            .execute(&mut *tx)
            .await?;
            let receipts = sqlx::query(
                "DELETE FROM webhook_inbound_events WHERE tenant_id = $1 AND received_at_us < $2",
            )
            .bind(tenant)
            .bind(cutoff_us)
            .execute(&mut *tx)
            .await?;
            let messages = sqlx::query(
                "DELETE FROM webhook_messages WHERE tenant_id = $1 AND created_at_us < $2
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries
                         WHERE webhook_deliveries.message_id = webhook_messages.id
                           AND webhook_deliveries.state = 'pending')",
            )
            .bind(tenant)
            .bind(cutoff_us)
            .execute(&mut *tx)
            .await?;
            let removed =
                attempts.rows_affected() + receipts.rows_affected() + messages.rows_affected();
            tx.commit().await?;
            Ok(removed)
        }

        async fn finish(
            &self,
            finished: &[Finished],
            now_us: i64,
            disable_before_us: Option<i64>,
            disabled: DisabledEvent<'_>,
        ) -> Result<Vec<EndpointId>, StoreError> {
            let mut disabled_now = Vec::new();
            if finished.is_empty() {
                return Ok(disabled_now);
            }
            let mut tenants: Vec<TenantId> = finished.iter().map(|f| f.claimed.tenant).collect();
            tenants.sort();
            tenants.dedup();
            let mut tx = self.0.write().await?;
            for tenant in tenants {
                bind_tenant(&mut tx, tenant).await?;
                let mine: Vec<&Finished> =
                    finished.iter().filter(|f| f.claimed.tenant == tenant).collect();
                // Every attempt, in statements of up to 64 rows.
                let attempts: Vec<(&Claimed, &AttemptRecord)> = mine
                    .iter()
                    .filter_map(|f| f.attempt.as_ref().map(|a| (&f.claimed, a)))
                    .collect();
                for chunk in attempts.chunks(64) {
                    let mut insert = QueryBuilder::<Db>::new(
                        "INSERT INTO webhook_attempts (id, tenant_id, endpoint_id, message_id,
                             attempted_us, succeeded, status_code, latency_ms, response) ",
                    );
                    insert.push_values(chunk, |mut row, (c, attempt)| {
                        row.push_bind(attempt.id)
                            .push_bind(tenant)
                            .push_bind(c.endpoint)
                            .push_bind(c.message)
                            .push_bind(attempt.attempted_us)
                            .push_bind(attempt.succeeded)
                            .push_bind(attempt.status_code)
                            .push_bind(attempt.latency_ms)
                            .push_bind(attempt.response.as_str());
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                // Each endpoint once: a success ends its run of failures, a failure (with
                // no success in this round) starts one.
                let mut endpoints: Vec<(EndpointId, bool)> = Vec::new();
                for (c, attempt) in &attempts {
                    match endpoints.iter_mut().find(|(e, _)| *e == c.endpoint) {
                        Some((_, succeeded)) => *succeeded |= attempt.succeeded,
                        None => endpoints.push((c.endpoint, attempt.succeeded)),
                    }
                }
                let mut failing = Vec::new();
                for &(endpoint, succeeded) in &endpoints {
                    let failing_since = (!succeeded).then_some(now_us);
                    sqlx::query(
                        "UPDATE webhook_endpoints
                         SET failing_since_us = CASE WHEN $3 IS NULL THEN NULL
                             ELSE coalesce(failing_since_us, $3) END
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(endpoint)
                    .bind(failing_since)
                    .execute(&mut *tx)
                    .await?;
                    if !succeeded {
                        failing.push(endpoint);
                    }
                }
                // Deliveries that end (succeeded, failed for good) in one statement per
                // endpoint and state; each retry at its own time.
                for state in ["succeeded", "failed"] {
                    for &(endpoint, _) in &endpoints {
                        let done: Vec<MessageId> = mine
                            .iter()
                            .filter(|f| {
                                f.claimed.endpoint == endpoint
                                    && f.attempt.is_some()
                                    && matches!(
                                        (f.next, state),
                                        (Next::Succeeded, "succeeded") | (Next::Failed, "failed")
                                    )
                            })
                            .map(|f| f.claimed.message)
                            .collect();
                        if done.is_empty() {
                            continue;
                        }
                        let mut update = QueryBuilder::<Db>::new("UPDATE webhook_deliveries SET state = ");
                        update.push_bind(state);
                        update.push(", attempts = attempts + 1, leased_until_us = 0 WHERE endpoint_id = ");
                        update.push_bind(endpoint);
                        update.push(" AND message_id IN (");
                        let mut ids = update.separated(", ");
                        for id in &done {
                            ids.push_bind(*id);
                        }
                        update.push(")");
                        update.build().execute(&mut *tx).await?;
                    }
                }
                for done in &mine {
                    let (state, next_us, counted) = match (done.next, &done.attempt) {
                        (Next::RetryAt(at), _) => ("pending", at, 1),
                        // No attempt was made (a disabled endpoint, a gone message).
                        (Next::Failed, None) => ("failed", now_us, 0),
                        _ => continue,
                    };
                    sqlx::query(
                        "UPDATE webhook_deliveries SET state = $3, next_attempt_us = $4,
                             attempts = attempts + $5, leased_until_us = 0
                         WHERE message_id = $1 AND endpoint_id = $2",
                    )
                    .bind(done.claimed.message)
                    .bind(done.claimed.endpoint)
                    .bind(state)
                    .bind(next_us)
                    .bind(counted)
                    .execute(&mut *tx)
                    .await?;
                }
                let Some(before_us) = disable_before_us else {
                    continue;
                };
                for endpoint in failing {
                    let turned_off = sqlx::query(
                        "UPDATE webhook_endpoints SET enabled = $3, disabled_reason = 'failing'
                         WHERE tenant_id = $1 AND id = $2 AND enabled AND failing_since_us <= $4",
                    )
                    .bind(tenant)
                    .bind(endpoint)
                    .bind(false)
                    .bind(before_us)
                    .execute(&mut *tx)
                    .await?;
                    if turned_off.rows_affected() == 1 {
                        tx.append(&disabled(tenant, endpoint)).await?;
                        disabled_now.push(endpoint);
                    }
                }
            }
            tx.commit().await?;
            Ok(disabled_now)
        }
    }
}
