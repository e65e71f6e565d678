//! Member management with no escalation (claim RBAC-6): nobody changes their own role,
//! grants a role above their own, or touches a member above them, and the last Owner
//! can be neither demoted nor removed. A member of another tenant is simply not found.

use std::sync::Arc;

use super::store::{MemberChange, MemberRecord, TenancyStore};
use crate::access::Role;
use crate::access::{ActionTable, Caller};
use crate::clock::Clock;
use crate::identity::principals::PrincipalCache;
use crate::identity::service::Origin;
use crate::identity::sessions::Principal;
use crate::ids::UserId;
use crate::mail::Mailer;
use crate::store::{Guarded, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the tenant must keep at least one Owner")]
    LastOwner,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("this tenant is suspended")]
    Suspended,
    #[error(transparent)]
    Invalid(#[from] crate::identity::domain::InvalidInput),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A guarded store change as the service answers it: refused with `why` when the caller
/// may not act on what the object grants (claim RBAC-6).
pub fn guarded<T>(outcome: Guarded<T>, why: &'static str) -> Result<T, TenancyError> {
    match outcome {
        Guarded::Done(value) => Ok(value),
        Guarded::NotFound => Err(TenancyError::NotFound),
        Guarded::Forbidden => Err(TenancyError::Forbidden(why)),
    }
}

pub struct Tenancy {
    pub(super) store: Arc<dyn TenancyStore>,
    principals: Arc<PrincipalCache>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) mailer: Arc<Mailer>,
    pub(super) link_base_url: String,
    /// The deployment's action table: what custom roles and app roles may hold.
    pub(super) access: Arc<ActionTable>,
}

impl Tenancy {
    pub fn new(
        store: Arc<dyn TenancyStore>,
        identity: &crate::identity::service::Identity,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            principals: identity.principal_cache(),
            clock,
            mailer: identity.mailer_handle(),
            link_base_url: identity.link_base_url().to_owned(),
            access: identity.access().clone(),
        }
    }

    pub async fn members(&self, caller: &Caller) -> Result<Vec<MemberRecord>, TenancyError> {
        Ok(self.store.members(caller.scope()).await?)
    }

    /// A member the caller may act on: in the caller's tenant, and not above the caller.
    pub(super) async fn subordinate(
        &self,
        caller: &Caller,
        user: UserId,
    ) -> Result<MemberRecord, TenancyError> {
        let target = self
            .store
            .member(caller.scope(), user)
            .await?
            .ok_or(TenancyError::NotFound)?;
        if target.role < caller.role() {
            return Err(TenancyError::Forbidden(
                "a member whose role is above yours cannot be changed by you",
            ));
        }
        Ok(target)
    }

    pub async fn change_role(
        &self,
        caller: &Caller,
        user: UserId,
        role: Role,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        if caller.is_user(user) {
            return Err(TenancyError::Forbidden("nobody changes their own role"));
        }
        if !caller.may_grant(role) {
            return Err(TenancyError::Forbidden(
                "a role above your own cannot be granted",
            ));
        }
        let target = self.subordinate(caller, user).await?;
        let event = origin
            .event("members.role_changed", "success", self.clock.now())
            .in_tenant(caller.tenant())
            .by(caller)
            .on("user", target.user_id)
            .changed("role", target.role, role);
        self.settle(
            self.store
                .set_role(caller.scope(), user, role, caller.role(), &event)
                .await?,
        )
    }

    /// An Owner hands the tenant to another member, who becomes Owner; the caller stays as
    /// an Admin.
    pub async fn transfer_ownership(
        &self,
        principal: &Principal,
        to: UserId,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        if principal.role() != Role::Owner {
            return Err(TenancyError::Forbidden("only an Owner transfers ownership"));
        }
        if to == principal.user() {
            return Err(TenancyError::Forbidden("nobody changes their own role"));
        }
        let event = origin
            .event("tenant.ownership_transferred", "success", self.clock.now())
            .in_tenant(principal.tenant())
            .by(principal)
            .on("user", to);
        self.settle(
            self.store
                .transfer_ownership(principal.scope(), principal.user(), to, &event)
                .await?,
        )
    }

    /// Removes a member; their sessions in this tenant end at once.
    pub async fn remove(
        &self,
        caller: &Caller,
        user: UserId,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        let target = self.subordinate(caller, user).await?;
        let event = origin
            .event("members.removed", "success", self.clock.now())
            .in_tenant(caller.tenant())
            .by(caller)
            .on("user", target.user_id)
            .changed("role", target.role, serde_json::Value::Null);
        self.settle(
            self.store
                .remove(caller.scope(), user, caller.role(), &event)
                .await?,
        )
    }

    /// After a committed change to what members may do.
    pub(super) fn changed(&self) {
        self.principals.changed();
    }

    pub(super) fn settle(&self, change: MemberChange) -> Result<(), TenancyError> {
        match change {
            MemberChange::Done => {
                self.changed();
                Ok(())
            }
            MemberChange::NotFound => Err(TenancyError::NotFound),
            MemberChange::LastOwner => Err(TenancyError::LastOwner),
            MemberChange::Stale => Err(TenancyError::Conflict(
                "your role changed while the request ran; retry",
            )),
            MemberChange::Outranked => Err(TenancyError::Forbidden(
                "a member whose role is above yours cannot be changed by you",
            )),
        }
    }
}
