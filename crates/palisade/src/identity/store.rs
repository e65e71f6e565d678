//! Identity's storage: the trait the service uses, written once for both backends.
//!
//! Every method is one transaction, and an audit event a method is given is appended in
//! that same transaction: the change and its record are written together or not at all.

use async_trait::async_trait;
use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;

use crate::access::TenantScope;
use crate::access::{HeldRole, Role};
use crate::audit::{Append, AuditRecord};
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

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Creates the tenant, the user and the Owner membership, and records `event`.
    async fn create_account(
        &self,
        account: &NewAccount,
        event: &AuditRecord,
    ) -> Result<SignupOutcome, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Adds users and their memberships of `tenant` in one transaction; emails that
    /// already have an account are skipped and returned. None: no such tenant.
    async fn import_users(
        &self,
        tenant: TenantId,
        users: &[ImportedUser],
        event: &AuditRecord,
    ) -> Result<Option<Vec<String>>, StoreError>;
    async fn user_by_id(&self, user: UserId) -> Result<Option<UserRecord>, StoreError>;
    /// The user's memberships in every tenant, oldest first.
    async fn memberships(&self, user: UserId) -> Result<Vec<MembershipRecord>, StoreError>;
    /// Replaces an imported (bcrypt) hash with argon2id after a successful sign-in.
    async fn upgrade_password_hash(
        &self,
        user: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), StoreError>;
    /// Sets a new password and ends every session and token of the user (claim ID-7);
    /// with `reset_token`, also spends that token in the same transaction, and writes
    /// nothing (false) when it was spent meanwhile.
    async fn replace_password(
        &self,
        user: UserId,
        new_hash: &str,
        reset_token: Option<&[u8; 32]>,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;

    /// Opens a session; `forgive` (a scope and the admitted attempt) clears the scope's
    /// failures and withdraws the attempt, in the same transaction.
    async fn open_session(
        &self,
        session: &NewSession,
        refresh_hash: &[u8; 32],
        forgive: Option<(&[u8; 32], &[u8; 16])>,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
    async fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshRecord>, StoreError>;
    /// Spends `old` and issues `new`; false when `old` was spent meanwhile (a race with a
    /// replay), in which case nothing is written.
    async fn rotate_refresh_token(
        &self,
        session: SessionId,
        old: &[u8; 32],
        new: &[u8; 32],
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Ends one session of `user`; false when there is no such live session of theirs.
    async fn revoke_session(
        &self,
        session: SessionId,
        user: UserId,
        reason: &str,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Revoke-all (claim ID-7): every token issued before `event.occurred_at` stops working.
    async fn revoke_all(&self, user: UserId, event: &AuditRecord) -> Result<(), StoreError>;
    async fn switch_tenant(
        &self,
        session: SessionId,
        tenant: TenantId,
        event: &AuditRecord,
    ) -> Result<i64, StoreError>;
    /// The session, user, tenant and role an access token stands for, as they are now.
    async fn principal(
        &self,
        session: SessionId,
        tenant: TenantId,
    ) -> Result<Option<PrincipalRecord>, StoreError>;
    async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionRecord>, StoreError>;
    /// The counter every principal-changing write bumps (see `identity::principals`).
    async fn auth_epoch(&self) -> Result<i64, StoreError>;

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    /// Adds a key and retires every other key at `key.created_at`, in one transaction.
    async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError>;

    async fn failures_since(
        &self,
        scopes: [&[u8; 32]; SCOPES],
        since_ms: i64,
    ) -> Result<[FailureCount; SCOPES], StoreError>;
    /// Records an attempt against every scope before its outcome is known, and counts each
    /// scope's rows since `since_ms`, this attempt's included. When a count is above its cap
    /// the attempt is withdrawn in the same transaction and `admitted` is false.
    async fn reserve_attempt(
        &self,
        scopes: [&[u8; 32]; SCOPES],
        caps: [u32; SCOPES],
        attempt: &[u8; 16],
        at_ms: i64,
        since_ms: i64,
    ) -> Result<(bool, [FailureCount; SCOPES]), StoreError>;
    /// Withdraws an attempt that turned out not to be a failure.
    async fn release_attempt(&self, attempt: &[u8; 16]) -> Result<(), StoreError>;
    async fn prune_failures(&self, before_ms: i64) -> Result<u64, StoreError>;

    async fn issue_email_token(
        &self,
        user: UserId,
        purpose: EmailPurpose,
        hash: &[u8; 32],
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// When the user's recent tokens of `purpose` were issued, newest first (at most 10).
    async fn recent_email_tokens(
        &self,
        user: UserId,
        purpose: EmailPurpose,
    ) -> Result<Vec<OffsetDateTime>, StoreError>;
    /// The user a live, unspent token of `purpose` belongs to (not spent by this call).
    async fn email_token_user(
        &self,
        hash: &[u8; 32],
        purpose: EmailPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, StoreError>;
    /// Spends a verification token and marks the email verified; false if already spent.
    async fn verify_email(&self, hash: &[u8; 32], event: &AuditRecord) -> Result<bool, StoreError>;

    async fn totp_factor(&self, user: UserId) -> Result<Option<TotpRecord>, StoreError>;
    /// Starts (or restarts) an unconfirmed enrolment; a confirmed factor is left alone and
    /// false returned.
    async fn begin_totp(
        &self,
        user: UserId,
        sealed_secret: &[u8],
        now: OffsetDateTime,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Confirms the enrolment and marks `session` (the one that proved the code) as
    /// signed in with a second factor.
    async fn confirm_totp(
        &self,
        user: UserId,
        session: SessionId,
        step: i64,
        recovery_hashes: &[[u8; 32]],
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Accepts a code's time step once: false when it (or a later one) was used already.
    async fn spend_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError>;
    async fn spend_recovery_code(
        &self,
        user: UserId,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn remove_totp(&self, user: UserId, event: &AuditRecord) -> Result<(), StoreError>;
    async fn set_require_mfa(
        &self,
        scope: TenantScope,
        required: bool,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
}

pub fn for_database(db: &Database) -> std::sync::Arc<dyn IdentityStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlIdentityStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlIdentityStore(pool.clone())),
    }
}

/// The unique index on `users.email` decides races between two sign-ups of one address.
fn taken_or(error: sqlx::Error) -> Result<SignupOutcome, StoreError> {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => Ok(SignupOutcome::EmailTaken),
        _ => Err(error.into()),
    }
}

/// Counts failures per scope since `$4`.
const FAILURE_COUNTS: &str = "SELECT scope, count(*), min(failed_at_ms), max(failed_at_ms)
     FROM login_failures
     WHERE scope IN ($1, $2, $3) AND failed_at_ms > $4 GROUP BY scope";

/// `(scope, count, oldest, newest)` rows, placed in the order of `scopes`.
fn failure_counts(
    rows: Vec<(Vec<u8>, i64, i64, i64)>,
    scopes: [&[u8; 32]; SCOPES],
) -> [FailureCount; SCOPES] {
    let mut counts = [FailureCount::default(); SCOPES];
    for (scope, count, oldest, newest) in rows {
        for (slot, wanted) in counts.iter_mut().zip(scopes) {
            if scope[..] == wanted[..] {
                *slot = FailureCount {
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                    oldest_ms: Some(oldest),
                    newest_ms: Some(newest),
                };
            }
        }
    }
    counts
}

pub struct SqlIdentityStore<P>(P);

macro_rules! session_columns {
    () => {
        "s.id, s.user_id, s.tenant_id, s.created_at, s.last_refreshed_at,
         s.absolute_expires_at, s.revoked_at, s.ip, s.user_agent, s.mfa, s.tenant_since,
         s.tenant_switches"
    };
}

const REFRESH_TOKEN_QUERY: &str = concat!(
    "SELECT r.used_at, ",
    session_columns!(),
    ", u.tokens_valid_after
     FROM refresh_tokens r
     JOIN sessions s ON s.id = r.session_id
     JOIN users u ON u.id = s.user_id
     WHERE r.token_hash = $1"
);

// The hot path of every authenticated request: one indexed lookup per table.
const PRINCIPAL_QUERY: &str =
    "SELECT s.id, s.user_id, s.tenant_id, s.created_at, s.absolute_expires_at, s.revoked_at,
            s.mfa, s.tenant_switches, u.email, u.email_verified_at, u.tokens_valid_after,
            t.name AS tenant_name, m.role, t.require_mfa, t.suspended_at,
            cr.actions AS custom_actions, m.custom_role_id, m.app_role
     FROM sessions s
     JOIN users u ON u.id = s.user_id
     JOIN memberships m ON m.user_id = s.user_id AND m.tenant_id = s.tenant_id
     JOIN tenants t ON t.id = s.tenant_id
     LEFT JOIN custom_roles cr ON cr.id = m.custom_role_id AND cr.tenant_id = m.tenant_id
     WHERE s.id = $1 AND s.tenant_id = $2";

const CHANGE_PASSWORD: &str =
    "UPDATE users SET password_hash = $1, tokens_valid_after = $2 WHERE id = $3";
/// A reset link proves the mailbox: the address counts as verified from then on.
const RESET_PASSWORD: &str = "UPDATE users SET password_hash = $1, tokens_valid_after = $2,
         email_verified_at = COALESCE(email_verified_at, $2)
     WHERE id = $3";

const SESSIONS_OF_QUERY: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at DESC"
);

type SessionRow = (
    SessionId,
    UserId,
    TenantId,
    OffsetDateTime,
    OffsetDateTime,
    OffsetDateTime,
    Option<OffsetDateTime>,
    Option<String>,
    Option<String>,
    bool,
    OffsetDateTime,
    i64,
);

fn session_from(row: SessionRow) -> SessionRecord {
    SessionRecord {
        id: row.0,
        user_id: row.1,
        tenant_id: row.2,
        created_at: row.3,
        last_refreshed_at: row.4,
        absolute_expires_at: row.5,
        revoked_at: row.6,
        ip: row.7,
        user_agent: row.8,
        mfa: row.9,
        tenant_since: row.10,
        tenant_switches: row.11,
    }
}

type UserRow = (
    UserId,
    String,
    String,
    Option<OffsetDateTime>,
    OffsetDateTime,
);

fn user_from(row: UserRow) -> UserRecord {
    UserRecord {
        id: row.0,
        email: row.1,
        password_hash: row.2,
        email_verified_at: row.3,
        tokens_valid_after: row.4,
    }
}

for_both_backends! {
    /// A transaction bound to the event's tenant, so the event can be appended in it.
    async fn begin_for(
        pool: &Pool,
        event: &AuditRecord,
    ) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        // Sign-in, sign-up and token refresh write to a tenant before any tenant
        // credential exists: the event names it, and the system entry says so.
        match event.tenant_id {
            Some(tenant) => pool.tenant(TenantScope::for_system(tenant)).await,
            None => pool.write().await,
        }
    }

    #[async_trait]
    impl IdentityStore for SqlIdentityStore<Pool> {
        async fn create_account(
            &self,
            account: &NewAccount,
            event: &AuditRecord,
        ) -> Result<SignupOutcome, StoreError> {
            // Sign-up makes the tenant: no credential names it yet.
            let mut tx = self
                .0
                .tenant(TenantScope::for_system(account.tenant_id))
                .await?;
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(account.tenant_id)
                .bind(&account.tenant_name)
                .bind(account.created_at)
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO users (id, email, password_hash, tokens_valid_after, created_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(account.user_id)
            .bind(&account.email)
            .bind(&account.password_hash)
            .bind(account.created_at)
            .execute(&mut *tx)
            .await;
            if let Err(error) = inserted {
                return taken_or(error);
            }
            sqlx::query(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at)
                 VALUES ($1, $2, 'owner', $3)",
            )
            .bind(account.tenant_id)
            .bind(account.user_id)
            .bind(account.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit_with(event).await?;
            Ok(SignupOutcome::Created)
        }

        async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
            let row: Option<UserRow> = sqlx::query_as(
                "SELECT id, email, password_hash, email_verified_at, tokens_valid_after
                 FROM users WHERE email = $1",
            )
            .bind(email)
            .fetch_optional(&self.0)
            .await?;
            Ok(row.map(user_from))
        }

        async fn import_users(
            &self,
            tenant: TenantId,
            users: &[ImportedUser],
            event: &AuditRecord,
        ) -> Result<Option<Vec<String>>, StoreError> {
            // The operator's import command: no request names the tenant.
            let mut tx = self.0.tenant(TenantScope::for_system(tenant)).await?;
            let exists: Option<TenantId> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            let now = event.occurred_at;
            let mut skipped = Vec::new();
            for user in users {
                let inserted = sqlx::query(
                    // The system they come from vouches for their addresses.
                    "INSERT INTO users (id, email, password_hash, tokens_valid_after, created_at,
                         email_verified_at)
                     VALUES ($1, $2, $3, $4, $4, $4) ON CONFLICT (email) DO NOTHING",
                )
                .bind(user.id)
                .bind(&user.email)
                .bind(&user.password_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    skipped.push(user.email.clone());
                    continue;
                }
                sqlx::query(
                    "INSERT INTO memberships (tenant_id, user_id, role, created_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant)
                .bind(user.id)
                .bind(user.role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit_with(event).await?;
            Ok(Some(skipped))
        }

        async fn user_by_id(&self, user: UserId) -> Result<Option<UserRecord>, StoreError> {
            let row: Option<UserRow> = sqlx::query_as(
                "SELECT id, email, password_hash, email_verified_at, tokens_valid_after
                 FROM users WHERE id = $1",
            )
            .bind(user)
            .fetch_optional(&self.0)
            .await?;
            Ok(row.map(user_from))
        }

        async fn memberships(&self, user: UserId) -> Result<Vec<MembershipRecord>, StoreError> {
            let mut tx = self.0.user_read(user).await?;
            let rows: Vec<(TenantId, String, String, bool, Option<OffsetDateTime>)> = sqlx::query_as(
                "SELECT tenant_id, tenant_name, role, require_mfa, suspended_at
                 FROM user_memberships WHERE user_id = $1
                 ORDER BY created_at, tenant_id",
            )
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            rows.into_iter()
                .map(|(tenant_id, tenant_name, role_text, require_mfa, suspended_at)| {
                    Ok(MembershipRecord {
                        tenant_id,
                        tenant_name,
                        role: stored_role(&role_text)?,
                        require_mfa,
                        suspended: suspended_at.is_some(),
                    })
                })
                .collect()
        }

        async fn upgrade_password_hash(
            &self,
            user: UserId,
            old_hash: &str,
            new_hash: &str,
        ) -> Result<(), StoreError> {
            // Only if unchanged meanwhile: a concurrent password change wins.
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(user)
                .bind(old_hash)
                .execute(&self.0)
                .await?;
            Ok(())
        }

        async fn replace_password(
            &self,
            user: UserId,
            new_hash: &str,
            reset_token: Option<&[u8; 32]>,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            let now = event.occurred_at;
            if let Some(hash) = reset_token {
                let spent = sqlx::query(
                    "UPDATE email_tokens SET used_at = $1
                     WHERE token_hash = $2 AND user_id = $3 AND purpose = 'reset_password'
                       AND used_at IS NULL",
                )
                .bind(now)
                .bind(&hash[..])
                .bind(user)
                .execute(&mut *tx)
                .await?;
                if spent.rows_affected() != 1 {
                    return Ok(false);
                }
            }
            // Every other reset link of the user dies with the old password.
            sqlx::query(
                "UPDATE email_tokens SET used_at = $1
                 WHERE user_id = $2 AND purpose = 'reset_password' AND used_at IS NULL",
            )
            .bind(now)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            // A reset link proves the mailbox as a verification link does.
            let replace = if reset_token.is_some() {
                sqlx::query(RESET_PASSWORD)
            } else {
                sqlx::query(CHANGE_PASSWORD)
            };
            replace
                .bind(new_hash)
                .bind(now)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = 'password_changed'
                 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            tx.commit_narrowing(event).await?;
            Ok(true)
        }

        async fn open_session(
            &self,
            session: &NewSession,
            refresh_hash: &[u8; 32],
            forgive: Option<(&[u8; 32], &[u8; 16])>,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            if let Some((scope, attempt)) = forgive {
                sqlx::query("DELETE FROM login_failures WHERE scope = $1 OR attempt = $2")
                    .bind(&scope[..])
                    .bind(&attempt[..])
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO sessions (id, user_id, tenant_id, created_at, last_refreshed_at,
                     absolute_expires_at, ip, user_agent, mfa, tenant_since)
                 VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $4)",
            )
            .bind(session.id)
            .bind(session.user_id)
            .bind(session.tenant_id)
            .bind(session.created_at)
            .bind(session.absolute_expires_at)
            .bind(&session.ip)
            .bind(&session.user_agent)
            .bind(session.mfa)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
            )
            .bind(&refresh_hash[..])
            .bind(session.id)
            .bind(session.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit_with(event).await?;
            Ok(())
        }

        async fn refresh_token(
            &self,
            hash: &[u8; 32],
        ) -> Result<Option<RefreshRecord>, StoreError> {
            let row: Option<(Option<OffsetDateTime>, SessionId, UserId, TenantId, OffsetDateTime,
                OffsetDateTime, OffsetDateTime, Option<OffsetDateTime>, Option<String>,
                Option<String>, bool, OffsetDateTime, i64, OffsetDateTime)> =
                sqlx::query_as(REFRESH_TOKEN_QUERY)
                .bind(&hash[..])
                .fetch_optional(&self.0)
                .await?;
            Ok(row.map(|r| RefreshRecord {
                used_at: r.0,
                session: session_from((
                    r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12,
                )),
                tokens_valid_after: r.13,
            }))
        }

        async fn rotate_refresh_token(
            &self,
            session: SessionId,
            old: &[u8; 32],
            new: &[u8; 32],
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let now = event.occurred_at;
            let mut tx = begin_for(&self.0, event).await?;
            let spent = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1
                 WHERE token_hash = $2 AND session_id = $3 AND used_at IS NULL",
            )
            .bind(now)
            .bind(&old[..])
            .bind(session)
            .execute(&mut *tx)
            .await?;
            if spent.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
            )
            .bind(&new[..])
            .bind(session)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE sessions SET last_refreshed_at = $1 WHERE id = $2")
                .bind(now)
                .bind(session)
                .execute(&mut *tx)
                .await?;
            tx.commit_with(event).await?;
            Ok(true)
        }

        async fn revoke_session(
            &self,
            session: SessionId,
            user: UserId,
            reason: &str,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            let revoked = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2
                 WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL",
            )
            .bind(event.occurred_at)
            .bind(reason)
            .bind(session)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            if revoked.rows_affected() == 0 {
                return Ok(false);
            }
            tx.commit_narrowing(event).await?;
            Ok(true)
        }

        async fn revoke_all(&self, user: UserId, event: &AuditRecord) -> Result<(), StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            sqlx::query("UPDATE users SET tokens_valid_after = $1 WHERE id = $2")
                .bind(event.occurred_at)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = 'revoke_all'
                 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(event.occurred_at)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            tx.commit_narrowing(event).await?;
            Ok(())
        }

        async fn switch_tenant(
            &self,
            session: SessionId,
            tenant: TenantId,
            event: &AuditRecord,
        ) -> Result<i64, StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            let switches: Option<i64> = sqlx::query_scalar(
                "UPDATE sessions SET tenant_id = $1, tenant_since = $2,
                     tenant_switches = tenant_switches + 1
                 WHERE id = $3 AND revoked_at IS NULL
                 RETURNING tenant_switches",
            )
            .bind(tenant)
            .bind(event.occurred_at)
            .bind(session)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(switches) = switches else {
                return Err(StoreError::Other("switching a session that is gone".into()));
            };
            tx.commit_narrowing(event).await?;
            Ok(switches)
        }

        async fn principal(
            &self,
            session: SessionId,
            tenant: TenantId,
        ) -> Result<Option<PrincipalRecord>, StoreError> {
            // The access token naming this tenant was verified before this read.
            let scope = TenantScope::of_verified_credential(tenant);
            let mut reader = self.0.tenant_reader(scope).await?;
            let row = sqlx::query(PRINCIPAL_QUERY)
                .bind(session)
                .bind(tenant)
                .fetch_optional(&mut *reader)
                .await?;
            <Pool as Begin>::end_read(reader).await?;
            row.map(|row| {
                use sqlx::Row as _;
                let suspended_at: Option<OffsetDateTime> = row.try_get("suspended_at")?;
                let email_verified_at: Option<OffsetDateTime> =
                    row.try_get("email_verified_at")?;
                let tenant_name: String = row.try_get("tenant_name")?;
                let role: String = row.try_get("role")?;
                Ok(PrincipalRecord {
                    session: row.try_get("id")?,
                    user: row.try_get("user_id")?,
                    tenant: row.try_get("tenant_id")?,
                    session_created_at: row.try_get("created_at")?,
                    absolute_expires_at: row.try_get("absolute_expires_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                    mfa: row.try_get("mfa")?,
                    tenant_switches: row.try_get("tenant_switches")?,
                    email: row.try_get("email")?,
                    email_verified_at,
                    tokens_valid_after: row.try_get("tokens_valid_after")?,
                    tenant_name: tenant_name.into(),
                    role: stored_role(&role)?,
                    tenant_requires_mfa: row.try_get("require_mfa")?,
                    tenant_suspended: suspended_at.is_some(),
                    held: HeldRole::from_columns(
                        row.try_get("custom_actions")?,
                        row.try_get("app_role")?,
                    ),
                    custom_role: row.try_get("custom_role_id")?,
                })
            })
            .transpose()
        }

        async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionRecord>, StoreError> {
            let rows: Vec<SessionRow> = sqlx::query_as(SESSIONS_OF_QUERY)
                .bind(user)
                .fetch_all(&self.0)
                .await?;
            Ok(rows.into_iter().map(session_from).collect())
        }

        async fn auth_epoch(&self) -> Result<i64, StoreError> {
            Ok(sqlx::query_scalar("SELECT epoch FROM auth_epoch WHERE id = 1")
                .fetch_one(&self.0)
                .await?)
        }

        async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
            let rows: Vec<(String, Vec<u8>, Vec<u8>, OffsetDateTime, Option<OffsetDateTime>)> =
                sqlx::query_as(
                    "SELECT kid, public_key, sealed_private_key, created_at, retired_at
                     FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&self.0)
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| StoredSigningKey {
                    kid: r.0,
                    public_key: r.1,
                    sealed_private_key: r.2,
                    created_at: r.3,
                    retired_at: r.4,
                })
                .collect())
        }

        async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
            let mut tx = self.0.write().await?;
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                .bind(key.created_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, public_key, sealed_private_key, created_at)
                 VALUES ($1, 'EdDSA', $2, $3, $4)",
            )
            .bind(&key.kid)
            .bind(&key.public_key)
            .bind(&key.sealed_private_key)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }

        async fn failures_since(
            &self,
            scopes: [&[u8; 32]; SCOPES],
            since_ms: i64,
        ) -> Result<[FailureCount; SCOPES], StoreError> {
            let rows: Vec<(Vec<u8>, i64, i64, i64)> = sqlx::query_as(FAILURE_COUNTS)
            .bind(&scopes[0][..])
            .bind(&scopes[1][..])
            .bind(&scopes[2][..])
            .bind(since_ms)
            .fetch_all(&self.0)
            .await?;
            Ok(failure_counts(rows, scopes))
        }

        async fn reserve_attempt(
            &self,
            scopes: [&[u8; 32]; SCOPES],
            caps: [u32; SCOPES],
            attempt: &[u8; 16],
            at_ms: i64,
            since_ms: i64,
        ) -> Result<(bool, [FailureCount; SCOPES]), StoreError> {
            let mut tx = self.0.write().await?;
            // Concurrent attempts on a scope take turns, so each counts the ones before it.
            let mut keys = scopes.map(|scope| {
                i64::from_be_bytes(scope[..8].try_into().expect("8 bytes of 32"))
            });
            keys.sort_unstable();
            for key in keys {
                <Pool as Begin>::lock_until_commit(&mut tx, key).await?;
            }
            sqlx::query(
                "INSERT INTO login_failures (scope, attempt, failed_at_ms)
                 VALUES ($1, $4, $5), ($2, $4, $5), ($3, $4, $5)",
            )
            .bind(&scopes[0][..])
            .bind(&scopes[1][..])
            .bind(&scopes[2][..])
            .bind(&attempt[..])
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
            let rows: Vec<(Vec<u8>, i64, i64, i64)> = sqlx::query_as(FAILURE_COUNTS)
            .bind(&scopes[0][..])
            .bind(&scopes[1][..])
            .bind(&scopes[2][..])
            .bind(since_ms)
            .fetch_all(&mut *tx)
            .await?;
            let counts = failure_counts(rows, scopes);
            let admitted = counts.iter().zip(caps).all(|(count, cap)| count.count <= cap);
            if !admitted {
                sqlx::query("DELETE FROM login_failures WHERE attempt = $1")
                    .bind(&attempt[..])
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok((admitted, counts))
        }

        async fn release_attempt(&self, attempt: &[u8; 16]) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM login_failures WHERE attempt = $1")
                .bind(&attempt[..])
                .execute(&self.0)
                .await?;
            Ok(())
        }

        async fn prune_failures(&self, before_ms: i64) -> Result<u64, StoreError> {
            let pruned = sqlx::query("DELETE FROM login_failures WHERE failed_at_ms < $1")
                .bind(before_ms)
                .execute(&self.0)
                .await?;
            Ok(pruned.rows_affected())
        }

        async fn issue_email_token(
            &self,
            user: UserId,
            purpose: EmailPurpose,
            hash: &[u8; 32],
            created_at: OffsetDateTime,
            expires_at: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let mut tx = self.0.write().await?;
            sqlx::query(
                "INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&hash[..])
            .bind(user)
            .bind(purpose.as_str())
            .bind(created_at)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit_with(event).await
        }

        async fn recent_email_tokens(
            &self,
            user: UserId,
            purpose: EmailPurpose,
        ) -> Result<Vec<OffsetDateTime>, StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT created_at FROM email_tokens WHERE user_id = $1 AND purpose = $2
                 ORDER BY created_at DESC LIMIT 10",
            )
            .bind(user)
            .bind(purpose.as_str())
            .fetch_all(&self.0)
            .await?)
        }

        async fn email_token_user(
            &self,
            hash: &[u8; 32],
            purpose: EmailPurpose,
            now: OffsetDateTime,
        ) -> Result<Option<UserId>, StoreError> {
            let row: Option<(UserId, OffsetDateTime)> = sqlx::query_as(
                "SELECT user_id, expires_at FROM email_tokens
                 WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL",
            )
            .bind(&hash[..])
            .bind(purpose.as_str())
            .fetch_optional(&self.0)
            .await?;
            Ok(row.filter(|(_, expires_at)| now < *expires_at).map(|(user, _)| user))
        }

        async fn verify_email(
            &self,
            hash: &[u8; 32],
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            let spent = sqlx::query(
                "UPDATE email_tokens SET used_at = $1
                 WHERE token_hash = $2 AND purpose = 'verify_email' AND used_at IS NULL",
            )
            .bind(event.occurred_at)
            .bind(&hash[..])
            .execute(&mut *tx)
            .await?;
            if spent.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE users SET email_verified_at = $1
                 WHERE id = (SELECT user_id FROM email_tokens WHERE token_hash = $2)
                   AND email_verified_at IS NULL",
            )
            .bind(event.occurred_at)
            .bind(&hash[..])
            .execute(&mut *tx)
            .await?;
            tx.commit_narrowing(event).await?;
            Ok(true)
        }

        async fn totp_factor(&self, user: UserId) -> Result<Option<TotpRecord>, StoreError> {
            let row: Option<(Vec<u8>, Option<OffsetDateTime>, i64)> = sqlx::query_as(
                "SELECT sealed_secret, confirmed_at, last_used_step FROM totp_factors
                 WHERE user_id = $1",
            )
            .bind(user)
            .fetch_optional(&self.0)
            .await?;
            Ok(row.map(|(sealed_secret, confirmed_at, last_used_step)| TotpRecord {
                sealed_secret,
                confirmed: confirmed_at.is_some(),
                last_used_step,
            }))
        }

        async fn begin_totp(
            &self,
            user: UserId,
            sealed_secret: &[u8],
            now: OffsetDateTime,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            sqlx::query("DELETE FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NULL")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO totp_factors (user_id, sealed_secret, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(user)
            .bind(sealed_secret)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() != 1 {
                return Ok(false);
            }
            tx.commit_with(event).await?;
            Ok(true)
        }

        async fn confirm_totp(
            &self,
            user: UserId,
            session: SessionId,
            step: i64,
            recovery_hashes: &[[u8; 32]],
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            let confirmed = sqlx::query(
                "UPDATE totp_factors SET confirmed_at = $1, last_used_step = $2
                 WHERE user_id = $3 AND confirmed_at IS NULL AND last_used_step < $2",
            )
            .bind(event.occurred_at)
            .bind(step)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            if confirmed.rows_affected() != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE sessions SET mfa = TRUE WHERE id = $1 AND user_id = $2")
                .bind(session)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            for hash in recovery_hashes {
                sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                    .bind(user)
                    .bind(&hash[..])
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit_narrowing(event).await?;
            Ok(true)
        }

        async fn spend_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError> {
            let spent = sqlx::query(
                "UPDATE totp_factors SET last_used_step = $1
                 WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_used_step < $1",
            )
            .bind(step)
            .bind(user)
            .execute(&self.0)
            .await?;
            Ok(spent.rows_affected() == 1)
        }

        async fn spend_recovery_code(
            &self,
            user: UserId,
            hash: &[u8; 32],
            now: OffsetDateTime,
        ) -> Result<bool, StoreError> {
            let spent = sqlx::query(
                "UPDATE recovery_codes SET used_at = $1
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(now)
            .bind(user)
            .bind(&hash[..])
            .execute(&self.0)
            .await?;
            Ok(spent.rows_affected() == 1)
        }

        async fn remove_totp(&self, user: UserId, event: &AuditRecord) -> Result<(), StoreError> {
            let mut tx = begin_for(&self.0, event).await?;
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            // No session of the user counts as MFA any more.
            sqlx::query("UPDATE sessions SET mfa = FALSE WHERE user_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            tx.commit_narrowing(event).await?;
            Ok(())
        }

        async fn set_require_mfa(
            &self,
            scope: TenantScope,
            required: bool,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            sqlx::query("UPDATE tenants SET require_mfa = $1 WHERE id = $2")
                .bind(required)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
            tx.commit_narrowing(event).await?;
            Ok(())
        }
    }
}

// Both pool types are stamped above; naming them keeps the imports honest.
#[allow(dead_code)]
type Stamped = (SqlIdentityStore<SqlitePool>, SqlIdentityStore<PgPool>);
