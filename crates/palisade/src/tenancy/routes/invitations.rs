//! Invitations: sending, listing, revoking and accepting them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::access::actions::act;
use crate::access::Role;
use crate::app::AppState;
use crate::http::auth::{AnySession, PermittedPerson};
use crate::http::error::ApiError;
use crate::http::extract::{id_or_404, Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::ids::{InvitationId, TenantId, UserId};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    #[schema(example = "grace@example.com", max_length = 254, format = Email)]
    email: String,
    /// At most the inviter's own role.
    role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationView {
    id: InvitationId,
    email: String,
    role: Role,
    invited_by: UserId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
}

impl From<crate::tenancy::store::InvitationRecord> for InvitationView {
    fn from(record: crate::tenancy::store::InvitationRecord) -> Self {
        Self {
            id: record.id,
            email: record.email,
            role: record.role,
            invited_by: record.invited_by,
            created_at: record.created_at,
            expires_at: record.expires_at,
        }
    }
}

/// Invite someone by email; the link is mailed to them and works once, for 7 days.
///
/// Action: `members.invite`.
#[utoipa::path(
    post,
    path = "/api/v1/invitations",
    tag = "tenancy",
    request_body = InvitationRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Invited", body = InvitationView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not allowed (role, or a role above the inviter's)", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
pub(super) async fn invite(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::MembersInvite>,
    context: RequestContext,
    Json(body): Json<InvitationRequest>,
) -> Result<(StatusCode, axum::Json<InvitationView>), ApiError> {
    let invitation = state
        .tenancy
        .invite(&permitted.person, &body.email, body.role, &origin(context))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(invitation.into())))
}

/// Pending invitations (neither accepted, revoked nor expired), newest first.
///
/// Action: `members.invite`.
#[utoipa::path(
    get,
    path = "/api/v1/invitations",
    tag = "tenancy",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Pending invitations", body = [InvitationView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
pub(super) async fn list_invitations(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::MembersInvite>,
) -> Result<axum::Json<Vec<InvitationView>>, ApiError> {
    let pending = state.tenancy.pending_invitations(&permitted.person).await?;
    Ok(axum::Json(pending.into_iter().map(Into::into).collect()))
}

/// Revoke a pending invitation.
///
/// Action: `members.invite`.
#[utoipa::path(
    delete,
    path = "/api/v1/invitations/{invitation_id}",
    tag = "tenancy",
    security(("bearer" = [])),
    params(("invitation_id" = InvitationId, Path, description = "A pending invitation of the caller's tenant")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 404, description = "No such pending invitation in this tenant", body = ErrorBody),
    )
)]
pub(super) async fn revoke_invitation(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::MembersInvite>,
    context: RequestContext,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: InvitationId = id_or_404(&raw)?;
    state
        .tenancy
        .revoke_invitation(&permitted.person, id, &origin(context))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The token from the invitation link.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{43}$")]
    token: secrecy::SecretString,
}

#[derive(Serialize, ToSchema)]
pub struct Joined {
    /// Switch to it with `POST /api/v1/auth/switch-tenant`.
    tenant_id: TenantId,
    role: Role,
}

/// Accept an invitation addressed to the signed-in user's email.
#[utoipa::path(
    post,
    path = "/api/v1/invitations/accept",
    tag = "tenancy",
    request_body = AcceptRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Joined", body = Joined),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No live invitation with this token for this user", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
    )
)]
pub(super) async fn accept_invitation(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
    Json(body): Json<AcceptRequest>,
) -> Result<axum::Json<Joined>, ApiError> {
    let (tenant_id, role) = state
        .tenancy
        .accept_invitation(&principal, &body.token, &origin(context))
        .await?;
    Ok(axum::Json(Joined { tenant_id, role }))
}
