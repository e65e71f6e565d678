//! Tenancy's storage: members and their roles, written once for both backends. Every method
//! takes the tenant and binds it (row-level security on PostgreSQL).

use async_trait::async_trait;
use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;

use super::deletion::DeleteTenant;
use crate::access::actions::Entitlement;
use crate::access::Role;
use crate::access::TenantScope;
use crate::audit::signing::LogSigner;
use crate::audit::{Acting, Actor, Append, AuditRecord};
use crate::ids::{ApplicationId, CustomRoleId, InvitationId, TenantId, UserId};
use crate::relations::store::NEXT_REVISION;
use crate::store::membership_lock;
use crate::store::{
    for_both_backends, stored_role, Begin, Database, Guarded, MayActOn, StoreError,
};

#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub joined_at: OffsetDateTime,
    pub custom_role: Option<CustomRoleId>,
    /// The manifest's role the member holds, by name (its rank is `role`).
    pub app_role: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum MemberChange {
    Done,
    /// No such member in this tenant (or of another tenant: the same answer).
    NotFound,
    /// The change would leave the tenant without an Owner.
    LastOwner,
    /// The caller's standing changed while the request ran.
    Stale,
    /// The member was raised above the caller while the request ran.
    Outranked,
}

#[derive(Clone, Debug)]
pub struct CustomRoleRecord {
    pub id: CustomRoleId,
    pub name: String,
    /// Action names, space-separated.
    pub actions: String,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct ApplicationRecord {
    pub id: ApplicationId,
    pub name: String,
    pub created_at: OffsetDateTime,
}

pub struct NewInvitation {
    pub id: InvitationId,
    pub scope: TenantScope,
    pub email: String,
    pub role: Role,
    pub token_hash: [u8; 32],
    pub invited_by: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct InvitationRecord {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub invited_by: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// The user is now a member with this role.
    Joined(Role),
    /// No live invitation with this token for this email.
    NotFound,
    AlreadyMember,
    /// The tenant is suspended.
    Suspended,
}

/// A person signing up with an invitation.
pub struct InvitedUser {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub tenant: TenantId,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, PartialEq, Eq)]
pub enum InvitedSignup {
    Joined(Role),
    /// The address has an account: sign in and accept the invitation instead.
    EmailTaken,
    /// No live invitation with this token for this address.
    NotFound,
    Suspended,
}

/// Joins a user to a tenant by a live invitation for their email, inside the caller's
/// transaction (bound to that tenant): the invitation accepted, the membership and its
/// event written. Nothing is written unless it answers `Joined`; the caller commits.
/// Shared by accepting an invitation and signing up with one.
pub(crate) trait JoinByInvitation {
    async fn join_by_invitation(
        &mut self,
        tenant: TenantId,
        token_hash: &[u8; 32],
        user: UserId,
        email: &str,
        event: &AuditRecord,
    ) -> Result<Acceptance, StoreError>;
}

#[async_trait]
pub trait TenancyStore: Send + Sync {
    async fn members(&self, scope: TenantScope) -> Result<Vec<MemberRecord>, StoreError>;
    async fn member(
        &self,
        scope: TenantScope,
        user: UserId,
    ) -> Result<Option<MemberRecord>, StoreError>;
    /// Sets a member's role; refuses to demote the last Owner.
    /// Each member change refuses a member ranked above `caller` once the membership
    /// lock is held (claim RBAC-6), whatever the service saw before.
    async fn set_role(
        &self,
        scope: TenantScope,
        user: UserId,
        role: Role,
        caller: Role,
        event: &AuditRecord,
    ) -> Result<MemberChange, StoreError>;
    /// False when the tenant already has a custom role of that name.
    async fn create_custom_role(
        &self,
        scope: TenantScope,
        role: &CustomRoleRecord,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    async fn custom_roles(&self, scope: TenantScope) -> Result<Vec<CustomRoleRecord>, StoreError>;
    /// Deletes a custom role whose actions the caller `may_act_on`; its holders fall back
    /// to their built-in role.
    async fn delete_custom_role(
        &self,
        scope: TenantScope,
        id: CustomRoleId,
        may_act_on: MayActOn<'_>,
        event: &AuditRecord,
    ) -> Result<Guarded<()>, StoreError>;
    /// Gives a member a custom role of this tenant, or takes it away (`None`).
    async fn assign_custom_role(
        &self,
        scope: TenantScope,
        user: UserId,
        role: Option<CustomRoleId>,
        event: &AuditRecord,
    ) -> Result<MemberChange, StoreError>;
    /// Gives a member an app role (its name and rank), which replaces their built-in role
    /// and any custom role; or takes it away (`None`), leaving its rank as their role.
    async fn set_app_role(
        &self,
        scope: TenantScope,
        user: UserId,
        role: Option<(&str, Role)>,
        caller: Role,
        event: &AuditRecord,
    ) -> Result<MemberChange, StoreError>;
    /// False when the tenant already has an application of that name.
    async fn create_application(
        &self,
        scope: TenantScope,
        application: &ApplicationRecord,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;
    async fn applications(&self, scope: TenantScope) -> Result<Vec<ApplicationRecord>, StoreError>;
    /// Deletes an application and revokes its live keys (its Agents) in the same
    /// transaction, when the caller `may_act_on` every one of them (claims RBAC-4, RBAC-6).
    async fn delete_application(
        &self,
        scope: TenantScope,
        id: ApplicationId,
        may_act_on: MayActOn<'_>,
        event: &AuditRecord,
    ) -> Result<Guarded<()>, StoreError>;
    async fn invite(
        &self,
        invitation: &NewInvitation,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Invitations neither accepted, revoked nor expired at `now`, newest first.
    async fn pending_invitations(
        &self,
        scope: TenantScope,
        now: OffsetDateTime,
    ) -> Result<Vec<InvitationRecord>, StoreError>;
    /// Revokes a pending invitation whose role the caller `may_act_on`.
    async fn revoke_invitation(
        &self,
        scope: TenantScope,
        id: InvitationId,
        may_act_on: MayActOn<'_>,
        event: &AuditRecord,
    ) -> Result<Guarded<()>, StoreError>;
    /// Spends a live invitation of `tenant` addressed to `email` and adds the membership,
    /// in one transaction.
    async fn accept_invitation(
        &self,
        tenant: TenantId,
        token_hash: &[u8; 32],
        user: UserId,
        email: &str,
        event: &AuditRecord,
    ) -> Result<Acceptance, StoreError>;
    /// Signs a person up into the tenant that invited them (no tenant of their own): the
    /// user (its address proven by the mailed invitation), the membership, the invitation
    /// accepted and both events, in one transaction. An address that already has an
    /// account writes nothing but `attempt` and answers `EmailTaken`.
    async fn sign_up_invited(
        &self,
        user: &InvitedUser,
        token_hash: &[u8; 32],
        [signed_up, joined, attempt]: [&AuditRecord; 3],
    ) -> Result<InvitedSignup, StoreError>;
    /// Makes `to` an Owner and `from` an Admin, in one transaction.
    async fn transfer_ownership(
        &self,
        scope: TenantScope,
        from: UserId,
        to: UserId,
        event: &AuditRecord,
    ) -> Result<MemberChange, StoreError>;
    /// Deletes the tenant and all it holds (`tenancy::deletion`): `deleted` closes its
    /// chain, and goes with the closing anchor to the platform stream.
    async fn delete_tenant(
        &self,
        scope: TenantScope,
        deleted: &AuditRecord,
        signer: &LogSigner,
    ) -> Result<(), StoreError>;
    /// Removes a member and ends their sessions in this tenant; refuses the last Owner.
    async fn remove(
        &self,
        scope: TenantScope,
        user: UserId,
        caller: Role,
        event: &AuditRecord,
    ) -> Result<MemberChange, StoreError>;
}

pub fn for_database(db: &Database) -> std::sync::Arc<dyn TenancyStore> {
    match db {
        Database::Sqlite(pool) => std::sync::Arc::new(SqlTenancyStore(pool.clone())),
        Database::Postgres(pool) => std::sync::Arc::new(SqlTenancyStore(pool.clone())),
    }
}

pub struct SqlTenancyStore<P>(P);

/// Takes the application's row lock (a no-op write: both backends, same SQL). Deleting an
/// application and creating a key for it both take it first, so neither can miss the
/// other: no key outlives its application (claim RBAC-4).
pub(crate) const LOCK_APPLICATION: &str =
    "UPDATE applications SET name = name WHERE tenant_id = $1 AND id = $2";

type MemberRow = (
    UserId,
    String,
    String,
    OffsetDateTime,
    Option<CustomRoleId>,
    Option<String>,
);

fn member_from(row: MemberRow) -> Result<MemberRecord, StoreError> {
    Ok(MemberRecord {
        user_id: row.0,
        email: row.1,
        role: stored_role(&row.2)?,
        joined_at: row.3,
        custom_role: row.4,
        app_role: row.5,
    })
}

macro_rules! members_query {
    () => {
        "SELECT m.user_id, u.email, m.role, m.created_at, m.custom_role_id, m.app_role
         FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.tenant_id = $1"
    };
}
const MEMBERS_QUERY: &str = members_query!();
const MEMBER_QUERY: &str = concat!(members_query!(), " AND m.user_id = $2");

/// Owners left in the tenant if `user` stopped being one.
const OTHER_OWNERS: &str = "SELECT count(*) FROM memberships
     WHERE tenant_id = $1 AND role = 'owner' AND user_id <> $2";

for_both_backends! {
    /// The target's current role, after taking the tenant's membership lock.
    async fn locked_role(
        tx: &mut sqlx::Transaction<'static, Db>,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<String>, StoreError> {
        <Pool as Begin>::lock_until_commit(tx, membership_lock(tenant)).await?;
        Ok(sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(&mut **tx)
            .await?)
    }

    /// The target's current role under the membership lock, or why the change stops: no
    /// such member, or one now ranked above the caller (promoted while the request ran).
    async fn locked_target(
        tx: &mut sqlx::Transaction<'static, Db>,
        tenant: TenantId,
        user: UserId,
        caller: Role,
    ) -> Result<Result<String, MemberChange>, StoreError> {
        let Some(current) = locked_role(tx, tenant, user).await? else {
            return Ok(Err(MemberChange::NotFound));
        };
        if stored_role(&current)? < caller {
            return Ok(Err(MemberChange::Outranked));
        }
        Ok(Ok(current))
    }

    /// Sets a built-in role, leaving any app role; an Owner holds no custom role (Owners
    /// keep every action).
    async fn set_membership_role(
        tx: &mut sqlx::Transaction<'static, Db>,
        tenant: TenantId,
        user: UserId,
        role: Role,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE memberships
             SET role = $1, app_role = NULL,
                 custom_role_id = CASE WHEN $1 = 'owner' THEN NULL ELSE custom_role_id END
             WHERE tenant_id = $2 AND user_id = $3",
        )
        .bind(role.as_str())
        .bind(tenant)
        .bind(user)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn would_orphan(
        tx: &mut sqlx::Transaction<'static, Db>,
        tenant: TenantId,
        user: UserId,
    ) -> Result<bool, StoreError> {
        let others: i64 = sqlx::query_scalar(OTHER_OWNERS)
            .bind(tenant)
            .bind(user)
            .fetch_one(&mut **tx)
            .await?;
        Ok(others == 0)
    }

    #[async_trait]
    impl TenancyStore for SqlTenancyStore<Pool> {
        async fn members(&self, scope: TenantScope) -> Result<Vec<MemberRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let rows: Vec<MemberRow> = sqlx::query_as(MEMBERS_QUERY)
                .bind(tenant)
                .fetch_all(&mut *reader)
                .await?;
            <Pool as Begin>::end_read(reader).await?;
            let mut members = rows.into_iter().map(member_from).collect::<Result<Vec<_>, _>>()?;
            members.sort_by(|a, b| (a.role, &a.email).cmp(&(b.role, &b.email)));
            Ok(members)
        }

        async fn member(
            &self,
            scope: TenantScope,
            user: UserId,
        ) -> Result<Option<MemberRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let row: Option<MemberRow> = sqlx::query_as(MEMBER_QUERY)
                .bind(tenant)
                .bind(user)
                .fetch_optional(&mut *reader)
                .await?;
            <Pool as Begin>::end_read(reader).await?;
            row.map(member_from).transpose()
        }

        async fn set_role(
            &self,
            scope: TenantScope,
            user: UserId,
            role: Role,
            caller: Role,
            event: &AuditRecord,
        ) -> Result<MemberChange, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let current = match locked_target(&mut tx, tenant, user, caller).await? {
                Ok(current) => current,
                Err(refused) => return Ok(refused),
            };
            if current == "owner" && role != Role::Owner && would_orphan(&mut tx, tenant, user).await? {
                return Ok(MemberChange::LastOwner);
            }
            set_membership_role(&mut tx, tenant, user, role).await?;
            tx.commit_narrowing(event).await?;
            Ok(MemberChange::Done)
        }

        async fn create_custom_role(
            &self,
            scope: TenantScope,
            role: &CustomRoleRecord,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let inserted = sqlx::query(
                "INSERT INTO custom_roles (id, tenant_id, name, actions, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO NOTHING",
            )
            .bind(role.id)
            .bind(tenant)
            .bind(&role.name)
            .bind(&role.actions)
            .bind(role.created_at)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() != 1 {
                return Ok(false);
            }
            tx.commit_with(event).await?;
            Ok(true)
        }

        async fn custom_roles(&self, scope: TenantScope) -> Result<Vec<CustomRoleRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let rows: Vec<(CustomRoleId, String, String, OffsetDateTime)> = sqlx::query_as(
                "SELECT id, name, actions, created_at FROM custom_roles
                 WHERE tenant_id = $1 ORDER BY name",
            )
            .bind(tenant)
            .fetch_all(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            Ok(rows
                .into_iter()
                .map(|r| CustomRoleRecord {
                    id: r.0,
                    name: r.1,
                    actions: r.2,
                    created_at: r.3,
                })
                .collect())
        }

        async fn delete_custom_role(
            &self,
            scope: TenantScope,
            id: CustomRoleId,
            may_act_on: MayActOn<'_>,
            event: &AuditRecord,
        ) -> Result<Guarded<()>, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let actions: Option<String> = sqlx::query_scalar(
                "SELECT actions FROM custom_roles WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match actions {
                None => return Ok(Guarded::NotFound),
                Some(actions) if !may_act_on(&Entitlement::actions(&actions)) => {
                    return Ok(Guarded::Forbidden)
                }
                Some(_) => {}
            }
            sqlx::query(
                "UPDATE memberships SET custom_role_id = NULL
                 WHERE tenant_id = $1 AND custom_role_id = $2",
            )
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM custom_roles WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit_narrowing(event).await?;
            Ok(Guarded::Done(()))
        }

