//! Sessions: sign-in, refresh tokens, revocation, tenant switches, the principal a token
//! stands for, and the auth epoch.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;
use crate::audit::{Append, AuditRecord};
use crate::ids::{SessionId, TenantId, UserId};
use crate::store::{for_both_backends, Begin, StoreError};

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

const SESSIONS_OF_QUERY: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at DESC"
);

const SESSIONS_IN_QUERY: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions s WHERE s.tenant_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at DESC"
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

#[async_trait]
pub trait SessionStore: Send + Sync {
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
    /// The unrevoked sessions acting in `tenant`, newest first (the tenant's export).
    async fn sessions_in(&self, tenant: TenantId) -> Result<Vec<SessionRecord>, StoreError>;
    /// The counter every principal-changing write bumps (see `identity::principals`).
    async fn auth_epoch(&self) -> Result<i64, StoreError>;
}

for_both_backends! {
    #[async_trait]
    impl SessionStore for SqlIdentityStore<Pool> {
        async fn open_session(
            &self,
            session: &NewSession,
            refresh_hash: &[u8; 32],
            forgive: Option<(&[u8; 32], &[u8; 16])>,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_for(event).await?;
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
            let mut tx = self.begin_for(event).await?;
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
            let mut tx = self.begin_for(event).await?;
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
            let mut tx = self.begin_for(event).await?;
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
            let mut tx = self.begin_for(event).await?;
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

        async fn sessions_in(&self, tenant: TenantId) -> Result<Vec<SessionRecord>, StoreError> {
            let rows: Vec<SessionRow> = sqlx::query_as(SESSIONS_IN_QUERY)
                .bind(tenant)
                .fetch_all(&self.0)
                .await?;
            Ok(rows.into_iter().map(session_from).collect())
        }

        async fn auth_epoch(&self) -> Result<i64, StoreError> {
            Ok(sqlx::query_scalar("SELECT epoch FROM auth_epoch WHERE id = 1")
                .fetch_one(&self.0)
                .await?)
        }
    }
}
