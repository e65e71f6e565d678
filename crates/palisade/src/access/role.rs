//! The five built-in roles, strongest first: the ranks every no-escalation rule compares.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A member's built-in role, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Manager,
    Member,
    Viewer,
}

impl Role {
    /// Strongest first.
    pub const ALL: [Role; 5] = [
        Self::Owner,
        Self::Admin,
        Self::Manager,
        Self::Member,
        Self::Viewer,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Owner => "Owner",
            Self::Admin => "Admin",
            Self::Manager => "Manager",
            Self::Member => "Member",
            Self::Viewer => "Viewer",
        }
    }

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
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }
}
