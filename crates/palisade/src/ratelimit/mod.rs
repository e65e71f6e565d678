//! Rate limits (claim WEB-5): a per-route policy table, enforced by the generic cell rate
//! algorithm (GCRA) per (route, principal).
//!
//! GCRA keeps one number per bucket, the "theoretical arrival time" (TAT): each admitted
//! request pushes it `interval = period / limit` into the future, and a request is admitted
//! while the TAT stays within one `period` of now. That allows `limit` requests in a burst
//! and then one per `interval`, with no window edges to game.
//!
//! On PostgreSQL the TAT lives in an unlogged table and one `INSERT … ON CONFLICT … WHERE`
//! statement decides and records, so every instance on the database enforces one limit (a
//! busy bucket is charged in small leases; see `PostgresTats`). On SQLite (one server per
//! database file) it lives in memory.

pub mod routes;

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::PgPool;

use crate::config::RateLimitSettings;
use crate::store::{Database, StoreError};

const PERIOD_US: i64 = 60_000_000;

/// A route's limit class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Writes and everything without an override: `default_per_minute` per principal.
    Default,
    /// `GET`: `read_per_minute` per principal.
    Read,
    /// Sign-in, sign-up and email-link routes: `sign_in_per_minute` per client address,
    /// whatever credential the request carries.
    SignIn,
    /// The integration endpoints (`/access/v1/…`, `/oauth/…`): `integration_per_minute` per service
    /// credential — the app asks on its own users' requests.
    Integration,
}

impl Class {
    pub fn per_minute(self, settings: &RateLimitSettings) -> u32 {
        match self {
            Class::Default => settings.default_per_minute,
            Class::Read => settings.read_per_minute,
            Class::SignIn => settings.sign_in_per_minute,
            Class::Integration => settings.integration_per_minute,
        }
    }
}

/// The per-route overrides; every other route is `Read` for `GET` and `Default` otherwise.
pub const OVERRIDES: &[(&str, &str, Class)] = &[
    ("POST", "/api/v1/auth/login", Class::SignIn),
    ("POST", "/api/v1/auth/signup", Class::SignIn),
    ("POST", "/api/v1/auth/password-reset", Class::SignIn),
    ("POST", "/api/v1/auth/password-reset/request", Class::SignIn),
    ("POST", "/api/v1/auth/verify-email", Class::SignIn),
    ("POST", "/api/v1/auth/verify-email/request", Class::SignIn),
    ("POST", "/api/v1/invitations/accept", Class::SignIn),
    // Reads that walk a whole audit chain: a write's budget, not a read's.
    ("GET", "/api/v1/audit/verify", Class::Default),
    ("GET", "/api/v1/audit/export", Class::Default),
    // A provider's bursts come from few addresses, and a forged request costs one HMAC:
    // an integration budget, per address.
    (
        "POST",
        "/api/v1/webhooks/inbound/{source}",
        Class::Integration,
    ),
];

/// The integration endpoints' paths: the AuthZEN decisions and relations, the OAuth token
/// endpoints (introspection, revocation), the app's own limits, its customers' key
/// verification and its tenant tokens. Only the app's credentials (a service credential,
/// and on some a tenant token) are taken there.
pub const INTEGRATION_PREFIXES: &[&str] = &[
    "/access/v1/",
    "/oauth/",
    "/api/v1/ratelimit/",
    "/api/v1/keys/verify",
    "/api/v1/services/",
];

/// Integration endpoints on a path a tenant route also serves with another method: the
/// app writes its events where members read them.
pub const INTEGRATION_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/audit/events"),
    ("POST", "/api/v1/audit/events/batch"),
];

/// Whether a route (its method and path template) is one of the integration endpoints.
pub fn is_integration(method: &str, route: &str) -> bool {
    INTEGRATION_PREFIXES
        .iter()
        .any(|prefix| route.starts_with(prefix))
        || INTEGRATION_ROUTES.contains(&(method, route))
}

