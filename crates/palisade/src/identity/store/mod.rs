//! Identity's storage: the trait the service uses — one trait per concern, each in its own
//! file (accounts, sessions, signing keys, throttling, email tokens, MFA) — written once for
//! both backends.
//!
//! Every method is one transaction, and an audit event a method is given is appended in
//! that same transaction: the change and its record are written together or not at all.

use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;

use crate::access::TenantScope;
use crate::access::{HeldRole, Role};
use crate::audit::AuditRecord;
use crate::ids::{SessionId, TenantId, UserId};
use crate::store::{for_both_backends, stored_role, Begin, Database, StoreError};

/// A sign-up, as the service has prepared it: every value validated, the password hashed.
pub struct NewAccount {
    pub user_id: UserId,
    pub email: String,
    pub password_hash: String,
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SignupOutcome {
    Created,
    /// Nothing was written: the email belongs to an existing user.
    EmailTaken,
}

#[derive(Clone, Debug)]
pub struct UserRecord {
    pub id: UserId,
    pub email: String,
    /// PHC string: argon2id, or bcrypt for an imported user not yet signed in.
    pub password_hash: String,
    pub email_verified_at: Option<OffsetDateTime>,
    pub tokens_valid_after: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct MembershipRecord {
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub role: Role,
    pub require_mfa: bool,
    pub suspended: bool,
}

pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub created_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub mfa: bool,
}

#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub created_at: OffsetDateTime,
    pub last_refreshed_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Signed in with a second factor.
    pub mfa: bool,
    /// When the session began acting in its current tenant.
    pub tenant_since: OffsetDateTime,
    /// How often it switched tenant; its access tokens carry the count (claim TEN-1).
    pub tenant_switches: i64,
}

/// A presented refresh token's row, its session and its user's revocation instant.
pub struct RefreshRecord {
    pub used_at: Option<OffsetDateTime>,
    pub session: SessionRecord,
    pub tokens_valid_after: OffsetDateTime,
}

/// What an authenticated request acts as, as the database says now.
#[derive(Clone, Debug)]
pub struct PrincipalRecord {
    pub session: SessionId,
    pub user: UserId,
    pub tenant: TenantId,
    pub session_created_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub mfa: bool,
    pub tenant_switches: i64,
    pub email: String,
    pub email_verified_at: Option<OffsetDateTime>,
    pub tokens_valid_after: OffsetDateTime,
    /// Shared, so a cached record is handed out without copying the name.
    pub tenant_name: std::sync::Arc<str>,
    pub role: Role,
    pub tenant_requires_mfa: bool,
    pub tenant_suspended: bool,
    /// A custom role or an app role, when the member holds one.
    pub held: HeldRole,
    /// The custom role's id, when the member holds one.
    pub custom_role: Option<crate::ids::CustomRoleId>,
}

pub struct StoredSigningKey {
    pub kid: String,
    pub public_key: Vec<u8>,
    pub sealed_private_key: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
}

/// A user brought from another system, with the hash it had there.
pub struct ImportedUser {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailPurpose {
    VerifyEmail,
    ResetPassword,
}

impl EmailPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

pub struct TotpRecord {
    pub sealed_secret: Vec<u8>,
    pub confirmed: bool,
    pub last_used_step: i64,
}

/// Failed sign-ins inside the window, per scope, and when the oldest and the newest of
/// them happened.
#[derive(Debug, Default, Clone, Copy)]
pub struct FailureCount {
    pub count: u32,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

/// The scopes an attempt counts against: (email, IP) or the user, the IP, the account.
pub const SCOPES: usize = 3;

mod accounts;
mod email_tokens;
mod erasure;
mod mfa;
mod sessions;
mod signing_keys;
mod throttle;

pub use accounts::AccountStore;
pub use email_tokens::EmailTokenStore;
pub use erasure::{AccountErasure, Erased, ErasureStore, Leaving};
pub use mfa::MfaStore;
pub use sessions::SessionStore;
pub use signing_keys::{SealedPlace, SigningKeyStore};
pub use throttle::ThrottleStore;

/// Everything identity stores, one trait per concern (each in its own file), written once
/// for both backends.
pub trait IdentityStore:
    AccountStore
    + SessionStore
    + SigningKeyStore
    + ThrottleStore
    + EmailTokenStore
    + MfaStore
    + ErasureStore
{
}

impl<T> IdentityStore for T where
    T: AccountStore
        + SessionStore
        + SigningKeyStore
        + ThrottleStore
        + EmailTokenStore
        + MfaStore
        + ErasureStore
{
}

pub fn for_database(db: &Database) -> std::sync::Arc<dyn IdentityStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlIdentityStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlIdentityStore(pool.clone())),
    }
}

pub struct SqlIdentityStore<P>(P);

for_both_backends! {
    impl SqlIdentityStore<Pool> {
        /// A transaction bound to the event's tenant, so the event can be appended in it.
        async fn begin_for(
            &self,
            event: &AuditRecord,
        ) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
            // Sign-in, sign-up and token refresh write to a tenant before any tenant
            // credential exists: the event names it, and the system entry says so.
            match event.tenant_id {
                Some(tenant) => self.0.tenant(TenantScope::for_system(tenant)).await,
                None => self.0.write().await,
            }
        }
    }
}

// Both pool types are stamped above; naming them keeps the imports honest.
#[allow(dead_code)]
type Stamped = (SqlIdentityStore<SqlitePool>, SqlIdentityStore<PgPool>);
