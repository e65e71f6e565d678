//! The OpenAPI document covers every route, and every documented route is served.

use serde_json::Value;

#[tokio::test]
async fn the_openapi_document_is_3_1_and_every_operation_in_it_is_served() {
    let app = crate::helpers::spawn_app_with(crate::helpers::with_an_inbound_source).await;
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/health",
        "/api/openapi.json",
        "/metrics",
        "/api/v1/auth/signup",
    ] {
        assert!(paths.contains_key(expected), "{expected} is documented");
    }
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            // A route that is documented but not served would fall through to 404 or 405.
            let response = app
                .client
                .request(
                    method.to_uppercase().parse().unwrap(),
                    app.url(&path.replace("{source}", "walk")),
                )
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(
                status != 404 && status != 405,
                "{method} {path} answered {status}"
            );
        }
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    app.stop().await;
}
