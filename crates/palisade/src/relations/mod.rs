//! Relations between users and the app's resources (claim RBAC-5): the app writes what a
//! user is to one of its resources — `workorder:wo_123#assignee@usr_…` — and an external
//! member (a vendor, `external = true` on its app role) acts only on the resources it has
//! a relation to, in every decision and every resource search. Each tenant's writes move
//! its revision; a write answers it, and a decision accepts it as "at least as fresh as".
//!
//! The app's backend writes with its service credential and names the tenant
//! (`TenantScope::named_by_service`); every related user must be a member of it.

pub mod routes;
pub mod store;

use std::sync::Arc;

use crate::access::{ActionTable, TenantScope};
use crate::audit::Acting;
use crate::clock::Clock;
use crate::identity::service::Origin;
use crate::ids::{ServiceId, TenantId, UserId};
use crate::store::StoreError;
use store::{RelationStore, Written};

/// The most relations one write may carry.
pub const MAX_BATCH: usize = 100;
/// The longest id of an app's resource.
pub const MAX_RESOURCE_ID: usize = 128;

/// One relation: `user` is `relation` to the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub resource_type: Arc<str>,
    pub resource_id: String,
    pub relation: Arc<str>,
    pub user: UserId,
}

impl Relation {
    /// The relation's text form, as the audit event lists it.
    pub fn to_tuple(&self) -> String {
        format!(
            "{}:{}#{}@{}",
            self.resource_type, self.resource_id, self.relation, self.user
        )
    }
}

/// A tenant's relation revision: every write moves it by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Revision(pub i64);

impl Revision {
    pub fn token(self) -> String {
        format!("rev_{}", self.0)
    }

    pub fn parse(token: &str) -> Option<Self> {
        let n: i64 = token.strip_prefix("rev_")?.parse().ok()?;
        (n >= 0).then_some(Revision(n))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelationError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not a member of the tenant")]
    NotAMember(UserId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Relations {
    store: Arc<dyn RelationStore>,
    access: Arc<ActionTable>,
    clock: Arc<dyn Clock>,
}

impl Relations {
    pub fn new(
        store: Arc<dyn RelationStore>,
        access: Arc<ActionTable>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            access,
            clock,
        }
    }

    /// A relation the manifest allows: a declared resource type and one of its relations,
    /// and a resource id of 1 to 128 characters without control characters.
    pub fn relation(
        &self,
        resource_type: &str,
        resource_id: &str,
        relation: &str,
        user: UserId,
    ) -> Result<Relation, RelationError> {
        let declared = self.access.resource_type(resource_type).ok_or_else(|| {
            RelationError::Invalid(format!(
                "resource.type: `{resource_type}` is not a resource type of the manifest"
            ))
        })?;
        let relation = declared
            .relations
            .iter()
            .find(|r| &***r == relation)
            .ok_or_else(|| {
                RelationError::Invalid(format!(
                    "relation: `{relation}` is not a relation of `{resource_type}`"
                ))
            })?;
        check_resource_id(resource_id).map_err(RelationError::Invalid)?;
        Ok(Relation {
            resource_type: declared.name.clone(),
            resource_id: resource_id.to_owned(),
            relation: relation.clone(),
            user,
        })
    }

    /// Adds (`put`) or removes relations of `tenant`, audited in its chain as the service's.
    pub async fn write(
        &self,
        service: ServiceId,
        tenant: TenantId,
        relations: &[Relation],
        put: bool,
        origin: &Origin,
    ) -> Result<Revision, RelationError> {
        if relations.is_empty() || relations.len() > MAX_BATCH {
            return Err(RelationError::Invalid(format!(
                "relations: 1 to {MAX_BATCH}"
            )));
        }
        let now = self.clock.now();
        let action = if put {
            "relations.written"
        } else {
            "relations.deleted"
        };
        let tuples: Vec<String> = relations.iter().map(Relation::to_tuple).collect();
        let event = origin
            .event(action, "success", now)
            .in_tenant(tenant)
            .by(Acting::Service(service))
            .on("relations", relations.len())
            .changed("relations", serde_json::Value::Null, tuples);
        let scope = TenantScope::named_by_service(tenant);
        match self.store.write(scope, relations, put, now, &event).await? {
            Written::Done(revision) => Ok(revision),
            Written::NotAMember(user) => Err(RelationError::NotAMember(user)),
            Written::NoSuchTenant => Err(RelationError::Invalid(
                "tenant_id: no tenant of that id".into(),
            )),
        }
    }

    /// Whether `user` has a relation to the resource, in the subject's tenant.
    pub async fn related(
        &self,
        scope: TenantScope,
        user: UserId,
        resource_type: &str,
        resource_id: &str,
    ) -> Result<bool, StoreError> {
        self.store
            .related(scope, user, resource_type, resource_id)
            .await
    }

    pub async fn related_ids(
        &self,
        scope: TenantScope,
        user: UserId,
        resource_type: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.store
            .related_ids(scope, user, resource_type, after, limit)
            .await
    }

    pub async fn revision(&self, scope: TenantScope) -> Result<Revision, StoreError> {
        self.store.revision(scope).await
    }
}

/// An app resource's id: 1 to 128 characters, no control characters.
pub fn check_resource_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_RESOURCE_ID || id.chars().any(char::is_control) {
        return Err("resource.id: 1 to 128 characters, no control characters".into());
    }
    Ok(())
}
