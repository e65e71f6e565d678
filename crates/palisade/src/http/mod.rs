//! The HTTP layer: thin. It assembles the capability routers, wraps them in the request
//! frame, and serves them. Capabilities never see hyper, TLS or listeners.

pub mod auth;
pub mod client_ip;
pub mod cors;
pub mod csrf;
pub mod error;
pub mod extract;
pub mod frame;
pub mod openapi;
pub mod ratelimit;
pub mod server;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use frame::FrameConfig;

/// A response whose body is what arrives on `chunks` until the sender is dropped: a long
/// export leaves memory flat and its first bytes leave at once. A producer that fails
/// stops sending, and the client sees a truncated body (an export's trailer or closing
/// bracket is missing).
pub fn streamed(
    chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    content_type: &'static str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks
            .recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), chunks))
    });
    let mut response = axum::body::Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(content_type),
    );
    response
}

/// Every route of the API, documented; the OpenAPI document is derived from this list.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(crate::health::router())
        .merge(crate::telemetry::router())
        .merge(openapi::router())
        .merge(crate::identity::routes::router())
        .merge(crate::tenancy::routes::router())
        .merge(crate::keys::routes::router())
        .merge(crate::audit::routes::router())
        .merge(crate::decisions::routes::router())
        .merge(crate::relations::routes::router())
        .merge(crate::ratelimit::routes::router())
        .merge(crate::services::routes::router())
        .merge(crate::vault::routes::router())
        .merge(crate::webhooks::routes::router())
        .merge(crate::privacy::routes::router())
        .merge(crate::posture::routes::router())
}

/// The application: every route behind the request frame, with its OpenAPI document.
pub fn app(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = routes().split_for_parts();
    let router = router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ratelimit::rate_limit,
        ))
        .fallback(frame::not_found)
        // The frame holds each route to its own limit; this only keeps axum's extractors
        // from refusing below it.
        .layer(DefaultBodyLimit::max(
            frame::FrameConfig::largest_body_limit(state.settings.http.body_limit_bytes),
        ));
    let router = with_frame(router, &state, state.settings.tls.enabled()).with_state(state);
    (router, api)
}

/// The plain-HTTP redirect listener's app, behind the same frame (headers, ids, logs).
pub fn redirect_app(state: &AppState, https_port: u16) -> Router {
    let router = server::redirect_router(https_port, state.settings.tls.public_host.clone());
    with_frame(router, state, false)
}

fn with_frame<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    state: &AppState,
    hsts: bool,
) -> Router<S> {
    let config = Arc::new(FrameConfig {
        request_timeout: state.settings.request_timeout(),
        hsts,
        metrics: state.metrics.clone(),
        trusted_proxies: state.settings.trusted_proxies(),
        body_limit_bytes: state.settings.http.body_limit_bytes,
        cors: cors::CorsOrigins::new(&state.settings.http.cors_origins),
    });
    router.layer(axum::middleware::from_fn_with_state(config, frame::frame))
}
