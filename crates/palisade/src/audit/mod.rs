//! The audit log (claims AUD-1 to AUD-6): every state-changing action and sign-in outcome
//! becomes one event, appended in the same transaction as the change it records, to its
//! tenant's hash chain (or the platform stream's). Nothing updates or deletes an event
//! except retention, below a signed anchor.
//!
//! - `chain`: the canonical encoding, the hash link, and the walk that names the first
//!   bad event.
//! - `signing`: the Ed25519 checkpoint key, held outside the database.
//! - `store`: appending (one event in a caller's transaction, or a batch), reading,
//!   checkpoints, retention.
//! - `writer`: group commit for events that have no transaction of their own.
//! - `service`: verification, checkpoints and retention as operations; `export`: the
//!   streamed export and its offline verifier; `routes`: the HTTP surface.

pub mod app;
pub mod app_routes;
pub mod chain;
pub mod export;
pub mod redaction;
pub mod routes;
pub mod service;
pub mod signing;
pub mod store;
pub mod writer;

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{Caller, Subject};
use crate::ids::{ApiKeyId, ServiceId, TenantId, UserId};

pub use service::Audit;
pub(crate) use store::{Append, Forget, Redact};

/// The platform stream's id: events that belong to no tenant (TEN-6's operations, a failed
/// sign-in of an unknown email, a rate-limit burst of nobody known).
pub const PLATFORM_STREAM: Uuid = Uuid::nil();

/// Who acted, when it is a credential: a person, or an API key by its id (never its
/// secret, claim KEY-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
}

/// Who an event says acted, and in which role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acting {
    /// Nobody proven yet: a failed sign-in, an anonymous request.
    Anonymous,
    Principal(Actor, &'static str),
    /// A deployment operator, by the name `palisade admin` was given.
    Operator(String),
    /// The app's backend, by its service credential (claim APP-2).
    Service(ServiceId),
    /// Palisade itself (retention).
    System,
}

/// The audit trail names the person or the key, in the role it acted with.
impl From<&Caller> for Acting {
    fn from(caller: &Caller) -> Self {
        let actor = match caller.subject() {
            Subject::Person { user, .. } => Actor::User(user),
            Subject::Key { id } => Actor::ApiKey(id),
        };
        Acting::Principal(actor, caller.role().as_str())
    }
}

impl Acting {
    pub fn kind(&self) -> &'static str {
        match self {
            Acting::Anonymous => "anonymous",
            Acting::Principal(Actor::User(_), _) => "user",
            Acting::Principal(Actor::ApiKey(_), _) => "api_key",
            Acting::Operator(_) => "operator",
            Acting::Service(_) => "service",
            Acting::System => "system",
        }
    }

    pub fn id(&self) -> String {
        match self {
            Acting::Anonymous | Acting::System => String::new(),
            Acting::Principal(Actor::User(user), _) => user.to_string(),
            Acting::Principal(Actor::ApiKey(key), _) => key.to_string(),
            Acting::Operator(name) => name.clone(),
            Acting::Service(id) => id.to_string(),
        }
    }

    pub fn role(&self) -> &'static str {
        match self {
            Acting::Principal(_, role) => role,
            Acting::Operator(_) => "operator",
            Acting::Anonymous | Acting::System | Acting::Service(_) => "",
        }
    }
}

impl From<Actor> for Acting {
    fn from(actor: Actor) -> Self {
        Acting::Principal(actor, "")
    }
}

impl From<UserId> for Acting {
    fn from(user: UserId) -> Self {
        Actor::User(user).into()
    }
}

impl From<ApiKeyId> for Acting {
    fn from(key: ApiKeyId) -> Self {
        Actor::ApiKey(key).into()
    }
}

/// Who acts in one tenant: a member or key allowed the action, or the app's backend under a
/// tenant token (the HTTP layer checks the action). What a tenant's stores write in, and
/// its events name.
#[derive(Clone, Debug)]
pub struct TenantActing {
    pub scope: crate::access::TenantScope,
    pub acting: Acting,
}

impl TenantActing {
    pub fn tenant(&self) -> TenantId {
        self.scope.tenant()
    }
}

/// One event, as the caller describes it. Secrets never go in here.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// None: an event of no tenant, kept in the platform stream.
    pub tenant_id: Option<TenantId>,
    pub actor: Acting,
    /// Palisade's own names are static; an app's event names one of the manifest's.
    pub action: Cow<'static, str>,
    pub target_type: Cow<'static, str>,
    pub target_id: String,
    pub outcome: &'static str,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: String,
    pub occurred_at: OffsetDateTime,
    /// Before and after of each field the action changed (never a secret).
    pub changes: serde_json::Map<String, serde_json::Value>,
    /// An app's event only: its part of the chain (`app::AppPart`), as the JSON text hashed.
    pub app: Option<String>,
}

impl AuditRecord {
    /// An event of no tenant yet, with no actor or target; the builders below add them.
    pub fn new(
        action: &'static str,
        outcome: &'static str,
        occurred_at: OffsetDateTime,
        request_id: String,
        ip: Option<IpAddr>,
        user_agent: Option<String>,
    ) -> Self {
        Self {
            tenant_id: None,
            actor: Acting::Anonymous,
            action: Cow::Borrowed(action),
            target_type: Cow::Borrowed("none"),
            target_id: String::new(),
            outcome,
            ip,
            user_agent,
            request_id,
            occurred_at,
            changes: serde_json::Map::new(),
            app: None,
        }
    }

    /// Palisade's own doing in `tenant`, with no request behind it (upkeep, a sweep).
    pub fn by_system(action: &'static str, tenant: TenantId, occurred_at: OffsetDateTime) -> Self {
        Self::on_platform(action, occurred_at).in_tenant(tenant)
    }

    /// Palisade's own doing in the platform stream (its keys), with no request behind it.
    pub fn on_platform(action: &'static str, occurred_at: OffsetDateTime) -> Self {
        Self::new(action, "success", occurred_at, String::new(), None, None).by(Acting::System)
    }

    pub fn in_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant_id = Some(tenant);
        self
    }

    pub fn by(mut self, actor: impl Into<Acting>) -> Self {
        self.actor = actor.into();
        self
    }

    pub fn on(mut self, target_type: &'static str, target_id: impl ToString) -> Self {
        self.target_type = Cow::Borrowed(target_type);
        self.target_id = target_id.to_string();
        self
    }

    /// Records that `field` went from `before` to `after`.
    pub fn changed(
        mut self,
        field: &'static str,
        before: impl Serialize,
        after: impl Serialize,
    ) -> Self {
        self.changes.insert(
            field.to_owned(),
            serde_json::json!({"before": json(before), "after": json(after)}),
        );
        self
    }

    /// The chain's stream: the tenant's id, or the platform stream's.
    pub fn stream(&self) -> Uuid {
        self.tenant_id.map_or(PLATFORM_STREAM, |t| t.as_uuid())
    }
}

/// Values in `changes` are ids, names and enums: they always serialise.
fn json(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The stream's name in the chain's bytes and in exports: `ten_…`, or `platform`.
pub fn stream_name(stream: Uuid) -> String {
    if stream == PLATFORM_STREAM {
        "platform".to_owned()
    } else {
        TenantId::from_uuid(stream).to_string()
    }
}
