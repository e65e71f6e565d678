//! Webhooks out (claims HOOK-1 to HOOK-4, and the pushed half of APP-6): a tenant's
//! endpoints, the app's messages and Palisade's own, signed the Standard Webhooks way,
//! delivered by a dispatcher in the server process from an outbox written in the change's
//! own transaction (docs/webhooks.md).
//!
//! - `signing`: `whsec_` secrets and the `webhook-signature` header.
//! - `guard`: the addresses a delivery may reach; `sender`: one delivery over the wire.
//! - `events`: Palisade's own events, derived from the audit record of the change.
//! - `dispatch`: claim, send, record, retry; `store`: the SQL; `routes`: the HTTP surface.
//! - `inbound`: webhooks in (claim HOOK-5), verified and handed on as messages.

pub mod dispatch;
pub mod events;
pub mod guard;
pub mod inbound;
pub mod routes;
pub mod sender;
pub mod signing;
pub mod store;

use std::sync::Arc;

use serde_json::Value;
use time::Duration;
use zeroize::Zeroizing;

use crate::access::{ActionTable, TenantScope};
use crate::audit::TenantActing;
use crate::clock::Clock;
use crate::identity::domain::InvalidInput;
use crate::identity::service::Origin;
use crate::ids::{EndpointId, MessageId, SigningSecretId, TenantId};
use crate::vault::Vault;

use sender::{Sender, UrlProblem};
use signing::SigningKey;
use store::{
    AttemptRecord, EndpointRecord, InboundEvent, MessageKey, NewMessage, NewSigningSecret,
    Received, Retry, Sent, WebhookStore,
};

/// Subscriptions one endpoint may hold.
const MAX_EVENT_TYPES: usize = 64;
/// Endpoints one tenant may register.
const MAX_ENDPOINTS: usize = 50;
/// A message's payload, as JSON.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// How long a replaced signing secret still signs, unless the rotation says otherwise.
pub const DEFAULT_OVERLAP: Duration = Duration::hours(24);
const MAX_OVERLAP: Duration = Duration::days(7);

pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    vault: Arc<Vault>,
    sender: Arc<Sender>,
    access: Arc<ActionTable>,
    inbound: inbound::Sources,
    clock: Arc<dyn Clock>,
    /// Endpoints failing this long are disabled; None: never.
    disable_after: Option<Duration>,
    /// How long a message's history is kept.
    retention: Duration,
    concurrency: usize,
    /// `concurrency` permits, shared by the rounds in flight at once.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Rung when a message is written here, so the dispatcher need not wait for its tick.
    wake: tokio::sync::Notify,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("{0}")]
    Url(UrlProblem),
    /// The field that names it; the name itself is never echoed.
    #[error(
        "{0} is not an event type of this deployment (GET /api/v1/webhooks/event-types lists them)"
    )]
    UnknownEventType(String),
    #[error(
        "event_type is Palisade's own: the app may send only the event types its manifest declares"
    )]
    NotAppEvent,
    #[error("a tenant has at most 50 webhook endpoints")]
    TooManyEndpoints,
    #[error("no such webhook endpoint")]
    NotFound,
    #[error("this Idempotency-Key was used with another request; nothing was written")]
    KeyReused,
    #[error("no such inbound webhook source")]
    UnknownSource,
    #[error("{0}; nothing was written")]
    Refused(#[from] inbound::Refused),
    #[error("an inbound webhook's body is at most 64 KiB")]
    InboundTooLarge,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// An endpoint as asked for.
pub struct NewEndpoint {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
}

/// What a change of an endpoint asks for; None keeps the field.
#[derive(Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        vault: Arc<Vault>,
        sender: Arc<Sender>,
        access: Arc<ActionTable>,
        clock: Arc<dyn Clock>,
        settings: &crate::config::WebhookSettings,
    ) -> Self {
        Self {
            store,
            vault,
            sender,
            access,
            inbound: inbound::Sources::from_settings(&settings.inbound),
            clock,
            disable_after: (settings.disable_after_days > 0)
                .then(|| Duration::days(i64::from(settings.disable_after_days))),
            concurrency: settings.concurrency,
            retention: Duration::days(i64::from(settings.retention_days)),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.concurrency)),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn now_us(&self) -> i64 {
        crate::audit::store::micros(self.clock.now())
    }

    /// Forgets each tenant's delivery history older than `webhooks.retention_days`
    /// (upkeep, hourly); answers the rows removed.
    pub async fn prune(
        &self,
        tenants: impl IntoIterator<Item = crate::ids::TenantId>,
    ) -> Result<u64, WebhookError> {
        let cutoff = crate::audit::store::micros(self.clock.now() - self.retention);
        let mut removed = 0;
        for tenant in tenants {
            removed += self.store.prune(tenant, cutoff).await?;
        }
        Ok(removed)
    }

    fn checked_types(&self, types: &[String]) -> Result<Vec<String>, WebhookError> {
        if types.is_empty() || types.len() > MAX_EVENT_TYPES {
            return Err(InvalidInput("event_types: 1 to 64 event types").into());
        }
        let mut checked: Vec<String> = Vec::with_capacity(types.len());
        for (at, name) in types.iter().enumerate() {
            if !self.access.is_event_type(name) && !self.inbound.is_event_type(name) {
                return Err(WebhookError::UnknownEventType(format!("event_types[{at}]")));
            }
            if !checked.contains(name) {
                checked.push(name.clone());
            }
        }
        checked.sort();
        Ok(checked)
    }

    async fn checked_url(&self, url: &str) -> Result<String, WebhookError> {
        self.sender.check(url).await.map_err(WebhookError::Url)?;
        Ok(url.to_owned())
    }

    /// A new signing secret of `tenant`'s, sealed by its data key in the store's
    /// transaction.
    fn new_secret<'a>(&'a self, tenant: TenantId, key: &'a SigningKey) -> NewSigningSecret<'a> {
        NewSigningSecret {
            id: SigningSecretId::generate(),
            tenant,
            key,
            vault: &self.vault,
            at: self.clock.now(),
        }
    }

    /// Registers an endpoint; answers it with its signing secret, shown this once.
    pub async fn create_endpoint(
        &self,
        actor: &TenantActing,
        request: NewEndpoint,
        origin: &Origin,
    ) -> Result<(EndpointRecord, Zeroizing<String>), WebhookError> {
        let event_types = self.checked_types(&request.event_types)?;
        let description = crate::identity::domain::description(request.description.as_deref())?;
        let url = self.checked_url(&request.url).await?;
        if self.store.endpoints(actor.scope).await?.len() >= MAX_ENDPOINTS {
            return Err(WebhookError::TooManyEndpoints);
        }
        let now = self.clock.now();
        let tenant = actor.tenant();
        let record = EndpointRecord {
            id: EndpointId::generate(),
            tenant,
            url,
            description,
            event_types,
            enabled: request.enabled,
            disabled_reason: (!request.enabled).then(|| "manual".to_owned()),
            failing_since_us: None,
            created_by: actor.acting.id(),
            created_at: now,
            updated_at: now,
        };
        let key = SigningKey::generate();
        let event = origin
            .event("webhooks.endpoint_created", "success", now)
            .in_tenant(tenant)
            .by(actor.acting.clone())
            .on("webhook_endpoint", record.id)
            .changed("url", None::<&str>, &record.url)
            .changed("event_types", None::<&str>, &record.event_types);
        self.store
            .create_endpoint(actor.scope, &record, self.new_secret(tenant, &key), &event)
            .await?;
        Ok((record, key.to_text()))
    }

    pub async fn endpoints(&self, scope: TenantScope) -> Result<Vec<EndpointRecord>, WebhookError> {
        Ok(self.store.endpoints(scope).await?)
    }

    pub async fn endpoint(
        &self,
        scope: TenantScope,
        id: EndpointId,
    ) -> Result<EndpointRecord, WebhookError> {
        self.store
            .endpoint(scope, id)
            .await?
            .ok_or(WebhookError::NotFound)
    }

    pub async fn update_endpoint(
        &self,
        actor: &TenantActing,
        id: EndpointId,
        change: EndpointChange,
        origin: &Origin,
    ) -> Result<EndpointRecord, WebhookError> {
        let before = self.endpoint(actor.scope, id).await?;
        let mut after = before.clone();
        if let Some(types) = &change.event_types {
            after.event_types = self.checked_types(types)?;
        }
        if let Some(description) = change.description.as_deref() {
            after.description = crate::identity::domain::description(Some(description))?;
        }
        if let Some(url) = &change.url {
            after.url = self.checked_url(url).await?;
        }
        if let Some(enabled) = change.enabled {
            after.enabled = enabled;
            after.disabled_reason = (!enabled).then(|| {
                before
                    .disabled_reason
                    .clone()
                    .unwrap_or_else(|| "manual".to_owned())
            });
            if enabled {
                // Re-enabled: its failures so far no longer count toward disabling it.
                after.failing_since_us = None;
            }
        }
        let now = self.clock.now();
        after.updated_at = now;
        let mut event = origin
            .event("webhooks.endpoint_updated", "success", now)
            .in_tenant(actor.tenant())
            .by(actor.acting.clone())
            .on("webhook_endpoint", id);
        if after.url != before.url {
            event = event.changed("url", &before.url, &after.url);
        }
        if after.event_types != before.event_types {
            event = event.changed("event_types", &before.event_types, &after.event_types);
        }
        if after.enabled != before.enabled {
            event = event.changed("enabled", before.enabled, after.enabled);
        }
        if after.description != before.description {
            event = event.changed("description", &before.description, &after.description);
        }
        if !self
            .store
            .update_endpoint(actor.scope, &after, &event)
            .await?
        {
            return Err(WebhookError::NotFound);
        }
        Ok(after)
    }

    pub async fn delete_endpoint(
        &self,
        actor: &TenantActing,
        id: EndpointId,
        origin: &Origin,
    ) -> Result<(), WebhookError> {
        let event = origin
            .event("webhooks.endpoint_deleted", "success", self.clock.now())
            .in_tenant(actor.tenant())
            .by(actor.acting.clone())
            .on("webhook_endpoint", id);
        match self.store.delete_endpoint(actor.scope, id, &event).await? {
            true => Ok(()),
            false => Err(WebhookError::NotFound),
        }
    }

    /// A new signing secret; the current ones keep signing beside it for `overlap`.
    pub async fn rotate_secret(
        &self,
        actor: &TenantActing,
        id: EndpointId,
        overlap: Option<Duration>,
        origin: &Origin,
    ) -> Result<Zeroizing<String>, WebhookError> {
        let overlap = overlap.unwrap_or(DEFAULT_OVERLAP);
        if overlap.is_negative() || overlap > MAX_OVERLAP {
            return Err(InvalidInput("overlap_seconds: 0 to 604800 (7 days)").into());
        }
        let now = self.clock.now();
        let tenant = actor.tenant();
        let key = SigningKey::generate();
        let event = origin
            .event("webhooks.secret_rotated", "success", now)
            .in_tenant(tenant)
            .by(actor.acting.clone())
            .on("webhook_endpoint", id)
            .changed("overlap_seconds", None::<i64>, overlap.whole_seconds());
        let secret = self.new_secret(tenant, &key);
        let old_until = crate::audit::store::micros(now + overlap);
        match self
            .store
            .rotate_secret(actor.scope, id, secret, old_until, &event)
            .await?
        {
            true => Ok(key.to_text()),
            false => Err(WebhookError::NotFound),
        }
    }

    /// The app's own message (claim HOOK-2's second half: the app's event types), to
    /// every endpoint of the tenant subscribed to its type. Answers its id, and whether
    /// it was an idempotent replay.
    pub async fn send_message(
        &self,
        actor: &TenantActing,
        event_type: &str,
        payload: &Value,
        key: Option<MessageKey<'_>>,
        origin: &Origin,
    ) -> Result<(MessageId, bool), WebhookError> {
        if !self.access.is_app_event(event_type) {
            return Err(if self.access.is_event_type(event_type) {
                WebhookError::NotAppEvent
            } else {
                WebhookError::UnknownEventType("event_type".to_owned())
            });
        }
        if !payload.is_object() {
            return Err(InvalidInput("payload: a JSON object").into());
        }
        let now = self.clock.now();
        let body = events::body(event_type, now, payload);
        if body.len() > MAX_PAYLOAD_BYTES {
            return Err(InvalidInput("payload: at most 64 KiB as JSON").into());
        }
        let message = NewMessage {
            id: MessageId::generate(),
            event_type: event_type.to_owned(),
            body,
            created_at_us: crate::audit::store::micros(now),
        };
        let event = origin
            .event("webhooks.message_sent", "success", now)
            .in_tenant(actor.tenant())
            .by(actor.acting.clone())
            .on("webhook_message", message.id)
            .changed("event_type", None::<&str>, event_type);
        let sent = self.store.send(actor.scope, &message, key, &event).await?;
        match sent {
            Sent::New => {
                self.wake.notify_one();
                Ok((message.id, false))
            }
            Sent::Replayed(first) => Ok((first, true)),
            Sent::KeyReused => Err(WebhookError::KeyReused),
        }
    }

    /// The event types the inbound sources' events are handed on as.
    pub fn inbound_event_types(&self) -> impl Iterator<Item = &str> {
        self.inbound.event_types()
    }

    /// An inbound webhook (claim HOOK-5): verified against its source's secret, then
    /// handed on to the source's tenant as an `inbound.<source>` message — once per event
    /// id; a replay answers the first message. `header` reads a request header.
    pub async fn receive<'h>(
        &self,
        source_name: &str,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
        origin: &Origin,
    ) -> Result<(MessageId, bool), WebhookError> {
        let source = self
            .inbound
            .get(source_name)
            .ok_or(WebhookError::UnknownSource)?;
        if body.len() > inbound::MAX_BODY_BYTES {
            return Err(WebhookError::InboundTooLarge);
        }
        let headers: Vec<Option<&str>> = source.headers().iter().map(|h| header(h)).collect();
        let now = self.clock.now();
        let verified = source.verify(&headers, body, now)?;
        let data = serde_json::json!({
            "source": source_name,
            "event_id": verified.event_id,
            "payload": verified.payload,
        });
        let message = NewMessage {
            id: MessageId::generate(),
            event_type: source.event_type.clone(),
            body: events::body(&source.event_type, now, &data),
            created_at_us: crate::audit::store::micros(now),
        };
        let event = origin
            .event("webhooks.inbound_received", "success", now)
            .in_tenant(source.tenant)
            .by(crate::audit::Acting::System)
            .on("webhook_message", message.id)
            .changed("source", None::<&str>, source_name)
            .changed("event_id", None::<&str>, &verified.event_id);
        let inbound = InboundEvent {
            tenant: source.tenant,
            source: source_name,
            event_id: &verified.event_id,
        };
        match self.store.receive(&inbound, &message, &event).await? {
            Received::New => {
                self.wake.notify_one();
                Ok((message.id, false))
            }
            Received::Duplicate(first) => Ok((first, true)),
            Received::NoTenant => {
                tracing::warn!(
                    source = source_name,
                    "webhooks.inbound names a tenant that does not exist; the event was refused"
                );
                Err(WebhookError::UnknownSource)
            }
        }
    }

    pub async fn attempts(
        &self,
        scope: TenantScope,
        endpoint: EndpointId,
        before_us: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>, WebhookError> {
        self.store
            .attempts(scope, endpoint, before_us, limit.clamp(1, 100))
            .await?
            .ok_or(WebhookError::NotFound)
    }

    /// Sends again one message, or every message that failed for good since a time: the
    /// manual replay and the recovery after a receiver's outage.
    pub async fn retry(
        &self,
        actor: &TenantActing,
        endpoint: EndpointId,
        which: Retry,
        origin: &Origin,
    ) -> Result<u64, WebhookError> {
        let now = self.clock.now();
        let (action, detail) = match which {
            Retry::Message(message) => ("webhooks.message_replayed", message.to_string()),
            Retry::FailedSince(since_us) => ("webhooks.failed_recovered", since_us.to_string()),
        };
        let event = origin
            .event(action, "success", now)
            .in_tenant(actor.tenant())
            .by(actor.acting.clone())
            .on("webhook_endpoint", endpoint)
            .changed("which", None::<&str>, detail);
        let requeued = self
            .store
            .retry(actor.scope, endpoint, which, self.now_us(), &event)
            .await?
            .ok_or(WebhookError::NotFound)?;
        self.wake.notify_one();
        Ok(requeued)
    }
}
