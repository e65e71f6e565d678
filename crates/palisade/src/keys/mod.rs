//! API keys (claims KEY-1 to KEY-5): machine access to one tenant, optionally as the Agent
//! of one application (claim RBAC-4), bounded by a role and optional scopes.
//!
//! Every request checks the key live (KEY-2): the key's row is cached under the auth epoch
//! (`identity::principals`), and revocation and rotation bump that epoch in their
//! transaction, so no instance uses a cached row past a revocation. Last use is noted in
//! memory once per key per minute (the first use of each minute) and written every minute
//! (KEY-4), never once per request.

pub mod routes;
pub mod secret;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use time::{Duration, OffsetDateTime};

use crate::access::actions::Entitlement;
use crate::access::Role;
use crate::access::{ActionSet, ActionTable};
use crate::access::{Caller, Grants, PrincipalKind, Subject, TenantScope};
use crate::audit::Acting;
use crate::clock::Clock;
use crate::crypto::constant_time_eq;
use crate::identity::domain::{display_name, InvalidInput};
use crate::identity::principals::EpochMap;
use crate::identity::service::{EpochSource, IdentityError, Origin};
use crate::identity::sessions::Principal;
use crate::ids::{ApiKeyId, ApplicationId, TenantId};
use crate::services::tenant_tokens::TenantTokenPrincipal;
use crate::store::StoreError;
use crate::tenancy::members::{guarded, TenancyError};
pub use store::KeyCreator;
pub use store::KeyLimit;
use store::{Creation, KeyRecord, KeyStore, PresentedRecord};

/// The longest a key may live, and the longest overlap a rotation may grant.
pub const MAX_LIFETIME_DAYS: i64 = 3650;
pub const MAX_OVERLAP_SECS: i64 = 7 * 24 * 3600;

/// Why a key may not be created, rotated or revoked by this caller (claim RBAC-6).
const BEYOND_YOUR_OWN: &str = "the key's role or scopes go beyond what you may grant";

/// Who asks for a new key: a member, bounded by what they may grant (claim KEY-5), or the
/// app's backend under a tenant token, bounded to the app's own actions (claim APP-5).
pub enum Issuer<'a> {
    Member(&'a Principal),
    App(&'a TenantTokenPrincipal),
}

impl Issuer<'_> {
    fn tenant(&self) -> TenantId {
        match self {
            Issuer::Member(person) => person.tenant(),
            Issuer::App(token) => token.tenant(),
        }
    }

    fn scope(&self) -> TenantScope {
        match self {
            Issuer::Member(person) => person.scope(),
            Issuer::App(token) => token.scope(),
        }
    }

    fn creator(&self) -> KeyCreator {
        match self {
            Issuer::Member(person) => KeyCreator::Member(person.user()),
            Issuer::App(token) => KeyCreator::Service(token.service()),
        }
    }

    fn acting(&self) -> Acting {
        match self {
            Issuer::Member(person) => Acting::from(*person),
            Issuer::App(token) => Acting::from(*token),
        }
    }

    /// Whether this issuer may make a key granting `role` narrowed to `scopes`. The app
    /// makes keys for its customers to call its own API: scoped to the manifest's actions
    /// only, so such a key can never manage the tenant through Palisade's.
    fn may_issue(
        &self,
        access: &ActionTable,
        role: Role,
        scopes: Option<&str>,
    ) -> Result<(), TenancyError> {
        match self {
            Issuer::Member(person) => {
                if person.may_act_on(&Entitlement::key(role, scopes)) {
                    Ok(())
                } else {
                    Err(TenancyError::Forbidden(BEYOND_YOUR_OWN))
                }
            }
            Issuer::App(_) => {
                let app_only = scopes.is_some_and(|names| {
                    names
                        .split(' ')
                        .all(|name| access.find(name).is_some_and(|row| row.is_app()))
                });
                if app_only {
                    Ok(())
                } else {
                    Err(InvalidInput(
                        "scopes: a key the app makes is scoped to the manifest's actions only",
                    )
                    .into())
                }
            }
        }
    }
}

