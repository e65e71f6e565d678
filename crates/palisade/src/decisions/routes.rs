//! The AuthZEN 1.0 endpoints (claims APP-3, RBAC-5): `POST /access/v1/evaluation`,
//! `POST /access/v1/evaluations` and `POST /access/v1/search/resource`, called with the
//! app's service credential.
//!
//! The subject carries its proof in `properties`: `{"type":"user","id":"usr_…",
//! "properties":{"access_token":"…"}}` or `{"type":"api_key","id":"key_…",
//! "properties":{"api_key":"pal_live_…"}}`. Palisade's own actions apply to the tenant:
//! `{"type":"tenant","id":"ten_…"}`; the app's to its own resources,
//! `{"type":"workorder","id":"wo_123","properties":{"tenant_id":"ten_…"}}`. A deny names its
//! reason in `context.reason`.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Decider, Denial, Proof, Target};
use crate::access::{ActionRow, ActionTable, Caller};
use crate::app::AppState;
use crate::http::auth::Service;
use crate::http::error::ApiError;
use crate::http::extract::Json;
use crate::http::openapi::ErrorBody;
use crate::relations::{check_resource_id, Revision};

/// The most evaluations one batch may hold.
pub const MAX_EVALUATIONS: usize = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(evaluation))
        .routes(routes!(evaluations))
        .routes(routes!(search_resource))
        .routes(routes!(discovery))
}

/// The most results one page of a search holds, and how many when the request says none.
const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

/// Who asks: a user or a customer's API key, with the credential that proves it.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// `user` or `api_key`.
    #[schema(example = "user")]
    r#type: String,
    /// `usr_…` or `key_…`: must be the credential's own subject.
    #[schema(example = "usr_0192f5c4e1a87c3b9d2e4f6a8b0c1d2e")]
    id: String,
    properties: SubjectProperties,
}

/// The subject's proof: exactly one credential, matching `type`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectProperties {
    /// The user's access token (for `type = "user"`).
    #[serde(default)]
    access_token: Option<String>,
    /// The customer's API key (for `type = "api_key"`).
    #[serde(default)]
    api_key: Option<String>,
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRef {
    /// An action of `GET /api/v1/roles`.
    #[schema(example = "members.read")]
    name: String,
    /// Accepted as AuthZEN allows; decides nothing yet.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    #[allow(dead_code)]
    properties: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// `tenant` for Palisade's own actions; the action's resource type of the manifest
    /// for the app's (`workorder`).
    #[schema(example = "tenant")]
    r#type: String,
    /// The tenant's id (`ten_…`), or the app's own id of the resource (1 to 128
    /// characters).
    id: String,
    /// For an app resource: `tenant_id`, the tenant it belongs to (required).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One question: may `subject` do `action` on `resource`?
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationRequest {
    subject: Subject,
    action: ActionRef,
    resource: Resource,
    /// The app's context of the request. `at_least_as_fresh`: a revision token a
    /// relation write answered (`rev_…`); the decision sees at least that write.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct EvaluationResponse {
    decision: bool,
    /// On a deny: `{"reason": …}` (`invalid_credential`, `subject_mismatch`,
    /// `tenant_suspended`, `mfa_required`, `not_a_member`, `role`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    context: Option<DenyContext>,
}

#[derive(Serialize)]
pub struct DenyContext {
    reason: &'static str,
}

impl From<Result<(), Denial>> for EvaluationResponse {
    fn from(verdict: Result<(), Denial>) -> Self {
        match verdict {
            Ok(()) => Self {
                decision: true,
                context: None,
            },
            Err(denial) => Self {
                decision: false,
                context: Some(DenyContext {
                    reason: denial.reason(),
                }),
            },
        }
    }
}

/// One evaluation of a batch: each field it names replaces the request's default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationItem {
    #[serde(default)]
    subject: Option<Subject>,
    #[serde(default)]
    action: Option<ActionRef>,
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationsSemantic {
    /// Every evaluation, every answer (the default).
    #[default]
    ExecuteAll,
    /// Stop after the first deny; the answers end there.
    DenyOnFirstDeny,
    /// Stop after the first permit; the answers end there.
    PermitOnFirstPermit,
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationsOptions {
    #[serde(default)]
    evaluations_semantic: EvaluationsSemantic,
}

/// Many questions at once: the top-level `subject`, `action`, `resource` and `context` are
/// defaults for every entry of `evaluations` (1 to 50).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationsRequest {
    #[serde(default)]
    subject: Option<Subject>,
    #[serde(default)]
    action: Option<ActionRef>,
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(min_items = 1, max_items = 50)]
    evaluations: Vec<EvaluationItem>,
    #[serde(default)]
    options: EvaluationsOptions,
}

