//! Sign-in and sessions (claims ID-3 to ID-10): sign-in with brute-force limits and equal
//! cost for unknown emails, rotating refresh tokens with reuse detection, idle and absolute
//! limits, logout, revoke-all, the user's own session list, tenant switching, password
//! change, and the check every authenticated request makes.

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::domain::{Email, InvalidInput, NewPassword};
use super::recovery::token_hash;
use super::service::{Identity, IdentityError, Origin};
use super::store::{MembershipRecord, NewSession, PrincipalRecord, SessionRecord};
use super::throttle::{Admission, Attempt, Scopes};
use super::tokens::{AccessClaims, IssuedToken, TokenSubject};
use crate::access::{
    Action, Caller, Entitlement, Grants, PrincipalKind, Role, Subject, TenantScope,
};
use crate::audit::{Acting, Actor, AuditRecord};
use crate::crypto::{random_token, sha256};
use crate::ids::{SessionId, TenantId, UserId};

/// Who an authenticated request acts as, read fresh from the database on every request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub(in crate::identity) user: UserId,
    pub(in crate::identity) tenant: TenantId,
    pub(in crate::identity) session: SessionId,
    pub(in crate::identity) email: String,
    pub(in crate::identity) email_verified: bool,
    pub(in crate::identity) tenant_name: std::sync::Arc<str>,
    /// The session was opened with a second factor.
    pub(in crate::identity) mfa: bool,
    /// The tenant requires MFA and this session has none: only enrolment is allowed.
    pub(in crate::identity) mfa_pending: bool,
    /// The built-in role and the custom role's actions, if one is held (claim RBAC-3).
    pub(in crate::identity) grants: Grants,
}

/// The audit trail names the person in the role they hold in the tenant.
impl From<&Principal> for crate::audit::Acting {
    fn from(principal: &Principal) -> Self {
        crate::audit::Acting::Principal(
            crate::audit::Actor::User(principal.user),
            principal.role().as_str(),
        )
    }
}

impl Principal {
    /// The tenant this request acts in, as a scope for tenant-data stores.
    pub fn scope(&self) -> TenantScope {
        TenantScope::of_verified_credential(self.tenant)
    }

    /// The person as a tenant action's caller.
    pub fn caller(&self) -> Caller {
        Caller::new(
            self.scope(),
            self.tenant_name.clone(),
            Subject::Person {
                user: self.user,
                session: self.session,
            },
            self.grants.clone(),
        )
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    pub fn role(&self) -> Role {
        self.grants.role()
    }

    pub fn kind(&self) -> PrincipalKind {
        self.grants.kind()
    }

    pub fn email(&self) -> &str {
        &self.email
    }

    pub fn email_verified(&self) -> bool {
        self.email_verified
    }

    pub fn tenant_name(&self) -> &str {
        &self.tenant_name
    }

    /// The session used a second factor.
    pub fn mfa(&self) -> bool {
        self.mfa
    }

    /// The tenant requires MFA and this session has none: only enrolment is allowed.
    pub fn mfa_pending(&self) -> bool {
        self.mfa_pending
    }

    /// Whether this member may give someone `role` (claim RBAC-6).
    pub fn may_grant(&self, role: Role) -> bool {
        self.grants.may_grant(role)
    }

    /// Whether this member may create, change or end an object that hands out `entitlement`.
    pub fn may_act_on(&self, entitlement: &Entitlement) -> bool {
        self.grants.may_act_on(entitlement)
    }

    pub fn may(&self, action: Action) -> bool {
        self.grants.may(action)
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }
}

pub struct LoginInput {
    pub email: String,
    pub password: SecretString,
    pub tenant: Option<TenantId>,
    pub totp: Option<SecretString>,
    pub recovery_code: Option<SecretString>,
}

/// A new access token, and the refresh token for the cookie.
pub struct SessionTokens {
    pub access: IssuedToken,
    pub refresh: SecretString,
    /// Seconds until the session's absolute end: the cookie's Max-Age.
    pub refresh_max_age: u64,
    pub tenant: TenantId,
}

impl Identity {
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        input: LoginInput,
        origin: &Origin,
    ) -> Result<SessionTokens, IdentityError> {
        let email = Email::parse(&input.email)?;
        bounded_password(&input.password)?;
        let scopes = Scopes::password(email.as_str(), origin.ip);
        let attempt = self.admit(&scopes).await?;
        let outcome = self
            .login_admitted(input, &email, &scopes, &attempt, origin)
            .await;
        // A success withdrew the attempt in its own transaction.
        self.settle(&attempt, &outcome, true).await;
        outcome
    }

