//! Rate limits (claim WEB-5): per route and principal, one limit across instances, 429 with
//! Retry-After and RateLimit headers, bursts audited once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Instance, TestApp, PASSWORD};
use palisade::config::Settings;

fn limits(settings: &mut Settings) {
    settings.rate_limits.default_per_minute = 3;
    settings.rate_limits.read_per_minute = 5;
    settings.rate_limits.sign_in_per_minute = 2;
}

/// `count` GETs of `path`, alternating between the two instances, with one credential header.
async fn alternating_statuses(
    app: &TestApp,
    sibling: &Instance,
    path: &str,
    count: usize,
    (name, value): (&str, String),
) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(count);
    for n in 0..count {
        let url = if n % 2 == 0 {
            app.url(path)
        } else {
            sibling.url(path)
        };
        let response = app
            .client
            .get(url)
            .header(name, &value)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

fn header(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

// claim: WEB-5
#[tokio::test]
async fn a_principal_gets_its_routes_limit_then_429_with_retry_after() {
    let app = spawn_app_with(limits).await;
    let owner = app.signed_in("owner@example.com").await;
    for expected_remaining in (0..5).rev() {
        let response = app.get_as("/api/v1/members", &owner.access).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit"), Some(5));
        assert_eq!(
            header(&response, "ratelimit-remaining"),
            Some(expected_remaining)
        );
        assert!(header(&response, "ratelimit-reset").is_some());
    }
    let refused = app.get_as("/api/v1/members", &owner.access).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "retry-after"),
        Some(12),
        "one request per 12 s"
    );
    assert_eq!(header(&refused, "ratelimit-remaining"), Some(0));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another route has its own bucket; writes have the stricter default.
    assert_eq!(
        app.get_as("/api/v1/roles", &owner.access).await.status(),
        200
    );
    // Another principal is unaffected.
    let other = app.signed_in("other@example.com").await;
    assert_eq!(
        app.get_as("/api/v1/members", &other.access).await.status(),
        200
    );
    // After the interval, one more.
    app.clock.advance(Duration::from_secs(12));
    assert_eq!(
        app.get_as("/api/v1/members", &owner.access).await.status(),
        200
    );
    assert_eq!(
        app.get_as("/api/v1/members", &owner.access).await.status(),
        429
    );
    // Health checks are never limited.
    for _ in 0..10 {
        assert_eq!(app.get("/api/health/live").await.status(), 200);
    }
}