/// A key's row as cached under the auth epoch, its grants (role and scopes) parsed once.
#[derive(Debug)]
struct CachedKey {
    record: PresentedRecord,
    grants: Grants,
    /// The minute of the last use noted for writing: a use in the same minute costs one
    /// atomic swap, not a lock.
    noted_minute: AtomicI64,
}

/// A request authenticated by an API key. Only [`ApiKeys::authenticate`] makes one; it
/// shares the cached row rather than copying it.
#[derive(Clone, Debug)]
pub struct KeyPrincipal(Arc<CachedKey>);

impl KeyPrincipal {
    pub fn id(&self) -> ApiKeyId {
        self.0.record.key.id
    }

    pub fn tenant(&self) -> TenantId {
        self.0.record.key.tenant
    }

    pub fn tenant_name(&self) -> &str {
        &self.0.record.tenant_name
    }

    pub fn role(&self) -> Role {
        self.0.record.key.role
    }

    pub fn scope(&self) -> TenantScope {
        TenantScope::of_verified_credential(self.tenant())
    }

    /// An Agent when the key belongs to an application (claim RBAC-4).
    pub fn kind(&self) -> PrincipalKind {
        self.0.grants.kind()
    }

    /// The key's scopes as stored (space-separated action names), if it has any.
    pub fn stored_scopes(&self) -> Option<&str> {
        self.0.record.key.scopes.as_deref()
    }

    /// The owner's metadata, as its JSON object text.
    pub fn meta(&self) -> Option<&str> {
        self.0.record.key.meta.as_deref()
    }

    /// The key's own limit, if its owner set one.
    pub fn ratelimit(&self) -> Option<KeyLimit> {
        self.0.record.key.ratelimit
    }

    pub fn application(&self) -> Option<ApplicationId> {
        self.0.record.key.application
    }

    /// The key as a tenant action's caller: its role, narrowed by its scopes (claim KEY-5).
    pub fn caller(&self) -> Caller {
        Caller::new(
            self.scope(),
            self.0.record.tenant_name.clone(),
            Subject::Key { id: self.id() },
            self.0.grants.clone(),
        )
    }
}

/// Why a presented key is refused. Requests authenticated by a key learn none of it (a
/// 401); the app's backend verifying its customer's key learns the code (claim APP-5).
/// Revoked and expired are told only to a caller who presented the right secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Malformed, unknown, or the secret is wrong.
    NotFound,
    Revoked,
    Expired,
    /// The key's tenant is suspended.
    Disabled,
}

impl KeyRefusal {
    pub fn code(self) -> &'static str {
        match self {
            KeyRefusal::NotFound => "not_found",
            KeyRefusal::Revoked => "revoked",
            KeyRefusal::Expired => "expired",
            KeyRefusal::Disabled => "disabled",
        }
    }
}

/// What a member asks for when creating a key.
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub scopes: Option<Vec<String>>,
    pub application: Option<ApplicationId>,
    pub expires_in_days: Option<i64>,
    /// The owner's metadata (claim APP-5): at most 16 keys and 1 KiB as JSON.
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// The limit key verification applies when the app names none.
    pub ratelimit: Option<KeyLimit>,
}

/// Bounds of a key's metadata and of its own limit (the app's limit check's bounds).
const MAX_META_KEYS: usize = 16;
const MAX_META_BYTES: usize = 1024;
const MAX_LIMIT: u32 = 1_000_000;
const MAX_WINDOW_SECONDS: u32 = 86_400;