/// Never limited: load balancers and scrapers poll these, and they do no work per caller.
pub const EXEMPT: &[&str] = &["/api/health", "/api/health/live", "/metrics"];

/// The class of a route (its method and path template); None: not limited.
pub fn class_of(method: &str, route: &str) -> Option<Class> {
    if EXEMPT.contains(&route) {
        return None;
    }
    if is_integration(method, route) {
        return Some(Class::Integration);
    }
    let class = OVERRIDES
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, class)| *class);
    Some(class.unwrap_or(if method == "GET" || method == "HEAD" {
        Class::Read
    } else {
        Class::Default
    }))
}

/// A bucket's identity: hashed (with a per-process random key) for the in-memory store,
/// spelled out for the shared table.
pub trait BucketName: std::hash::Hash {
    fn name(&self) -> String;
}

/// The limiter's answer, with what the `RateLimit-*` headers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// When refused: seconds until a request would be admitted.
    pub retry_after_secs: u64,
}

/// The limiter of one backend; an enum rather than a boxed trait object, so the in-memory
/// path (every request on SQLite) allocates nothing.
pub enum Limiter {
    Memory(MemoryTats),
    Postgres(PostgresTats),
}

impl Limiter {
    pub fn for_database(db: &Database) -> Self {
        match db {
            Database::Sqlite(_) => Limiter::Memory(MemoryTats::default()),
            Database::Postgres(pool) => Limiter::Postgres(PostgresTats::new(pool.clone())),
        }
    }

    /// Admits a request against `limit` per minute (Palisade's own routes).
    pub async fn check(
        &self,
        bucket: &impl BucketName,
        limit: u32,
        now_us: i64,
    ) -> Result<Decision, StoreError> {
        self.check_quota(bucket, Quota::per_minute(limit), 1, now_us)
            .await
    }

    /// Admits a request of `cost` units if `max(tat, now) + cost × interval - now <=
    /// capacity`, recording the new TAT, and reports the decision. `cost` is at least 1 and
    /// at most the quota's limit.
    pub async fn check_quota(
        &self,
        bucket: &impl BucketName,
        quota: Quota,
        cost: u32,
        now_us: i64,
    ) -> Result<Decision, StoreError> {
        let limit = quota.limit.max(1);
        let interval = (quota.period_us / i64::from(limit)).max(1);
        let capacity = interval * i64::from(limit);
        let cost = i64::from(cost.clamp(1, limit));
        let (allowed, tat) = match self {
            Limiter::Memory(tats) => tats.admit(bucket, now_us, interval, capacity, cost),
            Limiter::Postgres(tats) => {
                tats.admit(&bucket.name(), now_us, interval, capacity, cost)
                    .await?
            }
        };
        Ok(decision(
            allowed,
            tat,
            now_us,
            limit,
            interval * cost,
            capacity,
        ))
    }

    /// Forgets buckets that are full again.
    pub async fn prune(&self, now_us: i64) -> Result<(), StoreError> {
        match self {
            Limiter::Memory(tats) => {
                tats.prune(now_us);
                Ok(())
            }
            Limiter::Postgres(tats) => tats.prune(now_us).await,
        }
    }
}

/// `limit` requests per `period_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period_us: i64,
}

impl Quota {
    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            period_us: PERIOD_US,
        }
    }
}

/// `step`: how far this request moved (or would have moved) the TAT.
fn decision(allowed: bool, tat: i64, now: i64, limit: u32, step: i64, capacity: i64) -> Decision {
    let interval = capacity / i64::from(limit);
    let ahead = (tat - now).max(0);
    let ceil_secs = |us: i64| (us.max(0) as u64).div_ceil(1_000_000);
    Decision {
        allowed,
        limit,
        remaining: if allowed {
            ((capacity - ahead) / interval).clamp(0, i64::from(limit)) as u32
        } else {
            0
        },
        reset_secs: ceil_secs(ahead),
        retry_after_secs: if allowed {
            0
        } else {
            ceil_secs(ahead + step - capacity).max(1)
        },
    }
}

