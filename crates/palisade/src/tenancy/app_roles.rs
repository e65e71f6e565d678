//! App roles (claim APP-1): the deployment-wide roles the app's manifest declares, given to
//! members. An app role sets the member's rank (for the no-escalation rules) and replaces
//! the actions of their built-in role and of any custom role with its own, as a custom role
//! does. Nobody gives one to themselves, to a member above them, or with an action or a
//! rank beyond their own.

use super::members::{Tenancy, TenancyError};
use crate::access::actions::Entitlement;
use crate::access::Caller;
use crate::identity::domain::InvalidInput;
use crate::identity::service::Origin;
use crate::ids::UserId;

impl Tenancy {
    /// Gives a member the app role named `role`, or takes theirs away with `None` (their
    /// rank stays their built-in role).
    pub async fn assign_app_role(
        &self,
        caller: &Caller,
        user: UserId,
        role: Option<&str>,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        if caller.is_user(user) {
            return Err(TenancyError::Forbidden("nobody changes their own role"));
        }
        let app_role = match role {
            Some(name) => Some(self.access.role(name).ok_or(InvalidInput(
                "app_role: not a role of the manifest (GET /api/v1/roles)",
            ))?),
            None => None,
        };
        let target = self.subordinate(caller, user).await?;
        let allowed = match app_role {
            Some(role) => caller.may_act_on(&Entitlement::ranked(
                role.rank,
                self.access.names(&role.actions),
            )),
            // Its rank becomes the member's built-in role, with that role's actions.
            None => caller.may_grant(target.role),
        };
        if !allowed {
            return Err(TenancyError::Forbidden(
                "a role with a rank or an action beyond your own cannot be given by you",
            ));
        }
        let event = origin
            .event("members.app_role_changed", "success", self.clock.now())
            .in_tenant(caller.tenant())
            .by(caller)
            .on("user", user)
            .changed("app_role", target.app_role, role);
        self.settle(
            self.store
                .set_app_role(
                    caller.scope(),
                    user,
                    app_role.map(|r| (&*r.name, r.rank)),
                    caller.role(),
                    &event,
                )
                .await?,
        )
    }
}
