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
