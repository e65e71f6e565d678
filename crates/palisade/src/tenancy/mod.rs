//! Tenancy: member management, invitations, custom roles and applications, on the roles
//! and actions of `access`. Platform operations build on this.

pub mod app_roles;
pub mod applications;
pub mod custom_roles;
pub mod deletion;
pub mod invitations;
pub mod members;
pub mod routes;
pub mod store;