/// SQLite's deployment: one server per database file, so its memory is the whole truth.
/// Buckets are keyed by a keyed 64-bit hash of their identity: no allocation per request,
/// and no collision a client could aim for.
#[derive(Default)]
pub struct MemoryTats {
    tats: Mutex<HashMap<u64, i64>>,
    hasher: std::hash::RandomState,
}

impl MemoryTats {
    fn admit(
        &self,
        bucket: &impl BucketName,
        now_us: i64,
        interval_us: i64,
        capacity_us: i64,
        cost: i64,
    ) -> (bool, i64) {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one(bucket);
        let step = interval_us * cost;
        let mut tats = self.tats.lock().expect("rate limit lock");
        let Some(tat) = tats.get_mut(&key) else {
            // A new bucket admits its first request (a cost is at most the limit).
            tats.insert(key, now_us + step);
            return (true, now_us + step);
        };
        let current = (*tat).max(now_us);
        let next = current + step;
        if next - now_us > capacity_us {
            return (false, current);
        }
        *tat = next;
        (true, next)
    }

    fn prune(&self, now_us: i64) {
        self.tats
            .lock()
            .expect("rate limit lock")
            .retain(|_, tat| *tat > now_us);
    }
}

/// The scale-out deployment: every instance charges the same row. A busy bucket is charged
/// a lease of several requests at a time (at most 1% of its limit, 64 at most), which this
/// instance then admits from memory: one statement per lease instead of per request. A
/// lease is charged when taken, so instances together never exceed the limit; tokens left
/// unused for a whole period expire, so at most one lease's worth per instance arrives
/// late.
pub struct PostgresTats {
    pool: PgPool,
    leases: Mutex<HashMap<String, Lease>>,
}

struct Lease {
    /// Requests this instance may still admit.
    tokens: i64,
    /// The bucket's TAT in the database once the lease was charged.
    tat: i64,
    expires_us: i64,
}

/// Charges `tokens` requests' worth to the bucket if they all fit.
const CHARGE: &str = "INSERT INTO rate_limits AS r (bucket, tat) VALUES ($1, $2 + $3 * $5)
     ON CONFLICT (bucket) DO UPDATE SET tat = greatest(r.tat, $2) + $3 * $5
         WHERE greatest(r.tat, $2) + $3 * $5 - $2 <= $4
     RETURNING tat";

impl PostgresTats {
    fn new(pool: PgPool) -> Self {
        Self {
            pool,
            leases: Mutex::new(HashMap::new()),
        }
    }

    async fn charge(
        &self,
        bucket: &str,
        now_us: i64,
        interval_us: i64,
        capacity_us: i64,
        tokens: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(CHARGE)
            .bind(bucket)
            .bind(now_us)
            .bind(interval_us)
            .bind(capacity_us)
            .bind(tokens)
            .fetch_optional(&self.pool)
            .await?)
    }

    fn take_leased(&self, bucket: &str, now_us: i64, interval_us: i64) -> Option<i64> {
        let mut leases = self.leases.lock().expect("lease lock");
        let lease = leases.get_mut(bucket)?;
        if lease.tokens <= 0 || now_us >= lease.expires_us {
            return None;
        }
        lease.tokens -= 1;
        // Report the tokens still held here as available.
        Some(lease.tat - lease.tokens * interval_us)
    }
}

