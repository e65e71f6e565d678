//! Tenancy: the roles a member holds in a tenant. Invitations, custom roles and the action
//! table build on this.

use serde::Serialize;
use utoipa::ToSchema;

/// A member's built-in role, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Manager,
    Member,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Owner,
            Self::Admin,
            Self::Manager,
            Self::Member,
            Self::Viewer,
        ]
        .into_iter()
        .find(|role| role.as_str() == text)
    }

    /// Owners and Admins manage the tenant's settings.
    pub fn manages_tenant(self) -> bool {
        self <= Self::Admin
    }
}
