//! Claim OPS-5's exports over HTTP: a tenant's whole record for its Owner, a person's own
//! account for that person. Each section is the very view its own endpoint lists, so the
//! export shows exactly what the API shows: every hash, token, key text, TOTP secret and
//! secret value is absent because no view carries one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::actions::act;
use crate::access::Role;
use crate::app::AppState;
use crate::audit::routes::Listed;
use crate::audit::store::Chain;
use crate::http::auth::{AnySession, PermittedPerson};
use crate::http::error::ApiError;
use crate::http::extract::{Json, RequestContext};
use crate::http::openapi::ErrorBody;
use crate::identity::routes::origin;
use crate::identity::store::SessionRecord;
use crate::ids::{SessionId, TenantId, UserId};
use crate::keys::routes::KeyView;
use crate::tenancy::routes::applications::ApplicationView;
use crate::tenancy::routes::custom_roles::CustomRoleView;
use crate::tenancy::routes::invitations::InvitationView;
use crate::tenancy::routes::members::MemberView;
use crate::vault::routes::SecretView;
use crate::webhooks::routes::EndpointView;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_tenant))
        .routes(routes!(export_account))
        .routes(routes!(erase_account))
        .routes(routes!(delete_tenant))
}

/// The format name each document opens with, so a reader knows what it holds.
const TENANT_FORMAT: &str = "palisade-tenant-export/1";
const ACCOUNT_FORMAT: &str = "palisade-account-export/1";

/// Chunks of audit events buffered between the chain's walk and the client.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Serialize, ToSchema)]
pub struct ExportedTenant {
    id: TenantId,
    name: String,
}

/// A live session acting in the tenant: who, since when, from where; never a token.
#[derive(Serialize, ToSchema)]
pub struct ExportedSession {
    id: SessionId,
    user_id: UserId,
    tenant_id: TenantId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    last_refreshed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
    ip: Option<String>,
    user_agent: Option<String>,
    mfa: bool,
}

impl From<SessionRecord> for ExportedSession {
    fn from(session: SessionRecord) -> Self {
        Self {
            id: session.id,
            user_id: session.user_id,
            tenant_id: session.tenant_id,
            created_at: session.created_at,
            last_refreshed_at: session.last_refreshed_at,
            expires_at: session.absolute_expires_at,
            ip: session.ip,
            user_agent: session.user_agent,
            mfa: session.mfa,
        }
    }
}

/// Everything a tenant holds, as `GET /api/v1/tenant/export` streams it: the sections
/// first, `audit_events` (its whole chain, oldest first) last.
#[derive(Serialize, ToSchema)]
pub struct TenantExport {
    /// `palisade-tenant-export/1`.
    format: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    exported_at: OffsetDateTime,
    tenant: ExportedTenant,
    members: Vec<MemberView>,
    invitations: Vec<InvitationView>,
    custom_roles: Vec<CustomRoleView>,
    applications: Vec<ApplicationView>,
    api_keys: Vec<KeyView>,
    sessions: Vec<ExportedSession>,
    secrets: Vec<SecretView>,
    webhook_endpoints: Vec<EndpointView>,
    /// The tenant's audit chain, every event as `GET /api/v1/audit/events` lists it. The
    /// verifiable form is `GET /api/v1/audit/export`.
    #[schema(value_type = Vec<Object>)]
    audit_events: AuditEventsFollow,
}

/// Stands for the events in the document's schema; the handler streams them in its place.
#[derive(Serialize)]
struct AuditEventsFollow;

