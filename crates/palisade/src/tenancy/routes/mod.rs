//! Tenancy's HTTP surface, one file per sub-resource: the published access model and the
//! caller's tenant, members, invitations, custom roles and applications. Each guarded
//! operation names its action in its signature (`Permitted<act::…>`) and in its
//! description ("Action: `…`"), which the isolation and permission suites read.

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::members::TenancyError;
use crate::app::AppState;
use crate::http::error::{ApiError, ErrorCode};

pub(crate) mod applications;
pub(crate) mod custom_roles;
pub(crate) mod invitations;
pub(crate) mod members;
mod roles;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(roles::roles))
        .routes(routes!(roles::current_tenant))
        .routes(routes!(members::list_members))
        .routes(routes!(members::change_role, members::remove_member))
        .routes(routes!(invitations::invite, invitations::list_invitations))
        .routes(routes!(invitations::revoke_invitation))
        .routes(routes!(invitations::accept_invitation))
        .routes(routes!(members::transfer_ownership))
        .routes(routes!(
            custom_roles::list_custom_roles,
            custom_roles::create_custom_role
        ))
        .routes(routes!(custom_roles::delete_custom_role))
        .routes(routes!(custom_roles::assign_custom_role))
        .routes(routes!(
            applications::list_applications,
            applications::create_application
        ))
        .routes(routes!(applications::delete_application))
}

impl From<TenancyError> for ApiError {
    fn from(error: TenancyError) -> Self {
        match error {
            TenancyError::NotFound => ApiError::NotFound,
            TenancyError::Forbidden(text) => ApiError::coded(ErrorCode::Forbidden, text),
            TenancyError::LastOwner => ApiError::coded(ErrorCode::Conflict, error.to_string()),
            TenancyError::Suspended => {
                ApiError::coded(ErrorCode::TenantSuspended, error.to_string())
            }
            TenancyError::Conflict(text) => ApiError::coded(ErrorCode::Conflict, text),
            TenancyError::Invalid(invalid) => ApiError::invalid_field(invalid.0),
            TenancyError::Store(store) => store.into(),
        }
    }
}
