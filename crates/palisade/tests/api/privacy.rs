//! GDPR (claim OPS-5): a tenant's export for its Owner and a person's own export, with no
//! hash or secret of any kind in either.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{backend, Backend, TestApp, PASSWORD};
use crate::tenancy::{send, staffed_tenant};

const TENANT_EXPORT: &str = "/api/v1/tenant/export";
const ACCOUNT_EXPORT: &str = "/api/v1/me/export";
const SECRET_VALUE: &str = "xoxb-0123456789-SLACKsecretEFGH";

/// Every stored hash, sealed value and wrapped key in the database, as text: text columns
/// as stored, binary ones in hex. The audit chain's own hashes are the chain, not secrets.
async fn stored_secrets(app: &TestApp) -> Vec<String> {
    let columns: Vec<String> = match backend() {
        Backend::Sqlite => {
            app.inspect(
                "SELECT m.name || '.' || p.name FROM sqlite_master m, pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND (p.name LIKE '%hash%' OR p.name LIKE '%sealed%'
                   OR p.name = 'wrapped') AND m.name NOT LIKE 'audit_%'",
                None,
            )
            .await
        }
        Backend::Postgres => {
            app.inspect(
                "SELECT c.table_name || '.' || c.column_name FROM information_schema.columns c
                 JOIN pg_tables t ON t.tablename = c.table_name AND t.schemaname = c.table_schema
                 WHERE c.table_schema = 'public' AND (c.column_name LIKE '%hash%'
                   OR c.column_name LIKE '%sealed%' OR c.column_name = 'wrapped')
                   AND c.table_name NOT LIKE 'audit_%'",
                None,
            )
            .await
        }
    };
    assert!(columns.len() >= 10, "{columns:?}");
    let mut values = Vec::new();
    for column in columns {
        let (table, name) = column.split_once('.').unwrap();
        let sql = match backend() {
            Backend::Sqlite => format!(
                "SELECT CASE WHEN typeof({name}) = 'blob' THEN lower(hex({name})) ELSE {name} END
                 FROM {table} WHERE {name} IS NOT NULL"
            ),
            Backend::Postgres => format!(
                "SELECT CASE WHEN pg_typeof({name}) = 'bytea'::regtype
                   THEN encode({name}::text::bytea, 'hex') ELSE {name}::text END
                 FROM {table} WHERE {name} IS NOT NULL"
            ),
        };
        values.extend(app.inspect::<String>(&sql, None).await);
    }
    values
}

/// The forms a secret could take in a JSON document: itself, and for binary values their
/// hex and base64.
fn renderings(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    if let Ok(bytes) = hex::decode(value) {
        forms.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
        forms.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes));
    }
    forms
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (String::new(), 0u32, 0);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Every chain of the deployment verifies, the platform stream's included.
async fn every_chain_verifies(app: &TestApp) {
    for chain in app.state.audit.streams().await.unwrap() {
        let verified = app.state.audit.verify(chain).await.unwrap();
        assert!(
            verified.ok,
            "{}: {:?}",
            verified.stream, verified.first_problem
        );
    }
}