        async fn assign_custom_role(
            &self,
            scope: TenantScope,
            user: UserId,
            role: Option<CustomRoleId>,
            event: &AuditRecord,
        ) -> Result<MemberChange, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            if let Some(id) = role {
                let exists: Option<CustomRoleId> = sqlx::query_scalar(
                    "SELECT id FROM custom_roles WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_none() {
                    return Ok(MemberChange::NotFound);
                }
            }
            let changed = sqlx::query(
                "UPDATE memberships
                 SET custom_role_id = $1, app_role = CASE WHEN $1 IS NULL THEN app_role END
                 WHERE tenant_id = $2 AND user_id = $3",
            )
            .bind(role)
            .bind(tenant)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            if changed.rows_affected() != 1 {
                return Ok(MemberChange::NotFound);
            }
            tx.commit_narrowing(event).await?;
            Ok(MemberChange::Done)
        }

        async fn set_app_role(
            &self,
            scope: TenantScope,
            user: UserId,
            role: Option<(&str, Role)>,
            caller: Role,
            event: &AuditRecord,
        ) -> Result<MemberChange, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let current = match locked_target(&mut tx, tenant, user, caller).await? {
                Ok(current) => current,
                Err(refused) => return Ok(refused),
            };
            if role.is_some() && current == "owner" && would_orphan(&mut tx, tenant, user).await? {
                return Ok(MemberChange::LastOwner);
            }
            // Given: the rank becomes the role, and the app role replaces any custom role.
            // Taken away: the rank stays as the built-in role.
            sqlx::query(
                "UPDATE memberships SET role = COALESCE($1, role), app_role = $2,
                     custom_role_id = CASE WHEN $2 IS NULL THEN custom_role_id END
                 WHERE tenant_id = $3 AND user_id = $4",
            )
            .bind(role.map(|(_, rank)| rank.as_str()))
            .bind(role.map(|(name, _)| name))
            .bind(tenant)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            tx.commit_narrowing(event).await?;
            Ok(MemberChange::Done)
        }

        async fn create_application(
            &self,
            scope: TenantScope,
            application: &ApplicationRecord,
            event: &AuditRecord,
        ) -> Result<bool, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let inserted = sqlx::query(
                "INSERT INTO applications (id, tenant_id, name, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, name) DO NOTHING",
            )
            .bind(application.id)
            .bind(tenant)
            .bind(&application.name)
            .bind(application.created_at)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() != 1 {
                return Ok(false);
            }
            tx.commit_with(event).await?;
            Ok(true)
        }

        async fn applications(
            &self,
            scope: TenantScope,
        ) -> Result<Vec<ApplicationRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let rows: Vec<(ApplicationId, String, OffsetDateTime)> = sqlx::query_as(
                "SELECT id, name, created_at FROM applications WHERE tenant_id = $1 ORDER BY name",
            )
            .bind(tenant)
            .fetch_all(&mut *reader)
            .await?;
            <Pool as Begin>::end_read(reader).await?;
            Ok(rows
                .into_iter()
                .map(|r| ApplicationRecord {
                    id: r.0,
                    name: r.1,
                    created_at: r.2,
                })
                .collect())
        }

        async fn delete_application(
            &self,
            scope: TenantScope,
            id: ApplicationId,
            may_act_on: MayActOn<'_>,
            event: &AuditRecord,
        ) -> Result<Guarded<()>, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            // Locks the row first: a key being created for this application either
            // committed before (and is revoked below) or waits and then finds no
            // application (see the key store's create).
            let locked = sqlx::query(LOCK_APPLICATION)
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if locked.rows_affected() != 1 {
                return Ok(Guarded::NotFound);
            }
            let keys: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT role, scopes FROM api_keys
                 WHERE tenant_id = $1 AND application_id = $2 AND revoked_at IS NULL",
            )
            .bind(tenant)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            for key in keys {
                if !may_act_on(&crate::keys::store::grant_from(key)?) {
                    return Ok(Guarded::Forbidden);
                }
            }
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $3, previous_secret_hash = NULL,
                     previous_expires_at = NULL
                 WHERE tenant_id = $1 AND application_id = $2 AND revoked_at IS NULL",
            )
            .bind(tenant)
            .bind(id)
            .bind(event.occurred_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM applications WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // Its Agents' cached keys die on every instance now.
            tx.commit_narrowing(event).await?;
            Ok(Guarded::Done(()))
        }

        async fn invite(
            &self,
            invitation: &NewInvitation,
            event: &AuditRecord,
        ) -> Result<(), StoreError> {
            let tenant = invitation.scope.tenant();
            let mut tx = self.0.tenant(invitation.scope).await?;
            sqlx::query(
                "INSERT INTO invitations (id, tenant_id, email, role, token_hash, invited_by,
                     created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(invitation.id)
            .bind(tenant)
            .bind(&invitation.email)
            .bind(invitation.role.as_str())
            .bind(&invitation.token_hash[..])
            .bind(invitation.invited_by)
            .bind(invitation.created_at)
            .bind(invitation.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit_with(event).await?;
            Ok(())
        }

        async fn pending_invitations(
            &self,
            scope: TenantScope,
            now: OffsetDateTime,
        ) -> Result<Vec<InvitationRecord>, StoreError> {
            let tenant = scope.tenant();
            let mut reader = self.0.tenant_reader(scope).await?;
            let rows: Vec<(InvitationId, String, String, UserId, OffsetDateTime, OffsetDateTime)> =
                sqlx::query_as(
                    "SELECT id, email, role, invited_by, created_at, expires_at FROM invitations
                     WHERE tenant_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL",
                )
                .bind(tenant)
                .fetch_all(&mut *reader)
                .await?;
            <Pool as Begin>::end_read(reader).await?;
            let mut pending = rows
                .into_iter()
                .filter(|row| now < row.5)
                .map(|row| {
                    Ok(InvitationRecord {
                        id: row.0,
                        email: row.1,
                        role: stored_role(&row.2)?,
                        invited_by: row.3,
                        created_at: row.4,
                        expires_at: row.5,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            pending.sort_by_key(|invitation| std::cmp::Reverse(invitation.created_at));
            Ok(pending)
        }

        async fn revoke_invitation(
            &self,
            scope: TenantScope,
            id: InvitationId,
            may_act_on: MayActOn<'_>,
            event: &AuditRecord,
        ) -> Result<Guarded<()>, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let role: Option<String> = sqlx::query_scalar(
                "SELECT role FROM invitations
                 WHERE id = $1 AND tenant_id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
            match role.map(|role| stored_role(&role)).transpose()? {
                None => return Ok(Guarded::NotFound),
                Some(role) if !may_act_on(&Entitlement::role(role)) => return Ok(Guarded::Forbidden),
                Some(_) => {}
            }
            let revoked = sqlx::query(
                "UPDATE invitations SET revoked_at = $1
                 WHERE id = $2 AND tenant_id = $3 AND accepted_at IS NULL AND revoked_at IS NULL",
            )
            .bind(event.occurred_at)
            .bind(id)
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
            if revoked.rows_affected() != 1 {
                return Ok(Guarded::NotFound);
            }
            tx.commit_with(event).await?;
            Ok(Guarded::Done(()))
        }

        async fn accept_invitation(
            &self,
            tenant: TenantId,
            token_hash: &[u8; 32],
            user: UserId,
            email: &str,
            event: &AuditRecord,
        ) -> Result<Acceptance, StoreError> {
            // No tenant credential yet: the invitation's token, checked below, is the proof.
            let mut tx = self.0.tenant(TenantScope::for_system(tenant)).await?;
            let joined = tx
                .join_by_invitation(tenant, token_hash, user, email, event)
                .await?;
            if matches!(joined, Acceptance::Joined(_)) {
                tx.commit().await?;
            }
            Ok(joined)
        }

        async fn sign_up_invited(
            &self,
            user: &InvitedUser,
            token_hash: &[u8; 32],
            [signed_up, joined, attempt]: [&AuditRecord; 3],
        ) -> Result<InvitedSignup, StoreError> {
            // No credential yet: the invitation's token, checked in the join, is the proof.
            let mut tx = self.0.tenant(TenantScope::for_system(user.tenant)).await?;
            let inserted = sqlx::query(
                "INSERT INTO users (id, email, password_hash, email_verified_at,
                     tokens_valid_after, created_at)
                 VALUES ($1, $2, $3, $4, $4, $4) ON CONFLICT (email) DO NOTHING",
            )
            .bind(user.id)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                drop(tx);
                self.0.write().await?.commit_with(attempt).await?;
                return Ok(InvitedSignup::EmailTaken);
            }
            let outcome = tx
                .join_by_invitation(user.tenant, token_hash, user.id, &user.email, joined)
                .await?;
            match outcome {
                Acceptance::Joined(role) => {
                    tx.commit_with(signed_up).await?;
                    Ok(InvitedSignup::Joined(role))
                }
                // Rolled back: not even the user is left.
                Acceptance::NotFound | Acceptance::AlreadyMember => Ok(InvitedSignup::NotFound),
                Acceptance::Suspended => Ok(InvitedSignup::Suspended),
            }
        }

        async fn delete_tenant(
            &self,
            scope: TenantScope,
            deleted: &AuditRecord,
            signer: &LogSigner,
        ) -> Result<(), StoreError> {
            let mut tx = self.0.tenant(scope).await?;
            // Every membership change of the tenant waits for this, and none comes after.
            <Pool as Begin>::lock_until_commit(&mut tx, membership_lock(scope.tenant())).await?;
            let on_platform = tx.delete_tenant(scope, deleted, signer).await?;
            tx.commit_narrowing(&on_platform).await
        }

        async fn transfer_ownership(
            &self,
            scope: TenantScope,
            from: UserId,
            to: UserId,
            event: &AuditRecord,
        ) -> Result<MemberChange, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            if locked_role(&mut tx, tenant, to).await?.is_none() {
                return Ok(MemberChange::NotFound);
            }
            // Still an Owner now that the lock is held (a co-Owner may have demoted them).
            if locked_role(&mut tx, tenant, from).await?.as_deref() != Some("owner") {
                return Ok(MemberChange::Stale);
            }
            for (user, role) in [(to, Role::Owner), (from, Role::Admin)] {
                set_membership_role(&mut tx, tenant, user, role).await?;
            }
            tx.commit_narrowing(event).await?;
            Ok(MemberChange::Done)
        }

        async fn remove(
            &self,
            scope: TenantScope,
            user: UserId,
            caller: Role,
            event: &AuditRecord,
        ) -> Result<MemberChange, StoreError> {
            let tenant = scope.tenant();
            let mut tx = self.0.tenant(scope).await?;
            let current = match locked_target(&mut tx, tenant, user, caller).await? {
                Ok(current) => current,
                Err(refused) => return Ok(refused),
            };
            if current == "owner" && would_orphan(&mut tx, tenant, user).await? {
                return Ok(MemberChange::LastOwner);
            }
            // A member who comes back starts with no assignments (claim RBAC-5).
            sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM relations WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query(NEXT_REVISION).bind(tenant).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = 'membership_removed'
                 WHERE tenant_id = $2 AND user_id = $3 AND revoked_at IS NULL",
            )
            .bind(event.occurred_at)
            .bind(tenant)
            .bind(user)
            .execute(&mut *tx)
            .await?;
            tx.commit_narrowing(event).await?;
            Ok(MemberChange::Done)
        }
    }
}

