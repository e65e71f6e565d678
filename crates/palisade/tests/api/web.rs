//! The web surface: security headers everywhere, one error shape, no 5xx for bad input.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{assert_error_shape, spawn_app, spawn_app_with, TestApp};
use crate::schema::Schemas;

const WEB2_HEADERS: &[(&str, Option<&str>)] = &[
    ("content-security-policy", None),
    ("x-content-type-options", Some("nosniff")),
    ("referrer-policy", Some("no-referrer")),
    ("permissions-policy", None),
    ("x-frame-options", Some("DENY")),
];

fn assert_security_headers(what: &str, response: &reqwest::Response) {
    for (name, value) in WEB2_HEADERS {
        let got = response
            .headers()
            .get(*name)
            .unwrap_or_else(|| panic!("{what}: missing {name}"))
            .to_str()
            .unwrap();
        if let Some(value) = value {
            assert_eq!(got, *value, "{what}: {name}");
        }
    }
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(response.headers().contains_key("x-request-id"), "{what}");
}

/// Every documented operation, as (method, path).
async fn operations(app: &TestApp) -> Vec<(Method, String)> {
    operations_where(app, |_| true).await
}

/// The operations that take a JSON body, per the OpenAPI document.
/// Operations taking a JSON body (the OAuth endpoints' forms have their own tests in
/// `api::oauth`).
async fn body_operations(app: &TestApp) -> Vec<(Method, String)> {
    operations_where(app, |operation| {
        operation["requestBody"]["content"]
            .get("application/json")
            .is_some()
    })
    .await
}

async fn operations_where(app: &TestApp, keep: impl Fn(&Value) -> bool) -> Vec<(Method, String)> {
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if keep(operation) {
                out.push((method.to_uppercase().parse().unwrap(), path.clone()));
            }
        }
    }
    assert!(out.len() >= 4, "the document lists the routes: {out:?}");
    out
}

// claim: WEB-2
#[tokio::test]
async fn every_route_and_every_error_carries_the_security_headers() {
    let app = spawn_app_with(|s| s.http.body_limit_bytes = 1024).await;
    for (method, path) in operations(&app).await {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_security_headers(&format!("{method} {path}"), &response);
    }
    let cases: Vec<(u16, reqwest::RequestBuilder)> = vec![
        (404, app.client.get(app.url("/no/such/route"))),
        (405, app.client.delete(app.url("/api/health"))),
        (
            413,
            app.client
                .post(app.url("/api/v1/auth/signup"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"email":"{}"}}"#, "a".repeat(4096))),
        ),
        (
            415,
            app.client
                .post(app.url("/api/v1/auth/signup"))
                .header("content-type", "text/plain")
                .body("{}"),
        ),
        (
            422,
            app.client
                .post(app.url("/api/v1/auth/signup"))
                .json(&json!({"email": "a@example.com", "password": 1, "tenant_name": "x"})),
        ),
    ];
    for (status, request) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_security_headers(&format!("{status}"), &response);
        let (got, _) = assert_error_shape(response).await;
        assert_eq!(got, status);
    }
    app.stop().await;
}