async fn get_text(app: &TestApp, path: &str, access: &str) -> (u16, String) {
    let response = app.get_as(path, access).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

// claim: OPS-5
#[tokio::test]
async fn the_owners_export_holds_the_whole_tenant_and_no_hash_token_or_secret_of_any_kind() {
    let app = crate::webhooks::app_with_receivers().await;
    let staff = staffed_tenant(&app).await;
    let (owner, admin) = (&staff["owner"], &staff["admin"]);
    let (totp, recovery_codes) = crate::mfa::enable_totp(&app, admin).await;
    let (key, key_text) = crate::keys::create_key(
        &app,
        owner,
        json!({"name": "ci", "role": "member", "meta": {"customer": "acme-42"}}),
    )
    .await;
    let (status, invitation) = send(
        &app,
        Method::POST,
        "/api/v1/invitations",
        &owner.access,
        Some(json!({"email": "grace@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, 201, "{invitation}");
    let mail = app.outbox(1).await.pop().unwrap();
    let invitation_token = crate::helpers::token_in_mail(&mail);
    let (status, secret) = send(
        &app,
        Method::POST,
        "/api/v1/secrets",
        &owner.access,
        Some(json!({"name": "slack/bot", "value": SECRET_VALUE})),
    )
    .await;
    assert_eq!(status, 201, "{secret}");
    let (endpoint, signing_secret) = crate::webhooks::endpoint(
        &app,
        &owner.access,
        "https://127.0.0.1:9/hooks",
        &["member.added"],
    )
    .await;

    // Only the Owner, and only in person.
    for role in ["admin", "manager", "member", "viewer"] {
        let (status, body) = get_text(&app, TENANT_EXPORT, &staff[role].access).await;
        assert_eq!(status, 403, "{role}: {body}");
    }
    let by_key = app
        .client
        .get(app.url(TENANT_EXPORT))
        .header("x-api-key", &key_text)
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_key.status(),
        401,
        "the route takes a person's session, never a key"
    );

    let (status, text) = get_text(&app, TENANT_EXPORT, &owner.access).await;
    assert_eq!(status, 200, "{text}");
    let export: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(export["format"], "palisade-tenant-export/1");
    assert_eq!(export["tenant"]["id"], owner.tenant.as_str());
    assert_eq!(export["members"].as_array().unwrap().len(), 5, "{export}");
    assert_eq!(export["invitations"][0]["email"], "grace@example.com");
    assert_eq!(export["api_keys"][0]["id"], key["id"]);
    assert_eq!(export["api_keys"][0]["meta"]["customer"], "acme-42");
    assert_eq!(export["secrets"][0]["name"], "slack/bot");
    assert_eq!(export["secrets"][0]["masked"], "••••EFGH");
    assert_eq!(export["webhook_endpoints"][0]["id"], endpoint.as_str());
    let sessions = export["sessions"].as_array().unwrap();
    assert!(sessions.len() >= 5, "every member signed in: {sessions:?}");
    let events = export["audit_events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["members.invited", "api_keys.created", "tenant.exported"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "the whole chain"
    );

    // No secret of any kind, in any form it could take.
    let mut secrets = vec![
        PASSWORD.to_owned(),
        key_text,
        invitation_token,
        SECRET_VALUE.to_owned(),
        signing_secret,
        base32(&totp),
        hex::encode(&totp),
    ];
    secrets.extend(recovery_codes);
    for session in staff.values() {
        secrets.push(session.refresh.clone());
        secrets.push(session.access.clone());
    }
    let stored = stored_secrets(&app).await;
    assert!(
        stored.len() >= 15,
        "hashes and seals were read: {}",
        stored.len()
    );
    secrets.extend(stored.iter().flat_map(|value| renderings(value)));
    for secret in &secrets {
        assert!(
            secret.len() >= 8,
            "a needle that means something: {secret:?}"
        );
        assert!(
            !text.contains(secret.as_str()),
            "the export holds {secret:?}"
        );
    }

    // The export itself is on the record.
    let (_, listed) = send(
        &app,
        Method::GET,
        "/api/v1/audit/events?action=tenant.exported",
        &owner.access,
        None,
    )
    .await;
    assert_eq!(
        listed["events"][0]["actor_id"],
        crate::tenancy::user_id_of(&app, owner).await
    );
}

// claim: OPS-5
#[tokio::test]
async fn a_person_exports_their_own_account_and_nothing_of_anyone_else() {
    let app = crate::helpers::spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let member = &staff["member"];
    let (totp, _) = crate::mfa::enable_totp(&app, member).await;
    let (status, text) = get_text(&app, ACCOUNT_EXPORT, &member.access).await;
    assert_eq!(status, 200, "{text}");
    let export: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(export["format"], "palisade-account-export/1");
    assert_eq!(export["user"]["email"], "member@example.com");
    assert_eq!(export["totp_enrolled"], true);
    assert_eq!(
        export["memberships"][0]["tenant_id"],
        member.tenant.as_str()
    );
    assert_eq!(export["memberships"][0]["role"], "member");
    assert!(
        !export["sessions"].as_array().unwrap().is_empty(),
        "{export}"
    );
    for other in ["owner@example.com", "admin@example.com"] {
        assert!(!text.contains(other), "{other} is not the member's data");
    }
    let mut secrets = vec![PASSWORD.to_owned(), member.refresh.clone(), base32(&totp)];
    secrets.extend(
        stored_secrets(&app)
            .await
            .iter()
            .flat_map(|v| renderings(v)),
    );
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "the export holds {secret:?}"
        );
    }
    let unauthenticated = app.get(ACCOUNT_EXPORT).await;
    assert_eq!(unauthenticated.status(), 401);
}

const BROWSER: &str = "MemberBrowser/7.1 (erasure test)";

async fn erase(app: &TestApp, access: &str, password: &str) -> (u16, Value) {
    send(
        app,
        Method::POST,
        "/api/v1/me/erase",
        access,
        Some(json!({ "password": password })),
    )
    .await
}

/// Signs `email` in from the member's browser: its address and user agent land in events.
async fn sign_in_from_browser(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", BROWSER)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

// claim: OPS-5
#[tokio::test]
async fn an_erased_person_cannot_sign_in_appears_in_no_export_and_every_chain_still_verifies() {
    let app = crate::helpers::spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let owner = &staff["owner"];
    let member_id = crate::tenancy::user_id_of(&app, &staff["member"]).await;
    // The member's address and browser, in their tenant's chain and the platform stream.
    let failed = sign_in_from_browser(&app, "member@example.com", "not the password").await;
    assert_eq!(failed.status(), 401);
    let signed_in = sign_in_from_browser(&app, "member@example.com", PASSWORD).await;
    assert_eq!(signed_in.status(), 200);
    let member = crate::helpers::Session::from_response(signed_in).await;
    let held: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE user_agent = $1 OR target_id = 'member@example.com'",
            Some(BROWSER),
        )
        .await;
    assert!(held.len() >= 2, "the member's data is in the log: {held:?}");

    // The password again, and never an Owner's account.
    assert_eq!(erase(&app, &member.access, "not the password").await.0, 401);
    let (status, refused) = erase(&app, &owner.access, PASSWORD).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("transfer ownership"));
    let (status, body) = erase(&app, &member.access, PASSWORD).await;
    assert_eq!(status, 204, "{body}");
    // Not one event holds the member's browser or address any more (a later attempt to
    // sign in with it is a new event, about whoever tries).
    let left: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE user_agent = $1 OR target_id = 'member@example.com'",
            Some(BROWSER),
        )
        .await;
    assert!(left.is_empty(), "{left:?}");

    // Gone: no sign-in, no session, no token.
    let again = sign_in_from_browser(&app, "member@example.com", PASSWORD).await;
    assert_eq!(again.status(), 401);
    assert_eq!(app.get_as("/api/v1/me", &member.access).await.status(), 401);
    assert_eq!(app.refresh(&member.refresh).await.status(), 401);
    let emails: Vec<String> = app
        .inspect(
            "SELECT email FROM users WHERE email LIKE $1",
            Some("%@erased.invalid"),
        )
        .await;
    assert_eq!(emails, [format!("{member_id}@erased.invalid")]);
    let traces: Vec<i64> = app
        .inspect(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE u.erased_at IS NOT NULL AND (s.ip IS NOT NULL OR s.user_agent IS NOT NULL
               OR s.revoked_at IS NULL)",
            None,
        )
        .await;
    assert_eq!(
        traces,
        [0],
        "the sessions ended and forgot where they came from"
    );
    let (_, listed) = send(&app, Method::GET, "/api/v1/members", &owner.access, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");

    // In no export, and in no event: the rows that held the data now hold none.
    let (status, text) = get_text(&app, TENANT_EXPORT, &owner.access).await;
    assert_eq!(status, 200);
    for trace in ["member@example.com", BROWSER] {
        assert!(!text.contains(trace), "the export still holds {trace}");
    }
    let erased: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE action IN ('members.erased', 'account.erased')",
            None,
        )
        .await;
    assert_eq!(
        erased.len(),
        2,
        "the tenant's log and the platform stream: {erased:?}"
    );

    // Every chain verifies, through the API, the library and an offline export.
    let verdict = crate::audit::verdict(&app, owner).await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert!(verdict["redacted"].as_u64().unwrap() >= 1, "{verdict}");
    every_chain_verifies(&app).await;
    let key = crate::audit::published_key(&app).await;
    for format in ["ndjson", "csv"] {
        let exported =
            crate::audit::export(&app, &owner.access, &format!("?format={format}")).await;
        assert!(!exported.contains(BROWSER), "{format}");
        let report = palisade::audit::export::verify_export(exported.as_bytes(), &key)
            .unwrap_or_else(|problem| panic!("{format}: {problem}"));
        assert!(report.redacted >= 1, "{format}");
    }

    // A redacted row edited again, or a redaction lifted onto another row, is named.
    let redacted: Vec<i64> = app
        .inspect(
            &format!(
                "SELECT seq FROM audit_events WHERE redaction IS NOT NULL AND {} ORDER BY seq",
                crate::audit::TENANT_ROWS
            ),
            None,
        )
        .await;
    let first = redacted[0];
    app.tamper(&[&format!(
        "UPDATE audit_events SET user_agent = 'forged' WHERE seq = {first} AND {}",
        crate::audit::TENANT_ROWS
    )])
    .await;
    assert_eq!(
        crate::audit::first_problem(&app, owner).await,
        (first, "edited".to_owned())
    );

    // The address is free again: a new person may sign up with it.
    let response = app
        .post_json(
            "/api/v1/auth/signup",
            &json!({"email": "member@example.com", "password": PASSWORD, "tenant_name": "New"}),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
}

// claim: OPS-5
#[tokio::test]
async fn a_redaction_moved_onto_another_event_does_not_verify() {
    let app = crate::helpers::spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let owner = &staff["owner"];
    let failed = sign_in_from_browser(&app, "member@example.com", "not the password").await;
    assert_eq!(failed.status(), 401);
    let member = crate::helpers::Session::from_response(
        sign_in_from_browser(&app, "member@example.com", PASSWORD).await,
    )
    .await;
    assert_eq!(erase(&app, &member.access, PASSWORD).await.0, 204);
    let rows = crate::audit::TENANT_ROWS;
    let redacted: Vec<i64> = app
        .inspect(
            &format!("SELECT seq FROM audit_events WHERE redaction IS NOT NULL AND {rows}"),
            None,
        )
        .await;
    let plain: Vec<i64> = app
        .inspect(
            &format!(
                "SELECT seq FROM audit_events WHERE redaction IS NULL AND ip IS NOT NULL AND {rows} ORDER BY seq"
            ),
            None,
        )
        .await;
    let (from, onto) = (redacted[0], plain[0]);
    // The attacker blanks another event's address and copies a valid proof beside it.
    app.tamper(&[&format!(
        "UPDATE audit_events SET ip = NULL, user_agent = NULL,
             redaction = (SELECT redaction FROM audit_events WHERE seq = {from} AND {rows})
         WHERE seq = {onto} AND {rows}"
    )])
    .await;
    assert_eq!(
        crate::audit::first_problem(&app, owner).await,
        (onto, "edited".to_owned())
    );
}

/// The tables of the schema with a `tenant_id` column.
async fn tenant_tables(app: &TestApp) -> Vec<String> {
    let tables: Vec<String> = match backend() {
        Backend::Sqlite => {
            app.inspect(
                "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND p.name = 'tenant_id'",
                None,
            )
            .await
        }
        Backend::Postgres => {
            app.inspect(
                "SELECT c.table_name::text FROM information_schema.columns c
                 JOIN pg_tables t ON t.tablename = c.table_name AND t.schemaname = c.table_schema
                 WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id'",
                None,
            )
            .await
        }
    };
    assert!(tables.len() >= 15, "{tables:?}");
    tables
}

async fn tenant_of_owner(app: &TestApp, email: &str) -> String {
    app.inspect(
        "SELECT CAST(m.tenant_id AS TEXT) FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE u.email = $1 AND m.role = 'owner'",
        Some(email),
    )
    .await
    .remove(0)
}

// claim: OPS-5
#[tokio::test]
async fn a_deleted_tenant_leaves_no_row_no_key_and_a_closed_chain_that_verifies() {
    let app = crate::webhooks::app_with_receivers().await;
    let staff = staffed_tenant(&app).await;
    let owner = &staff["owner"];
    let (_, key_text) =
        crate::keys::create_key(&app, owner, json!({"name": "ci", "role": "member"})).await;
    for (path, body) in [
        (
            "/api/v1/secrets",
            json!({"name": "slack/bot", "value": SECRET_VALUE}),
        ),
        ("/api/v1/applications", json!({"name": "Sync"})),
        (
            "/api/v1/custom-roles",
            json!({"name": "Auditor", "actions": ["audit.read"]}),
        ),
        (
            "/api/v1/invitations",
            json!({"email": "grace@example.com", "role": "viewer"}),
        ),
    ] {
        let (status, made) = send(&app, Method::POST, path, &owner.access, Some(body)).await;
        assert_eq!(status, 201, "{path}: {made}");
    }
    crate::webhooks::endpoint(
        &app,
        &owner.access,
        "https://127.0.0.1:9/h",
        &["member.added"],
    )
    .await;
    let tenant = tenant_of_owner(&app, "owner@example.com").await;
    let held = |table: String| {
        let app = &app;
        let tenant = tenant.clone();
        async move {
            let sql = format!("SELECT count(*) FROM {table} WHERE CAST(tenant_id AS TEXT) = $1");
            app.inspect::<i64>(&sql, Some(&tenant)).await.remove(0)
        }
    };
    assert!(
        held("tenant_data_keys".into()).await > 0,
        "the vault made a data key"
    );

    // Only the Owner, in person, with the password.
    let delete = |access: String, password: &'static str| {
        let app = &app;
        async move {
            send(
                app,
                Method::POST,
                "/api/v1/tenant/delete",
                &access,
                Some(json!({ "password": password })),
            )
            .await
        }
    };
    assert_eq!(delete(staff["admin"].access.clone(), PASSWORD).await.0, 403);
    assert_eq!(
        delete(owner.access.clone(), "not the password").await.0,
        401
    );
    let (status, body) = delete(owner.access.clone(), PASSWORD).await;
    assert_eq!(status, 204, "{body}");

    // Nothing of it is left but its tombstone, its ended sessions and its chain's hashes.
    for table in tenant_tables(&app).await {
        let rows = held(table.clone()).await;
        match table.as_str() {
            "sessions" => {
                let live: Vec<i64> = app
                    .inspect(
                        "SELECT count(*) FROM sessions
                         WHERE CAST(tenant_id AS TEXT) = $1 AND revoked_at IS NULL",
                        Some(&tenant),
                    )
                    .await;
                assert_eq!(live, [0], "every session in it ended");
            }
            "audit_heads" | "audit_checkpoints" => assert!(rows >= 1, "{table}"),
            _ => assert_eq!(rows, 0, "{table} still holds the tenant's rows"),
        }
    }
    let tombstone: Vec<String> = app
        .inspect(
            "SELECT name FROM tenants WHERE CAST(id AS TEXT) = $1 AND deleted_at IS NOT NULL
               AND suspended_at IS NOT NULL",
            Some(&tenant),
        )
        .await;
    assert_eq!(tombstone, [""]);

    // Its credentials are dead everywhere.
    for role in ["owner", "admin", "viewer"] {
        let me = app.get_as("/api/v1/me", &staff[role].access).await;
        assert_eq!(me.status(), 401, "{role}");
    }
    let by_key = app
        .client
        .get(app.url("/api/v1/tenant"))
        .header("x-api-key", &key_text)
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), 401);

    // Every chain verifies: the tenant's ends at its signed anchor, and the platform
    // stream records where.
    every_chain_verifies(&app).await;
    let recorded: Vec<String> = app
        .inspect(
            "SELECT changes FROM audit_events WHERE action = 'tenant.deleted'
               AND tenant_id = '00000000-0000-0000-0000-000000000000'",
            None,
        )
        .await;
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].contains("closing_anchor"), "{}", recorded[0]);
}
