//! Who acts and what they may do: the built-in roles, the action table, the kinds of
//! principal, the tenant a credential names, and the one permission rule (claims RBAC-1 to
//! RBAC-6, KEY-5, TEN-2).
//!
//! A leaf of the tree: it imports nothing from identity, keys or tenancy (a tidy test says
//! so). Those modules verify credentials and *build* a [`Caller`]; services take `&Caller`.

pub mod actions;
mod caller;
pub mod events;
mod grants;
pub mod manifest;
mod role;
pub mod table;

pub use actions::{act, Action, ActionMarker, AnyCredential, Entitlement, PeopleOnly, ACTIONS};
pub use caller::{Caller, PrincipalKind, Subject, TenantScope};
pub use grants::Grants;
pub use role::{HeldRole, Role};
pub use table::{ActionId, ActionRow, ActionSet, ActionTable, AppRole};
