//! The event types a webhook endpoint may subscribe to (claim HOOK-2): Palisade's own,
//! below, and the app's, declared in its manifest (`[[events]]`). One catalogue, so an
//! endpoint, a message and the docs name the same types.

/// One of Palisade's own event types: what it says happened.
#[derive(Clone, Copy, Debug)]
pub struct OwnEvent {
    pub name: &'static str,
    pub description: &'static str,
}

/// Palisade's event types. The session and credential ones follow the OpenID CAEP event
/// types (`session-revoked`, `credential-change`, `assurance-level-change`): what an app
/// needs to stop trusting a token it verifies locally.
pub const OWN_EVENTS: &[OwnEvent] = &[
    OwnEvent {
        name: "member.added",
        description: "A user joined the tenant.",
    },
    OwnEvent {
        name: "member.removed",
        description: "A member was removed from the tenant.",
    },
    OwnEvent {
        name: "member.role_changed",
        description: "A member's built-in, custom or app role changed.",
    },
    OwnEvent {
        name: "api_key.created",
        description: "An API key was created.",
    },
    OwnEvent {
        name: "api_key.rotated",
        description: "An API key was rotated (the old secret works until its overlap ends).",
    },
    OwnEvent {
        name: "api_key.revoked",
        description: "An API key was revoked.",
    },
    OwnEvent {
        name: "session.revoked",
        description: "A session ended before its time: logged out, revoked, or all of a user's sessions revoked (CAEP session-revoked).",
    },
    OwnEvent {
        name: "credential.changed",
        description: "A user's password or second factor changed (CAEP credential-change).",
    },
    OwnEvent {
        name: "assurance_level.changed",
        description: "A session proved a second factor again: its assurance level rose (CAEP assurance-level-change).",
    },
    OwnEvent {
        name: "webhook_endpoint.disabled",
        description: "A webhook endpoint failed for too long and was disabled.",
    },
];

/// An event type the app declares in its manifest: `<resource type>.<what happened>`.
#[derive(Clone, Debug)]
pub struct AppEvent {
    pub name: std::sync::Arc<str>,
    pub description: std::sync::Arc<str>,
}

pub fn own_event(name: &str) -> Option<&'static OwnEvent> {
    OWN_EVENTS.iter().find(|event| event.name == name)
}