/// Export everything the tenant holds as one JSON document, streamed: the tenant, its
/// members, pending invitations, custom roles, applications, API keys' metadata, live
/// sessions' metadata, secrets' metadata (masked), webhook endpoints and the whole audit
/// chain. No password hash, token or token hash, key text or key hash, TOTP secret,
/// signing secret or secret value is in it. The export is audited (`tenant.exported`)
/// before it starts. A body that ends before its closing `]}` was cut short.
///
/// Action: `tenant.export` (Owner; people only).
#[utoipa::path(
    get,
    path = "/api/v1/tenant/export",
    tag = "privacy",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's export", body = TenantExport),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
    )
)]
async fn export_tenant(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::TenantExport>,
    context: RequestContext,
) -> Result<Response, ApiError> {
    let caller = &permitted.caller;
    let scope = caller.scope();
    let now = state.clock.now();
    let event = origin(context)
        .event("tenant.exported", "success", now)
        .in_tenant(caller.tenant())
        .by(caller)
        .on("tenant", caller.tenant());
    state.audit.record(event).await?;
    let head = TenantExport {
        format: TENANT_FORMAT,
        exported_at: now,
        tenant: ExportedTenant {
            id: caller.tenant(),
            name: caller.tenant_name().to_owned(),
        },
        members: views(state.tenancy.members(caller).await?),
        invitations: views(state.tenancy.pending_invitations(&permitted.person).await?),
        custom_roles: views(state.tenancy.custom_roles(caller).await?),
        applications: views(state.tenancy.applications(caller).await?),
        api_keys: (state.keys.list(caller).await?)
            .into_iter()
            .map(|key| KeyView::new(key, now))
            .collect(),
        sessions: views(state.identity.tenant_sessions(scope).await?),
        secrets: (state.secrets.list(scope).await?)
            .into_iter()
            .map(|secret| SecretView::new(secret, None))
            .collect(),
        webhook_endpoints: views(state.webhooks.endpoints(scope).await?),
        audit_events: AuditEventsFollow,
    };
    let opening = opening_of(&head);
    let (chunks, body) = mpsc::channel(4);
    let (events, mut arriving) = mpsc::channel(256);
    let audit = state.audit.clone();
    let chain = Chain::of(scope);
    tokio::spawn(async move {
        let walking = audit.events(chain, events);
        let writing = async {
            let mut buf = opening;
            let mut first = true;
            while let Some(event) = arriving.recv().await {
                if !first {
                    buf.push(b',');
                }
                first = false;
                // A ChainedEvent's view always serializes: its fields are text and numbers.
                let _ = serde_json::to_writer(&mut buf, &Listed(event));
                if buf.len() >= CHUNK_BYTES
                    && chunks
                        .send(Bytes::from(std::mem::take(&mut buf)))
                        .await
                        .is_err()
                {
                    return None;
                }
            }
            Some(buf)
        };
        match tokio::join!(walking, writing) {
            (Ok(()), Some(mut rest)) => {
                rest.extend_from_slice(b"]}");
                let _ = chunks.send(Bytes::from(rest)).await;
            }
            // Without its closing `]}` the client sees the document was cut short.
            (Err(error), _) => tracing::warn!(%error, "tenant export ended early"),
            (Ok(()), None) => {}
        }
    });
    Ok(crate::http::streamed(body, "application/json"))
}

/// The document up to the opening bracket of its last member, `audit_events`.
fn opening_of(head: &TenantExport) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(head).unwrap_or_default();
    // `"audit_events":null}` is the stand-in's rendering: cut it back to the member's name.
    let stand_in = b"null}";
    bytes.truncate(bytes.len().saturating_sub(stand_in.len()));
    bytes.push(b'[');
    bytes
}

fn views<R, V: From<R>>(records: Vec<R>) -> Vec<V> {
    records.into_iter().map(V::from).collect()
}

