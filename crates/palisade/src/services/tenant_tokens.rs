//! Tenant tokens (claim APP-8): the app's work that no signed-in user asks for (a system
//! event, later a secret or a webhook) acts in one tenant only, for five minutes, with a
//! token its service credential obtains — as a GitHub App obtains an installation token.
//! Each issue is recorded in the tenant's chain and the platform stream; a suspended
//! tenant gets none, and a token stops working at once when its tenant is suspended or its
//! credential revoked (both move the auth epoch, which its cached row is read under).

use std::sync::Arc;

use secrecy::SecretString;
use time::{Duration, OffsetDateTime};

use super::store::{TenantTokenRecord, TokenGrant};
use super::{ServiceCredentials, ServicePrincipal};
use crate::access::TenantScope;
use crate::audit::{Acting, AuditRecord};
use crate::crypto::constant_time_eq;
use crate::identity::service::{IdentityError, Origin};
use crate::ids::{TenantId, TenantTokenId};
use crate::keys::secret::TENANT_TOKEN;

/// How long a tenant token works.
pub const LIFETIME: Duration = Duration::minutes(5);

/// Expired tokens are forgotten this long after they stop working, at the next issue.
const KEPT_AFTER_EXPIRY: Duration = Duration::hours(1);

/// A verified, live tenant token: the app's backend acting in one tenant.
#[derive(Clone, Debug)]
pub struct TenantTokenPrincipal(Arc<TenantTokenRecord>);

impl TenantTokenPrincipal {
    pub fn id(&self) -> TenantTokenId {
        self.0.id
    }

    pub fn service(&self) -> crate::ids::ServiceId {
        self.0.service
    }

    pub fn tenant(&self) -> TenantId {
        self.0.tenant
    }

    /// The tenant the token names, as a verified credential's.
    pub fn scope(&self) -> TenantScope {
        TenantScope::of_verified_credential(self.0.tenant)
    }

    pub fn expires_at(&self) -> OffsetDateTime {
        self.0.expires_at
    }
}

/// The audit trail names the app's service for work done under its tenant token.
impl From<&TenantTokenPrincipal> for Acting {
    fn from(token: &TenantTokenPrincipal) -> Self {
        Acting::Service(token.service())
    }
}

/// A token just issued: its text, shown once, and when it stops working.
pub struct IssuedTenantToken {
    pub token: SecretString,
    pub id: TenantTokenId,
    pub tenant: TenantId,
    pub tenant_name: String,
    pub expires_at: OffsetDateTime,
}

/// Whether `text` claims to be a tenant token.
pub fn looks_like_tenant_token(text: &str) -> bool {
    TENANT_TOKEN.looks_like(text)
}

impl ServiceCredentials {
    /// A five-minute token in `tenant` for `service`, recorded in the tenant's chain and the
    /// platform stream. An unknown tenant is `NotFound`; a suspended one `TenantSuspended`.
    pub async fn issue_tenant_token(
        &self,
        service: &ServicePrincipal,
        tenant: TenantId,
        origin: &Origin,
    ) -> Result<IssuedTenantToken, IdentityError> {
        let now = self.clock.now();
        let id = TenantTokenId::generate();
        let (token, hash) = TENANT_TOKEN.issue(id.as_uuid());
        let record = TenantTokenRecord {
            id,
            service: service.id(),
            tenant,
            tenant_name: String::new(),
            secret_hash: hash.to_vec(),
            issued_at: now,
            expires_at: now + LIFETIME,
            service_revoked: false,
            tenant_suspended: false,
        };
        let event = |in_tenant: bool| {
            let event = origin
                .event("services.tenant_token_issued", "success", now)
                .by(Acting::Service(service.id()))
                .on("tenant_token", id)
                .changed("tenant_id", None::<TenantId>, tenant)
                .changed(
                    "expires_at",
                    None::<i64>,
                    record.expires_at.unix_timestamp(),
                );
            if in_tenant {
                event.in_tenant(tenant)
            } else {
                event
            }
        };
        let events: [AuditRecord; 2] = [event(true), event(false)];
        let grant = self
            .store
            .issue_tenant_token(&record, [&events[0], &events[1]], now - KEPT_AFTER_EXPIRY)
            .await?;
        match grant {
            TokenGrant::Issued { tenant_name } => Ok(IssuedTenantToken {
                token,
                id,
                tenant,
                tenant_name,
                expires_at: record.expires_at,
            }),
            TokenGrant::NoSuchTenant => Err(IdentityError::NotFound),
            TokenGrant::Suspended => Err(IdentityError::TenantSuspended),
        }
    }

    /// Verifies a presented tenant token: well-formed, known, its secret right, not
    /// expired, its credential not revoked and its tenant not suspended.
    pub async fn authenticate_tenant_token(
        &self,
        text: &str,
    ) -> Result<TenantTokenPrincipal, IdentityError> {
        let (id, hash) = TENANT_TOKEN
            .parse(text)
            .map_err(|_| IdentityError::Unauthenticated("malformed tenant token"))?;
        let id = TenantTokenId::from_uuid(id);
        let epoch = self.epoch.current().await?;
        let load = async {
            Ok::<_, IdentityError>(self.store.presented_tenant_token(id).await?.map(Arc::new))
        };
        let record = self
            .tenant_tokens
            .get_or_load(id, epoch, load, || {
                IdentityError::Unauthenticated("unknown tenant token")
            })
            .await?;
        if !constant_time_eq(&record.secret_hash, &hash) {
            return Err(IdentityError::Unauthenticated("wrong tenant token secret"));
        }
        if self.clock.now() >= record.expires_at {
            return Err(IdentityError::Unauthenticated("tenant token expired"));
        }
        if record.service_revoked {
            return Err(IdentityError::Unauthenticated(
                "the tenant token's service credential is revoked",
            ));
        }
        if record.tenant_suspended {
            return Err(IdentityError::TenantSuspended);
        }
        Ok(TenantTokenPrincipal(record))
    }
}
