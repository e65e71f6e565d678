//! The audit log as operations: record (group commit), query, verify, checkpoint, retain.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::chain::{ChainWalk, ChainedEvent, Finding, Summary};
use super::export::{ExportWriter, Format};
use super::signing::{CheckpointKey, LogSigner, PublicKey};
use super::store::{micros, AuditStore, Chain, EventFilter, StoredPoint};
use super::writer::AuditWriter;
use super::{stream_name, Acting, AuditRecord};
use crate::clock::Clock;
use crate::config::AuditSettings;
use crate::store::StoreError;

/// Events buffered between the store's reader and a consumer: constant memory.
const WALK_BUFFER: usize = 256;

#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn AuditStore>,
    writer: AuditWriter,
    key: Arc<CheckpointKey>,
    clock: Arc<dyn Clock>,
    settings: AuditSettings,
}

/// What became of a retention change.
#[derive(Debug, PartialEq, Eq)]
pub enum RetentionChange {
    Set,
    /// Below `audit.retention_floor_days`.
    BelowFloor,
    /// It shortens the history kept, which only an Owner may do.
    OwnerOnly,
}

/// What verifying one chain found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verification {
    pub stream: String,
    pub ok: bool,
    #[serde(flatten)]
    pub summary: Summary,
    pub first_problem: Option<Finding>,
}

impl Audit {
    pub fn new(
        store: Arc<dyn AuditStore>,
        key: CheckpointKey,
        clock: Arc<dyn Clock>,
        settings: AuditSettings,
    ) -> Self {
        Self {
            writer: AuditWriter::start(store.clone()),
            store,
            key: Arc::new(key),
            clock,
            settings,
        }
    }

    /// Appends an event that has no transaction of its own, durably (group commit).
    pub async fn record(&self, event: AuditRecord) -> Result<(), StoreError> {
        self.writer.record(event).await
    }

