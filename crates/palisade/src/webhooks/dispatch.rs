//! The dispatcher (claim HOOK-3): in every server process, rounds of claim → send →
//! record. A claim is a lease on queue rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
//! instances never share one); a process that dies mid-round loses nothing — its lease
//! lapses and another round sends again, with the same `webhook-id` so a receiver can
//! drop the duplicate. Failures retry on [`RETRY_DELAYS_SECS`] with up to 10 % jitter;
//! an endpoint failing every attempt for `webhooks.disable_after_days` is disabled.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use super::signing::{self, SigningKey};
use super::store::{AttemptRecord, Finished, Job, Next, RETRY_DELAYS_SECS};
use super::{WebhookError, Webhooks};
use crate::audit::AuditRecord;
use crate::ids::{AttemptId, EndpointId, TenantId};

/// Deliveries one round claims at most.
pub const BATCH: i64 = 256;
/// How long a claim holds its rows: well past an attempt's 15-second timeout.
const LEASE_US: i64 = 60_000_000;
/// A round runs at least this often (other instances' messages, retries coming due).
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Rounds one process runs at once: a round waits for its slowest receiver (up to the 15 s
/// timeout), and the next must not wait behind it.
const ROUNDS_AT_ONCE: usize = 4;

impl Webhooks {
    /// One round: claims due deliveries, sends them — at most `webhooks.concurrency` in
    /// flight in the process, whatever the rounds — and records every outcome. Answers how many deliveries it finished.
    pub async fn dispatch_due(&self) -> Result<usize, WebhookError> {
        let now_us = self.now_us();
        let claimed = self.store.claim(now_us, now_us + LEASE_US, BATCH).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let jobs = self.store.jobs(&claimed, now_us).await?;
        let found: std::collections::HashSet<_> = jobs.iter().map(|job| job.claimed).collect();
        let mut finished: Vec<Finished> = claimed
            .iter()
            .filter(|c| !found.contains(*c))
            .map(|&claimed| Finished {
                claimed,
                attempt: None,
                next: Next::Failed,
            })
            .collect();
        let sent: Vec<Finished> = futures_util::stream::iter(jobs)
            .map(|job| self.deliver(job))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        finished.extend(sent);
        let now = self.clock.now();
        let disable_before = self
            .disable_after
            .map(|after| crate::audit::store::micros(now - after));
        let disabled_event = |tenant: TenantId, endpoint: EndpointId| {
            AuditRecord::by_system("webhooks.endpoint_disabled", tenant, now)
                .on("webhook_endpoint", endpoint)
                .changed("enabled", true, false)
        };
        let disabled = self
            .store
            .finish(
                &finished,
                crate::audit::store::micros(now),
                disable_before,
                &disabled_event,
            )
            .await?;
        for endpoint in disabled {
            tracing::warn!(%endpoint, "a webhook endpoint failed for too long and was disabled");
        }
        Ok(finished.len())
    }

    /// The signing keys that open: the current secret and, during a rotation's overlap, the
    /// one before; none once the tenant's data key was destroyed.
    fn signing_keys(&self, job: &Job) -> Vec<SigningKey> {
        let tenant = job.claimed.tenant;
        job.secrets
            .iter()
            .filter_map(|secret| {
                let dek = secret.data_key.as_ref()?;
                self.vault
                    .open(
                        tenant,
                        dek,
                        crate::vault::keys::Bound::SigningSecret(secret.id),
                        &secret.sealed,
                    )
                    .ok()
                    .map(SigningKey::from_bytes)
            })
            .collect()
    }

    async fn deliver(&self, job: Job) -> Finished {
        // Never closed, so a permit always comes.
        let _permit = self.in_flight.acquire().await;
        let claimed = job.claimed;
        let Some(url) = job.url.as_deref() else {
            // Disabled since the message was written: it waits for a manual recovery.
            return Finished {
                claimed,
                attempt: None,
                next: Next::Failed,
            };
        };
        let attempted_at = self.clock.now();
        let attempted_us = crate::audit::store::micros(attempted_at);
        let keys = self.signing_keys(&job);
        let attempt = |succeeded, status_code, latency_ms, response| AttemptRecord {
            id: AttemptId::generate(),
            endpoint: claimed.endpoint,
            message: claimed.message,
            attempted_us,
            succeeded,
            status_code,
            latency_ms,
            response,
        };
        if keys.is_empty() {
            return Finished {
                claimed,
                attempt: Some(attempt(
                    false,
                    None,
                    0,
                    "the endpoint's signing secret does not open (the tenant's data key was destroyed)".to_owned(),
                )),
                next: Next::Failed,
            };
        }
        let id = claimed.message.to_string();
        // The attempt's own time: a receiver refuses a stale timestamp, and a retry hours
        // later must still verify.
        let timestamp = attempted_at.unix_timestamp();
        let signature = signing::header(&keys, &id, timestamp, job.body.as_bytes());
        drop(keys);
        let headers = [
            ("webhook-id", id),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        let outcome = self.sender.post(url, &headers, Bytes::from(job.body)).await;
        let made = claimed.attempts as usize + 1;
        let next = if outcome.succeeded {
            Next::Succeeded
        } else if let Some(delay) = RETRY_DELAYS_SECS.get(made - 1) {
            Next::RetryAt(attempted_us + jittered_micros(*delay))
        } else {
            Next::Failed
        };
        Finished {
            claimed,
            attempt: Some(attempt(
                outcome.succeeded,
                outcome.status.map(i32::from),
                i32::try_from(outcome.latency_ms).unwrap_or(i32::MAX),
                outcome.response,
            )),
            next,
        }
    }

    /// Dispatches until the task is dropped: a round as soon as a message is written on
    /// this instance, at least every second, and again at once after a full one. Up to
    /// [`ROUNDS_AT_ONCE`] overlap, so a receiver that hangs holds back its own round only:
    /// the next claims what is not leased.
    pub async fn run(self: Arc<Self>) {
        let mut rounds = tokio::task::JoinSet::new();
        let mut start = true;
        loop {
            if start && rounds.len() < ROUNDS_AT_ONCE {
                let webhooks = self.clone();
                rounds.spawn(async move { webhooks.dispatch_due().await });
            }
            start = tokio::select! {
                Some(finished) = rounds.join_next() => match finished {
                    Ok(Ok(done)) => done as i64 >= BATCH,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "a webhook dispatch round failed");
                        false
                    }
                    Err(error) => {
                        tracing::error!(%error, "a webhook dispatch round panicked");
                        false
                    }
                },
                _ = tokio::time::timeout(TICK, self.wake.notified()) => true,
            };
        }
    }
}

/// `seconds` later, plus up to 10 % more: receivers that failed together are not retried
/// together.
fn jittered_micros(seconds: i64) -> i64 {
    use rand::Rng;
    let base = seconds * 1_000_000;
    base + rand::thread_rng().gen_range(0..=base / 10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries_come_no_earlier_than_the_schedule_and_at_most_a_tenth_later() {
        for seconds in super::RETRY_DELAYS_SECS {
            for _ in 0..100 {
                let at = super::jittered_micros(seconds);
                assert!(at >= seconds * 1_000_000 && at <= seconds * 1_100_000);
            }
        }
    }
}
