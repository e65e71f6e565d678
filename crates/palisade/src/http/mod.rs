//! The HTTP layer: thin. It assembles the capability routers, wraps them in the request
//! frame, and serves them. Capabilities never see hyper, TLS or listeners.

pub mod error;
pub mod extract;
pub mod frame;
pub mod openapi;
pub mod server;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use frame::FrameConfig;

/// Every route of the API, documented; the OpenAPI document is derived from this list.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(crate::health::router())
        .merge(crate::telemetry::router())
        .merge(openapi::router())
        .merge(crate::identity::routes::router())
}

/// The application: every route behind the request frame, with its OpenAPI document.
pub fn app(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = routes().split_for_parts();
    let frame_config = Arc::new(FrameConfig {
        request_timeout: state.settings.request_timeout(),
        hsts: state.settings.tls.enabled(),
        metrics: state.metrics.clone(),
    });
    let router = router
        .fallback(frame::not_found)
        .layer(DefaultBodyLimit::max(state.settings.http.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            frame_config,
            frame::frame,
        ))
        .with_state(state);
    (router, api)
}