// Both pool types are stamped above; naming them keeps the imports honest.
#[allow(dead_code)]
type Stamped = (SqlTenancyStore<SqlitePool>, SqlTenancyStore<PgPool>);

for_both_backends! {
    impl JoinByInvitation for sqlx::Transaction<'static, Db> {
        async fn join_by_invitation(
            &mut self,
            tenant: TenantId,
            token_hash: &[u8; 32],
            user: UserId,
            email: &str,
            event: &AuditRecord,
        ) -> Result<Acceptance, StoreError> {
            let now = event.occurred_at;
            let tx = self;
            let found: Option<(InvitationId, String, OffsetDateTime)> = sqlx::query_as(
                "SELECT id, role, expires_at FROM invitations
                 WHERE token_hash = $1 AND tenant_id = $2 AND email = $3
                   AND accepted_at IS NULL AND revoked_at IS NULL",
            )
            .bind(&token_hash[..])
            .bind(tenant)
            .bind(email)
            .fetch_optional(&mut **tx)
            .await?;
            let Some((id, role_text, _)) = found.filter(|row| now < row.2) else {
                return Ok(Acceptance::NotFound);
            };
            let role = stored_role(&role_text)?;
            // The inviter must still be a member who could grant this role now.
            let inviter: Option<String> = sqlx::query_scalar(
                "SELECT m.role FROM memberships m JOIN invitations i
                   ON i.invited_by = m.user_id AND i.tenant_id = m.tenant_id
                 WHERE i.id = $1 AND m.tenant_id = $2",
            )
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await?;
            let inviter_rank = inviter.as_deref().and_then(Role::parse);
            if inviter_rank.is_none_or(|rank| rank > role) {
                return Ok(Acceptance::NotFound);
            }
            let suspended: Option<OffsetDateTime> =
                sqlx::query_scalar("SELECT suspended_at FROM tenants WHERE id = $1")
                    .bind(tenant)
                    .fetch_one(&mut **tx)
                    .await?;
            if suspended.is_some() {
                return Ok(Acceptance::Suspended);
            }
            let joined = sqlx::query(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, user_id) DO NOTHING",
            )
            .bind(tenant)
            .bind(user)
            .bind(role.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            if joined.rows_affected() != 1 {
                return Ok(Acceptance::AlreadyMember);
            }
            sqlx::query("UPDATE invitations SET accepted_at = $1 WHERE id = $2 AND tenant_id = $3")
                .bind(now)
                .bind(id)
                .bind(tenant)
                .execute(&mut **tx)
                .await?;
            // The joiner acts in the role they join with, not one from another tenant.
            let event = event
                .clone()
                .by(Acting::Principal(Actor::User(user), role.as_str()))
                .changed("role", serde_json::Value::Null, role);
            tx.append(&event).await?;
            Ok(Acceptance::Joined(role))
        }
    }
}
