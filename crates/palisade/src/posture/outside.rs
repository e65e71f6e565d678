//! What any client sees of an instance: the security headers on a sample of routes, TLS
//! and HSTS, the published signing keys, unknown fields refused, the rate limiter's
//! headers, the metrics closed to strangers, the AuthZEN discovery document.

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::{Finding, Status};

/// The headers of claim WEB-2 (frame-ancestors is in the CSP).
const SECURITY_HEADERS: [&str; 4] = [
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
];

/// Routes whose answers are sampled: a health check, the keys, a refusal and a 404.
const SAMPLED: [&str; 4] = [
    "/api/health",
    "/.well-known/jwks.json",
    "/api/v1/me",
    "/posture-probe-no-such-page",
];

/// Probes the instance at `base` (`https://host`); Err when it cannot be reached at all.
pub async fn probe(client: &reqwest::Client, base: &str) -> Result<Vec<Finding>, String> {
    let base = base.trim_end_matches('/');
    let url = |path: &str| format!("{base}{path}");
    let get = |path: &'static str| client.get(url(path)).send();
    let health = get("/api/health")
        .await
        .map_err(|e| format!("{base} cannot be reached: {e}"))?;
    let mut out = Vec::new();
    let health_status = health.status();
    let health_body: serde_json::Value = health.json().await.unwrap_or_default();
    let components = ["database", "backups"];
    let reported = components
        .iter()
        .all(|c| health_body["checks"][c]["status"].is_string());
    out.push(Finding::check(
        "OPS-2",
        reported,
        format!(
            "/api/health answers {health_status} with {}",
            if reported {
                "the database and backups, each with its latency"
            } else {
                "no database or backup component"
            }
        ),
    ));

    // Every sampled answer carries every header.
    let mut missing = Vec::new();
    let mut hsts = Vec::new();
    for path in SAMPLED {
        match get(path).await {
            Ok(response) => {
                let headers = response.headers();
                for header in SECURITY_HEADERS {
                    if !headers.contains_key(header) {
                        missing.push(format!("{header} on {path}"));
                    }
                }
                let frames_guarded = header(headers, "content-security-policy")
                    .contains("frame-ancestors")
                    || headers.contains_key("x-frame-options");
                if !frames_guarded {
                    missing.push(format!("frame-ancestors on {path}"));
                }
                hsts.push(header(headers, "strict-transport-security").to_owned());
            }
            Err(error) => missing.push(format!("{path} unreachable: {error}")),
        }
    }
    out.push(Finding::check(
        "WEB-2",
        missing.is_empty(),
        if missing.is_empty() {
            format!("CSP with frame-ancestors, nosniff, Referrer-Policy and Permissions-Policy on {} sampled routes", SAMPLED.len())
        } else {
            format!("missing: {}", missing.join(", "))
        },
    ));
    out.push(web1(base, &hsts));

    // The published keys (ID-8).
    let jwks: serde_json::Value = match get("/.well-known/jwks.json").await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    let named = !keys.is_empty()
        && keys
            .iter()
            .all(|k| k["kid"].is_string() && matches!(k["alg"].as_str(), Some("EdDSA" | "ES256")));
    out.push(Finding::check(
        "ID-8",
        named,
        format!(
            "/.well-known/jwks.json publishes {} key(s), each with a kid",
            keys.len()
        ),
    ));

    // Input refused by schema (WEB-4), and the limiter's headers (WEB-5).
    let refused = client
        .post(url("/api/v1/auth/login"))
        .json(&serde_json::json!({
            "email": "posture-probe@example.invalid",
            "password": "posture probe password",
            "posture_probe": true,
        }))
        .send()
        .await;
    match refused {
        Ok(response) => {
            let status = response.status();
            let limited = response.headers().contains_key("ratelimit-limit");
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            out.push(Finding::check(
                "WEB-4",
                status == StatusCode::UNPROCESSABLE_ENTITY && body["error"]["code"].is_string(),
                format!("a sign-in with an unknown field answers {status} with a JSON error"),
            ));
            out.push(Finding::check(
                "WEB-5",
                limited,
                if limited {
                    "answers carry RateLimit headers"
                } else {
                    "no RateLimit header on a sign-in's answer"
                },
            ));
        }
        Err(error) => out.push(Finding::fail(
            "WEB-4",
            format!("sign-in unreachable: {error}"),
        )),
    }
    if let Ok(response) = get("/metrics").await {
        out.push(Finding::check(
            "OPS-6",
            response.status() == StatusCode::UNAUTHORIZED,
            format!(
                "/metrics answers {} without the operator's token",
                response.status()
            ),
        ));
    }
    if let Ok(response) = get("/.well-known/authzen-configuration").await {
        let ok = response.status().is_success();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        out.push(Finding::check(
            "APP-3",
            ok && body["policy_decision_point"].is_string(),
            "/.well-known/authzen-configuration names the decision point",
        ));
    }
    Ok(out)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// TLS and HSTS (WEB-1): over https every sampled answer must carry a year's HSTS with
/// subdomains and preload; over plain HTTP only loopback is excused.
fn web1(base: &str, hsts: &[String]) -> Finding {
    if let Some(rest) = base.strip_prefix("http://") {
        let host = rest.split(['/', ':']).next().unwrap_or("");
        if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Finding::new(
                "WEB-1",
                Status::NotCheckable,
                "checked over plain HTTP on loopback: TLS is not in the path",
            );
        }
        return Finding::fail("WEB-1", format!("{base} is served over plain HTTP"));
    }
    let strong = |value: &String| {
        let max_age = value
            .split(';')
            .find_map(|part| part.trim().strip_prefix("max-age="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        max_age >= 31_536_000 && value.contains("includeSubDomains") && value.contains("preload")
    };
    Finding::check(
        "WEB-1",
        hsts.iter().all(strong),
        format!(
            "TLS (rustls: 1.2 or 1.3); HSTS: {:?}",
            hsts.first().map_or("", String::as_str)
        ),
    )
}
