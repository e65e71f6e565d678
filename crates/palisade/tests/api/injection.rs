//! SQL injection (claim WEB-6), walked from the OpenAPI document: classic payloads in every
//! string field of every request body, every query parameter and every path parameter. A
//! payload must behave exactly as an inert string of the same length (the same status),
//! never reach a 5xx or put database error text in a response, and afterwards every table,
//! the other tenant and the audit chain are as they were.

use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::schema::Schemas;

const PAYLOADS: &[&str] = &[
    "' OR '1'='1",
    "' OR 1=1--",
    "\" OR \"\"=\"",
    "'; DROP TABLE users;--",
    "1; DELETE FROM tenants",
    "' UNION SELECT password_hash, email FROM users--",
    "admin'--",
    "') OR ('a'='a",
    "1' AND pg_sleep(5)--",
    "'||(SELECT sqlite_version())||'",
    "$$; DROP TABLE audit_events; $$",
    "\\'; SELECT 1; --",
    "x' AND 1=(SELECT COUNT(*) FROM sqlite_master)--",
    "%27 OR 1=1",
    "' OR ''='",
    "1)) OR ((1=1",
];

/// What a database error, a driver or a query would put in a response if it leaked.
const SQL_ERROR_TEXT: &[&str] = &[
    "syntax error",
    "sqlite",
    "postgres",
    "sqlx",
    "sqlstate",
    "near \"",
    "unrecognized token",
    "unterminated",
    "relation \"",
    "column \"",
    "duplicate key",
    "violates",
    "select ",
];

/// A string of `length` letters, different for each `n`: the inert twin of a payload.
fn inert(length: usize, n: usize) -> String {
    let mut text = String::new();
    let mut rest = n;
    while text.len() < length {
        text.push((b'a' + (rest % 26) as u8) as char);
        rest /= 26;
    }
    text
}

struct Walk<'a> {
    app: &'a TestApp,
    access: String,
    schemas: Schemas,
    sent: usize,
}

impl Walk<'_> {
    async fn send(&mut self, method: &Method, path: &str, body: Option<&Value>) -> (u16, String) {
        self.sent += 1;
        let mut request = self
            .app
            .client
            .request(method.clone(), self.app.url(path))
            .bearer_auth(&self.access);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(status < 500, "{method} {path}: {status} {text}");
        (status, text)
    }

    /// No database error text, once the payload itself (stored and shown back as data) is
    /// taken out.
    fn assert_no_sql_error(what: &str, text: &str, payload: &str) {
        let quoted = serde_json::to_string(payload).unwrap();
        let lower = text.replace(&quoted, "\"\"").to_lowercase();
        for leak in SQL_ERROR_TEXT {
            assert!(!lower.contains(leak), "{what}: {leak:?} in {text}");
        }
    }

    /// Sends the request with `payload`, then with its inert twin: the same status.
    async fn compare(
        &mut self,
        method: &Method,
        what: &str,
        build: impl Fn(&str) -> (String, Option<Value>),
    ) {
        for payload in PAYLOADS {
            self.schemas.counter += 1;
            let twin = inert(payload.len(), self.schemas.counter);
            let (path, body) = build(payload);
            let (hostile, hostile_text) = self.send(method, &path, body.as_ref()).await;
            Self::assert_no_sql_error(what, &hostile_text, payload);
            let (path, body) = build(&twin);
            let (plain, plain_text) = self.send(method, &path, body.as_ref()).await;
            Self::assert_no_sql_error(what, &plain_text, &twin);
            assert_eq!(
                hostile, plain,
                "{method} {what} = {payload:?}: {hostile_text}\nbut an inert string: {plain_text}"
            );
            // The same answer, too, once each string is taken out and what differs between
            // any two requests (ids, secrets) is named generically.
            assert_eq!(
                comparable(&hostile_text, payload),
                comparable(&plain_text, &twin),
                "{method} {what} = {payload:?}: {hostile_text}\nbut an inert string: {plain_text}"
            );
        }
    }
}

