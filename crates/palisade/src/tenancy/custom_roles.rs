//! Custom roles (claim RBAC-3): a tenant names its own sets of actions from the table. A
//! member holding one may do exactly its actions; their built-in role still ranks them for
//! the no-escalation rules. Nobody builds or hands out a custom role with an action they
//! may not do themselves, and Owner-only actions never go into one.

use super::members::{guarded, Tenancy, TenancyError};
use super::store::CustomRoleRecord;
use crate::access::actions::Entitlement;
use crate::access::ActionSet;
use crate::access::Caller;
use crate::access::Role;
use crate::identity::domain::{display_name, InvalidInput};
use crate::identity::service::Origin;
use crate::ids::{CustomRoleId, UserId};

impl Tenancy {
    pub async fn create_custom_role(
        &self,
        caller: &Caller,
        name: &str,
        action_names: &[String],
        origin: &Origin,
    ) -> Result<CustomRoleRecord, TenancyError> {
        let name = display_name(
            name,
            64,
            "name: 1 to 64 characters, no control characters or surrounding spaces",
        )?;
        let mut actions = ActionSet::default();
        for action_name in action_names {
            let row = self.access.find(action_name).ok_or(InvalidInput(
                "actions: every entry must be an action of GET /api/v1/roles",
            ))?;
            if row.minimum_role == Role::Owner {
                return Err(TenancyError::Forbidden(
                    "Owner-only actions cannot be given through a custom role",
                ));
            }
            if !caller.may_row(row) {
                return Err(TenancyError::Forbidden(
                    "a custom role cannot hold an action you may not do",
                ));
            }
            actions.insert(row.id);
        }
        if actions.is_empty() {
            return Err(InvalidInput("actions: at least one").into());
        }
        let record = CustomRoleRecord {
            id: CustomRoleId::generate(),
            name: name.to_owned(),
            actions: self.access.names(&actions),
            created_at: self.clock.now(),
        };
        let event = origin
            .event("roles.custom_created", "success", record.created_at)
            .in_tenant(caller.tenant())
            .by(caller)
            .on("custom_role", record.id);
        if self
            .store
            .create_custom_role(caller.scope(), &record, &event)
            .await?
        {
            Ok(record)
        } else {
            Err(TenancyError::Conflict(
                "the tenant already has a role of that name",
            ))
        }
    }

    pub async fn custom_roles(
        &self,
        caller: &Caller,
    ) -> Result<Vec<CustomRoleRecord>, TenancyError> {
        Ok(self.store.custom_roles(caller.scope()).await?)
    }

    pub async fn delete_custom_role(
        &self,
        caller: &Caller,
        id: CustomRoleId,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        // Its holders fall back to their built-in roles: the caller must be able to grant
        // each of those, and must not be lifting their own restriction.
        let members = self.store.members(caller.scope()).await?;
        for holder in members.iter().filter(|m| m.custom_role == Some(id)) {
            if caller.is_user(holder.user_id) || !caller.may_grant(holder.role) {
                return Err(TenancyError::Forbidden(
                    "deleting this role would give its holders more than you may grant",
                ));
            }
        }
        let event = origin
            .event("roles.custom_deleted", "success", self.clock.now())
            .in_tenant(caller.tenant())
            .by(caller)
            .on("custom_role", id);
        let may_act_on = |grant: &Entitlement| caller.may_act_on(grant);
        let outcome = self
            .store
            .delete_custom_role(caller.scope(), id, &may_act_on, &event)
            .await?;
        guarded(outcome, "the role holds an action you may not do")?;
        self.changed();
        Ok(())
    }

    /// Gives a member a custom role (or takes it away with `None`).
    pub async fn assign_custom_role(
        &self,
        caller: &Caller,
        user: UserId,
        role: Option<CustomRoleId>,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        if caller.is_user(user) {
            return Err(TenancyError::Forbidden("nobody changes their own role"));
        }
        let target = self.subordinate(caller, user).await?;
        if target.role == Role::Owner {
            return Err(TenancyError::Forbidden("an Owner keeps every action"));
        }
        if role.is_none() && !caller.may_grant(target.role) {
            return Err(TenancyError::Forbidden(
                "taking the custom role away would give more than you may grant",
            ));
        }
        if let Some(id) = role {
            let roles = self.store.custom_roles(caller.scope()).await?;
            let custom = roles
                .iter()
                .find(|r| r.id == id)
                .ok_or(TenancyError::NotFound)?;
            if !caller.may_act_on(&Entitlement::actions(&custom.actions)) {
                return Err(TenancyError::Forbidden(
                    "a custom role with an action you may not do cannot be given by you",
                ));
            }
        }
        let event = origin
            .event("members.custom_role_changed", "success", self.clock.now())
            .in_tenant(caller.tenant())
            .by(caller)
            .on("user", user);
        self.settle(
            self.store
                .assign_custom_role(caller.scope(), user, role, &event)
                .await?,
        )
    }
}