    /// Warns when this instance's key is not the one that signed the newest checkpoint:
    /// instances with different keys make each other's checkpoints fail verification.
    pub async fn check_key_is_shared(&self) {
        match self.store.last_signer().await {
            Ok(Some(key_id)) if key_id != self.key.public().key_id() => {
                tracing::warn!(
                    this_key = self.key.public().key_id(),
                    last_signer = %key_id,
                    "the audit checkpoint key differs from the one that signed the last \
                     checkpoint: every instance must use the same audit.checkpoint_key_file"
                );
                eprintln!(
                    "palisade: WARNING: audit checkpoint key {} is not the key {key_id} that \
                     signed the last checkpoint (audit.checkpoint_key_file must be shared)",
                    self.key.public().key_id()
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot compare the audit checkpoint key"),
        }
    }

    /// Appends the app's events in one transaction (claim APP-4), once per idempotency key.
    pub async fn record_app_events(
        &self,
        events: &[AuditRecord],
        key: Option<&super::app::IdempotencyKey>,
    ) -> Result<super::app::Recorded, StoreError> {
        self.store
            .append_app_events(events, key, self.clock.now())
            .await
    }

    /// Forgets the app's idempotency keys older than their 24-hour window (upkeep, hourly):
    /// a key past it is anyone's again, so its row only takes space.
    pub async fn prune_idempotency_keys(&self) -> Result<u64, StoreError> {
        let before = self.clock.now() - super::app::IDEMPOTENCY_WINDOW;
        self.store.prune_idempotency_keys(before).await
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// Signs for work done inside another store's transaction: an erasure's redactions
    /// and anchors (claim OPS-5).
    pub fn signer(&self) -> LogSigner {
        LogSigner(self.key.clone())
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public()
    }

    pub async fn search(
        &self,
        chain: Chain,
        filter: &EventFilter,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        self.store.search(chain, filter).await
    }

    /// Walks one chain from its start (or its retention anchor) to its head.
    pub async fn verify(&self, chain: Chain) -> Result<Verification, StoreError> {
        let name = stream_name(chain.stream());
        let points = self.store.points(chain).await?;
        let head = self.store.head(chain).await?;
        let signed = |point: &StoredPoint| point.checked(&name, self.key.public());
        let anchor = points.iter().rfind(|p| p.kind == "anchor").map(signed);
        let after = anchor.as_ref().map_or(0, |a| a.seq);
        let checkpoints = points
            .iter()
            .filter(|p| p.kind == "checkpoint" && p.seq > after)
            .map(signed)
            .collect();
        let mut walk =
            ChainWalk::new(anchor.as_ref(), checkpoints).accepting_redactions_by(self.key.public());
        let (events, mut arriving) = mpsc::channel(WALK_BUFFER);
        let reading = self.store.walk(chain, after + 1, None, events);
        let judging = async {
            while let Some(event) = arriving.recv().await {
                walk.feed(event);
                if walk.is_bad() {
                    // Dropping the receiver stops the reader.
                    break;
                }
            }
            drop(arriving);
        };
        let (read, ()) = tokio::join!(reading, judging);
        read?;
        let (summary, first_problem) = walk.finish(head.map(|h| (h.seq, h.hash)));
        Ok(Verification {
            stream: name,
            ok: first_problem.is_none(),
            summary,
            first_problem,
        })
    }

    /// Every chain the store knows, for `palisade audit verify` without `--tenant`.
    pub async fn streams(&self) -> Result<Vec<Chain>, StoreError> {
        self.store.streams().await
    }

    /// Signs every chain that is due: `checkpoint_every` events past its last checkpoint,
    /// or any new event and `checkpoint_interval_secs` since. Returns how many it signed.
    pub async fn checkpoint_due(&self) -> Result<usize, StoreError> {
        let now_us = micros(self.clock.now());
        let stale_before = now_us - i64::from(self.settings.checkpoint_interval_secs) * 1_000_000;
        let due = self
            .store
            .due_for_checkpoint(i64::from(self.settings.checkpoint_every), stale_before)
            .await?;
        for head in &due {
            let point = self.sign("checkpoint", head.stream, head.seq, head.hash, now_us);
            self.store
                .add_point(Chain::for_upkeep(head.stream), &point)
                .await?;
        }
        Ok(due.len())
    }

    fn sign(
        &self,
        kind: &str,
        stream: Uuid,
        seq: i64,
        hash: super::chain::Hash,
        signed_at_us: i64,
    ) -> StoredPoint {
        self.signer().point(kind, stream, seq, hash, signed_at_us)
    }

    pub async fn retention(&self, chain: Chain) -> Result<Option<i32>, StoreError> {
        self.store.retention(chain).await
    }

    /// Sets a chain's retention (None: keep everything). Keeping history for less than
    /// the deployment's floor is refused, and only an Owner shortens it (claim AUD-5): an
    /// Admin covering their tracks could otherwise prune a day later.
    pub async fn set_retention(
        &self,
        chain: Chain,
        days: Option<i32>,
        by_owner: bool,
        event: AuditRecord,
    ) -> Result<RetentionChange, StoreError> {
        if days.is_some_and(|days| days < self.settings.retention_floor_days) {
            return Ok(RetentionChange::BelowFloor);
        }
        let before = self.store.retention(chain).await?;
        let shorter = match (before, days) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(before), Some(after)) => after < before,
        };
        if shorter && !by_owner {
            return Ok(RetentionChange::OwnerOnly);
        }
        let event = event.changed("retention_days", before, days);
        self.store.set_retention(chain, days, &event).await?;
        Ok(RetentionChange::Set)
    }

    /// Prunes every chain with limited retention from its oldest event, leaving a signed
    /// anchor where it now starts (claim AUD-5). Returns the events pruned.
    pub async fn enforce_retention(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let mut pruned = 0;
        for (chain, days) in self.store.retained().await? {
            let stream = chain.stream();
            let cutoff = micros(now - time::Duration::days(i64::from(days)));
            let Some((through, hash)) = self.store.prunable_through(chain, cutoff).await? else {
                continue;
            };
            let anchor = self.sign("anchor", stream, through, hash, micros(now));
            let mut event =
                AuditRecord::new("audit.pruned", "success", now, String::new(), None, None)
                    .by(Acting::System)
                    .on("audit_log", stream_name(stream))
                    .changed("retained_from_seq", serde_json::Value::Null, through + 1);
            if stream != super::PLATFORM_STREAM {
                event = event.in_tenant(crate::ids::TenantId::from_uuid(stream));
            }
            pruned += self.store.prune(chain, &anchor, &event).await?;
        }
        Ok(pruned)
    }

    /// Streams a chain's events in `[from_us, to_us)` as `format` into `sink`, ending with a
    /// signed trailer. Returns after the last chunk is sent or the receiver went away.
    pub async fn export(
        &self,
        chain: Chain,
        range: Option<(i64, i64)>,
        window: (Option<i64>, Option<i64>),
        format: Format,
        sink: mpsc::Sender<Bytes>,
    ) -> Result<(), StoreError> {
        let name = stream_name(chain.stream());
        let mut out = ExportWriter::new(format, &name, window, sink);
        if let Some((first, last)) = range {
            for point in self.store.points(chain).await? {
                if point.kind == "checkpoint" && (first..=last).contains(&point.seq) {
                    out.point(&point).await;
                }
            }
            let (events, mut arriving) = mpsc::channel(WALK_BUFFER);
            let reading = self.store.walk(chain, first, Some(last), events);
            let writing = async {
                while let Some(event) = arriving.recv().await {
                    if !out.event(&event).await {
                        break;
                    }
                }
                drop(arriving);
            };
            let (read, ()) = tokio::join!(reading, writing);
            read?;
        }
        out.finish(&self.key).await;
        Ok(())
    }

    /// Sends every event the chain holds, in sequence order, into `sink` (constant memory;
    /// stops when the receiver goes away).
    pub async fn events(
        &self,
        chain: Chain,
        sink: mpsc::Sender<ChainedEvent>,
    ) -> Result<(), StoreError> {
        self.store.walk(chain, 0, None, sink).await
    }

    /// The sequence range of a chain's events in `[from_us, to_us)`.
    pub async fn seq_range(
        &self,
        chain: Chain,
        from_us: Option<i64>,
        to_us: Option<i64>,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        self.store.seq_range(chain, from_us, to_us).await
    }
}