/// An answer with `sent` (as JSON, and percent-encoded) replaced by a placeholder, and the
/// values every request makes anew — ids, request ids, key secrets, counted names — by
/// their kind, so two answers compare equal exactly when they say the same.
fn comparable(text: &str, sent: &str) -> String {
    let quoted = serde_json::to_string(sent).unwrap();
    let inner = &quoted[1..quoted.len() - 1];
    let text = text.replace(&quoted, "\"<sent>\"").replace(inner, "<sent>");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphanumeric()) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let generic = match word.split_once('_') {
            Some(("pal", _)) => "<secret>",
            Some((prefix, tail))
                if (2..=4).contains(&prefix.len())
                    && tail.len() >= 32
                    && tail.chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                "<id>"
            }
            _ => word,
        };
        out.push_str(generic);
        rest = &rest[end..];
    }
    out.push_str(rest);
    // Names and addresses the walker numbers (`Name 12`, `walker12@…`), and where in the
    // body a parser stopped (an escaped payload is longer than its twin).
    let mut normal = String::with_capacity(out.len());
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        normal.push(c);
        let numbered = ["Name ", "walker", "column "];
        if numbered.iter().any(|n| normal.ends_with(n)) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            normal.push('#');
        }
    }
    normal
}

/// What a tenant sees of itself through its collections.
async fn tenant_view(app: &TestApp, access: &str) -> Vec<Value> {
    let mut view = Vec::new();
    for path in [
        "/api/v1/tenant",
        "/api/v1/members",
        "/api/v1/invitations",
        "/api/v1/custom-roles",
        "/api/v1/applications",
        "/api/v1/api-keys",
        "/api/v1/audit/retention",
    ] {
        let response = app.get_as(path, access).await;
        assert_eq!(response.status(), 200, "{path}");
        view.push(response.json().await.unwrap());
    }
    view
}

