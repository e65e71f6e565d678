//! Brute-force limits on sign-in (claim ID-9): failures are counted per (email, IP) and per
//! IP inside a sliding window, in the database, so the limits hold across restarts and
//! across every instance sharing one PostgreSQL database.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use super::store::{FailureCount, IdentityStore};
use crate::config::AuthSettings;
use crate::crypto::sha256;
use crate::store::StoreError;

/// The two counters a sign-in attempt touches, as digests: the table holds no addresses.
pub struct Scopes {
    pub email_ip: [u8; 32],
    pub ip: [u8; 32],
}

impl Scopes {
    pub fn new(email: &str, ip: Option<IpAddr>) -> Self {
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Self {
            email_ip: sha256(format!("email-ip\0{email}\0{ip}").as_bytes()),
            ip: sha256(format!("ip\0{ip}").as_bytes()),
        }
    }

    fn both(&self) -> [&[u8; 32]; 2] {
        [&self.email_ip, &self.ip]
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `failures` is how many the (email, IP) pair has left before the cap.
    Allowed {
        remaining: u32,
    },
    Locked {
        retry_after_secs: u64,
    },
}

pub struct Throttle {
    per_email_ip: u32,
    per_ip: u32,
    window: Duration,
}

impl Throttle {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            per_email_ip: settings.max_failures_per_email_ip,
            per_ip: settings.max_failures_per_ip,
            window: Duration::from_secs(settings.failure_window_secs),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub async fn check(
        &self,
        store: &dyn IdentityStore,
        scopes: &Scopes,
        now: OffsetDateTime,
    ) -> Result<Verdict, StoreError> {
        let now_ms = millis(now);
        let since = now_ms - self.window.as_millis() as i64;
        let [email_ip, ip] = store.failures_since(scopes.both(), since).await?;
        let locked = |count: FailureCount, cap: u32| {
            (count.count >= cap).then(|| {
                let oldest = count.oldest_ms.unwrap_or(now_ms);
                let free_at = oldest + self.window.as_millis() as i64;
                ((free_at - now_ms).max(1) as u64).div_ceil(1000)
            })
        };
        let wait = [locked(email_ip, self.per_email_ip), locked(ip, self.per_ip)]
            .into_iter()
            .flatten()
            .max();
        Ok(match wait {
            Some(retry_after_secs) => Verdict::Locked { retry_after_secs },
            None => Verdict::Allowed {
                remaining: self.per_email_ip - email_ip.count,
            },
        })
    }

    pub async fn record(
        &self,
        store: &dyn IdentityStore,
        scopes: &Scopes,
        now: OffsetDateTime,
        event: &crate::audit::AuditRecord,
    ) -> Result<(), StoreError> {
        store
            .record_failure(scopes.both(), millis(now), event)
            .await
    }

    /// A successful sign-in forgives the pair's failures; the per-IP count stays.
    pub async fn forgive(
        &self,
        store: &dyn IdentityStore,
        scopes: &Scopes,
    ) -> Result<(), StoreError> {
        store.clear_failures(&scopes.email_ip).await
    }

    /// Drops failures older than the window; run periodically.
    pub async fn prune(
        &self,
        store: &dyn IdentityStore,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        store
            .prune_failures(millis(now) - self.window.as_millis() as i64)
            .await
    }
}

fn millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}
