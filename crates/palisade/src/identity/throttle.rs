//! Brute-force limits (claim ID-9): attempts are counted per (email, IP) and per IP — and
//! second-factor codes per user — inside a sliding window, in the database, so the limits
//! hold across restarts and across every instance sharing one PostgreSQL database. Per
//! account, from any address, attempts past a threshold are spaced out, never locked.
//!
//! An attempt is recorded *before* the password is checked and withdrawn if it succeeds,
//! so a burst of parallel guesses is counted at once instead of after the hashing.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use super::store::{FailureCount, IdentityStore, SCOPES};
use crate::config::AuthSettings;
use crate::crypto::{random_bytes, sha256};
use crate::ids::UserId;
use crate::store::StoreError;

/// The counters an attempt touches, as digests: the table holds no addresses.
pub struct Scopes {
    /// (email, IP) for passwords; the user for second-factor codes.
    pub subject: [u8; 32],
    pub ip: [u8; 32],
    /// The account, from any address: past a threshold its attempts are spaced out.
    pub account: [u8; 32],
}

impl Scopes {
    pub fn password(email: &str, ip: Option<IpAddr>) -> Self {
        let ip = ip_key(ip);
        Self {
            subject: sha256(format!("email-ip\0{email}\0{ip}").as_bytes()),
            ip: sha256(format!("ip\0{ip}").as_bytes()),
            account: sha256(format!("email\0{email}").as_bytes()),
        }
    }

    /// Second-factor codes are limited per user, whatever the address: six digits must not
    /// be guessable from many addresses at once.
    pub fn second_factor(user: UserId, ip: Option<IpAddr>) -> Self {
        Self {
            subject: sha256(format!("mfa-user\0{user}").as_bytes()),
            ip: sha256(format!("ip\0{}", ip_key(ip)).as_bytes()),
            account: sha256(format!("mfa-account\0{user}").as_bytes()),
        }
    }

    fn all(&self) -> [&[u8; 32]; SCOPES] {
        [&self.subject, &self.ip, &self.account]
    }
}

/// IPv4 addresses as they are; IPv6 by /64, the block one subscriber usually holds.
pub(crate) fn ip_key(ip: Option<IpAddr>) -> String {
    match ip {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

/// An attempt that was admitted: recorded as a failure unless withdrawn.
pub struct Attempt {
    pub id: [u8; 16],
    /// This attempt, if it fails, is the one that reaches the subject's cap.
    pub reaches_cap: bool,
    /// … or the address's cap.
    pub reaches_ip_cap: bool,
}

pub enum Admission {
    Admitted(Attempt),
    Locked { retry_after_secs: u64 },
}

pub struct Throttle {
    per_subject: u32,
    per_ip: u32,
    window: Duration,
    slow_after_account_failures: u32,
    account_spacing: Duration,
}

impl Throttle {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            per_subject: settings.max_failures_per_email_ip,
            per_ip: settings.max_failures_per_ip,
            window: Duration::from_secs(settings.failure_window_secs),
            slow_after_account_failures: settings.slow_after_account_failures,
            account_spacing: Duration::from_secs(settings.account_failure_spacing_secs),
        }
    }

    /// The hard caps per scope; the account has none (it is slowed instead, see `admit`).
    fn caps(&self) -> [u32; SCOPES] {
        [self.per_subject, self.per_ip, u32::MAX]
    }

    /// Admits an attempt, or says how long to wait. A caller already over a cap is refused
    /// by a read alone; an admitted attempt is written at once.
    pub async fn admit(
        &self,
        store: &dyn IdentityStore,
        scopes: &Scopes,
        now: OffsetDateTime,
    ) -> Result<Admission, StoreError> {
        let now_ms = millis(now);
        let since = now_ms - self.window_ms();
        let caps = self.caps();
        let seen = store.failures_since(scopes.all(), since).await?;
        if seen.iter().zip(caps).any(|(count, cap)| count.count >= cap) {
            return Ok(self.locked(seen, now_ms));
        }
        // An account guessed at from many addresses: one attempt per spacing, so the
        // guesses stay few while its owner, whose own address is not locked, waits seconds
        // rather than being locked out by someone else (claim ID-9). Parallel attempts may
        // pass this read together; the per-IP caps still bound them.
        let account = seen[2];
        if account.count >= self.slow_after_account_failures {
            let next_at =
                account.newest_ms.unwrap_or(now_ms) + self.account_spacing.as_millis() as i64;
            if now_ms < next_at {
                return Ok(Admission::Locked {
                    retry_after_secs: ((next_at - now_ms) as u64).div_ceil(1000),
                });
            }
        }
        let id = random_bytes::<16>();
        let (admitted, counts) = store
            .reserve_attempt(scopes.all(), caps, &id, now_ms, since)
            .await?;
        if !admitted {
            // Parallel attempts got there first.
            return Ok(self.locked(counts, now_ms));
        }
        Ok(Admission::Admitted(Attempt {
            id,
            reaches_cap: counts[0].count == self.per_subject,
            reaches_ip_cap: counts[1].count == self.per_ip,
        }))
    }

    fn locked(&self, counts: [FailureCount; SCOPES], now_ms: i64) -> Admission {
        let wait = counts
            .iter()
            .zip(self.caps())
            .filter(|(count, cap)| count.count >= *cap)
            .map(|(count, _)| {
                let free_at = count.oldest_ms.unwrap_or(now_ms) + self.window_ms();
                ((free_at - now_ms).max(1) as u64).div_ceil(1000)
            })
            .max()
            .unwrap_or(1);
        Admission::Locked {
            retry_after_secs: wait,
        }
    }

    /// Withdraws an attempt that was not a failure (a success, or a request that stopped
    /// for another reason).
    pub async fn release(
        &self,
        store: &dyn IdentityStore,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        store.release_attempt(&attempt.id).await
    }

    /// Drops attempts older than the window; run periodically.
    pub async fn prune(
        &self,
        store: &dyn IdentityStore,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        store.prune_failures(millis(now) - self.window_ms()).await
    }

    fn window_ms(&self) -> i64 {
        self.window.as_millis() as i64
    }
}

fn millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_share_a_counter_per_64_block() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(
            Scopes::password("x@y.z", Some(a)).ip,
            Scopes::password("x@y.z", Some(b)).ip
        );
        assert_ne!(
            Scopes::password("x@y.z", Some(a)).ip,
            Scopes::password("x@y.z", Some(c)).ip
        );
    }
}