    async fn login_admitted(
        &self,
        input: LoginInput,
        email: &Email,
        scopes: &Scopes,
        attempt: &Attempt,
        origin: &Origin,
    ) -> Result<SessionTokens, IdentityError> {
        let now = self.now();
        let Some(user) = self.store.user_by_email(email.as_str()).await? else {
            // One hash, as for a known email: the time says nothing (claim ID-10).
            self.passwords
                .verify_stored(input.password, self.decoy_hash.clone())
                .await?;
            let event = origin
                .event("auth.login", "failure", now)
                .on("email", email.as_str());
            return Err(self.failed(attempt, event).await);
        };
        let upgrade_copy = SecretString::from(input.password.expose_secret().to_owned());
        let verified = self
            .passwords
            .verify_stored(input.password, user.password_hash.clone())
            .await?;
        if !verified.matches {
            // Not yet proven to be the user: the platform stream, not a tenant's trail, and
            // no database work a wrong password and an unknown email would not share.
            let event = origin
                .event("auth.login", "failure", now)
                .on("user", user.id);
            return Err(self.failed(attempt, event).await);
        }
        if user.email_verified_at.is_none() {
            // Until the address is proven nobody signs in to the account, and the answer
            // is a wrong password's: otherwise whoever signed up first with someone else's
            // address could mint keys and invitations that outlive the owner's recovery,
            // and signing up then in would tell whether the address was taken (claims
            // ID-10, ID-11; docs/decisions.md). The owner gets a fresh link.
            self.send_verification(user.id, user.email.clone(), origin);
            let event = origin
                .event("auth.login", "unverified_email", now)
                .on("user", user.id);
            return Err(self.failed(attempt, event).await);
        }
        let memberships = self.store.memberships(user.id).await?;
        let target = choose_tenant(&memberships, input.tenant);
        let audit = |outcome| {
            let event = origin
                .event("auth.login", outcome, now)
                .by(user.id)
                .on("user", user.id);
            match target {
                Some(m) => event.in_tenant(m.tenant_id),
                None => event,
            }
        };
        let mfa = match self.store.totp_factor(user.id).await? {
            Some(factor) if factor.confirmed => {
                if input.totp.is_none() && input.recovery_code.is_none() {
                    return Err(IdentityError::MfaRequired);
                }
                let code_attempt = self
                    .admit(&Scopes::second_factor(user.id, origin.ip))
                    .await?;
                let passed = self
                    .second_factor(user.id, &factor, input.totp, input.recovery_code)
                    .await;
                let outcome = match passed {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(self.failed(&code_attempt, audit("mfa_failure")).await),
                    Err(e) => Err(e),
                }
                .map_err(|e| match e {
                    IdentityError::InvalidCredentials => IdentityError::MfaRejected,
                    other => other,
                });
                self.settle(&code_attempt, &outcome, false).await;
                outcome?;
                true
            }
            _ => false,
        };
        if verified.needs_upgrade {
            // An imported bcrypt hash (or weaker argon2) becomes argon2id now (claim ID-1).
            let new_hash = self.passwords.hash(upgrade_copy).await?;
            self.store
                .upgrade_password_hash(user.id, &user.password_hash, &new_hash)
                .await?;
        }
        let membership = match (target, input.tenant) {
            (Some(m), _) if m.suspended => return Err(IdentityError::TenantSuspended),
            (Some(m), _) => m,
            (None, Some(_)) => return Err(IdentityError::NotFound),
            (None, None) => {
                return Err(IdentityError::Forbidden(
                    "this account belongs to no tenant",
                ))
            }
        };
        let session = self.new_session(user.id, membership, mfa, origin, now);
        let refresh = random_token();
        let event = audit("success").on("session", session.id);
        // Earlier failures of this (email, address) are forgiven, and this attempt withdrawn.
        self.store
            .open_session(
                &session,
                &sha256(refresh.expose_secret().as_bytes()),
                Some((&scopes.subject, &attempt.id)),
                &event,
            )
            .await?;
        let access = match self.issue_token(session.id, session.tenant_id, now).await {
            Ok(access) => access,
            Err(refused @ IdentityError::Unauthenticated(_)) => {
                // The membership ended between the session's write and its token: the
                // session ends too, so a refused sign-in leaves no live session behind.
                let event = origin
                    .event("auth.session_revoked", "success", now)
                    .in_tenant(session.tenant_id)
                    .by(user.id)
                    .on("session", session.id);
                match self
                    .store
                    .revoke_session(session.id, user.id, "membership_ended", &event)
                    .await
                {
                    Ok(_) => self.principals.changed(),
                    Err(error) => tracing::warn!(%error, "a refused sign-in's session stays open"),
                }
                return Err(refused);
            }
            Err(other) => return Err(other),
        };
        Ok(SessionTokens {
            access,
            refresh,
            refresh_max_age: self.settings.session_absolute_secs,
            tenant: membership.tenant_id,
        })
    }