/// A real id of the walker's own tenant for each path parameter of the document.
async fn real_ids_of(
    app: &TestApp,
    access: &str,
) -> std::collections::HashMap<&'static str, String> {
    let create = |path: &'static str, body: Value| async move {
        let response = app.post_as(path, access, Some(&body)).await;
        assert_eq!(response.status(), 201, "{path}");
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    };
    // A member to act on, other than the walker.
    app.sign_up("target@example.com").await;
    let me: Value = app.get_as("/api/v1/me", access).await.json().await.unwrap();
    let tenant = me["tenant"]["id"].as_str().unwrap().to_owned();
    crate::sessions::add_membership(app, "target@example.com", &tenant, "viewer").await;
    let members: Value = app
        .get_as("/api/v1/members", access)
        .await
        .json()
        .await
        .unwrap();
    let target = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "target@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::collections::HashMap::from([
        ("source", "walk".to_owned()),
        ("user_id", target),
        ("session_id", me["session_id"].as_str().unwrap().to_owned()),
        (
            "invitation_id",
            create(
                "/api/v1/invitations",
                json!({"email": "walked@example.com", "role": "viewer"}),
            )
            .await,
        ),
        (
            "role_id",
            create(
                "/api/v1/custom-roles",
                json!({"name": "Walked", "actions": ["members.read"]}),
            )
            .await,
        ),
        (
            "application_id",
            create("/api/v1/applications", json!({"name": "Walked"})).await,
        ),
        (
            "key_id",
            create(
                "/api/v1/api-keys",
                json!({"name": "Walked", "role": "viewer"}),
            )
            .await,
        ),
        (
            "secret_id",
            create(
                "/api/v1/secrets",
                json!({"name": "walked", "value": "a walked value"}),
            )
            .await,
        ),
        (
            "endpoint_id",
            create(
                "/api/v1/webhooks/endpoints",
                json!({"url": "https://93.184.216.34/walked", "event_types": ["member.added"]}),
            )
            .await,
        ),
    ])
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// claim: WEB-6, TEN-4
#[tokio::test]
async fn injection_payloads_in_every_field_and_parameter_behave_as_inert_text() {
    let app = spawn_app_with(|s| {
        s.rate_limits.default_per_minute = 1_000_000;
        s.rate_limits.read_per_minute = 1_000_000;
        s.rate_limits.sign_in_per_minute = 1_000_000;
        // Hundreds of wrong passwords are the walk, not an attack on an account.
        s.auth.max_failures_per_email_ip = 1_000_000;
        s.auth.max_failures_per_ip = 1_000_000;
        s.auth.slow_after_account_failures = 1_000_000;
        crate::helpers::with_an_inbound_source(s);
    })
    .await;
    let owner = app.signed_in("owner@example.com").await;
    let other = app.signed_in("other@example.com").await;
    let key = app
        .post_as(
            "/api/v1/api-keys",
            &other.access,
            Some(&json!({"name": "Canary", "role": "viewer"})),
        )
        .await;
    assert_eq!(key.status(), 201);
    let key: Value = key.json().await.unwrap();
    let key_secret = key["secret"].as_str().unwrap().to_owned();
    for (path, body) in [
        (
            "/api/v1/invitations",
            json!({"email": "canary@example.com", "role": "viewer"}),
        ),
        (
            "/api/v1/custom-roles",
            json!({"name": "Canary", "actions": ["members.read"]}),
        ),
        ("/api/v1/applications", json!({"name": "Canary"})),
    ] {
        let created = app.post_as(path, &other.access, Some(&body)).await;
        assert_eq!(created.status(), 201, "{path}");
    }
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    // Real ids of the walker's tenant for every path parameter, so a request with an id
    // reaches the database with its body and query instead of stopping at a made-up id.
    let real_ids = real_ids_of(&app, &owner.access).await;
    // The other tenant, a canary: what it sees of itself must not change at all.
    let canary = tenant_view(&app, &other.access).await;
    let counts_before = app.table_counts().await;
    let mut walk = Walk {
        app: &app,
        access: owner.access.clone(),
        schemas: Schemas::new(doc.clone()),
        sent: 0,
    };
    let mut fields = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            // A valid value for every parameter and property, then each string in turn.
            let mut path_values = Map::new();
            for parameter in parameters.iter().filter(|p| p["in"] == "path") {
                let name = parameter["name"].as_str().unwrap();
                let value = match real_ids.get(name) {
                    Some(id) => json!(id),
                    None => panic!("{template}: no real id for path parameter {name}"),
                };
                path_values.insert(name.to_owned(), value);
            }
            let fill = |values: &Map<String, Value>, replace: Option<(&str, &str)>| {
                let mut path = template.clone();
                for (name, value) in values {
                    let text = match replace {
                        Some((target, payload)) if target == name => encode(payload),
                        _ => value.as_str().unwrap().to_owned(),
                    };
                    path = path.replace(&format!("{{{name}}}"), &text);
                }
                path
            };
            let body_schema =
                operation["requestBody"]["content"]["application/json"]["schema"].clone();
            let mut body = Map::new();
            let mut text_properties = Vec::new();
            if !body_schema.is_null() {
                let schema = walk.schemas.resolve(&body_schema).clone();
                for (name, property) in schema["properties"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                {
                    let value = walk.schemas.valid(&name, &property);
                    let resolved = walk.schemas.property_schema(&property).clone();
                    let items = walk.schemas.property_schema(&resolved["items"]).clone();
                    if walk.schemas.is_text(&resolved) || walk.schemas.is_text(&items) {
                        text_properties.push((name.clone(), resolved["type"] == "array"));
                    }
                    body.insert(name, value);
                }
            }
            let body = (!body_schema.is_null()).then_some(Value::Object(body));
            let what = template.as_str();
            for (name, in_array) in &text_properties {
                fields += 1;
                let base = body.clone().unwrap();
                walk.compare(&method, &format!("{what} body.{name}"), |text| {
                    let mut body = base.clone();
                    body[name.as_str()] = if *in_array {
                        json!([text])
                    } else {
                        json!(text)
                    };
                    (fill(&path_values, None), Some(body))
                })
                .await;
            }
            for parameter in &parameters {
                let name = parameter["name"].as_str().unwrap().to_owned();
                match parameter["in"].as_str() {
                    Some("path") => {
                        fields += 1;
                        walk.compare(&method, &format!("{what} path {name}"), |text| {
                            (fill(&path_values, Some((&name, text))), body.clone())
                        })
                        .await;
                    }
                    Some("query")
                        if walk
                            .schemas
                            .is_text(walk.schemas.property_schema(&parameter["schema"])) =>
                    {
                        fields += 1;
                        walk.compare(&method, &format!("{what} ?{name}"), |text| {
                            let path =
                                format!("{}?{name}={}", fill(&path_values, None), encode(text));
                            (path, body.clone())
                        })
                        .await;
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(fields >= 40, "only {fields} fields walked");
    println!("{fields} fields and parameters, {} requests", walk.sent);

    // Nothing was dropped or deleted (the walk only adds rows), and the other tenant sees
    // exactly what it saw before.
    let counts_after = app.table_counts().await;
    for (table, before) in &counts_before {
        let after = counts_after.get(table).copied().unwrap_or(-1);
        assert!(
            after >= *before,
            "{table}: {before} rows before, {after} after"
        );
    }
    assert_eq!(
        tenant_view(&app, &other.access).await,
        canary,
        "the other tenant"
    );
    let canary_key = key_secret;
    let tenant: Value = app
        .client
        .get(app.url("/api/v1/tenant"))
        .header("x-api-key", &canary_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tenant["id"], other.tenant.as_str(), "{tenant}");
    assert_eq!(app.login("other@example.com").await.tenant, other.tenant);
    let owner = app.login("owner@example.com").await;
    assert!(crate::audit::verdict_ok(&app, &owner).await);
    app.stop().await;
}
