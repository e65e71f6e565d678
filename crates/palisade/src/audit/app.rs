//! The app's own events in the tenant's chain (claim APP-4): what the app's backend sends
//! (`POST /api/v1/audit/events`, or a batch), checked against the manifest and the bounds
//! below, and the record it becomes. An app's event is chained, exported, verified and
//! pruned exactly like Palisade's; what only it carries — the service that wrote it, every
//! target, the metadata — is its `app` part, hashed after the common fields.
//!
//! Who acted is proven, never claimed: the end user's access token or the customer's API
//! key is verified by the route and named here as an [`Acting`]; `system` work is the
//! app's service itself, under a tenant token.

use std::borrow::Cow;
use std::net::IpAddr;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use super::chain::{hex_hash, Hash};
use super::{Acting, AuditRecord};
use crate::access::ActionTable;
use crate::ids::{EventId, ServiceId, TenantId};

/// Events one batch takes at most.
pub const MAX_BATCH: usize = 100;
const MAX_TARGETS: usize = 10;
/// `changes` (before and after together) and `metadata`, as JSON text.
const MAX_CHANGES_BYTES: usize = 16 * 1024;
const MAX_METADATA_BYTES: usize = 4 * 1024;
const MAX_METADATA_KEYS: usize = 32;
/// An event may be sent this late (a queue that was down), and no earlier than now by more
/// than the clock skew.
const OLDEST: Duration = Duration::hours(24);
const SKEW: Duration = Duration::minutes(5);
/// How long an `Idempotency-Key` answers the same.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::hours(24);

/// One event as the app sends it (shaped like the WorkOS Audit Logs API).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppEventRequest {
    /// An action the manifest declares (`GET /api/v1/roles` lists them).
    #[schema(example = "workorder.update", max_length = 128)]
    action: String,
    /// When it happened (RFC 3339), at most 24 hours ago and not in the future; omitted:
    /// now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    occurred_at: Option<OffsetDateTime>,
    /// Who acted, proven by their credential: `{"access_token": "…"}` (the end user's
    /// Palisade access token), `{"api_key": "pal_live_…"}` (the customer's key), or
    /// `"system"` (the app itself; only under a tenant token).
    #[schema(value_type = Object, example = json!({"access_token": "eyJ…"}))]
    actor: ActorClaim,
    /// What was acted on, 1 to 10; the first is the event's target.
    #[schema(min_items = 1, max_items = 10)]
    targets: Vec<Target>,
    /// The state before and after, as JSON objects; stored as the fields that differ.
    #[serde(default)]
    changes: Option<Changes>,
    /// The end user's request, as the app saw it.
    #[serde(default)]
    context: Option<Context>,
    /// Up to 32 keys, 4 KiB as JSON.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    /// `success` (default) or `failure`.
    #[serde(default)]
    outcome: Option<Outcome>,
}

/// Who acted, as the app proves it.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorClaim {
    AccessToken(SecretString),
    ApiKey(SecretString),
    System,
}

impl ActorClaim {
    /// Whether two claims name the same credential (compared in constant time).
    pub fn same_as(&self, other: &ActorClaim) -> bool {
        use secrecy::ExposeSecret;
        let same = |a: &SecretString, b: &SecretString| {
            crate::crypto::constant_time_eq(
                a.expose_secret().as_bytes(),
                b.expose_secret().as_bytes(),
            )
        };
        match (self, other) {
            (ActorClaim::AccessToken(a), ActorClaim::AccessToken(b)) => same(a, b),
            (ActorClaim::ApiKey(a), ActorClaim::ApiKey(b)) => same(a, b),
            (ActorClaim::System, ActorClaim::System) => true,
            _ => false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// 1–64 of `a-z`, `0-9`, `_`, `.`, `-`, starting with a letter.
    #[serde(rename = "type")]
    #[schema(example = "workorder", pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    kind: String,
    /// 1–256 printable characters.
    #[schema(example = "wo_123", min_length = 1, max_length = 256)]
    id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    #[serde(default)]
    #[schema(value_type = Object)]
    before: Map<String, Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    after: Map<String, Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The end user's address.
    #[schema(value_type = Option<String>, example = "203.0.113.7")]
    ip: Option<IpAddr>,
    /// At most 512 characters.
    #[schema(max_length = 512)]
    user_agent: Option<String>,
    /// The app's id of the end user's request, 1–128 printable characters; recorded as
    /// the event's `request_id`.
    #[schema(max_length = 128)]
    request_id: Option<String>,
}

#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// What only an app's event carries, hashed as this JSON text.
#[derive(Serialize)]
struct AppPart<'a> {
    service: ServiceId,
    targets: &'a [Target],
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
}

/// Why an event cannot be recorded: the message names the field, never a value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(message: impl Into<String>) -> Refused {
    Refused(message.into())
}

