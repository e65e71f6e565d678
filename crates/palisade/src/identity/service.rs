//! Identity's domain logic, free of HTTP: the `Identity` service and its errors, and
//! sign-up. Sessions, recovery and MFA add their operations in their own modules.

use std::sync::Arc;

use secrecy::SecretString;
use time::OffsetDateTime;

use super::domain::{Email, InvalidInput, NewPassword, TenantName};
use super::password::{HashError, PasswordHasher};
use super::store::SealedPlace;
use super::store::{self as identity_store, IdentityStore, NewAccount, SignupOutcome};
use super::throttle::Throttle;
use super::tokens::{AccessTokens, TokenError};
use crate::audit::AuditRecord;
use crate::clock::Clock;
use crate::config::{AuthSettings, Settings};
use crate::ids::{TenantId, UserId};
use crate::mail::Mailer;
use crate::store::{Database, StoreError};
use crate::vault::platform::PlatformSealer;

/// Reads the auth epoch and announces changes, for caches that must not outlive a
/// narrowing write (API keys).
#[derive(Clone)]
pub struct EpochSource {
    principals: Arc<super::principals::PrincipalCache>,
}

impl EpochSource {
    pub async fn current(&self) -> Result<i64, StoreError> {
        self.principals.epoch().await
    }

    /// Called after this process committed a narrowing write.
    pub fn changed(&self) {
        self.principals.changed();
    }
}

/// Where a request came from, for audit records.
#[derive(Clone, Debug)]
pub struct Origin {
    pub request_id: String,
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

impl Origin {
    pub fn event(
        &self,
        action: &'static str,
        outcome: &'static str,
        at: OffsetDateTime,
    ) -> AuditRecord {
        AuditRecord::new(
            action,
            outcome,
            at,
            self.request_id.clone(),
            self.ip,
            self.user_agent.clone(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Unknown email, wrong password, or an address not verified yet: the three are
    /// indistinguishable (claim ID-10).
    #[error("the email or password is incorrect, or the address is not verified yet (follow the link mailed to it)")]
    InvalidCredentials,
    #[error("this account uses two-factor authentication: send a totp or recovery_code")]
    MfaRequired,
    #[error("the two-factor code is not valid")]
    MfaRejected,
    #[error("this tenant requires two-factor authentication: enrol at /api/v1/auth/mfa/totp")]
    MfaEnrollmentRequired,
    #[error("this tenant is suspended")]
    TenantSuspended,
    #[error("too many failed sign-ins; retry later")]
    Throttled { retry_after_secs: u64 },
    /// The credential is missing, malformed, expired or revoked. The reason is for logs.
    #[error("authentication required ({0})")]
    Unauthenticated(&'static str),
    #[error("not found")]
    NotFound,
    #[error("the link is invalid, expired or already used")]
    InvalidToken,
    #[error("the code is not valid")]
    InvalidCode,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(TokenError),
}

impl IdentityError {
    /// A wrong password or code: the attempt stays counted against the brute-force limits.
    pub fn is_failed_attempt(&self) -> bool {
        matches!(
            self,
            Self::InvalidCredentials | Self::MfaRejected | Self::InvalidCode
        )
    }
}

impl From<TokenError> for IdentityError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Refused(reason) => Self::Unauthenticated(reason),
            TokenError::Store(e) => Self::Store(e),
            other => Self::Token(other),
        }
    }
}

/// Accounts, sessions, tokens and factors: everything the identity routes call.
pub struct Identity {
    pub(super) store: Arc<dyn IdentityStore>,
    pub(super) passwords: PasswordHasher,
    pub(super) tokens: AccessTokens,
    pub(super) sealer: Arc<PlatformSealer>,
    pub(super) throttle: Throttle,
    pub(super) principals: Arc<super::principals::PrincipalCache>,
    pub(super) mailer: Arc<Mailer>,
    pub(super) mail_gate: Arc<tokio::sync::Mutex<()>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: AuthSettings,
    pub(super) link_base_url: String,
    /// A real argon2id hash of a random password: unknown emails are checked against it, so
    /// they cost one hash like a known one (claim ID-10).
    pub(super) decoy_hash: String,
    /// For events with no transaction of their own (failed sign-ins): group commit.
    pub(super) audit: crate::audit::Audit,
    /// The deployment's action table, for what a custom or app role allows.
    pub(super) access: Arc<crate::access::ActionTable>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityStartError {
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error("{0}")]
    Other(String),
}

impl Identity {
    /// Seals again, under the platform's data key, what the master key file sealed before
    /// (signing keys, TOTP secrets): run at every start, it finds nothing once done. Each
    /// value is replaced only if unchanged since it was read. Returns how many moved.
    pub async fn reseal_legacy(&self) -> Result<usize, IdentityError> {
        let mut moved = 0;
        for (place, sealed) in self.store.sealed_material().await? {
            if self.sealer.is_current(&sealed) {
                continue;
            }
            let purpose = match &place {
                SealedPlace::SigningKey(kid) => super::tokens::seal_purpose(kid),
                SealedPlace::Totp(user) => super::mfa::seal_purpose(*user),
            };
            let plaintext = self
                .sealer
                .open(&sealed, &purpose)
                .map_err(|e| IdentityError::Store(crate::store::StoreError::Other(Box::new(e))))?;
            let resealed = self.sealer.seal(&plaintext, &purpose);
            if self.store.reseal(&place, &sealed, &resealed).await? {
                moved += 1;
            }
        }
        Ok(moved)
    }

