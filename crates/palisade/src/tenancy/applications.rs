//! Applications: a tenant's groupings of machine access. Service identities (claim RBAC-4)
//! hang off them: an Agent acts only through API keys scoped to one application and never
//! signs in; a Scim identity may call only `/scim/v2/*`. The keys and SCIM issues issue
//! those credentials; the kinds are modelled in `identity::sessions::PrincipalKind`.

use super::members::{guarded, Tenancy, TenancyError};
use super::store::ApplicationRecord;
use crate::access::actions::Entitlement;
use crate::access::Caller;
use crate::access::PrincipalKind;
use crate::identity::domain::display_name;
use crate::identity::service::Origin;
use crate::ids::ApplicationId;

impl Tenancy {
    pub async fn create_application(
        &self,
        caller: &Caller,
        name: &str,
        origin: &Origin,
    ) -> Result<ApplicationRecord, TenancyError> {
        if matches!(caller.kind(), PrincipalKind::Agent { .. }) {
            return Err(TenancyError::Forbidden(
                "an application's key cannot create applications",
            ));
        }
        let name = display_name(
            name,
            100,
            "name: 1 to 100 characters, no control characters or surrounding spaces",
        )?;
        let record = ApplicationRecord {
            id: ApplicationId::generate(),
            name: name.to_owned(),
            created_at: self.clock.now(),
        };
        let event = origin
            .event("applications.created", "success", record.created_at)
            .in_tenant(caller.tenant())
            .by(caller)
            .on("application", record.id);
        if self
            .store
            .create_application(caller.scope(), &record, &event)
            .await?
        {
            Ok(record)
        } else {
            Err(TenancyError::Conflict(
                "the tenant already has an application of that name",
            ))
        }
    }

    pub async fn applications(
        &self,
        caller: &Caller,
    ) -> Result<Vec<ApplicationRecord>, TenancyError> {
        let mut applications = self.store.applications(caller.scope()).await?;
        // An Agent sees only its own application (claim RBAC-4).
        if let PrincipalKind::Agent { application } = caller.kind() {
            applications.retain(|a| a.id == application);
        }
        Ok(applications)
    }

    pub async fn delete_application(
        &self,
        caller: &Caller,
        id: ApplicationId,
        origin: &Origin,
    ) -> Result<(), TenancyError> {
        // An Agent sees no other application, and may not end its own: that would free
        // its key from it (claim RBAC-4).
        match caller.kind() {
            PrincipalKind::Agent { application } if application != id => {
                return Err(TenancyError::NotFound)
            }
            PrincipalKind::Agent { .. } => {
                return Err(TenancyError::Forbidden(
                    "an application's key cannot delete its application",
                ))
            }
            _ => {}
        }
        let event = origin
            .event("applications.deleted", "success", self.clock.now())
            .in_tenant(caller.tenant())
            .by(caller)
            .on("application", id);
        let may_act_on = |grant: &Entitlement| caller.may_act_on(grant);
        let outcome = self
            .store
            .delete_application(caller.scope(), id, &may_act_on, &event)
            .await?;
        guarded(
            outcome,
            "the application has keys that go beyond what you may grant",
        )?;
        self.changed();
        Ok(())
    }
}