impl AppEventRequest {
    /// The actor claim, for the route to prove.
    pub fn actor(&self) -> &ActorClaim {
        &self.actor
    }

    /// The record of this event, in `tenant`, by `actor` (already proven), written by
    /// `service`; `request_id` is Palisade's, used when the app forwards none.
    pub fn record(
        &self,
        table: &ActionTable,
        service: ServiceId,
        tenant: TenantId,
        actor: Acting,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Result<AuditRecord, Refused> {
        let row = table
            .find(&self.action)
            .filter(|row| row.is_app())
            .ok_or_else(|| refused("action is not one the manifest declares"))?;
        let occurred_at = self.occurred_at.unwrap_or(now);
        if occurred_at > now + SKEW {
            return Err(refused("occurred_at is in the future"));
        }
        if occurred_at < now - OLDEST {
            return Err(refused("occurred_at is more than 24 hours ago"));
        }
        let first = self.checked_targets()?;
        let changes = match &self.changes {
            None => Map::new(),
            Some(changes) => changes.differing()?,
        };
        if let Some(metadata) = &self.metadata {
            if metadata.len() > MAX_METADATA_KEYS || json_len(metadata) > MAX_METADATA_BYTES {
                return Err(refused("metadata is over 32 keys or 4 KiB"));
            }
        }
        let (ip, user_agent, app_request_id) = match &self.context {
            None => (None, None, None),
            Some(context) => context.checked()?,
        };
        let app = serde_json::to_string(&AppPart {
            service,
            targets: &self.targets,
            metadata: self.metadata.as_ref(),
        })
        .map_err(|_| refused("the event cannot be encoded"))?;
        Ok(AuditRecord {
            tenant_id: Some(tenant),
            actor,
            action: Cow::Owned(row.name.to_string()),
            target_type: Cow::Owned(first.kind.clone()),
            target_id: first.id.clone(),
            outcome: match self.outcome.unwrap_or(Outcome::Success) {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            },
            ip,
            user_agent,
            request_id: app_request_id.unwrap_or_else(|| request_id.to_owned()),
            occurred_at,
            changes,
            app: Some(app),
        })
    }

    fn checked_targets(&self) -> Result<&Target, Refused> {
        if self.targets.is_empty() || self.targets.len() > MAX_TARGETS {
            return Err(refused("targets must hold 1 to 10 targets"));
        }
        for target in &self.targets {
            let kind = target.kind.as_bytes();
            let kind_ok = kind.len() <= 64
                && kind.first().is_some_and(u8::is_ascii_lowercase)
                && kind.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
                });
            if !kind_ok {
                return Err(refused(
                    "a target's type must be 1-64 of a-z, 0-9, _ . - starting with a letter",
                ));
            }
            if !printable(&target.id, 256) {
                return Err(refused("a target's id must be 1-256 printable characters"));
            }
        }
        Ok(&self.targets[0])
    }
}