/// At least a hundred bodies no schema accepts, each of which must be refused with a 4xx
/// in the error shape, writing nothing.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut bodies: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut add = |kind: &'static str, body: Vec<u8>| bodies.push((kind, body));
    for broken in [
        "",
        " ",
        "{",
        "}",
        "[",
        "{\"email\"",
        "{\"email\":}",
        "{\"email\":\"a\",}",
        "{'email':'a'}",
        "{email:\"a\"}",
        "nul",
        "tru",
        "{\"a\":1}{",
        "{\"a\":1} trailing",
        "\u{feff}{}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":-}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":\"\\x41\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"unterminated}",
        "/* comment */ {}",
        "{\"a\":1,,\"b\":2}",
        "\"just a string\"",
        "123",
        "null",
        "true",
        "[]",
        "[{}]",
        "{}",
    ] {
        add("broken or wrong-shaped JSON", broken.as_bytes().to_vec());
    }
    let valid = json!({"email": "a@example.com", "password": "correct horse battery", "tenant_name": "Acme"});
    let wrong_values = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!([]),
        json!(["a"]),
        json!({}),
        json!({"nested": "x"}),
    ];
    for field in ["email", "password", "tenant_name"] {
        for value in &wrong_values {
            if value.is_string() {
                continue;
            }
            let mut body = valid.clone();
            body[field] = value.clone();
            add("wrong type", serde_json::to_vec(&body).unwrap());
        }
        let mut missing = valid.clone();
        missing.as_object_mut().unwrap().remove(field);
        add("missing field", serde_json::to_vec(&missing).unwrap());
    }
    for unknown in [
        "role",
        "tenant_id",
        "is_admin",
        "Email",
        "password ",
        "__proto__",
        "constructor",
        "",
        "😀",
        "a".repeat(500).leak(),
    ] {
        let mut body = valid.clone();
        body[unknown] = json!("owner");
        add("unknown field", serde_json::to_vec(&body).unwrap());
    }
    for (field, size) in [
        ("email", 300),
        ("email", 5_000),
        ("password", 129),
        ("password", 10_000),
        ("tenant_name", 101),
        ("tenant_name", 20_000),
    ] {
        let mut body = valid.clone();
        body[field] = json!("x".repeat(size));
        add("huge string", serde_json::to_vec(&body).unwrap());
    }
    add("huge body", vec![b' '; 200_000]);
    for depth in [64, 200, 10_000, 100_000] {
        let mut nested = "[".repeat(depth);
        nested.push_str(&"]".repeat(depth));
        add(
            "deep nesting",
            format!("{{\"email\":{nested}}}").into_bytes(),
        );
        add(
            "deep nesting",
            "{\"a\":".repeat(depth.min(5_000)).into_bytes(),
        );
    }
    for bytes in [
        &b"\xff\xfe{}"[..],
        b"{\"email\":\"\xc3\x28\"}",
        b"{\"email\":\"\xa0\xa1\"}",
        b"{\"email\":\"\xe2\x28\xa1\"}",
        b"{\"email\":\"\xf0\x28\x8c\xbc\"}",
        b"{\"email\":\"\xed\xa0\x80\"}",
        b"{\"\xff\":1}",
        b"\x00\x00\x00{",
        b"{\"email\":\"a\x00b@example.com\",\"password\":\"x\"}",
        b"{\"email\":\"\\ud800\"}",
    ] {
        add("invalid UTF-8 or control bytes", bytes.to_vec());
    }
    for (email, password, tenant) in [
        ("not-an-email", "correct horse battery", "Acme"),
        ("a@example.com", "short", "Acme"),
        ("a@example.com", "correct horse battery", ""),
        ("a@example.com", "correct horse battery", "   "),
        ("a b@example.com", "correct horse battery", "Acme"),
        ("a@example.com", "correct horse battery", "line\nbreak"),
    ] {
        add(
            "domain rule",
            serde_json::to_vec(
                &json!({"email": email, "password": password, "tenant_name": tenant}),
            )
            .unwrap(),
        );
    }
    bodies
}

