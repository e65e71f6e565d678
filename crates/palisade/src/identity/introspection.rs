//! What the app beside Palisade asks about a token it was handed (claim APP-6): whether an
//! access token is live right now (RFC 7662 introspection) and ending the session behind an
//! access or refresh token (RFC 7009 revocation). Both are asked by the app's backend with
//! its service credential; the answers follow the same checks as every request Palisade
//! serves, so a revocation holds on the very next introspection on every instance.

use secrecy::SecretString;

use super::recovery::token_hash;
use super::service::{Identity, IdentityError, Origin};
use super::tokens::{AccessClaims, TokenSubject};
use crate::audit::Acting;
use crate::ids::{CustomRoleId, ServiceId, SessionId, TenantId, UserId};
use crate::store::StoreError;

/// A live access token, as the app may rely on it now: the token's own claims (times,
/// issuer, how the session signed in) and the session's principal as it is at this moment.
pub struct ActiveToken {
    pub claims: AccessClaims,
    /// The member's built-in role now (it may differ from the token's `role`).
    pub role: &'static str,
    pub custom_role: Option<CustomRoleId>,
    pub app_role: Option<String>,
}

impl Identity {
    /// `None` for a token that is not live: malformed, expired, signed by another
    /// deployment, of a revoked, logged-out, expired or switched-away session, of a member
    /// removed or a tenant suspended, or of a session that still owes the tenant's second
    /// factor (it may only enrol). A database failure stays an error (503), never "inactive".
    pub async fn introspect(&self, token: &str) -> Result<Option<ActiveToken>, StoreError> {
        let (claims, record) = match self.verified(token).await {
            Ok(verified) => verified,
            Err(IdentityError::Store(error)) => return Err(error),
            Err(_) => return Ok(None),
        };
        if record.tenant_requires_mfa && !record.mfa {
            return Ok(None);
        }
        let now = TokenSubject::of(&record);
        Ok(Some(ActiveToken {
            role: now.role,
            custom_role: now.custom_role,
            app_role: now.app_role.map(str::to_owned),
            claims,
        }))
    }

    /// Ends the session an access token or a refresh token belongs to, audited as the
    /// app's. A token that names no live session is ignored, as RFC 7009 asks: the answer
    /// never tells a caller whether a token was valid.
    pub async fn revoke_for_app(
        &self,
        token: &SecretString,
        refresh_first: bool,
        service: ServiceId,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        let target = if refresh_first {
            match self.refreshed_by(token).await? {
                Some(target) => Some(target),
                None => self.accessed_by(token).await?,
            }
        } else {
            match self.accessed_by(token).await? {
                Some(target) => Some(target),
                None => self.refreshed_by(token).await?,
            }
        };
        let Some((session, user, tenant)) = target else {
            return Ok(());
        };
        let event = origin
            .event("auth.session_revoked", "success", self.now())
            .in_tenant(tenant)
            .by(Acting::Service(service))
            .on("session", session);
        if self
            .store
            .revoke_session(session, user, "revoked_by_app", &event)
            .await?
        {
            self.principals.changed();
        }
        Ok(())
    }

    /// The session a live access token belongs to.
    async fn accessed_by(&self, token: &SecretString) -> Result<Option<SessionOf>, StoreError> {
        use secrecy::ExposeSecret;
        match self.verified(token.expose_secret()).await {
            Ok((_, record)) => Ok(Some((record.session, record.user, record.tenant))),
            Err(IdentityError::Store(error)) => Err(error),
            Err(_) => Ok(None),
        }
    }

    /// The session a refresh token belongs to.
    async fn refreshed_by(&self, token: &SecretString) -> Result<Option<SessionOf>, StoreError> {
        let Ok(hash) = token_hash(token) else {
            return Ok(None);
        };
        Ok(self
            .store
            .refresh_token(&hash)
            .await?
            .map(|r| (r.session.id, r.session.user_id, r.session.tenant_id)))
    }
}

/// A session, its user and its tenant.
type SessionOf = (SessionId, UserId, TenantId);