impl Changes {
    /// The fields whose values differ, as Palisade's own events record them:
    /// `{"field": {"before": …, "after": …}}` (a field only on one side has `null` on the
    /// other).
    fn differing(&self) -> Result<Map<String, Value>, Refused> {
        if json_len(&self.before) + json_len(&self.after) > MAX_CHANGES_BYTES {
            return Err(refused("changes is over 16 KiB"));
        }
        let mut differing = Map::new();
        let fields = self
            .before
            .keys()
            .chain(self.after.keys().filter(|k| !self.before.contains_key(*k)));
        for field in fields {
            let before = self.before.get(field).cloned().unwrap_or(Value::Null);
            let after = self.after.get(field).cloned().unwrap_or(Value::Null);
            if before != after {
                differing.insert(
                    field.clone(),
                    serde_json::json!({"before": before, "after": after}),
                );
            }
        }
        Ok(differing)
    }
}

/// The origin an app forwards: address, user agent, its own request id.
type Forwarded = (Option<IpAddr>, Option<String>, Option<String>);

impl Context {
    /// The end user's address, user agent and the app's request id, once in bounds.
    fn checked(&self) -> Result<Forwarded, Refused> {
        if let Some(agent) = &self.user_agent {
            if agent.chars().count() > 512 || agent.chars().any(char::is_control) {
                return Err(refused(
                    "context.user_agent must be at most 512 printable characters",
                ));
            }
        }
        if let Some(id) = &self.request_id {
            if !printable(id, 128) {
                return Err(refused(
                    "context.request_id must be 1-128 printable characters",
                ));
            }
        }
        Ok((self.ip, self.user_agent.clone(), self.request_id.clone()))
    }
}

fn printable(text: &str, max_chars: usize) -> bool {
    !text.is_empty() && text.chars().count() <= max_chars && !text.chars().any(char::is_control)
}

fn json_len(map: &Map<String, Value>) -> usize {
    serde_json::to_string(map).map_or(usize::MAX, |text| text.len())
}

/// Where an event landed: what the answer names and an idempotent retry gets again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Appended {
    #[schema(value_type = String)]
    pub id: EventId,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    pub seq: i64,
    /// The event's chain hash, lower-case hex.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String)]
    pub hash: Hash,
}

/// An `Idempotency-Key` as the store checks it: whose, the key, and the body's digest.
pub struct IdempotencyKey {
    pub service: ServiceId,
    pub key: String,
    pub body_sha256: [u8; 32],
}

impl IdempotencyKey {
    /// 1–255 visible ASCII characters, as the IETF draft and Stripe take.
    pub fn parse(service: ServiceId, text: &str, body_sha256: [u8; 32]) -> Result<Self, Refused> {
        Ok(Self {
            service,
            key: Self::checked(text)?.to_owned(),
            body_sha256,
        })
    }

    /// The key's text, if it is one: every idempotent route takes the same.
    pub fn checked(text: &str) -> Result<&str, Refused> {
        let ok =
            !text.is_empty() && text.len() <= 255 && text.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(refused(
                "Idempotency-Key must be 1-255 visible ASCII characters",
            ));
        }
        Ok(text)
    }
}

/// What the store did with a write.
#[derive(Debug)]
pub enum Recorded {
    Appended(Vec<Appended>),
    /// The same key and body within the window: the first write's answer, nothing written.
    Replayed(Vec<Appended>),
    /// The same key with another body within the window: nothing written.
    KeyReused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_only_the_fields_that_differ() {
        let changes: Changes = serde_json::from_value(serde_json::json!({
            "before": {"status": "open", "title": "Leak", "gone": 1},
            "after": {"status": "closed", "title": "Leak", "new": true},
        }))
        .unwrap();
        let differing = changes.differing().unwrap();
        assert_eq!(
            Value::Object(differing),
            serde_json::json!({
                "status": {"before": "open", "after": "closed"},
                "gone": {"before": 1, "after": null},
                "new": {"before": null, "after": true},
            })
        );
    }

    #[test]
    fn the_actor_is_a_credential_or_system_and_nothing_else() {
        let parse = |v: Value| serde_json::from_value::<ActorClaim>(v).is_ok();
        assert!(parse(serde_json::json!("system")));
        assert!(parse(serde_json::json!({"access_token": "x"})));
        assert!(parse(serde_json::json!({"api_key": "x"})));
        assert!(!parse(serde_json::json!({"user_id": "usr_1"})));
        assert!(!parse(serde_json::json!("usr_1")));
    }
}