impl PostgresTats {
    async fn admit(
        &self,
        bucket: &str,
        now_us: i64,
        interval_us: i64,
        capacity_us: i64,
        cost: i64,
    ) -> Result<(bool, i64), StoreError> {
        let lease_size = (capacity_us / interval_us / 100).clamp(1, 64);
        // Leases are taken one unit at a time; a request of several units charges the row.
        if lease_size > 1 && cost == 1 {
            if let Some(tat) = self.take_leased(bucket, now_us, interval_us) {
                return Ok((true, tat));
            }
            let leased = self
                .charge(bucket, now_us, interval_us, capacity_us, lease_size)
                .await?;
            if let Some(tat) = leased {
                self.leases.lock().expect("lease lock").insert(
                    bucket.to_owned(),
                    Lease {
                        tokens: lease_size - 1,
                        tat,
                        expires_us: now_us + capacity_us,
                    },
                );
                return Ok((true, tat - (lease_size - 1) * interval_us));
            }
        }
        // One request at a time: small limits, and the last requests of a nearly empty
        // bucket. The row lock serialises instances per bucket.
        if let Some(tat) = self
            .charge(bucket, now_us, interval_us, capacity_us, cost)
            .await?
        {
            return Ok((true, tat));
        }
        let tat: Option<i64> = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE bucket = $1")
            .bind(bucket)
            .fetch_optional(&self.pool)
            .await?;
        Ok((false, tat.unwrap_or(now_us).max(now_us)))
    }

    async fn prune(&self, now_us: i64) -> Result<(), StoreError> {
        self.leases
            .lock()
            .expect("lease lock")
            .retain(|_, lease| lease.expires_us > now_us && lease.tokens > 0);
        sqlx::query("DELETE FROM rate_limits WHERE tat <= $1")
            .bind(now_us)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[derive(Hash)]
    struct Named(&'static str);

    impl BucketName for Named {
        fn name(&self) -> String {
            self.0.to_owned()
        }
    }

    // claim: WEB-5
    #[tokio::test]
    async fn a_burst_of_the_limit_passes_then_one_per_interval() {
        let limiter = Limiter::Memory(MemoryTats::default());
        let start = 1_000 * SECOND;
        for n in 0..60 {
            let d = limiter.check(&Named("b"), 60, start).await.unwrap();
            assert!(d.allowed, "request {n}");
            assert_eq!(d.remaining, 59 - n);
        }
        let refused = limiter.check(&Named("b"), 60, start).await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after_secs, 1);
        assert_eq!(refused.reset_secs, 60);
        // One interval later, exactly one more.
        assert!(
            limiter
                .check(&Named("b"), 60, start + SECOND)
                .await
                .unwrap()
                .allowed
        );
        assert!(
            !limiter
                .check(&Named("b"), 60, start + SECOND)
                .await
                .unwrap()
                .allowed
        );
        // Other buckets are untouched.
        assert!(limiter.check(&Named("c"), 60, start).await.unwrap().allowed);
        // After a full period the bucket is full again and pruned.
        limiter.prune(start + 61 * SECOND).await.unwrap();
        let d = limiter
            .check(&Named("b"), 60, start + 61 * SECOND)
            .await
            .unwrap();
        assert_eq!(d.remaining, 59);
    }

    // claim: WEB-5
    #[test]
    fn sign_in_is_stricter_reads_looser_and_health_exempt() {
        assert_eq!(class_of("POST", "/api/v1/auth/login"), Some(Class::SignIn));
        assert_eq!(class_of("GET", "/api/v1/members"), Some(Class::Read));
        assert_eq!(
            class_of("POST", "/api/v1/applications"),
            Some(Class::Default)
        );
        assert_eq!(class_of("GET", "/api/health/live"), None);
        assert_eq!(
            class_of("GET", "/api/v1/audit/export"),
            Some(Class::Default),
            "a whole-chain read costs a write's budget"
        );
        let settings = RateLimitSettings::default();
        assert!(Class::SignIn.per_minute(&settings) < Class::Default.per_minute(&settings));
        assert!(Class::Read.per_minute(&settings) > Class::Default.per_minute(&settings));
        assert_eq!(Class::Default.per_minute(&settings), 60);
    }
}