#[derive(Serialize, ToSchema)]
pub struct EvaluationsResponse {
    evaluations: Vec<EvaluationResponse>,
}

/// What a subject must carry, checked before any credential is verified.
fn proof(subject: &Subject) -> Result<Proof<'_>, ApiError> {
    let props = &subject.properties;
    match (subject.r#type.as_str(), &props.access_token, &props.api_key) {
        ("user", Some(access_token), None) => Ok(Proof::User {
            id: &subject.id,
            access_token,
        }),
        ("api_key", None, Some(api_key)) => Ok(Proof::ApiKey {
            id: &subject.id,
            api_key,
        }),
        ("user" | "api_key", _, _) => Err(ApiError::invalid_field(
            "subject.properties: exactly one credential, `access_token` for a user or `api_key` for an API key",
        )),
        _ => Err(ApiError::invalid_field(
            "subject.type: `user` or `api_key`",
        )),
    }
}

/// The action and the tenant a question is about, checked before any credential is used.
/// Palisade's own actions apply to the tenant itself (`{"type":"tenant","id":"ten_…"}`);
/// the app's to a resource of the action's type, whose tenant the app names in
/// `properties.tenant_id`, so a resource of another tenant is never decided as the
/// subject's own.
fn question<'t, 'q>(
    table: &'t ActionTable,
    action: &ActionRef,
    resource: &'q Resource,
    context: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(&'t ActionRow, Target<'q>), ApiError> {
    let row = table.find(&action.name).ok_or_else(|| {
        ApiError::invalid_field("action.name: not an action of GET /api/v1/roles")
    })?;
    if resource.r#type != *row.resource_type {
        return Err(ApiError::invalid_field(format!(
            "resource.type: `{}` applies to `{}`",
            row.name, row.resource_type
        )));
    }
    let tenant = if row.is_app() {
        check_resource_id(&resource.id).map_err(ApiError::invalid_field)?;
        resource
            .properties
            .as_ref()
            .and_then(|p| p.get("tenant_id"))
            .and_then(|t| t.as_str())
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "resource.properties.tenant_id: the tenant (ten_…) the resource belongs to",
                )
            })?
    } else {
        resource
            .id
            .parse()
            .map_err(|_| ApiError::invalid_field("resource.id: a tenant id (ten_…)"))?
    };
    Ok((
        row,
        Target {
            tenant,
            id: &resource.id,
            fresh: freshness(context)?,
        },
    ))
}

/// `context.at_least_as_fresh`: a revision token a relation write answered (`rev_…`).
fn freshness(
    context: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<Revision>, ApiError> {
    match context.and_then(|c| c.get("at_least_as_fresh")) {
        None => Ok(None),
        Some(token) => token
            .as_str()
            .and_then(Revision::parse)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "context.at_least_as_fresh: a revision token (rev_…) a relation write answered",
                )
            }),
    }
}

fn decider(state: &AppState) -> Decider<'_> {
    Decider {
        identity: &state.identity,
        keys: &state.keys,
        relations: &state.relations,
    }
}

/// A live decision for one subject, action and resource (AuthZEN 1.0 §6).
#[utoipa::path(
    post,
    path = "/access/v1/evaluation",
    tag = "access",
    security(("service" = [])),
    request_body = EvaluationRequest,
    responses(
        (status = 200, description = "The decision; a deny names its reason", body = EvaluationResponse),
        (status = 401, description = "No valid service credential", body = ErrorBody),
        (status = 422, description = "An unknown action, resource type or subject type", body = ErrorBody),
    )
)]
async fn evaluation(
    State(state): State<AppState>,
    _service: Service,
    Json(body): Json<EvaluationRequest>,
) -> Result<axum::Json<EvaluationResponse>, ApiError> {
    let (action, target) = question(
        &state.access,
        &body.action,
        &body.resource,
        body.context.as_ref(),
    )?;
    let proof = proof(&body.subject)?;
    let decider = decider(&state);
    let verdict = match decider.subject(&proof).await? {
        Ok(caller) => decider.decide(&caller, action, &target).await?,
        Err(denial) => Err(denial),
    };
    Ok(axum::Json(verdict.into()))
}