// claim: WEB-4
#[tokio::test]
async fn a_hundred_malformed_bodies_get_4xx_errors_in_the_shape_and_write_nothing() {
    let app = spawn_app().await;
    let bodies = malformed_bodies();
    assert!(bodies.len() >= 100, "only {} bodies", bodies.len());
    let json_operations = body_operations(&app).await;
    assert!(!json_operations.is_empty());
    // Signed in (and, for the integration endpoints, the app's service credential), so
    // authenticated operations reach their body parsing too.
    let session = app.signed_in("probe@example.com").await;
    let (_, service) = crate::access::service_credential(&app).await;
    for (method, path) in &json_operations {
        let bearer = if palisade::ratelimit::is_integration(method.as_str(), path) {
            &service
        } else {
            &session.access
        };
        for (kind, body) in &bodies {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(bearer)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(
                status.is_client_error(),
                "{method} {path} {kind} {:?}: got {status}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
            assert_error_shape(response).await;
        }
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonp"),
            Some("application/xml"),
        ] {
            let mut request = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(bearer)
                .body(r#"{"email":"a@example.com"}"#);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 415, "{content_type:?}");
            assert_error_shape(response).await;
        }
    }
    assert_eq!(app.count_rows("users").await, 1, "nothing was written");
    assert_eq!(app.count_rows("tenants").await, 1, "nothing was written");
    assert_eq!(app.count_rows("sessions").await, 1, "nothing was written");
    app.stop().await;
}

/// Values of each JSON type, to put where a schema expects another.
const EVERY_TYPE: &[(&str, &str)] = &[
    ("null", "null"),
    ("boolean", "true"),
    ("integer", "7"),
    ("number", "1.5"),
    ("string", "\"x\""),
    ("array", "[]"),
    ("object", "{}"),
];

/// For one property: values its schema refuses (each with what is wrong with it).
fn refused_values(schemas: &Schemas, property: &Value) -> Vec<(String, Value)> {
    let types = schemas.types(property);
    let resolved = schemas.property_schema(property).clone();
    let mut refused = Vec::new();
    for (kind, value) in EVERY_TYPE {
        let admitted = types.iter().any(|t| t == kind)
            || (*kind == "integer" && types.iter().any(|t| t == "number"));
        if !admitted {
            refused.push((format!("a {kind}"), serde_json::from_str(value).unwrap()));
        }
    }
    if resolved["enum"].is_array() {
        refused.push(("a value outside the enum".into(), json!("not-one-of-them")));
    }
    if let Some(max) = resolved["maxLength"].as_u64() {
        refused.push((
            "a string too long".into(),
            json!("x".repeat(max as usize + 1)),
        ));
    }
    if let Some(min) = resolved["minimum"].as_i64() {
        refused.push(("a number below the minimum".into(), json!(min - 1)));
    }
    if let Some(max) = resolved["maximum"].as_i64() {
        refused.push(("a number above the maximum".into(), json!(max + 1)));
    }
    if let Some(max) = resolved["maxItems"].as_u64() {
        let item = resolved["items"]["enum"][0].clone();
        refused.push(("too many items".into(), json!(vec![item; max as usize + 1])));
    }
    refused
}

// claim: WEB-4
#[tokio::test]
async fn every_field_of_every_body_refuses_what_its_schema_refuses_and_nothing_is_written() {
    let app = spawn_app().await;
    let session = app.signed_in("probe@example.com").await;
    let (_, service) = crate::access::service_credential(&app).await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let mut schemas = Schemas::new(doc.clone());
    let before = app.table_counts().await;
    let (mut operations, mut sent) = (0, 0);
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(schema) = schemas.body_schema(operation) else {
                continue;
            };
            operations += 1;
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut path = template.clone();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "path" {
                    let name = parameter["name"].as_str().unwrap();
                    let value = schemas.valid(name, &parameter["schema"]);
                    path = path.replace(&format!("{{{name}}}"), value.as_str().unwrap());
                }
            }
            // A body the schema accepts, then each of its fields wrong in each way, each
            // required field missing, and one field too many.
            let valid = schemas.valid_body(&schema);
            let required: Vec<String> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            let mut mutations: Vec<(String, Value)> = Vec::new();
            for (name, property) in schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default()
            {
                for (wrong, value) in refused_values(&schemas, &property) {
                    let mut body = valid.clone();
                    body.insert(name.clone(), value);
                    mutations.push((format!("{name}: {wrong}"), Value::Object(body)));
                }
                if required.contains(&name) {
                    let mut body = valid.clone();
                    body.remove(&name);
                    mutations.push((format!("{name} missing"), Value::Object(body)));
                }
            }
            let mut extra = valid.clone();
            extra.insert("unexpected_field".into(), json!(1));
            mutations.push(("an unknown field".into(), Value::Object(extra)));
            // The integration endpoints take the app's service credential, the rest a session.
            let takes_service = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|scheme| scheme.get("service").is_some());
            let bearer = if takes_service {
                &service
            } else {
                &session.access
            };
            for (what, body) in mutations {
                let response = app
                    .client
                    .request(method.clone(), app.url(&path))
                    .bearer_auth(bearer)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                assert!(
                    status.is_client_error(),
                    "{method} {template} with {what}: {status} for {body}"
                );
                assert_error_shape(response).await;
                sent += 1;
            }
        }
    }
    println!("{operations} operations with a body, {sent} mutated bodies");
    assert!(operations >= 15, "{operations} operations with a body");
    assert!(sent >= 150, "{sent} mutated bodies");
    assert_eq!(app.table_counts().await, before, "nothing was written");
    app.stop().await;
}

// claim: WEB-4
#[tokio::test]
async fn error_messages_never_echo_what_the_client_sent() {
    let app = spawn_app().await;
    for body in [
        json!({"email": "a@example.com", "password": 9_876_543_210_123_u64, "tenant_name": "x"}),
        json!({"email": "a@example.com", "password": ["hunter2-in-a-list"], "tenant_name": "x"}),
        json!({"email": "hunter2-as-email", "password": "correct horse battery", "tenant_name": "x"}),
    ] {
        let response = app.post_json("/api/v1/auth/signup", &body).await;
        assert_eq!(response.status(), 422);
        let text = response.text().await.unwrap();
        for secret in ["9876543210123", "hunter2"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    app.stop().await;
}

// claim: WEB-4
#[tokio::test]
async fn a_request_whose_body_never_arrives_times_out_with_408() {
    let app = spawn_app_with(|s| s.http.request_timeout_ms = 300).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"POST /api/v1/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
        .await
        .unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            response.extend_from_slice(&buf[..n]);
            if n == 0 || response.windows(4).any(|w| w == b"}}\r\n") || response.ends_with(b"}}") {
                break;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server answered before the client gave up"
    );
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"timeout\""), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{text}"
    );
    app.stop().await;
}

