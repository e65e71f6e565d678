//! `PUT` and `DELETE /access/v1/relations` (claim RBAC-5): the app's backend, with its
//! service credential, writes what its users are to its resources, one to 100 at a time,
//! for one tenant it names; each write answers the tenant's new revision.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Relation, RelationError, MAX_BATCH};
use crate::app::AppState;
use crate::http::auth::Service;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::extract::{Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{TenantId, UserId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_relations, delete_relations))
}

impl From<RelationError> for ApiError {
    fn from(error: RelationError) -> Self {
        match error {
            RelationError::Invalid(text) => ApiError::invalid_field(text),
            RelationError::NotAMember(_) => ApiError::coded(
                ErrorCode::InvalidField,
                "relations: a subject is not a member of the tenant",
            ),
            RelationError::Store(store) => store.into(),
        }
    }
}

/// The resource end of a relation: one of the app's resources, by its own id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationResource {
    /// A resource type of the manifest.
    #[schema(example = "workorder")]
    r#type: String,
    /// The app's id of the resource (1 to 128 characters).
    #[schema(example = "wo_123")]
    id: String,
}

/// The subject end: a member of the tenant.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationSubject {
    /// `user`.
    #[schema(example = "user")]
    r#type: String,
    #[schema(value_type = String, example = "usr_0192f5c4e1a87c3b9d2e4f6a8b0c1d2e")]
    id: String,
}

/// `resource#relation@subject`: `workorder:wo_123#assignee@usr_…`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationEntry {
    resource: RelationResource,
    /// A relation the manifest declares on the resource type.
    #[schema(example = "assignee")]
    relation: String,
    subject: RelationSubject,
}

/// Relations of one tenant to add or remove.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationsRequest {
    /// The tenant the resources belong to; every subject must be a member of it.
    tenant_id: TenantId,
    /// 1 to 100 relations.
    #[schema(min_items = 1, max_items = 100)]
    relations: Vec<RelationEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct RelationsWritten {
    /// The tenant's relation revision after this write (`rev_…`): give it to a decision as
    /// `context.at_least_as_fresh`.
    #[schema(example = "rev_42")]
    revision: String,
}

fn parsed(state: &AppState, body: &RelationsRequest) -> Result<Vec<Relation>, ApiError> {
    if body.relations.is_empty() || body.relations.len() > MAX_BATCH {
        return Err(ApiError::invalid_field("relations: 1 to 100"));
    }
    body.relations
        .iter()
        .map(|entry| {
            if entry.subject.r#type != "user" {
                return Err(ApiError::invalid_field("subject.type: `user`"));
            }
            let user: UserId = entry
                .subject
                .id
                .parse()
                .map_err(|_| ApiError::invalid_field("subject.id: a user id (usr_…)"))?;
            Ok(state.relations.relation(
                &entry.resource.r#type,
                &entry.resource.id,
                &entry.relation,
                user,
            )?)
        })
        .collect()
}

async fn write(
    state: &AppState,
    service: &Service,
    context: RequestContext,
    body: &RelationsRequest,
    put: bool,
) -> Result<axum::Json<RelationsWritten>, ApiError> {
    let relations = parsed(state, body)?;
    let revision = state
        .relations
        .write(
            service.0.id(),
            body.tenant_id,
            &relations,
            put,
            &origin(context),
        )
        .await?;
    Ok(axum::Json(RelationsWritten {
        revision: revision.token(),
    }))
}

/// Add relations (an existing one stays as it is), audited in the tenant's chain.
#[utoipa::path(
    put,
    path = "/access/v1/relations",
    tag = "access",
    security(("service" = [])),
    request_body = RelationsRequest,
    responses(
        (status = 200, description = "Written; the tenant's new revision", body = RelationsWritten),
        (status = 401, description = "No valid service credential", body = ErrorBody),
        (status = 422, description = "An empty or oversized batch, an undeclared resource type or relation, or a subject who is not a member of the tenant: nothing written", body = ErrorBody),
    )
)]
async fn put_relations(
    State(state): State<AppState>,
    service: Service,
    context: RequestContext,
    Json(body): Json<RelationsRequest>,
) -> Result<axum::Json<RelationsWritten>, ApiError> {
    write(&state, &service, context, &body, true).await
}

/// Remove relations (a missing one is no error), audited in the tenant's chain.
#[utoipa::path(
    delete,
    path = "/access/v1/relations",
    tag = "access",
    security(("service" = [])),
    request_body = RelationsRequest,
    responses(
        (status = 200, description = "Removed; the tenant's new revision", body = RelationsWritten),
        (status = 401, description = "No valid service credential", body = ErrorBody),
        (status = 422, description = "An empty or oversized batch, or an undeclared resource type or relation: nothing removed", body = ErrorBody),
    )
)]
async fn delete_relations(
    State(state): State<AppState>,
    service: Service,
    context: RequestContext,
    Json(body): Json<RelationsRequest>,
) -> Result<axum::Json<RelationsWritten>, ApiError> {
    write(&state, &service, context, &body, false).await
}