/// Up to 50 decisions in one call (AuthZEN 1.0 §7), each subject verified once.
#[utoipa::path(
    post,
    path = "/access/v1/evaluations",
    tag = "access",
    security(("service" = [])),
    request_body = EvaluationsRequest,
    responses(
        (status = 200, description = "The decisions, in order (fewer when a semantic stops early)", body = EvaluationsResponse),
        (status = 401, description = "No valid service credential", body = ErrorBody),
        (status = 422, description = "An empty or oversized batch, an entry missing a subject, action or resource, or an unknown action, resource type or subject type", body = ErrorBody),
    )
)]
async fn evaluations(
    State(state): State<AppState>,
    _service: Service,
    Json(body): Json<EvaluationsRequest>,
) -> Result<axum::Json<EvaluationsResponse>, ApiError> {
    if body.evaluations.is_empty() || body.evaluations.len() > MAX_EVALUATIONS {
        return Err(ApiError::invalid_field("evaluations: 1 to 50 entries"));
    }
    // Every entry is checked before any is decided: a bad one refuses the whole batch.
    let mut questions = Vec::with_capacity(body.evaluations.len());
    for item in &body.evaluations {
        let missing = |field| {
            ApiError::invalid_field(format!(
                "evaluations: an entry without a {field}, and no default"
            ))
        };
        let subject = item
            .subject
            .as_ref()
            .or(body.subject.as_ref())
            .ok_or_else(|| missing("subject"))?;
        let action = item
            .action
            .as_ref()
            .or(body.action.as_ref())
            .ok_or_else(|| missing("action"))?;
        let resource = item
            .resource
            .as_ref()
            .or(body.resource.as_ref())
            .ok_or_else(|| missing("resource"))?;
        let context = item.context.as_ref().or(body.context.as_ref());
        let (action, target) = question(&state.access, action, resource, context)?;
        questions.push((proof(subject)?, action, target));
    }
    let decider = decider(&state);
    // Keyed by the claimed id and the credential: a mismatch is decided per pair.
    let mut subjects: HashMap<(&str, &str), Result<Caller, Denial>> = HashMap::new();
    let semantic = body.options.evaluations_semantic;
    let mut answers = Vec::with_capacity(questions.len());
    for (proof, action, target) in &questions {
        let pair = match proof {
            Proof::User { id, access_token } => (*id, *access_token),
            Proof::ApiKey { id, api_key } => (*id, *api_key),
        };
        let subject = match subjects.get(&pair) {
            Some(subject) => subject.clone(),
            None => {
                let subject = decider.subject(proof).await?;
                subjects.insert(pair, subject.clone());
                subject
            }
        };
        let verdict = match subject {
            Ok(caller) => decider.decide(&caller, action, target).await?,
            Err(denial) => Err(denial),
        };
        let allowed = verdict.is_ok();
        answers.push(EvaluationResponse::from(verdict));
        match semantic {
            EvaluationsSemantic::DenyOnFirstDeny if !allowed => break,
            EvaluationsSemantic::PermitOnFirstPermit if allowed => break,
            _ => {}
        }
    }
    Ok(axum::Json(EvaluationsResponse {
        evaluations: answers,
    }))
}

/// The type of resource a search asks about.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchResource {
    /// A resource type of the manifest.
    #[schema(example = "workorder")]
    r#type: String,
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PageRequest {
    /// The `next_token` of the previous page.
    #[serde(default)]
    token: Option<String>,
    /// 1 to 1000 (default 100).
    #[serde(default)]
    limit: Option<u32>,
}

/// Which resources of a type may the subject take an action on (AuthZEN 1.0 §8)?
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSearchRequest {
    subject: Subject,
    action: ActionRef,
    resource: SearchResource,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    page: PageRequest,
}

#[derive(Serialize, ToSchema)]
pub struct FoundResource {
    r#type: String,
    id: String,
}

