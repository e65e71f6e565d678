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

/// What replaces a member's built-in role's actions, as the membership stores it: nothing, a
/// custom role of the tenant (its action names), or an app role of the manifest (its name).
/// A member holds at most one of the two; `ActionTable::replacing` turns it into actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HeldRole {
    #[default]
    Builtin,
    Custom(String),
    App(String),
}

impl HeldRole {
    /// From the membership's custom role (joined action names) and app role columns.
    pub fn from_columns(custom_actions: Option<String>, app_role: Option<String>) -> Self {
        match (app_role, custom_actions) {
            (Some(name), _) => Self::App(name),
            (None, Some(names)) => Self::Custom(names),
            (None, None) => Self::Builtin,
        }
    }

    pub fn app_role(&self) -> Option<&str> {
        match self {
            Self::App(name) => Some(name),
            _ => None,
        }
    }
}
