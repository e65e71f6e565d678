//! Palisade's own webhook events (claim HOOK-2), derived from the audit record of the
//! change: every change is audited in its own transaction, and the outbox row is written
//! beside the event in that same transaction (`audit::store::append`), so a change is
//! announced exactly when it commits. Payloads carry identifiers and status only — never
//! an email, a name or a secret; the app fetches details over an authenticated call.

use serde_json::{json, Map, Value};

use crate::audit::{Acting, Actor, AuditRecord};

/// The OpenID CAEP event type a payload names beside ours.
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";

/// The event type and data an audited change announces; None for one that announces
/// nothing (a read, a failure, an event of no tenant).
pub fn announced(record: &AuditRecord) -> Option<(&'static str, Value)> {
    if record.outcome != "success" {
        return None;
    }
    let tenant = record.tenant_id?;
    let target = record.target_id.as_str();
    let user_acting = match &record.actor {
        Acting::Principal(Actor::User(user), _) => Some(user.to_string()),
        _ => None,
    };
    let (event_type, mut data) = match record.action.as_ref() {
        "members.joined" => ("member.added", json!({ "user_id": target })),
        "members.removed" => ("member.removed", json!({ "user_id": target })),
        "members.role_changed" | "members.app_role_changed" | "members.custom_role_changed" => {
            let mut data = json!({ "user_id": target });
            // Role names, never anything of the person.
            for field in ["role", "app_role"] {
                if let Some(change) = record.changes.get(field) {
                    data[field] = change.clone();
                }
            }
            ("member.role_changed", data)
        }
        "api_keys.created" => ("api_key.created", json!({ "key_id": target })),
        "api_keys.rotated" => ("api_key.rotated", json!({ "key_id": target })),
        "api_keys.revoked" => ("api_key.revoked", json!({ "key_id": target })),
        action @ ("auth.logout"
        | "auth.session_revoked"
        | "auth.refresh_token_reused"
        | "auth.revoke_all") => {
            let reason = match action {
                "auth.logout" => "logout",
                "auth.session_revoked" => "revoked",
                "auth.refresh_token_reused" => "refresh_token_reused",
                _ => "all_sessions_revoked",
            };
            let (user, session) = match record.target_type.as_ref() {
                "session" => (user_acting.clone(), Some(target.to_owned())),
                _ => (Some(target.to_owned()), None),
            };
            (
                "session.revoked",
                json!({
                    "caep_event_type": format!("{CAEP}session-revoked"),
                    "user_id": user,
                    // null: every session of the user.
                    "session_id": session,
                    "reason": reason,
                }),
            )
        }
        action @ ("account.password_changed"
        | "account.password_reset"
        | "mfa.totp_enabled"
        | "mfa.totp_disabled") => {
            let (credential_type, change_type) = match action {
                "mfa.totp_enabled" => ("totp", "create"),
                "mfa.totp_disabled" => ("totp", "delete"),
                _ => ("password", "update"),
            };
            (
                "credential.changed",
                json!({
                    "caep_event_type": format!("{CAEP}credential-change"),
                    "user_id": target,
                    "credential_type": credential_type,
                    "change_type": change_type,
                }),
            )
        }
        "auth.reauthentication" => (
            "assurance_level.changed",
            json!({
                "caep_event_type": format!("{CAEP}assurance-level-change"),
                "user_id": target,
                "current_level": "aal2",
                "change_direction": "increase",
            }),
        ),
        "webhooks.endpoint_disabled" => (
            "webhook_endpoint.disabled",
            json!({ "endpoint_id": target, "reason": "failing" }),
        ),
        _ => return None,
    };
    if let Value::Object(map) = &mut data {
        map.insert("tenant_id".into(), Value::String(tenant.to_string()));
    }
    Some((event_type, data))
}

/// The body every endpoint receives: the Standard Webhooks payload shape.
pub fn body(event_type: &str, timestamp: time::OffsetDateTime, data: &Value) -> String {
    let mut body = Map::new();
    body.insert("type".into(), Value::String(event_type.to_owned()));
    body.insert(
        "timestamp".into(),
        Value::String(
            timestamp
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        ),
    );
    body.insert("data".into(), data.clone());
    Value::Object(body).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{TenantId, UserId};

    fn record(action: &'static str) -> AuditRecord {
        AuditRecord::new(
            action,
            "success",
            time::OffsetDateTime::now_utc(),
            "req".into(),
            None,
            None,
        )
        .in_tenant(TenantId::generate())
    }

    // claim: HOOK-2
    #[test]
    fn announcements_carry_identifiers_and_status_only() {
        let user = UserId::generate();
        let removed =
            record("members.removed")
                .on("user", user)
                .changed("role", "admin", Value::Null);
        let (kind, data) = announced(&removed).unwrap();
        assert_eq!(kind, "member.removed");
        assert_eq!(data["user_id"], user.to_string());
        let invited = record("members.invited").on("invitation", "inv_1").changed(
            "email",
            Value::Null,
            "someone@example.com",
        );
        assert!(announced(&invited).is_none());
        let failed = AuditRecord {
            outcome: "failure",
            ..record("api_keys.revoked")
        };
        assert!(announced(&failed).is_none());
        let (kind, data) = announced(&record("auth.revoke_all").on("user", user)).unwrap();
        assert_eq!(kind, "session.revoked");
        assert_eq!(data["session_id"], Value::Null);
        assert!(data["caep_event_type"]
            .as_str()
            .unwrap()
            .ends_with("session-revoked"));
    }
}