#[derive(Serialize, ToSchema)]
pub struct PageResponse {
    /// Give it as `page.token` for the next page; empty when this page is the last.
    next_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResourceSearchResponse {
    /// In id order; never silently cut: `page.next_token` continues.
    results: Vec<FoundResource>,
    page: PageResponse,
    /// `{"reason": …}` when the subject may take the action on no resource at all;
    /// otherwise `{"unrestricted": bool}` — true when the role allows it on every resource
    /// of the type (the results then list only those related to the subject), false for an
    /// external member, who may act on exactly the results.
    #[schema(value_type = Object)]
    context: serde_json::Value,
}

/// The subject's resources of a type it may act on, by cursor (AuthZEN 1.0 §8): for an
/// external member exactly those assigned to it (claim RBAC-5).
#[utoipa::path(
    post,
    path = "/access/v1/search/resource",
    tag = "access",
    security(("service" = [])),
    request_body = ResourceSearchRequest,
    responses(
        (status = 200, description = "One page of resources", body = ResourceSearchResponse),
        (status = 401, description = "No valid service credential", body = ErrorBody),
        (status = 422, description = "An unknown action or resource type, one of Palisade's own, a bad page token or limit", body = ErrorBody),
    )
)]
async fn search_resource(
    State(state): State<AppState>,
    _service: Service,
    Json(body): Json<ResourceSearchRequest>,
) -> Result<axum::Json<ResourceSearchResponse>, ApiError> {
    let row = state.access.find(&body.action.name).ok_or_else(|| {
        ApiError::invalid_field("action.name: not an action of GET /api/v1/roles")
    })?;
    if !row.is_app() || body.resource.r#type != *row.resource_type {
        return Err(ApiError::invalid_field(format!(
            "resource.type: the search covers the app's resource types; `{}` applies to `{}`",
            row.name, row.resource_type
        )));
    }
    let limit = body.page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field("page.limit: 1 to 1000"));
    }
    let after = match &body.page.token {
        None => String::new(),
        Some(token) => cursor(token)?,
    };
    let fresh = freshness(body.context.as_ref())?;
    let proof = proof(&body.subject)?;
    let decider = decider(&state);
    let refused = |denial: Denial| ResourceSearchResponse {
        results: Vec::new(),
        page: PageResponse {
            next_token: String::new(),
        },
        context: serde_json::json!({"reason": denial.reason()}),
    };
    let caller = match decider.subject(&proof).await? {
        Ok(caller) => caller,
        Err(denial) => return Ok(axum::Json(refused(denial))),
    };
    // The search is in the subject's own tenant; its role must allow the action at all.
    if !caller.may_row(row) {
        return Ok(axum::Json(refused(Denial::Role)));
    }
    if !decider.fresh_enough(&caller, fresh).await? {
        return Ok(axum::Json(refused(Denial::UnknownRevision)));
    }
    let external = caller.grants().is_external();
    let crate::access::Subject::Person { user, .. } = caller.subject() else {
        // A key has no relations: its role allows every resource or none.
        return Ok(axum::Json(ResourceSearchResponse {
            results: Vec::new(),
            page: PageResponse {
                next_token: String::new(),
            },
            context: serde_json::json!({"unrestricted": true}),
        }));
    };
    let mut ids = state
        .relations
        .related_ids(caller.scope(), user, &row.resource_type, &after, limit + 1)
        .await?;
    let next_token = if ids.len() > limit as usize {
        ids.truncate(limit as usize);
        ids.last()
            .map(|last| URL_SAFE_NO_PAD.encode(last))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(axum::Json(ResourceSearchResponse {
        results: ids
            .into_iter()
            .map(|id| FoundResource {
                r#type: row.resource_type.to_string(),
                id,
            })
            .collect(),
        page: PageResponse { next_token },
        context: serde_json::json!({"unrestricted": !external}),
    }))
}

/// A page token: the last id of the previous page, base64url.
fn cursor(token: &str) -> Result<String, ApiError> {
    let bad = || ApiError::invalid_field("page.token: the next_token of a previous page");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let id = String::from_utf8(bytes).map_err(|_| bad())?;
    check_resource_id(&id).map_err(|_| bad())?;
    Ok(id)
}

/// Where this policy decision point's endpoints are (AuthZEN 1.0 §9).
#[derive(Serialize, ToSchema)]
pub struct DiscoveryDocument {
    /// The deployment's public URL (`auth.issuer`).
    policy_decision_point: String,
    access_evaluation_endpoint: String,
    access_evaluations_endpoint: String,
    search_resource_endpoint: String,
}

/// The AuthZEN metadata: the endpoints this deployment serves, under `auth.issuer`.
#[utoipa::path(
    get,
    path = "/.well-known/authzen-configuration",
    tag = "access",
    responses((status = 200, description = "The endpoints", body = DiscoveryDocument))
)]
async fn discovery(State(state): State<AppState>) -> axum::Json<DiscoveryDocument> {
    let base = state.settings.auth.issuer.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    axum::Json(DiscoveryDocument {
        policy_decision_point: base.to_owned(),
        access_evaluation_endpoint: at("/access/v1/evaluation"),
        access_evaluations_endpoint: at("/access/v1/evaluations"),
        search_resource_endpoint: at("/access/v1/search/resource"),
    })
}