#[derive(Serialize, ToSchema)]
pub struct ExportedUser {
    id: UserId,
    email: String,
    email_verified: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ExportedMembership {
    tenant_id: TenantId,
    tenant_name: String,
    role: Role,
}

/// What Palisade holds about the person signed in, as `GET /api/v1/me/export` returns it.
#[derive(Serialize, ToSchema)]
pub struct AccountExport {
    /// `palisade-account-export/1`.
    format: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    exported_at: OffsetDateTime,
    user: ExportedUser,
    memberships: Vec<ExportedMembership>,
    sessions: Vec<ExportedSession>,
    /// Whether a TOTP authenticator is enrolled (its secret is never exported).
    totp_enrolled: bool,
}

/// Export what Palisade holds about the caller as a person: the account, every membership,
/// the live sessions with their addresses and user agents, and whether a second factor is
/// enrolled. No password hash, token or TOTP secret is in it. What the person did inside a
/// tenant is that tenant's record, in the tenant's export. Audited (`account.exported`).
#[utoipa::path(
    get,
    path = "/api/v1/me/export",
    tag = "privacy",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's own data", body = AccountExport),
        (status = 401, description = "Not signed in", body = ErrorBody),
    )
)]
async fn export_account(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
) -> Result<axum::Json<AccountExport>, ApiError> {
    let now = state.clock.now();
    let event = origin(context)
        .event("account.exported", "success", now)
        .in_tenant(principal.tenant())
        .by(&principal)
        .on("user", principal.user());
    state.audit.record(event).await?;
    let memberships = state.identity.tenants_of(&principal).await?;
    let sessions = state.identity.sessions(&principal).await?;
    let totp_enrolled = state.identity.totp_enrolled(&principal).await?;
    Ok(axum::Json(AccountExport {
        format: ACCOUNT_FORMAT,
        exported_at: now,
        user: ExportedUser {
            id: principal.user(),
            email: principal.email().to_owned(),
            email_verified: principal.email_verified(),
        },
        memberships: memberships
            .into_iter()
            .map(|m| ExportedMembership {
                tenant_id: m.tenant_id,
                tenant_name: m.tenant_name,
                role: m.role,
            })
            .collect(),
        sessions: views(sessions),
        totp_enrolled,
    }))
}

/// The current password, asked again before anything is erased: a stolen access token
/// alone erases nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    #[schema(value_type = String, min_length = 1, max_length = 128, format = Password)]
    password: SecretString,
}

/// Erase the caller's account, at once and for good: every session and token ends, every
/// membership goes (with the member's relations and invitations), the second factor and
/// recovery codes are deleted, and the account keeps only its id (its email becomes
/// `usr_…@erased.invalid`, its password unknowable). The person's IP address, user agent
/// and email leave every audit event of their tenants and the platform stream that held
/// them; each such event carries a signed redaction, so every chain still verifies. Each
/// tenant's log records `members.erased`, the platform stream `account.erased`. A tenant
/// whose only member the caller is (the one sign-up made) is deleted with the account, as
/// `POST /api/v1/tenant/delete` deletes one; the Owner of a tenant others belong to must
/// first transfer ownership or delete it (409).
#[utoipa::path(
    post,
    path = "/api/v1/me/erase",
    tag = "privacy",
    request_body = ErasureRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "Not signed in, or the password is wrong", body = ErrorBody),
        (status = 409, description = "The caller owns a tenant", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    )
)]
async fn erase_account(
    State(state): State<AppState>,
    AnySession(principal): AnySession,
    context: RequestContext,
    Json(body): Json<ErasureRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .erase_account(
            &principal,
            body.password,
            &origin(context),
            &state.audit.signer(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete the tenant and everything it holds, at once and for good: members, invitations,
/// roles, applications, API keys, relations, secrets, webhooks and tenant tokens. Its data
/// keys are deleted with it, so nothing the vault sealed under them can be opened again,
/// backups included. Every session acting in it ends. Its audit chain is closed by a signed
/// anchor at its last event (`tenant.deleted`) and its events are deleted; the platform
/// stream records the deletion with that anchor. The tenant's id stays, nameless and
/// suspended, and is never reused.
///
/// Action: `tenant.delete` (Owner; people only), with the password asked again.
#[utoipa::path(
    post,
    path = "/api/v1/tenant/delete",
    tag = "privacy",
    request_body = ErasureRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in, or the password is wrong", body = ErrorBody),
        (status = 403, description = "The role does not allow this action", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    )
)]
async fn delete_tenant(
    State(state): State<AppState>,
    permitted: PermittedPerson<act::TenantDelete>,
    context: RequestContext,
    Json(body): Json<ErasureRequest>,
) -> Result<StatusCode, ApiError> {
    let origin = origin(context);
    let person = &permitted.person;
    state
        .identity
        .confirm_password(person, body.password, &origin)
        .await?;
    state
        .tenancy
        .delete_tenant(person, &origin, &state.audit.signer())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