    /// An access token for the session's principal as it is now: its role, custom or app
    /// role, second factor and tenant switches (after sign-in or a tenant switch).
    async fn issue_token(
        &self,
        session: SessionId,
        tenant: TenantId,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, IdentityError> {
        let principal = self
            .store
            .principal(session, tenant)
            .await?
            .ok_or(IdentityError::Unauthenticated("membership ended"))?;
        Ok(self.tokens.issue(&TokenSubject::of(&principal), now)?)
    }

    fn new_session(
        &self,
        user: UserId,
        membership: &MembershipRecord,
        mfa: bool,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> NewSession {
        NewSession {
            id: SessionId::generate(),
            user_id: user,
            tenant_id: membership.tenant_id,
            created_at: now,
            absolute_expires_at: now
                + std::time::Duration::from_secs(self.settings.session_absolute_secs),
            ip: origin.ip.map(|ip| ip.to_string()),
            user_agent: origin.user_agent.clone(),
            mfa,
        }
    }

    /// Admits an attempt at a password or a code, or refuses it with the time to wait.
    pub(super) async fn admit(&self, scopes: &Scopes) -> Result<Attempt, IdentityError> {
        match self
            .throttle
            .admit(self.store(), scopes, self.now())
            .await?
        {
            Admission::Admitted(attempt) => Ok(attempt),
            Admission::Locked { retry_after_secs } => {
                Err(IdentityError::Throttled { retry_after_secs })
            }
        }
    }

    /// Audits a failed attempt (it stays counted); the one that reaches a cap also records
    /// the lock-out. Returns the error to answer with.
    pub(super) async fn failed(&self, attempt: &Attempt, event: AuditRecord) -> IdentityError {
        let locks = [
            (attempt.reaches_cap, "auth.login_locked"),
            (attempt.reaches_ip_cap, "auth.address_locked"),
        ];
        let mut recorded = self.audit.record(event.clone()).await;
        for (reached, action) in locks {
            if reached && recorded.is_ok() {
                recorded = self
                    .audit
                    .record(AuditRecord {
                        action: action.into(),
                        outcome: "locked",
                        ..event.clone()
                    })
                    .await;
            }
        }
        match recorded {
            Ok(()) => IdentityError::InvalidCredentials,
            Err(e) => e.into(),
        }
    }

    /// After an admitted attempt: a failure stays counted; any other outcome withdraws the
    /// attempt, unless a success already did (`withdrawn_by_success`).
    pub(super) async fn settle<T>(
        &self,
        attempt: &Attempt,
        outcome: &Result<T, IdentityError>,
        withdrawn_by_success: bool,
    ) {
        let keep = match outcome {
            Ok(_) => withdrawn_by_success,
            Err(error) => error.is_failed_attempt(),
        };
        self.keep_or_release(attempt, keep).await;
    }

    async fn keep_or_release(&self, attempt: &Attempt, keep: bool) {
        if !keep {
            if let Err(error) = self.throttle.release(self.store(), attempt).await {
                tracing::warn!(%error, "an attempt could not be withdrawn; it counts until the window passes");
            }
        }
    }

    /// Rotates the refresh token (claim ID-4). A token presented twice revokes its whole
    /// session and is audited; idle and absolute limits end sessions (claim ID-5).
    #[tracing::instrument(skip_all)]
    pub async fn refresh(
        &self,
        token: &SecretString,
        origin: &Origin,
    ) -> Result<SessionTokens, IdentityError> {
        let hash = token_hash(token)
            .map_err(|_| IdentityError::Unauthenticated("refresh token malformed"))?;
        let record = self
            .store
            .refresh_token(&hash)
            .await?
            .ok_or(IdentityError::Unauthenticated("unknown refresh token"))?;
        let session = record.session;
        let now = self.now();
        if record.used_at.is_some() {
            self.revoke_reused(&session, origin, now).await?;
            return Err(IdentityError::Unauthenticated("refresh token reused"));
        }
        self.check_live(&session, record.tokens_valid_after, now)?;
        let principal = self
            .store
            .principal(session.id, session.tenant_id)
            .await?
            .ok_or(IdentityError::Unauthenticated("membership ended"))?;
        if principal.tenant_suspended {
            return Err(IdentityError::TenantSuspended);
        }
        let refresh = random_token();
        let event = origin
            .event("auth.refreshed", "success", now)
            .in_tenant(session.tenant_id)
            .by(crate::audit::Acting::Principal(
                crate::audit::Actor::User(session.user_id),
                principal.role.as_str(),
            ))
            .on("session", session.id);
        let rotated = self
            .store
            .rotate_refresh_token(
                session.id,
                &hash,
                &sha256(refresh.expose_secret().as_bytes()),
                &event,
            )
            .await?;
        if !rotated {
            // Spent between our read and our write: a concurrent replay.
            self.revoke_reused(&session, origin, now).await?;
            return Err(IdentityError::Unauthenticated("refresh token reused"));
        }
        let access = self.tokens.issue(&TokenSubject::of(&principal), now)?;
        let remaining = (session.absolute_expires_at - now).whole_seconds().max(0) as u64;
        Ok(SessionTokens {
            access,
            refresh,
            refresh_max_age: remaining,
            tenant: session.tenant_id,
        })
    }

    async fn revoke_reused(
        &self,
        session: &SessionRecord,
        origin: &Origin,
        now: OffsetDateTime,
    ) -> Result<(), IdentityError> {
        tracing::warn!(session = %session.id, "refresh token reused; session revoked");
        let event = origin
            .event("auth.refresh_token_reused", "revoked", now)
            .in_tenant(session.tenant_id)
            .by(session.user_id)
            .on("session", session.id);
        let revoked = self
            .store
            .revoke_session(session.id, session.user_id, "refresh_token_reused", &event)
            .await?;
        self.principals.changed();
        if !revoked {
            // Already ended: the attempt is still worth a record.
            self.audit
                .record(AuditRecord {
                    outcome: "refused",
                    ..event
                })
                .await?;
        }
        Ok(())
    }

    fn check_live(
        &self,
        session: &SessionRecord,
        tokens_valid_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), IdentityError> {
        let idle = std::time::Duration::from_secs(self.settings.session_idle_secs);
        if session.revoked_at.is_some() {
            Err(IdentityError::Unauthenticated("session revoked"))
        } else if now >= session.absolute_expires_at {
            Err(IdentityError::Unauthenticated(
                "session past its absolute lifetime",
            ))
        } else if now >= session.last_refreshed_at + idle {
            Err(IdentityError::Unauthenticated("session idle too long"))
        } else if session.created_at < tokens_valid_after {
            Err(IdentityError::Unauthenticated("tokens revoked"))
        } else {
            Ok(())
        }
    }

    /// The check behind every authenticated request: a valid token, then the session,
    /// user, membership and tenant as they are now (claims ID-6, ID-7, TEN-1).
    /// The user and tenant of a token whose signature and lifetime check out (cached per
    /// token), without the session lookup: enough to name a rate-limit bucket.
    pub async fn token_subject(&self, bearer: &str) -> Option<(UserId, TenantId)> {
        let claims = self
            .tokens
            .verify(bearer, self.store(), self.now())
            .await
            .ok()?;
        Some((claims.sub, claims.tid))
    }

    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, IdentityError> {
        let (_, record) = self.verified(bearer).await?;
        Ok(Principal {
            user: record.user,
            tenant: record.tenant,
            session: record.session,
            email: record.email,
            email_verified: record.email_verified_at.is_some(),
            tenant_name: record.tenant_name,
            mfa: record.mfa,
            mfa_pending: record.tenant_requires_mfa && !record.mfa,
            grants: Grants::person(record.role, &record.held, self.access.clone()),
        })
    }

    /// An access token's claims and its session's principal as it is now, once the token and
    /// every revocation that could have ended it are checked (claims ID-6, ID-7, TEN-1).
    pub(super) async fn verified(
        &self,
        bearer: &str,
    ) -> Result<(AccessClaims, PrincipalRecord), IdentityError> {
        let now = self.now();
        let claims = self.tokens.verify(bearer, self.store(), now).await?;
        let epoch = self.principals.epoch().await?;
        let record = match self.principals.get(claims.sid, claims.tid, epoch) {
            Some(record) => record,
            None => {
                let record = self
                    .store
                    .principal(claims.sid, claims.tid)
                    .await?
                    .ok_or(IdentityError::Unauthenticated("session not found"))?;
                self.principals
                    .put(claims.sid, claims.tid, epoch, record.clone());
                record
            }
        };
        if record.user != claims.sub {
            return Err(IdentityError::Unauthenticated("session of another user"));
        }
        if record.revoked_at.is_some() {
            return Err(IdentityError::Unauthenticated("session revoked"));
        }
        if record.tenant_suspended {
            return Err(IdentityError::TenantSuspended);
        }
        if now >= record.absolute_expires_at {
            return Err(IdentityError::Unauthenticated(
                "session past its absolute lifetime",
            ));
        }
        // Seconds in the token, microseconds in the database: both must pass.
        if claims.iat < record.tokens_valid_after.unix_timestamp()
            || record.session_created_at < record.tokens_valid_after
        {
            return Err(IdentityError::Unauthenticated("tokens revoked"));
        }
        // A token from before the session last switched tenant does not come back to life
        // when it switches back.
        if claims.tsw != record.tenant_switches {
            return Err(IdentityError::Unauthenticated(
                "issued before a tenant switch",
            ));
        }
        Ok((claims, record))
    }

    /// Ends a session at once (claim ID-6): by the caller's token, or by a refresh token.
    pub async fn logout(
        &self,
        principal: Option<&Principal>,
        refresh: Option<&SecretString>,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let now = self.now();
        let target = match (principal, refresh) {
            (Some(p), _) => Some((p.session, p.user, p.tenant)),
            (None, Some(token)) => match token_hash(token) {
                Ok(hash) => self
                    .store
                    .refresh_token(&hash)
                    .await?
                    .map(|r| (r.session.id, r.session.user_id, r.session.tenant_id)),
                Err(_) => None,
            },
            (None, None) => None,
        };
        if let Some((session, user, tenant)) = target {
            let event = origin
                .event("auth.logout", "success", now)
                .in_tenant(tenant)
                .by(user)
                .on("session", session);
            self.store
                .revoke_session(session, user, "logout", &event)
                .await?;
            self.principals.changed();
        }
        Ok(())
    }

    /// Revoke-all (claim ID-7): every token issued before now stops working, without
    /// rotating signing keys.
    pub async fn revoke_all(
        &self,
        principal: &Principal,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let event = origin
            .event("auth.revoke_all", "success", self.now())
            .in_tenant(principal.tenant)
            .by(principal)
            .on("user", principal.user);
        self.store.revoke_all(principal.user, &event).await?;
        self.principals.changed();
        Ok(())
    }

    /// The caller's live sessions, newest first.
    pub async fn sessions(
        &self,
        principal: &Principal,
    ) -> Result<Vec<SessionRecord>, IdentityError> {
        let now = self.now();
        let tokens_valid_after = self
            .store
            .user_by_id(principal.user)
            .await?
            .map(|u| u.tokens_valid_after)
            .ok_or(IdentityError::Unauthenticated("user gone"))?;
        Ok(self
            .store
            .sessions_of(principal.user)
            .await?
            .into_iter()
            .filter(|s| self.is_live(s, now) && s.created_at >= tokens_valid_after)
            .collect())
    }

    /// The live sessions acting in the caller's tenant, newest first (claim OPS-5's export).
    pub async fn tenant_sessions(
        &self,
        scope: TenantScope,
    ) -> Result<Vec<SessionRecord>, IdentityError> {
        let now = self.now();
        Ok(self
            .store
            .sessions_in(scope.tenant())
            .await?
            .into_iter()
            .filter(|s| self.is_live(s, now))
            .collect())
    }

    /// Within both the absolute and the idle limit (claim ID-5).
    fn is_live(&self, session: &SessionRecord, now: OffsetDateTime) -> bool {
        let idle = std::time::Duration::from_secs(self.settings.session_idle_secs);
        now < session.absolute_expires_at && now < session.last_refreshed_at + idle
    }

    /// Ends one of the caller's own sessions; another user's session id is 404.
    pub async fn revoke_session(
        &self,
        principal: &Principal,
        session: SessionId,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let event = origin
            .event("auth.session_revoked", "success", self.now())
            .in_tenant(principal.tenant)
            .by(principal)
            .on("session", session);
        if self
            .store
            .revoke_session(session, principal.user, "revoked_by_user", &event)
            .await?
        {
            self.principals.changed();
            Ok(())
        } else {
            Err(IdentityError::NotFound)
        }
    }

    /// Moves the session to another of the user's tenants and issues a token for it. The
    /// tenant always comes from the token afterwards, never from a request (claim TEN-1).
    pub async fn switch_tenant(
        &self,
        principal: &Principal,
        tenant: TenantId,
        origin: &Origin,
    ) -> Result<IssuedToken, IdentityError> {
        let memberships = self.store.memberships(principal.user).await?;
        let membership =
            choose_tenant(&memberships, Some(tenant)).ok_or(IdentityError::NotFound)?;
        if membership.suspended {
            return Err(IdentityError::TenantSuspended);
        }
        let now = self.now();
        // The event names the role held in the tenant switched to, not the one left.
        let event = origin
            .event("auth.tenant_switched", "success", now)
            .in_tenant(tenant)
            .by(Acting::Principal(
                Actor::User(principal.user),
                membership.role.as_str(),
            ))
            .on("session", principal.session);
        self.store
            .switch_tenant(principal.session, tenant, &event)
            .await?;
        self.principals.changed();
        self.issue_token(principal.session, tenant, now).await
    }

    /// The user's memberships, for choosing a tenant.
    pub async fn tenants_of(
        &self,
        principal: &Principal,
    ) -> Result<Vec<MembershipRecord>, IdentityError> {
        Ok(self.store.memberships(principal.user).await?)
    }

    /// Changes the password; every session and token of the user ends (claim ID-7).
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: SecretString,
        new: SecretString,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let new = NewPassword::parse(new)?;
        let attempt = self.check_password(principal, current, origin).await?;
        let now = self.now();
        let outcome = async {
            let hash = self.passwords.hash(new.into_secret()).await?;
            let event = origin
                .event("account.password_changed", "success", now)
                .in_tenant(principal.tenant)
                .by(principal)
                .on("user", principal.user);
            self.store
                .replace_password(principal.user, &hash, None, &event)
                .await?;
            self.principals.changed();
            Ok(())
        }
        .await;
        self.settle(&attempt, &outcome, false).await;
        outcome
    }

    /// Re-authentication before an irreversible change another capability makes (a
    /// tenant's deletion): the password, under the same limits as sign-in.
    pub async fn confirm_password(
        &self,
        principal: &Principal,
        password: SecretString,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let attempt = self.check_password(principal, password, origin).await?;
        self.settle(&attempt, &Ok::<(), IdentityError>(()), false)
            .await;
        Ok(())
    }

    /// Re-authentication of a signed-in user (before a password change or MFA enrolment),
    /// under the same brute-force limits as sign-in. On success the attempt is still
    /// admitted: the caller settles it.
    pub(super) async fn check_password(
        &self,
        principal: &Principal,
        password: SecretString,
        origin: &Origin,
    ) -> Result<Attempt, IdentityError> {
        bounded_password(&password)?;
        let attempt = self
            .admit(&Scopes::password(&principal.email, origin.ip))
            .await?;
        let outcome = async {
            let user = self
                .store
                .user_by_id(principal.user)
                .await?
                .ok_or(IdentityError::Unauthenticated("user gone"))?;
            if self
                .passwords
                .verify_stored(password, user.password_hash)
                .await?
                .matches
            {
                Ok(())
            } else {
                let event = origin
                    .event("auth.reauthentication", "failure", self.now())
                    .in_tenant(principal.tenant)
                    .by(principal)
                    .on("user", principal.user);
                Err(self.failed(&attempt, event).await)
            }
        }
        .await;
        match outcome {
            Ok(()) => Ok(attempt),
            Err(error) => {
                self.keep_or_release(&attempt, error.is_failed_attempt())
                    .await;
                Err(error)
            }
        }
    }
}

/// The requested tenant if the user is a member of it, else (none requested) the oldest one
/// that is not suspended.
fn choose_tenant(
    memberships: &[MembershipRecord],
    requested: Option<TenantId>,
) -> Option<&MembershipRecord> {
    match requested {
        Some(tenant) => memberships.iter().find(|m| m.tenant_id == tenant),
        // The oldest membership whose tenant is not suspended, else the oldest.
        None => memberships
            .iter()
            .find(|m| !m.suspended)
            .or_else(|| memberships.first()),
    }
}

/// Sign-in passwords are bounded like new ones, so nobody can make us hash megabytes.
fn bounded_password(password: &SecretString) -> Result<(), InvalidInput> {
    let length = password.expose_secret().chars().count();
    if length == 0 || length > NewPassword::MAX_CHARS {
        Err(InvalidInput("password: 1 to 128 characters"))
    } else {
        Ok(())
    }
}
