//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade",
        description = "Security controls for multi-tenant B2B SaaS, each one proven by a test.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "identity", description = "Accounts and sessions"),
        (name = "tenancy", description = "Roles, actions and members"),
        (name = "api-keys", description = "API keys: machine access to one tenant"),
        (name = "secrets", description = "The vault: a tenant's secrets, sealed under its own data key"),
        (name = "operations", description = "Health, metrics and this document"),
        (name = "privacy", description = "Exports of a tenant's record and of a person's own data, and erasure (GDPR)"),
        (name = "access", description = "Live authorization decisions for the app (OpenID AuthZEN 1.0), with its service credential"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the authenticated operations name: an access token from
/// sign-in (a JWT).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        // Also accepted as `Authorization: Bearer pal_…` (claim KEY-3).
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
        // The app's backend on the integration endpoints: `Authorization: Bearer pal_svc_…`.
        components.add_security_scheme(
            "service",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The app's backend in one tenant: `Authorization: Bearer pal_tt_…` (claim APP-8).
        components.add_security_scheme(
            "tenant_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The one error shape: `{"error":{"code","message","request_id"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (see docs/errors in README).
    #[schema(example = "invalid_body")]
    code: String,
    /// For humans; never contains a value the client sent.
    message: String,
    /// Also in the `X-Request-Id` header and the server's log lines.
    #[schema(example = "req_0b9c6c2e8d3f4a7a9c1e2f3a4b5c6d7e")]
    request_id: String,
}

/// Renders the document with the responses the frame gives every operation — limits,
/// malformed bodies, an unreachable or full database — which the handlers' annotations
/// leave out. A status an operation documents itself keeps its own description.
pub fn render(
    api: &utoipa::openapi::OpenApi,
    table: &crate::access::ActionTable,
) -> serde_json::Result<Vec<u8>> {
    let mut doc = serde_json::to_value(api)?;
    list_the_deployments_names(&mut doc, table);
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
            for (method, operation) in item.iter_mut() {
                add_frame_responses(method, operation);
            }
        }
    }
    serde_json::to_vec(&doc)
}

/// The action and role names a request may carry are the deployment's: Palisade's and the
/// manifest's. A deployment without app roles takes none (only null).
fn list_the_deployments_names(doc: &mut serde_json::Value, table: &crate::access::ActionTable) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    else {
        return;
    };
    let names = |keep: &dyn Fn(&crate::access::ActionRow) -> bool| -> Vec<serde_json::Value> {
        table
            .rows()
            .iter()
            .filter(|row| keep(row))
            .map(|row| serde_json::Value::from(&*row.name))
            .collect()
    };
    let custom = names(&|row| row.minimum_role != crate::access::Role::Owner);
    let scopes = names(&|row| !row.people_only);
    schemas.insert(
        "CustomRoleActionName".into(),
        serde_json::json!({"type": "string", "enum": custom}),
    );
    schemas.insert(
        "KeyScopeName".into(),
        serde_json::json!({"type": "string", "enum": scopes}),
    );
    let roles: Vec<&str> = table.roles().iter().map(|r| &*r.name).collect();
    let app_roles = if roles.is_empty() {
        serde_json::json!({"not": {}, "description": "This deployment's manifest declares no role."})
    } else {
        serde_json::json!({"type": "string", "enum": roles})
    };
    schemas.insert("AppRoleName".into(), app_roles);
}

fn add_frame_responses(method: &str, operation: &mut serde_json::Value) {
    let has_body = operation.get("requestBody").is_some();
    let has_path_parameters = operation["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
    let has_query = operation["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let authenticated = operation["security"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    let writes = method != "get";
    let mut common: Vec<(&str, &str)> = vec![
        (
            "400",
            "The request is malformed: not exactly one Host header (`bad_request`), or a body that is not JSON (`malformed_json`).",
        ),
        (
            "414",
            "The request target is longer than 8 KiB (`uri_too_long`).",
        ),
        (
            "431",
            "The request's headers exceed 32 KiB (`headers_too_large`).",
        ),
        (
            "408",
            "The request was not completed within the request deadline (`timeout`).",
        ),
        (
            "429",
            "The route's request limit is used up (`rate_limited`); see Retry-After.",
        ),
        (
            "503",
            "The database is unreachable or a queue is full (`unavailable`, `overloaded`).",
        ),
    ];
    if has_body {
        common.extend([
            (
                "413",
                "The body exceeds the configured limit (`payload_too_large`).",
            ),
            (
                "415",
                "The body is not `application/json` (`unsupported_media_type`).",
            ),
            (
                "422",
                "The body does not match the schema (`invalid_body`, `invalid_field`).",
            ),
        ]);
    }
    if has_query {
        common.push((
            "422",
            "A query parameter is unknown or invalid (`invalid_query`).",
        ));
    }
    if has_path_parameters {
        common.push((
            "404",
            "No such resource in the caller's tenant (`not_found`).",
        ));
    }
    if authenticated {
        common.extend([
            ("401", "No valid credential (`unauthenticated`)."),
            ("403", "The credential may not do this (`forbidden`)."),
        ]);
    }
    if writes {
        common.push((
            "507",
            "The database's disk is full; writes are refused (`storage_full`).",
        ));
    }
    let responses = &mut operation["responses"];
    for (status, description) in common {
        if responses.get(status).is_none() {
            responses[status] = serde_json::json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            });
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
async fn openapi_json(State(state): State<AppState>) -> Response {
    let mut response = state
        .openapi_json
        .get()
        .cloned()
        .unwrap_or_default()
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
