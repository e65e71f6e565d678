//! Group commit for events that have no transaction of their own (a failed sign-in, a
//! rate-limit burst, an export): one writer task takes every event waiting in its queue
//! and appends them in one transaction, so a burst costs one durable commit, not one each.
//! A caller is answered only after the commit: an acknowledged event survives a crash.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::store::AuditStore;
use super::AuditRecord;
use crate::store::StoreError;

/// Events one commit takes at most.
const MAX_BATCH: usize = 1024;
/// Events waiting beyond this make callers wait to enqueue: memory stays bounded.
const QUEUE: usize = 8192;

type Ack = oneshot::Sender<Result<(), StoreError>>;

#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<(AuditRecord, Ack)>,
}

impl AuditWriter {
    /// Starts the writer on a thread of its own, so that a batch is not left waiting behind
    /// the request tasks it will answer; it ends when the last handle is dropped and the
    /// queue drains.
    pub fn start(store: Arc<dyn AuditStore>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the audit writer");
                runtime.block_on(write_batches(store, waiting));
            })
            .expect("the audit writer thread starts");
        Self { queue }
    }

    /// Appends `event` durably; returns once its commit has.
    pub async fn record(&self, event: AuditRecord) -> Result<(), StoreError> {
        let (ack, acked) = oneshot::channel();
        self.queue.send((event, ack)).await.map_err(|_| stopped())?;
        acked.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the audit writer has stopped".into())
}

async fn write_batches(
    store: Arc<dyn AuditStore>,
    mut waiting: mpsc::Receiver<(AuditRecord, Ack)>,
) {
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Waits for one event, then takes every other already waiting (up to a batch).
        if waiting.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        for (event, ack) in batch.drain(..) {
            events.push(event);
            acks.push(ack);
        }
        match store.append_batch(&events).await {
            Ok(()) => {
                for ack in acks.drain(..) {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(error) if events.len() > 1 => {
                // One event the database refuses must not take the others with it.
                tracing::warn!(%error, events = events.len(), "audit batch failed; appending one by one");
                for (event, ack) in events.iter().zip(acks.drain(..)) {
                    let _ = ack.send(store.append_batch(std::slice::from_ref(event)).await);
                }
            }
            Err(error) => {
                for ack in acks.drain(..) {
                    let _ = ack.send(Err(copy_of(&error)));
                }
            }
        }
        events.clear();
    }
}

/// The same error for another waiter (the source is not `Clone`).
fn copy_of(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(source) => StoreError::Unavailable(source.to_string().into()),
        StoreError::Full(source) => StoreError::Full(source.to_string().into()),
        StoreError::Other(source) => StoreError::Other(source.to_string().into()),
    }
}