    pub async fn start(
        settings: &Settings,
        db: &Database,
        clock: Arc<dyn Clock>,
        audit: crate::audit::Audit,
        access: &Arc<crate::access::ActionTable>,
        sealer: Arc<PlatformSealer>,
    ) -> Result<Self, IdentityStartError> {
        let store = identity_store::for_database(db);
        let passwords = PasswordHasher::new(&settings.passwords)
            .map_err(|e| IdentityStartError::Other(e.to_string()))?;
        let decoy = crate::crypto::random_token();
        let decoy_hash = passwords
            .hash(decoy)
            .await
            .map_err(|e| IdentityStartError::Other(e.to_string()))?;
        let tokens =
            AccessTokens::start(store.as_ref(), sealer.clone(), &settings.auth, clock.now())
                .await
                .map_err(|e| IdentityStartError::Other(e.to_string()))?;
        Ok(Self {
            store: store.clone(),
            passwords,
            tokens,
            sealer,
            throttle: Throttle::new(&settings.auth),
            principals: Arc::new(super::principals::PrincipalCache::new(
                matches!(db, Database::Sqlite(_)),
                store.clone(),
            )),
            mailer: Arc::new(Mailer::from_settings(settings)?),
            mail_gate: Arc::default(),
            clock,
            settings: settings.auth.clone(),
            link_base_url: settings.mail.link_base_url.trim_end_matches('/').to_owned(),
            decoy_hash,
            audit,
            access: access.clone(),
        })
    }

    /// The deployment's action table.
    pub fn access(&self) -> &Arc<crate::access::ActionTable> {
        &self.access
    }

    pub fn store(&self) -> &dyn IdentityStore {
        self.store.as_ref()
    }

    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    pub fn passwords(&self) -> &PasswordHasher {
        &self.passwords
    }

    pub fn mailer(&self) -> &crate::mail::Mailer {
        &self.mailer
    }

    pub fn mailer_handle(&self) -> Arc<Mailer> {
        self.mailer.clone()
    }

    /// The base of links in mails (`mail.link_base_url`, no trailing slash).
    pub fn link_base_url(&self) -> &str {
        &self.link_base_url
    }

    /// The principal cache, for other capabilities whose writes change what sessions may do.
    /// The auth epoch current now (`identity::principals`), for caches outside identity.
    pub fn epoch_source(&self) -> EpochSource {
        EpochSource {
            principals: self.principal_cache(),
        }
    }

    pub fn principal_cache(&self) -> Arc<super::principals::PrincipalCache> {
        self.principals.clone()
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Every second: notice principal changes made by other processes (SQLite).
    pub async fn poll(&self) -> Result<(), IdentityError> {
        Ok(self.principals.poll(self.store()).await?)
    }

    /// Periodic upkeep: reload and rotate signing keys, prune old failure counts.
    pub async fn maintain(&self) -> Result<(), IdentityError> {
        let now = self.now();
        self.tokens.maintain(self.store(), now).await?;
        self.throttle.prune(self.store(), now).await?;
        Ok(())
    }

    /// Creates a user and a new tenant with that user as Owner, and mails a verification
    /// link. The outcome is deliberately not returned to the client: an existing email and
    /// a new one must look the same (claim ID-10), so the hash is computed in both cases.
    #[tracing::instrument(skip_all)]
    pub async fn sign_up(
        &self,
        email: &str,
        password: SecretString,
        tenant_name: &str,
        origin: &Origin,
    ) -> Result<SignupOutcome, IdentityError> {
        let email = Email::parse(email)?;
        let tenant_name = TenantName::parse(tenant_name)?;
        let password = NewPassword::parse(password)?;
        let password_hash = self.passwords.hash(password.into_secret()).await?;
        let now = self.now();
        let account = NewAccount {
            user_id: UserId::generate(),
            email: email.as_str().to_owned(),
            password_hash,
            tenant_id: TenantId::generate(),
            tenant_name: tenant_name.as_str().to_owned(),
            created_at: now,
        };
        let event = origin
            .event("account.signed_up", "success", now)
            .in_tenant(account.tenant_id)
            .by(account.user_id)
            .on("user", account.user_id);
        let outcome = self.store.create_account(&account, &event).await?;
        match outcome {
            SignupOutcome::Created => {
                self.send_verification(account.user_id, email.as_str().to_owned(), origin);
            }
            SignupOutcome::EmailTaken => {
                // One committed write here too, so both paths cost a durable commit; and
                // the attempt is worth a record (claim ID-10).
                let attempt = origin
                    .event("account.signup_existing_email", "refused", now)
                    .on("email", email.as_str());
                self.audit.record(attempt).await?;
            }
        }
        Ok(outcome)
    }
}