// claim: WEB-6
#[tokio::test]
async fn sql_metacharacters_in_input_are_data_not_code() {
    let app = spawn_app().await;
    let email = "o'brien+x@example.com";
    let response = app
        .post_json(
            "/api/v1/auth/signup",
            &json!({"email": email, "password": "correct horse battery", "tenant_name": "Robert'); DROP TABLE tenants;--"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.count_rows("tenants").await, 1);
    assert_eq!(app.count_rows("users").await, 1);
    app.stop().await;
}

/// Sends `request` as raw bytes and reads the answer's head (and a little more).
async fn raw_exchange(app: &crate::helpers::TestApp, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        let headers_done = text.contains("\r\n\r\n");
        if n == 0 || (headers_done && (text.ends_with('}') || text.contains("}}"))) {
            break;
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

// claim: WEB-2, WEB-4
#[tokio::test]
async fn malformed_requests_are_refused_by_the_frame_with_its_headers() {
    let app = spawn_app().await;
    let long_target = format!(
        "GET /api/health?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    let big_header = format!(
        "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    let cases: [(&str, &[u8], &str); 5] = [
        ("no Host", b"GET /api/health HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
        (
            "two Hosts",
            b"GET /api/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "HTTP/1.1 400",
        ),
        ("a 10 KiB target", long_target.as_bytes(), "HTTP/1.1 414"),
        ("40 KiB of headers", big_header.as_bytes(), "HTTP/1.1 431"),
        (
            "a 10 MB upload that expects 100-continue",
            b"POST /api/v1/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n\r\n",
            "HTTP/1.1 413",
        ),
    ];
    for (what, request, status) in cases {
        let text = raw_exchange(&app, request).await;
        assert!(text.starts_with(status), "{what}: {text}");
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("x-content-type-options: nosniff"),
            "{what}: {text}"
        );
        assert!(lower.contains("content-security-policy:"), "{what}: {text}");
        assert!(lower.contains("x-request-id:"), "{what}: {text}");
        assert!(text.contains("\"error\":{\"code\":"), "{what}: {text}");
        assert!(!text.contains("100 Continue"), "{what}: {text}");
    }
    // One Host, and HTTP/1.0 without one, are served.
    let ok = raw_exchange(&app, b"GET /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let old = raw_exchange(&app, b"GET /api/health/live HTTP/1.0\r\n\r\n").await;
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );
    app.stop().await;
}

// claim: WEB-2
#[tokio::test]
async fn listed_origins_may_call_with_credentials_and_no_other_origin_gets_a_cors_header() {
    const LISTED: &str = "https://app.example.com";
    let app = spawn_app_with(|s| s.http.cors_origins = vec![LISTED.to_owned()]).await;
    let session = app.signed_in("owner@example.com").await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    // The listed origin's preflight: answered by the frame, with its headers.
    let answered = preflight(LISTED).await.unwrap();
    assert_eq!(answered.status(), 204);
    let headers = answered.headers();
    assert_eq!(headers["access-control-allow-origin"], LISTED);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    assert!(headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    assert!(headers.contains_key("content-security-policy"));
    assert!(headers.contains_key("x-request-id"));
    // Another origin's: no CORS header, so the browser refuses.
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(!refused
        .headers()
        .contains_key("access-control-allow-origin"));
    assert!(!refused.status().is_success());

    // Real calls: the listed origin is echoed (never `*`), others get nothing; every answer
    // varies by Origin.
    for (origin, echoed) in [(LISTED, true), ("https://evil.example", false)] {
        let response = app
            .client
            .get(app.url("/api/v1/me"))
            .header("origin", origin)
            .bearer_auth(&session.access)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(
            headers.contains_key("access-control-allow-origin"),
            echoed,
            "{origin}"
        );
        if echoed {
            assert_eq!(headers["access-control-allow-origin"], LISTED);
            assert!(headers["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("x-request-id"));
        }
        assert!(
            headers.get_all("vary").iter().any(|v| v == "origin"),
            "{origin}"
        );
    }
    app.stop().await;

    // By default no origin is listed: nothing cross-origin at all.
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/health"))
        .header("origin", LISTED)
        .send()
        .await
        .unwrap();
    assert!(!response
        .headers()
        .contains_key("access-control-allow-origin"));
    assert!(!response.headers().contains_key("vary"));
    app.stop().await;
}