// claim: WEB-5
#[tokio::test]
async fn sign_in_is_limited_per_address_and_a_burst_is_audited_once() {
    let app = spawn_app_with(limits).await;
    app.sign_up("ada@example.com").await;
    let credentials = json!({"email": "ada@example.com", "password": PASSWORD});
    let login = || app.post_json("/api/v1/auth/login", &credentials);
    // Two per minute from one address, whoever signs in (the sign-up had its own bucket).
    assert_eq!(login().await.status(), 200);
    assert_eq!(login().await.status(), 200);
    for _ in 0..3 {
        let refused = login().await;
        assert_eq!(refused.status(), 429);
        assert!(header(&refused, "retry-after").unwrap() >= 1);
    }
    // The audit write runs beside the response: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let bursts = loop {
        let bursts = app
            .inspect::<i64>(
                "SELECT count(*) FROM audit_events WHERE action = 'rate_limit.exceeded'",
                None,
            )
            .await[0];
        if bursts > 0 || std::time::Instant::now() >= deadline {
            break bursts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(bursts, 1, "three refusals, one audited burst");
}

// claim: WEB-5, KEY-3
#[tokio::test]
async fn one_limit_holds_across_two_instances_on_one_database() {
    let app = spawn_app_with(limits).await;
    if app.db.as_postgres().is_none() {
        crate::helpers::skipped("one server per database file keeps its limits in memory");
        return;
    }
    let sibling = app.spawn_sibling_with(limits).await;
    let owner = app.signed_in("owner@example.com").await;
    let key: Value = app
        .post_as(
            "/api/v1/api-keys",
            &owner.access,
            Some(&json!({"name": "CI", "role": "viewer"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let key = key["secret"].as_str().unwrap().to_owned();
    let statuses =
        alternating_statuses(&app, &sibling, "/api/v1/members", 8, ("x-api-key", key)).await;
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429, 429, 429],
        "5 per minute in all"
    );
    sibling.stop().await;
}

// claim: WEB-5
#[tokio::test]
async fn leased_shares_of_a_busy_bucket_never_exceed_the_limit_across_instances() {
    // 200 a minute: each PostgreSQL instance charges the bucket two requests at a time.
    let generous = |settings: &mut Settings| settings.rate_limits.read_per_minute = 200;
    let app = spawn_app_with(generous).await;
    if app.db.as_postgres().is_none() {
        crate::helpers::skipped("one server per database file keeps its limits in memory");
        return;
    }
    let sibling = app.spawn_sibling_with(generous).await;
    let owner = app.signed_in("owner@example.com").await;
    let bearer = ("authorization", format!("Bearer {}", owner.access));
    let statuses = alternating_statuses(&app, &sibling, "/api/v1/tenant", 230, bearer).await;
    let admitted = statuses.iter().filter(|status| **status == 200).count();
    // Never more than the limit; at most one unused lease per instance goes unserved.
    assert!((196..=200).contains(&admitted), "{admitted} admitted");
    sibling.stop().await;
}

/// One check of the app's limit at `base` (an instance) under the service credential.
async fn app_check(
    client: &reqwest::Client,
    base: &str,
    service: &str,
    body: Value,
) -> (u16, Value) {
    crate::helpers::post_json_on(client, base, "/api/v1/ratelimit/check", service, &body).await
}

fn three_a_minute(identifier: &str) -> Value {
    json!({"namespace": "workorders.export", "identifier": identifier, "limit": 3, "window_seconds": 60})
}

// claim: APP-7
#[tokio::test]
async fn the_apps_limit_allows_its_burst_then_one_per_interval_and_refuses_bad_input() {
    let app = crate::helpers::spawn_app().await;
    let (_, service) = crate::access::service_credential(&app).await;
    let check = |body: Value| app_check(&app.client, &app.base, &service, body);
    for remaining in [2, 1, 0] {
        let (status, answer) = check(three_a_minute("usr_a")).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["allowed"], true);
        assert_eq!(answer["limit"], 3);
        assert_eq!(answer["remaining"], remaining);
        assert!(answer.get("retry_after").is_none(), "{answer}");
    }
    let (_, refused) = check(three_a_minute("usr_a")).await;
    assert_eq!(refused["allowed"], false, "{refused}");
    assert_eq!(refused["remaining"], 0);
    assert_eq!(refused["retry_after"], 20, "one unit every 20 s");
    assert_eq!(refused["reset"], 60);
    // Another identifier, another namespace: their own buckets.
    assert_eq!(check(three_a_minute("usr_b")).await.1["allowed"], true);
    let mut other = three_a_minute("usr_a");
    other["namespace"] = json!("workorders.import");
    assert_eq!(check(other).await.1["allowed"], true);
    // A cost of 2 fits a fresh bucket of 3 once; a refused check charges nothing.
    let mut heavy = three_a_minute("usr_c");
    heavy["cost"] = json!(2);
    assert_eq!(check(heavy.clone()).await.1["remaining"], 1);
    assert_eq!(check(heavy.clone()).await.1["allowed"], false);
    assert_eq!(check(three_a_minute("usr_c")).await.1["remaining"], 0);
    // One interval later, exactly one more for the first identifier.
    app.clock.advance(Duration::from_secs(20));
    assert_eq!(check(three_a_minute("usr_a")).await.1["allowed"], true);
    assert_eq!(check(three_a_minute("usr_a")).await.1["allowed"], false);

    // Bad input: a 4xx naming the field, never a decision.
    for (field, value) in [
        ("namespace", json!("Work Orders")),
        ("namespace", json!("")),
        ("identifier", json!("")),
        ("identifier", json!("line\nbreak")),
        ("limit", json!(0)),
        ("limit", json!(1_000_001)),
        ("window_seconds", json!(0)),
        ("window_seconds", json!(86_401)),
        ("cost", json!(4)),
        ("cost", json!(0)),
        ("extra", json!(true)),
    ] {
        let mut body = three_a_minute("usr_d");
        body[field] = value.clone();
        let (status, answer) = check(body).await;
        assert!(
            (400..500).contains(&status),
            "{field}={value}: {status} {answer}"
        );
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    // Only the app's backend asks.
    let owner = app.signed_in("owner@example.com").await;
    let (status, _) = app_check(
        &app.client,
        &app.base,
        &owner.access,
        three_a_minute("usr_e"),
    )
    .await;
    assert_eq!(status, 401);
}

// claim: APP-7
#[tokio::test]
async fn the_apps_limit_holds_across_two_instances_on_one_database() {
    let app = crate::helpers::spawn_app().await;
    if app.db.as_postgres().is_none() {
        crate::helpers::skipped("one server per database file keeps its limits in memory");
        return;
    }
    let sibling = app.spawn_sibling().await;
    let (_, service) = crate::access::service_credential(&app).await;
    let mut allowed = Vec::new();
    for n in 0..6 {
        let (base, client) = if n % 2 == 0 {
            (&app.base, &app.client)
        } else {
            (&sibling.base, &sibling.client)
        };
        let (status, answer) = app_check(client, base, &service, three_a_minute("usr_a")).await;
        assert_eq!(status, 200, "{answer}");
        allowed.push(answer["allowed"].as_bool().unwrap());
    }
    assert_eq!(
        allowed,
        [true, true, true, false, false, false],
        "3 a minute in all"
    );
    sibling.stop().await;
}

// claim: APP-7
#[tokio::test]
async fn a_limit_named_in_configuration_is_charged_like_its_numbers() {
    let app = spawn_app_with(|settings: &mut Settings| {
        settings.rate_limits.named.insert(
            "workorders.export".to_owned(),
            palisade::config::NamedLimit {
                limit: 2,
                window_seconds: 60,
            },
        );
    })
    .await;
    let (_, service) = crate::access::service_credential(&app).await;
    let check = |body: Value| app_check(&app.client, &app.base, &service, body);
    let named = json!({"namespace": "exports", "identifier": "usr_a", "name": "workorders.export"});
    for remaining in [1, 0] {
        let (status, answer) = check(named.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (answer["limit"].as_u64(), answer["remaining"].as_u64()),
            (Some(2), Some(remaining))
        );
    }
    assert_eq!(check(named.clone()).await.1["retry_after"], 30);
    // The numbers it stands for share its bucket: the name is only the operator's handle.
    let numbers =
        json!({"namespace": "exports", "identifier": "usr_a", "limit": 2, "window_seconds": 60});
    assert_eq!(check(numbers).await.1["allowed"], false);

    // An unknown name, or a name with numbers, or neither: refused, nothing charged.
    let (status, answer) =
        check(json!({"namespace": "exports", "identifier": "usr_b", "name": "nope"})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("unknown_limit")),
        "{answer}"
    );
    let mut both = named.clone();
    both["limit"] = json!(5);
    assert_eq!(check(both).await.0, 422);
    let (status, _) =
        check(json!({"namespace": "exports", "identifier": "usr_b", "limit": 5})).await;
    assert_eq!(status, 422, "a limit without its window");
    let mut fresh = named.clone();
    fresh["identifier"] = json!("usr_b");
    assert_eq!(
        check(fresh).await.1["remaining"],
        1,
        "the refusals charged nothing"
    );
}
