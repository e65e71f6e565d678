//! The rate-limit layer (claim WEB-5): classifies the matched route, names the principal
//! (a verified API key, a verified session's user, else the client address), asks the
//! limiter, and answers 429 with `Retry-After` when the bucket is empty. Every limited
//! route's responses carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{credential, Credential, VerifiedKey, VerifiedService, VerifiedTenantToken};
use super::error::{ApiError, ErrorCode};
use super::extract::RequestContext;
use super::frame::ClientIp;
use crate::app::AppState;
use crate::audit::Actor;
use crate::identity::routes::origin;
use crate::identity::throttle::ip_key;
use crate::ids::TenantId;
use crate::ratelimit::{class_of, BucketName, Class, Decision};

/// 429s are audited once per bucket per minute per instance, not once per request.
pub struct BurstLog(Mutex<HashMap<String, i64>>);

impl BurstLog {
    pub fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn first_in_a_minute(&self, bucket: &str, now_us: i64) -> bool {
        let mut seen = self.0.lock().expect("burst log lock");
        if seen.len() > 100_000 {
            seen.retain(|_, at| now_us - *at < 60_000_000);
        }
        match seen.get(bucket) {
            Some(at) if now_us - *at < 60_000_000 => false,
            _ => {
                seen.insert(bucket.to_owned(), now_us);
                true
            }
        }
    }
}

impl Default for BurstLog {
    fn default() -> Self {
        Self::new()
    }
}

/// Who a bucket belongs to, as far as the limiter can verify it cheaply.
struct Subject {
    who: Who,
    tenant: Option<TenantId>,
}

#[derive(Hash)]
enum Who {
    Principal(Actor),
    /// The app's backend, on the integration endpoints.
    Service(crate::ids::ServiceId),
    Address(Option<std::net::IpAddr>),
}

impl Subject {
    fn actor(&self) -> Option<Actor> {
        match self.who {
            Who::Principal(actor) => Some(actor),
            Who::Service(_) | Who::Address(_) => None,
        }
    }
}

/// A bucket: the route (method and template) and who calls it.
#[derive(Hash)]
struct Bucket<'a> {
    method: &'a str,
    route: &'a str,
    who: &'a Who,
}

impl BucketName for Bucket<'_> {
    /// `METHOD /route|principal`, as the shared table and the burst log store it.
    fn name(&self) -> String {
        let (method, route) = (self.method, self.route);
        match self.who {
            Who::Principal(Actor::ApiKey(key)) => format!("{method} {route}|{key}"),
            Who::Principal(Actor::User(user)) => format!("{method} {route}|{user}"),
            Who::Service(service) => format!("{method} {route}|{service}"),
            Who::Address(ip) => format!("{method} {route}|ip:{}", ip_key(*ip)),
        }
    }
}

pub async fn rate_limit(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let settings = &state.settings.rate_limits;
    let Some(route) = matched else {
        return next.run(request).await;
    };
    let Some(class) = class_of(request.method().as_str(), route.as_str()) else {
        return next.run(request).await;
    };
    if !settings.enabled {
        return next.run(request).await;
    }
    // Parts, unlike the body, can be borrowed across the awaits below.
    let (mut parts, body) = request.into_parts();
    let subject = subject(&state, &mut parts, class).await;
    // The app's backend, wherever a tenant token takes it, spends a busy app's budget.
    let class = match subject.who {
        Who::Service(_) => Class::Integration,
        _ => class,
    };
    let bucket = Bucket {
        method: parts.method.as_str(),
        route: route.as_str(),
        who: &subject.who,
    };
    let now = state.clock.now();
    let now_us = crate::audit::store::micros(now);
    let decision = match state
        .limiter
        .check(&bucket, class.per_minute(settings), now_us)
        .await
    {
        Ok(decision) => decision,
        Err(error) => {
            // The request itself will meet the same database; the limiter does not turn a
            // database fault into a refusal of its own.
            tracing::warn!(%error, "rate limiter unavailable; request not limited");
            return next.run(Request::from_parts(parts, body)).await;
        }
    };
    if decision.allowed {
        let mut response = next.run(Request::from_parts(parts, body)).await;
        add_headers(response.headers_mut(), &decision);
        return response;
    }
    if state.burst_log.first_in_a_minute(&bucket.name(), now_us) {
        let mut event = origin(RequestContext::of(&parts))
            .event("rate_limit.exceeded", "denied", now)
            .on("route", format!("{} {}", parts.method, route.as_str()));
        if let Some(tenant) = subject.tenant {
            event = event.in_tenant(tenant);
        }
        if let Some(actor) = subject.actor() {
            event = event.by(actor);
        }
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(error) = state.audit.record(event).await {
                tracing::warn!(%error, "auditing a rate-limit burst failed");
            }
        });
    }
    let mut response = ApiError::coded(
        ErrorCode::RateLimited,
        "too many requests; retry after the delay in Retry-After",
    )
    .into_response();
    let headers = response.headers_mut();
    add_headers(headers, &decision);
    headers.insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from(decision.retry_after_secs),
    );
    response
}

// Static names: a name parsed from text on every response costs an allocation.
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn add_headers(headers: &mut HeaderMap, decision: &Decision) {
    // Room for these and the frame's security headers: one growth of the map.
    headers.reserve(16);
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(decision.limit));
    headers.insert(
        RATELIMIT_REMAINING.clone(),
        HeaderValue::from(decision.remaining),
    );
    headers.insert(
        RATELIMIT_RESET.clone(),
        HeaderValue::from(decision.reset_secs),
    );
}

async fn subject(state: &AppState, parts: &mut Parts, class: Class) -> Subject {
    let ip = parts.extensions.get::<ClientIp>().map(|ClientIp(ip)| *ip);
    let address = || Subject {
        who: Who::Address(ip),
        tenant: None,
    };
    if class == Class::SignIn {
        return address();
    }
    let verified = match credential(&parts.headers) {
        Ok(Credential::ApiKey(key)) => match state.keys.authenticate(key).await {
            Ok(principal) => principal,
            Err(_) => return address(),
        },
        Ok(Credential::Session(token)) => {
            return match state.identity.token_subject(token).await {
                Some((user, tenant)) => Subject {
                    who: Who::Principal(Actor::User(user)),
                    tenant: Some(tenant),
                },
                None => address(),
            }
        }
        Ok(Credential::Service(text)) => {
            return match state.services.authenticate(text).await {
                Ok(service) => {
                    let subject = Subject {
                        who: Who::Service(service.id()),
                        tenant: None,
                    };
                    parts.extensions.insert(VerifiedService(service));
                    subject
                }
                Err(_) => address(),
            }
        }
        Ok(Credential::TenantToken(text)) => {
            return match state.services.authenticate_tenant_token(text).await {
                Ok(token) => {
                    // The app's budget, whichever tenant it works in.
                    let subject = Subject {
                        who: Who::Service(token.service()),
                        tenant: Some(token.tenant()),
                    };
                    parts.extensions.insert(VerifiedTenantToken(token));
                    subject
                }
                Err(_) => address(),
            };
        }
        Err(_) => return address(),
    };
    let subject = Subject {
        who: Who::Principal(Actor::ApiKey(verified.id())),
        tenant: Some(verified.tenant()),
    };
    parts.extensions.insert(VerifiedKey(verified));
    subject
}
