//! Service credentials (claim APP-2): how the app's backend authenticates to the
//! integration endpoints (`ratelimit::INTEGRATION_PREFIXES`). The operator creates, lists and revokes them with
//! `palisade services …` (audited in the platform stream); each is shown once, stored as
//! SHA-256, and accepted on the integration endpoints only, never on a tenant route.
//!
//! Like API keys, a credential's row is cached under the auth epoch, and a revocation bumps
//! the epoch in its transaction: on PostgreSQL every instance sees it on its next request;
//! on SQLite the running server notices another process's revocation at its next poll
//! (every second).

pub mod routes;
pub mod store;
pub mod tenant_tokens;

use std::sync::Arc;

use secrecy::SecretString;
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::crypto::constant_time_eq;
use crate::identity::principals::EpochMap;
use crate::identity::service::{EpochSource, IdentityError};
use crate::ids::{ServiceId, TenantTokenId};
use crate::keys::secret::SERVICE;
use store::{ServiceRecord, ServiceStore, TenantTokenRecord};

/// The app's backend, as a verified service credential names it.
#[derive(Clone, Debug)]
pub struct ServicePrincipal(Arc<ServiceRecord>);

impl ServicePrincipal {
    pub fn id(&self) -> ServiceId {
        self.0.id
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

/// A credential just created: its record and its text, shown once.
pub struct IssuedService {
    pub record: ServiceRecord,
    pub credential: SecretString,
}

/// Whether `text` claims to be a service credential (so a tenant route can refuse it by name).
pub fn looks_like_service_credential(text: &str) -> bool {
    SERVICE.looks_like(text)
}

/// A new credential's record and text; the store writes the record with the hash.
pub fn issue(name: &str, operator: &str, now: OffsetDateTime) -> IssuedService {
    let id = ServiceId::generate();
    let (credential, hash) = SERVICE.issue(id.as_uuid());
    let record = ServiceRecord {
        id,
        name: name.to_owned(),
        created_by: operator.to_owned(),
        created_at: now,
        revoked_at: None,
        secret_hash: hash.to_vec(),
    };
    IssuedService { record, credential }
}

/// The server's side: verifying presented credentials.
pub struct ServiceCredentials {
    store: Arc<dyn ServiceStore>,
    epoch: EpochSource,
    clock: Arc<dyn Clock>,
    cache: EpochMap<ServiceId, Arc<ServiceRecord>>,
    tenant_tokens: EpochMap<TenantTokenId, Arc<TenantTokenRecord>>,
}

impl ServiceCredentials {
    pub fn new(store: Arc<dyn ServiceStore>, epoch: EpochSource, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            epoch,
            clock,
            cache: EpochMap::new(),
            tenant_tokens: EpochMap::new(),
        }
    }

    /// Verifies a presented credential: well-formed, its checksum right, known, the secret
    /// right, not revoked. The reasons are logged at debug level only.
    pub async fn authenticate(&self, text: &str) -> Result<ServicePrincipal, IdentityError> {
        let malformed = || IdentityError::Unauthenticated("malformed service credential");
        let (id, hash) = SERVICE.parse(text).map_err(|_| malformed())?;
        let id = ServiceId::from_uuid(id);
        let epoch = self.epoch.current().await?;
        let load = async { Ok::<_, IdentityError>(self.store.presented(id).await?.map(Arc::new)) };
        let record = self
            .cache
            .get_or_load(id, epoch, load, || {
                IdentityError::Unauthenticated("unknown service credential")
            })
            .await?;
        if !constant_time_eq(&record.secret_hash, &hash) {
            return Err(IdentityError::Unauthenticated(
                "wrong service credential secret",
            ));
        }
        if record.revoked_at.is_some() {
            return Err(IdentityError::Unauthenticated("service credential revoked"));
        }
        Ok(ServicePrincipal(record))
    }
}
