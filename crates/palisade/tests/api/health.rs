//! Health and metrics.

use crate::helpers::{backend, spawn_app, Backend};

// claim: OPS-2
#[tokio::test]
async fn health_reports_each_component_with_its_latency() {
    let app = spawn_app().await;
    let response = app.get("/api/health").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let expected_backend = match backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(body["checks"]["database"]["detail"], expected_backend);
    assert!(body["checks"]["database"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(body["checks"]["configuration"]["status"], "up");
    assert!(body["checks"]["configuration"]["latency_ms"].is_number());
    app.stop().await;
}

// claim: OPS-2
#[tokio::test]
async fn health_is_503_while_the_database_is_unreachable_and_recovers_without_a_restart() {
    let mut app = spawn_app().await;
    assert_eq!(app.get("/api/health").await.status(), 200);

    app.break_database().await;
    let response = app.get("/api/health").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"]["status"], "down");
    assert_eq!(body["checks"]["configuration"]["status"], "up");

    // A write while the database is down fails fast with 503, in the error shape.
    let response = app
        .post_json(
            "/api/v1/auth/signup",
            &serde_json::json!({"email": "down@example.com", "password": "correct horse battery", "tenant_name": "Down"}),
        )
        .await;
    assert_eq!(response.status(), 503);

    app.repair_database().await;
    let response = app.get("/api/health").await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    app.sign_up("up-again@example.com").await;
    app.stop().await;
}

// claim: OPS-6
#[tokio::test]
async fn metrics_are_prometheus_text_labelled_by_route_template() {
    let app = with_metrics_token(|_| {}).await;
    app.get("/api/health").await;
    app.get("/no/such/path").await;
    let response = scrape(&app).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(
            r#"palisade_http_request_duration_seconds_count{method="GET",route="/api/health",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="(unmatched)",status="404""#),
        "{text}"
    );
    assert!(
        !text.contains("/no/such/path"),
        "raw paths never become labels"
    );
    assert!(text.contains("palisade_http_request_duration_seconds_bucket"));
    assert!(text.contains("palisade_db_pool_connections"));
    assert!(text.trim_end().ends_with("# EOF"));
    app.stop().await;
}

const METRICS_TOKEN: &str = "metrics-token-0123456789";

async fn with_metrics_token(
    configure: impl FnOnce(&mut palisade::config::Settings),
) -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|s| {
        s.metrics.bearer_token = Some(METRICS_TOKEN.to_owned().into());
        configure(s);
    })
    .await
}

async fn scrape(app: &crate::helpers::TestApp) -> reqwest::Response {
    app.client
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
}

// claim: OPS-6
#[tokio::test]
async fn metrics_demand_the_bearer_token_and_without_one_configured_nobody_scrapes() {
    let unconfigured = spawn_app().await;
    assert_eq!(unconfigured.get("/metrics").await.status(), 401);
    let guess = unconfigured
        .client
        .get(unconfigured.url("/metrics"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(guess.status(), 401);
    unconfigured.stop().await;
    let token = METRICS_TOKEN;
    let app = with_metrics_token(|_| {}).await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("metrics-token-0123456780")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    app.stop().await;
}

// claim: OPS-2
#[tokio::test]
async fn a_flood_of_health_checks_shares_one_database_probe() {
    let app = with_metrics_token(|s| s.database.health_cache_ms = 60_000).await;
    let checks = (0..50).map(|_| app.client.get(app.url("/api/health")).send());
    for response in futures_util::future::join_all(checks).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let metrics = scrape(&app).await.text().await.unwrap();
    assert!(
        metrics.contains("palisade_db_health_probes_total 1\n"),
        "{metrics}"
    );
    app.stop().await;
}