fn checked_meta(
    meta: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<String>, InvalidInput> {
    let Some(meta) = meta else { return Ok(None) };
    let text = serde_json::to_string(meta).map_err(|_| InvalidInput("meta: not JSON"))?;
    if meta.len() > MAX_META_KEYS || text.len() > MAX_META_BYTES {
        return Err(InvalidInput("meta: at most 16 keys and 1 KiB as JSON"));
    }
    Ok(Some(text))
}

fn checked_limit(limit: Option<KeyLimit>) -> Result<Option<KeyLimit>, InvalidInput> {
    match limit {
        Some(l) if !(1..=MAX_LIMIT).contains(&l.limit) => {
            Err(InvalidInput("ratelimit.limit: 1 to 1000000"))
        }
        Some(l) if !(1..=MAX_WINDOW_SECONDS).contains(&l.window_seconds) => {
            Err(InvalidInput("ratelimit.window_seconds: 1 to 86400"))
        }
        other => Ok(other),
    }
}

/// A key just created or rotated: the record and the key text, shown once.
pub struct IssuedKey {
    pub record: KeyRecord,
    pub key: SecretString,
}

pub struct ApiKeys {
    store: Arc<dyn KeyStore>,
    epoch: EpochSource,
    cache: EpochMap<ApiKeyId, Arc<CachedKey>>,
    /// Uses not yet written: key → (tenant, latest use).
    last_used: Mutex<HashMap<ApiKeyId, (TenantId, OffsetDateTime)>>,
    clock: Arc<dyn Clock>,
    /// The deployment's action table: what a key's scopes may name.
    access: Arc<ActionTable>,
}

impl ApiKeys {
    pub fn new(
        store: Arc<dyn KeyStore>,
        epoch: EpochSource,
        clock: Arc<dyn Clock>,
        access: Arc<ActionTable>,
    ) -> Self {
        Self {
            store,
            epoch,
            cache: EpochMap::new(),
            last_used: Mutex::new(HashMap::new()),
            clock,
            access,
        }
    }

    /// Verifies a presented key: well-formed, known, the secret right (the current one, or
    /// the previous one inside its overlap window), not revoked, not expired, its tenant
    /// not suspended. The reasons are logged at debug level only; the client learns none.
    pub async fn authenticate(&self, text: &str) -> Result<KeyPrincipal, IdentityError> {
        match self.verify(text).await? {
            Ok(key) => Ok(key),
            Err(refusal) => {
                tracing::debug!(reason = refusal.code(), "API key refused");
                Err(match refusal {
                    KeyRefusal::Disabled => IdentityError::TenantSuspended,
                    _ => IdentityError::Unauthenticated("API key refused"),
                })
            }
        }
    }

    /// [`ApiKeys::authenticate`], with the reason a key is refused (for the app's own
    /// verification of its customers' keys, claim APP-5). Only a database failure is an
    /// error.
    pub async fn verify(&self, text: &str) -> Result<Result<KeyPrincipal, KeyRefusal>, StoreError> {
        let Ok(presented) = secret::parse_shape(text) else {
            return Ok(Err(KeyRefusal::NotFound));
        };
        let epoch = self.epoch.current().await?;
        let cached = match self.cache.get(&presented.id, epoch) {
            // The current secret of a cached key: its checksum was right when issued, so
            // the hot path hashes once.
            Some(cached) if constant_time_eq(&cached.record.key.secret_hash, &presented.hash) => {
                cached
            }
            cached => {
                // A typo never reaches the database.
                if !secret::checksum_matches(text) {
                    return Ok(Err(KeyRefusal::NotFound));
                }
                if let Some(cached) = cached {
                    return Ok(self.check(cached, &presented));
                }
                let Some(record) = self.store.presented(presented.id).await? else {
                    return Ok(Err(KeyRefusal::NotFound));
                };
                let grants = Grants::key(
                    record.key.role,
                    record.key.application,
                    record
                        .key
                        .scopes
                        .as_deref()
                        .map(|names| Arc::new(self.access.parse_set(names))),
                    self.access.clone(),
                );
                let cached = Arc::new(CachedKey {
                    record,
                    grants,
                    noted_minute: AtomicI64::new(i64::MIN),
                });
                self.cache.put(presented.id, epoch, cached.clone());
                cached
            }
        };
        Ok(self.check(cached, &presented))
    }

    /// The secret (current, or previous inside its overlap), revocation, expiry, tenant.
    fn check(
        &self,
        cached: Arc<CachedKey>,
        presented: &secret::PresentedKey,
    ) -> Result<KeyPrincipal, KeyRefusal> {
        let now = self.clock.now();
        let record = &cached.record;
        let key = &record.key;
        let current = constant_time_eq(&key.secret_hash, &presented.hash);
        let previous = key.previous_expires_at.is_some_and(|until| now < until)
            && key
                .previous_secret_hash
                .as_deref()
                .is_some_and(|hash| constant_time_eq(hash, &presented.hash));
        // A wrong secret says nothing of the key it names: only its holder learns more.
        if !current && !previous {
            return Err(KeyRefusal::NotFound);
        }
        if key.revoked_at.is_some() {
            return Err(KeyRefusal::Revoked);
        }
        if key.expires_at.is_some_and(|at| now >= at) {
            return Err(KeyRefusal::Expired);
        }
        if record.tenant_suspended {
            return Err(KeyRefusal::Disabled);
        }
        let minute = now.unix_timestamp().div_euclid(60);
        if cached.noted_minute.swap(minute, Ordering::Relaxed) != minute {
            self.last_used
                .lock()
                .expect("last-used lock")
                .insert(key.id, (key.tenant, now));
        }
        Ok(KeyPrincipal(cached))
    }

    /// Creates a key with at most the creator's role and actions (claim KEY-5), or, for the
    /// app, with the manifest's actions only (claim APP-5).
    pub async fn create(
        &self,
        issuer: &Issuer<'_>,
        request: NewKey,
        origin: &Origin,
    ) -> Result<IssuedKey, TenancyError> {
        let name = display_name(
            &request.name,
            100,
            "name: 1 to 100 characters, no control characters or surrounding spaces",
        )?;
        if request.role == Role::Owner {
            return Err(InvalidInput("role: a key is at most an admin").into());
        }
        let scopes = match &request.scopes {
            None => None,
            Some(names) => Some(parse_scopes(&self.access, names, request.role)?),
        };
        issuer.may_issue(&self.access, request.role, scopes.as_deref())?;
        let now = self.clock.now();
        let expires_at = match request.expires_in_days {
            None => None,
            Some(days) if (1..=MAX_LIFETIME_DAYS).contains(&days) => {
                Some(now + Duration::days(days))
            }
            Some(_) => return Err(InvalidInput("expires_in_days: 1 to 3650").into()),
        };
        let meta = checked_meta(request.meta.as_ref())?;
        let ratelimit = checked_limit(request.ratelimit)?;
        let id = ApiKeyId::generate();
        let (key, hash) = secret::issue(id);
        let record = KeyRecord {
            id,
            tenant: issuer.tenant(),
            application: request.application,
            name: name.to_owned(),
            role: request.role,
            scopes,
            secret_hash: hash.to_vec(),
            previous_secret_hash: None,
            previous_expires_at: None,
            expires_at,
            created_by: issuer.creator(),
            created_at: now,
            rotated_at: None,
            revoked_at: None,
            last_used_at: None,
            meta,
            ratelimit,
        };
        let event = origin
            .event("api_keys.created", "success", now)
            .in_tenant(issuer.tenant())
            .by(issuer.acting())
            .on("api_key", id);
        match self.store.create(issuer.scope(), &record, &event).await? {
            Creation::Created => Ok(IssuedKey { record, key }),
            // Another tenant's application is as absent as a missing one (claim TEN-4).
            Creation::NoSuchApplication => {
                Err(InvalidInput("application_id: no such application in this tenant").into())
            }
        }
    }

    /// The tenant's keys, with uses this instance has not written yet; an Agent's key sees
    /// only its application's keys.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<KeyRecord>, TenancyError> {
        let mut keys = self.store.list(caller.scope()).await?;
        if let PrincipalKind::Agent { application } = caller.kind() {
            keys.retain(|k| k.application == Some(application));
        }
        let pending = self.last_used.lock().expect("last-used lock");
        for key in &mut keys {
            if let Some((_, at)) = pending.get(&key.id) {
                key.last_used_at = key.last_used_at.max(Some(*at));
            }
        }
        Ok(keys)
    }

    pub async fn revoke(
        &self,
        principal: &Principal,
        id: ApiKeyId,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        let now = self.clock.now();
        let event = origin
            .event("api_keys.revoked", "success", now)
            .in_tenant(principal.tenant())
            .by(principal)
            .on("api_key", id);
        let may_act_on = |grant: &Entitlement| principal.may_act_on(grant);
        let outcome = self
            .store
            .revoke(principal.scope(), id, &may_act_on, now, &event)
            .await?;
        guarded(outcome, BEYOND_YOUR_OWN)?;
        self.epoch.changed();
        Ok(())
    }

    /// A new secret; the old one keeps working for `overlap_secs` (0: it dies now).
    pub async fn rotate(
        &self,
        principal: &Principal,
        id: ApiKeyId,
        overlap_secs: i64,
        origin: &Origin,
    ) -> Result<IssuedKey, TenancyError> {
        if !(0..=MAX_OVERLAP_SECS).contains(&overlap_secs) {
            return Err(InvalidInput("overlap_seconds: 0 to 604800 (7 days)").into());
        }
        let now = self.clock.now();
        let previous_until = (overlap_secs > 0).then(|| now + Duration::seconds(overlap_secs));
        let (key, hash) = secret::issue(id);
        let event = origin
            .event("api_keys.rotated", "success", now)
            .in_tenant(principal.tenant())
            .by(principal)
            .on("api_key", id);
        let may_act_on = |grant: &Entitlement| principal.may_act_on(grant);
        let outcome = self
            .store
            .rotate(
                principal.scope(),
                id,
                &may_act_on,
                &hash,
                previous_until,
                now,
                &event,
            )
            .await?;
        let record = guarded(outcome, BEYOND_YOUR_OWN)?;
        self.epoch.changed();
        Ok(IssuedKey { record, key })
    }

    /// Writes the uses recorded since the last call, one transaction per tenant.
    pub async fn flush_last_used(&self) {
        let pending = std::mem::take(&mut *self.last_used.lock().expect("last-used lock"));
        let mut by_tenant: HashMap<TenantId, Vec<(ApiKeyId, OffsetDateTime)>> = HashMap::new();
        for (key, (tenant, at)) in pending {
            by_tenant.entry(tenant).or_default().push((key, at));
        }
        for (tenant, uses) in by_tenant {
            if let Err(error) = self.store.record_use(tenant, &uses).await {
                tracing::warn!(%error, keys = uses.len(), "recording API key use failed");
            }
        }
    }
}

/// A key's scopes as stored (space-separated names): actions of the table, Palisade's or
/// the app's, none for people only, each allowed to the key's role.
fn parse_scopes(
    access: &ActionTable,
    names: &[String],
    role: Role,
) -> Result<String, TenancyError> {
    if names.is_empty() || names.len() > 100 {
        return Err(InvalidInput("scopes: 1 to 100 actions").into());
    }
    let mut scopes = ActionSet::default();
    for name in names {
        let row = access
            .find(name)
            .ok_or(InvalidInput("scopes: unknown action"))?;
        if row.people_only {
            return Err(InvalidInput("scopes: that action is for people only, never a key").into());
        }
        if !row.allowed_to(role) {
            return Err(InvalidInput("scopes: an action the key's role does not allow").into());
        }
        // A repeated action is the same scope, as in a custom role.
        scopes.insert(row.id);
    }
    Ok(access.names(&scopes))
}
