//! The vault (claims SEC-1, SEC-3): a tenant's secrets sealed under its data key, masked on
//! every read, revealed only with the action and a reason, and audited.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::tenancy::{send, staffed_tenant};

const SECRETS: &str = "/api/v1/secrets";
const VALUE: &str = "xoxb-0123456789-SLACKsecretEFGH";

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    access: &str,
    body: Value,
) -> (u16, Value) {
    let body = (!body.is_null()).then_some(body);
    send(app, method, path, access, body).await
}

/// Reveals `id` as `access` (with a reason) and checks it opens to `value`.
async fn assert_reveals(app: &TestApp, access: &str, id: &str, value: &str) {
    let (status, opened) = reveal(app, access, id, json!({"reason": "r"})).await;
    assert_eq!(
        (status, opened["value"].as_str()),
        (200, Some(value)),
        "{opened}"
    );
}

async fn reveal(app: &TestApp, access: &str, id: &str, body: Value) -> (u16, Value) {
    call(
        app,
        Method::POST,
        &format!("{SECRETS}/{id}/reveal"),
        access,
        body,
    )
    .await
}

/// Whether `needle` is anywhere in the database: SQLite's files (the WAL included) or
/// every row of the vault's and the audit log's tables on PostgreSQL.
async fn stored_anywhere(app: &TestApp, needle: &str) -> bool {
    if let palisade::store::Database::Sqlite(_) = app.state.db {
        let db = app.sqlite_path();
        return [db.clone(), db.with_extension("db-wal")]
            .iter()
            .any(|file| {
                std::fs::read(file)
                    .unwrap_or_default()
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            });
    }
    for table in [
        "secrets",
        "secret_versions",
        "tenant_data_keys",
        "audit_events",
    ] {
        let rows: Vec<String> = app
            .inspect(&format!("SELECT row_to_json(t)::text FROM {table} t"), None)
            .await;
        if rows.iter().any(|row| row.contains(needle)) {
            return true;
        }
    }
    false
}

// claim: SEC-1, SEC-3
#[tokio::test]
async fn a_secret_is_sealed_masked_on_every_read_and_revealed_only_with_the_action_and_a_reason() {
    // The default settings: a secret's writes take bodies large enough for a 64 KiB value.
    let app = crate::helpers::spawn_app().await;
    let staff = staffed_tenant(&app).await;
    let (owner, manager, member) = (&staff["owner"], &staff["manager"], &staff["member"]);
    let (status, created) = call(
        &app,
        Method::POST,
        SECRETS,
        &manager.access,
        json!({"name": "slack/acme-bot", "value": VALUE, "description": "Acme's Slack bot"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sec_"), "{id}");
    assert_eq!(created["masked"], "••••EFGH");
    assert_eq!(created["version"], 1);
    assert!(!created.to_string().contains(VALUE));

    // Reads: masked, for members too; the one secret with its versions.
    let (_, listed) = call(&app, Method::GET, SECRETS, &member.access, Value::Null).await;
    assert_eq!(listed[0]["name"], "slack/acme-bot", "{listed}");
    assert!(!listed.to_string().contains(VALUE));
    let (_, one) = call(
        &app,
        Method::GET,
        &format!("{SECRETS}/{id}"),
        &member.access,
        Value::Null,
    )
    .await;
    assert_eq!(one["versions"][0]["version"], 1, "{one}");

    // Reveal: not a member's or a manager's; an admin's with a reason only.
    for who in [member, manager] {
        let (status, _) = reveal(&app, &who.access, &id, json!({"reason": "debugging"})).await;
        assert_eq!(status, 403);
    }
    for bad in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": "x".repeat(501)}),
        json!({"reason": "ok", "extra": 1}),
    ] {
        let (status, refused) = reveal(&app, &staff["admin"].access, &id, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {refused}");
    }
    let response = app
        .client
        .post(app.url(&format!("{SECRETS}/{id}/reveal")))
        .bearer_auth(&staff["admin"].access)
        .header("user-agent", "support-console/1.0")
        .json(&json!({"reason": "re-connecting Slack for ticket 4411"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let revealed: Value = response.json().await.unwrap();
    assert_eq!(revealed["value"], VALUE);
    assert_eq!(revealed["revealed_version"], 1);
    // Audited: who, why, from where; the value nowhere in the log.
    let (_, events) = call(
        &app,
        Method::GET,
        "/api/v1/audit/events?action=secrets.revealed",
        &owner.access,
        Value::Null,
    )
    .await;
    let event = &events["events"][0];
    assert_eq!(event["target_id"], id.as_str(), "{events}");
    assert_eq!(event["actor_role"], "admin");
    assert_eq!(event["user_agent"], "support-console/1.0");
    assert!(event["ip"].is_string(), "{event}");
    assert_eq!(
        event["changes"]["reason"]["after"],
        "re-connecting Slack for ticket 4411"
    );
    let (_, all) = call(
        &app,
        Method::GET,
        "/api/v1/audit/events",
        &owner.access,
        Value::Null,
    )
    .await;
    assert!(!all.to_string().contains(VALUE));
    // Sealed at rest: not in the database file, its WAL or any row.
    assert!(
        !stored_anywhere(&app, VALUE).await,
        "the plaintext is stored"
    );
    assert!(!stored_anywhere(&app, "SLACKsecret").await);

    // Versions: a PUT adds one and keeps the previous until it is deleted.
    let rotated = "xoxb-9876543210-ROTATEDvalueWXYZ";
    let (status, replaced) = call(
        &app,
        Method::PUT,
        &format!("{SECRETS}/{id}"),
        &manager.access,
        json!({"value": rotated}),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(
        (replaced["version"].as_u64(), replaced["masked"].as_str()),
        (Some(2), Some("••••WXYZ"))
    );
    let admin = &staff["admin"].access;
    assert_eq!(
        reveal(&app, admin, &id, json!({"reason": "r"})).await.1["value"],
        rotated
    );
    assert_eq!(
        reveal(&app, admin, &id, json!({"reason": "r", "version": 1}))
            .await
            .1["value"],
        VALUE
    );
    assert_eq!(
        reveal(&app, admin, &id, json!({"reason": "r", "version": 7}))
            .await
            .0,
        404
    );
    let path = format!("{SECRETS}/{id}?version=2");
    assert_eq!(
        call(&app, Method::DELETE, &path, &manager.access, Value::Null)
            .await
            .0,
        409,
        "the current version"
    );
    let path = format!("{SECRETS}/{id}?version=1");
    assert_eq!(
        call(&app, Method::DELETE, &path, &member.access, Value::Null)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&app, Method::DELETE, &path, &manager.access, Value::Null)
            .await
            .0,
        204
    );
    assert_eq!(
        reveal(&app, admin, &id, json!({"reason": "r", "version": 1}))
            .await
            .0,
        404
    );
    // A new version after a deletion never reuses a number.
    let (_, third) = call(
        &app,
        Method::PUT,
        &format!("{SECRETS}/{id}"),
        &manager.access,
        json!({"value": "third value, long enough"}),
    )
    .await;
    assert_eq!(third["version"], 3);

    // Bad input: each a 4xx, nothing written.
    let before: Vec<i64> = app
        .inspect("SELECT count(*) FROM secret_versions", None)
        .await;
    for (body, status) in [
        (json!({"name": "slack/acme-bot", "value": "dup"}), 409),
        (json!({"name": "has space", "value": "v"}), 422),
        (json!({"name": "-leading", "value": "v"}), 422),
        (json!({"name": "empty", "value": ""}), 422),
        (
            json!({"name": "big", "value": "x".repeat(64 * 1024 + 1)}),
            422,
        ),
        (
            json!({"name": "extra", "value": "v", "plaintext": true}),
            422,
        ),
        (json!({"name": "no-value"}), 422),
    ] {
        let (got, answer) = call(&app, Method::POST, SECRETS, &manager.access, body.clone()).await;
        assert_eq!(got, status, "{answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (status, _) = call(
        &app,
        Method::PUT,
        &format!("{SECRETS}/{id}"),
        &manager.access,
        json!({"value": "x".repeat(64 * 1024 + 1)}),
    )
    .await;
    assert_eq!(status, 422);
    // A body beyond what any 64 KiB value needs is refused before it is read.
    let (status, answer) = call(
        &app,
        Method::POST,
        SECRETS,
        &manager.access,
        json!({"name": "huge", "value": "x".repeat(400 * 1024)}),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    let after: Vec<i64> = app
        .inspect("SELECT count(*) FROM secret_versions", None)
        .await;
    assert_eq!(before, after, "nothing half-written");

    // The bound itself is taken: a 64 KiB value, escapes and all, stores and reveals whole.
    let largest: String = "\u{1}x\"".chars().cycle().take(64 * 1024).collect();
    let (status, made) = call(
        &app,
        Method::POST,
        SECRETS,
        &manager.access,
        json!({"name": "largest", "value": largest}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let largest_id = made["id"].as_str().unwrap();
    assert_reveals(&app, &owner.access, largest_id, &largest).await;
    let path = format!("{SECRETS}/{largest_id}");
    let (status, _) = call(&app, Method::DELETE, &path, &manager.access, Value::Null).await;
    assert_eq!(status, 204);
    // Other routes keep the setting's limit.
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/applications",
        &owner.access,
        json!({"name": "x".repeat(70 * 1024)}),
    )
    .await;
    assert_eq!(status, 413);

    // Another tenant sees nothing of it; the whole secret goes at once.
    let stranger = app.signed_in("stranger@example.com").await;
    for (method, path) in [
        (Method::GET, format!("{SECRETS}/{id}")),
        (Method::DELETE, format!("{SECRETS}/{id}")),
    ] {
        assert_eq!(
            call(&app, method, &path, &stranger.access, Value::Null)
                .await
                .0,
            404
        );
    }
    assert_eq!(
        reveal(&app, &stranger.access, &id, json!({"reason": "r"}))
            .await
            .0,
        404
    );
    let (_, theirs) = call(&app, Method::GET, SECRETS, &stranger.access, Value::Null).await;
    assert_eq!(theirs, json!([]));
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("{SECRETS}/{id}"),
            &manager.access,
            Value::Null
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("{SECRETS}/{id}"),
            &owner.access,
            Value::Null
        )
        .await
        .0,
        404
    );
    let left: Vec<i64> = app
        .inspect("SELECT count(*) FROM secret_versions", None)
        .await;
    assert_eq!(left, [0]);
}

// claim: SEC-1
#[tokio::test]
async fn a_sealed_value_moved_to_another_row_or_tenant_does_not_open() {
    let app = crate::helpers::spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let stranger = app.signed_in("stranger@example.com").await;
    let make = |access: String, name: &'static str, value: &'static str| {
        let app = &app;
        async move {
            let (status, made) = call(
                app,
                Method::POST,
                SECRETS,
                &access,
                json!({"name": name, "value": value}),
            )
            .await;
            assert_eq!(status, 201, "{made}");
            made["id"].as_str().unwrap().to_owned()
        }
    };
    let ours = make(owner.access.clone(), "ours", "our value, sixteen+").await;
    let decoy = make(owner.access.clone(), "decoy", "decoy value, sixteen+").await;
    let theirs = make(stranger.access.clone(), "theirs", "their value, sixteen+").await;
    // Each tenant has its own data key, stored wrapped only.
    let keys: Vec<i64> = app
        .inspect("SELECT count(*) FROM tenant_data_keys", None)
        .await;
    assert_eq!(keys, [2]);

    // Someone with the database copies sealed bytes between rows: nothing opens.
    let copy = |from: &str, to: &str| {
        format!(
            "UPDATE secret_versions SET sealed = (SELECT sealed FROM secret_versions WHERE secret_id = '{}')
             WHERE secret_id = '{}' RETURNING 1",
            uuid_of(from), uuid_of(to)
        )
    };
    let _: Vec<i32> = app.inspect(&copy(&theirs, &decoy), None).await;
    let (status, answer) = reveal(&app, &owner.access, &decoy, json!({"reason": "r"})).await;
    assert_eq!(status, 500, "{answer}");
    assert!(!answer.to_string().contains("their value"), "{answer}");
    let _: Vec<i32> = app.inspect(&copy(&ours, &decoy), None).await;
    assert_eq!(
        reveal(&app, &owner.access, &decoy, json!({"reason": "r"}))
            .await
            .0,
        500
    );
    // Nor does another tenant's data key, swapped in for ours.
    let _: Vec<i32> = app
        .inspect(
            &format!(
                "UPDATE tenant_data_keys SET wrapped = (SELECT wrapped FROM tenant_data_keys
                   WHERE tenant_id = '{}') WHERE tenant_id = '{}' RETURNING 1",
                uuid_of(&stranger.tenant),
                uuid_of(&owner.tenant)
            ),
            None,
        )
        .await;
    assert_eq!(
        reveal(&app, &owner.access, &ours, json!({"reason": "r"}))
            .await
            .0,
        500
    );
    // The untouched tenant's secret still opens.
    assert_reveals(&app, &stranger.access, &theirs, "their value, sixteen+").await;
}

/// The stored form of a public id (`sec_…`, `ten_…`): its UUID, as both backends hold it.
fn uuid_of(public: &str) -> String {
    let hex = public.split_once('_').unwrap().1;
    uuid::Uuid::parse_str(hex).unwrap().hyphenated().to_string()
}

// claim: SEC-3, APP-8
#[tokio::test]
async fn the_app_keeps_a_customers_token_under_a_tenant_token() {
    let app = crate::helpers::spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let (service_id, service) = crate::access::service_credential(&app).await;
    let token = crate::app_events::tenant_token(&app, &service, &owner.tenant).await;
    let oauth = json!({"name": "github/oauth", "value": "gho_16CharactersOrMore1234",
        "expires_at": "2027-01-01T00:00:00Z"});
    let (status, made) = call(&app, Method::POST, SECRETS, &token, oauth).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["created_by"], service_id.as_str());
    assert_eq!(made["expires_at"], "2027-01-01T00:00:00Z");
    let id = made["id"].as_str().unwrap();
    let (status, opened) =
        reveal(&app, &token, id, json!({"reason": "syncing repositories"})).await;
    assert_eq!(
        (status, opened["value"].as_str()),
        (200, Some("gho_16CharactersOrMore1234"))
    );
    let (_, events) = call(
        &app,
        Method::GET,
        "/api/v1/audit/events?action=secrets.revealed",
        &owner.access,
        Value::Null,
    )
    .await;
    assert_eq!(events["events"][0]["actor_type"], "service", "{events}");
    // The bare service credential names no tenant: no secrets.
    assert_eq!(
        call(&app, Method::GET, SECRETS, &service, Value::Null)
            .await
            .0,
        401
    );
}

// claim: SEC-1
#[tokio::test]
async fn destroying_a_tenants_keys_makes_every_one_of_its_secrets_unreadable_at_once() {
    let app = crate::helpers::spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let stranger = app.signed_in("stranger@example.com").await;
    let mut ours = Vec::new();
    for name in ["one", "two"] {
        let body = json!({"name": name, "value": format!("{name}: a value of ours")});
        let (status, made) = call(&app, Method::POST, SECRETS, &owner.access, body).await;
        assert_eq!(status, 201, "{made}");
        ours.push(made["id"].as_str().unwrap().to_owned());
    }
    let body = json!({"name": "theirs", "value": "their value, untouched"});
    let (_, theirs) = call(&app, Method::POST, SECRETS, &stranger.access, body).await;

    // Refused without --yes; an unknown tenant is named.
    let (ok, output) =
        crate::platform::as_operator(&app, "admin", &["tenants", "destroy-keys", &owner.tenant])
            .await;
    assert!(!ok && output.contains("--yes"), "{output}");
    let unknown = "ten_0192f5c4e1a87c3b9d2e4f6a8b0c1d2e";
    let (ok, _) = crate::platform::as_operator(
        &app,
        "admin",
        &["tenants", "destroy-keys", unknown, "--yes"],
    )
    .await;
    assert!(!ok);
    let (ok, output) = crate::platform::as_operator(
        &app,
        "admin",
        &["tenants", "destroy-keys", &owner.tenant, "--yes"],
    )
    .await;
    assert!(ok, "{output}");
    assert!(output.contains("destroyed 1 vault key"), "{output}");

    // Every secret of the tenant at once: 410 by the API, and no wrapped key left to open
    // with the KEK.
    for id in &ours {
        let (status, refused) = reveal(&app, &owner.access, id, json!({"reason": "r"})).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (410, Some("secret_destroyed")),
            "{refused}"
        );
    }
    let live: Vec<i64> = app
        .inspect(
            &format!(
                "SELECT count(*) FROM tenant_data_keys WHERE wrapped IS NOT NULL AND tenant_id = '{}'",
                uuid_of(&owner.tenant)
            ),
            None,
        )
        .await;
    assert_eq!(live, [0]);
    // Audited in the tenant's log and the platform stream.
    let (_, events) = call(
        &app,
        Method::GET,
        "/api/v1/audit/events?action=vault.keys_destroyed",
        &owner.access,
        Value::Null,
    )
    .await;
    assert_eq!(events["events"][0]["actor_type"], "operator", "{events}");
    let platform: Vec<i64> = app
        .inspect(
            "SELECT count(*) FROM audit_events WHERE action = 'platform.tenant_keys_destroyed'",
            None,
        )
        .await;
    assert_eq!(platform, [1]);
    // Another tenant keeps its secrets; this one's next secret gets a new key.
    assert_reveals(
        &app,
        &stranger.access,
        theirs["id"].as_str().unwrap(),
        "their value, untouched",
    )
    .await;
    let (status, fresh) = call(
        &app,
        Method::POST,
        SECRETS,
        &owner.access,
        json!({"name": "after", "value": "a value after the shredding"}),
    )
    .await;
    assert_eq!(status, 201, "{fresh}");
    assert_reveals(
        &app,
        &owner.access,
        fresh["id"].as_str().unwrap(),
        "a value after the shredding",
    )
    .await;
}

/// The KEK versions that wrap a live data key: the tenants' and the platform's own.
async fn kek_versions_in_use(app: &TestApp) -> Vec<i32> {
    app.inspect(
        "SELECT DISTINCT kek_version FROM vault_data_keys ORDER BY 1",
        None,
    )
    .await
}

// claim: SEC-2
#[tokio::test]
async fn a_kek_rotation_rewraps_every_data_key_resuming_where_it_stopped_and_no_read_fails() {
    let app = crate::helpers::spawn_app().await;
    let mut secrets = Vec::new();
    for n in 0..3 {
        let who = app.signed_in(&format!("owner{n}@example.com")).await;
        let value = format!("tenant {n}'s value, long enough");
        let (status, made) = call(
            &app,
            Method::POST,
            SECRETS,
            &who.access,
            json!({"name": "token", "value": value}),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        secrets.push((who, made["id"].as_str().unwrap().to_owned(), value));
    }
    let all_open = |secrets: &Vec<(crate::helpers::Session, String, String)>| {
        let app = &app;
        let secrets = secrets.clone();
        async move {
            for (who, id, value) in &secrets {
                assert_reveals(app, &who.access, id, value).await;
            }
        }
    };
    assert_eq!(kek_versions_in_use(&app).await, [1]);

    // The operator adds version 2; the server keeps serving with what it holds.
    let (ok, output) = crate::import::palisade_command(&app, &["keys", "rotate-kek"]).await;
    assert!(ok, "{output}");
    assert!(output.contains("new KEK version 2"), "{output}");
    all_open(&secrets).await;

    // A re-wrap that stops after two keys of four (three tenants' and the platform's; a
    // crash, say) leaves a mix, and every read works.
    app.state.key_rotation.reload().unwrap();
    assert_eq!(app.state.key_rotation.rewrap_some(2).await.unwrap(), 2);
    assert_eq!(kek_versions_in_use(&app).await, [1, 2]);
    all_open(&secrets).await;
    // Another process resumes from what the database says is left, and completes.
    let (ok, output) = crate::import::palisade_command(&app, &["keys", "rewrap"]).await;
    assert!(ok, "{output}");
    assert!(output.contains("re-wrapped 2 data key(s)"), "{output}");
    assert_eq!(
        kek_versions_in_use(&app).await,
        [2],
        "no data key under the old KEK"
    );
    all_open(&secrets).await;
    let (ok, output) = crate::import::palisade_command(&app, &["keys", "kek-status"]).await;
    assert!(
        ok && output.contains("active KEK version 2")
            && output.contains("version 2: 4 data key(s)"),
        "{output}"
    );

    // Health shows where the vault stands.
    palisade::app::upkeep_step(&app.state, true, false).await;
    let health: Value = app.get("/api/health").await.json().await.unwrap();
    assert_eq!(
        health["checks"]["vault"]["detail"], "KEK version 2; every data key on it",
        "{health}"
    );

    // Version 1 wraps nothing now: retired from the file; a fresh server opens everything.
    let (ok, output) = crate::import::palisade_command(&app, &["keys", "retire-keks"]).await;
    assert!(
        ok && output.contains("retired KEK version(s) [1]"),
        "{output}"
    );
    // The KEK's lifecycle is in the platform stream: rotated by the command, the re-wrap
    // completed (once), the old version retired.
    let lifecycle: Vec<String> = app
        .inspect(
            "SELECT action FROM audit_events WHERE action IN
                 ('vault.kek_rotated', 'vault.rewrap_completed', 'vault.keks_retired')
             ORDER BY seq",
            None,
        )
        .await;
    assert_eq!(
        lifecycle,
        [
            "vault.kek_rotated",
            "vault.rewrap_completed",
            "vault.keks_retired"
        ]
    );
    let sibling = app.spawn_sibling().await;
    for (who, id, value) in &secrets {
        let (status, opened) = crate::helpers::json_call(
            &sibling.client,
            Method::POST,
            format!("{}{SECRETS}/{id}/reveal", sibling.base),
            &who.access,
            &json!({"reason": "r"}),
        )
        .await;
        assert_eq!(
            (status, opened["value"].as_str()),
            (200, Some(value.as_str()))
        );
    }
    sibling.stop().await;
}

// claim: SEC-2
#[tokio::test]
async fn a_kek_older_than_its_period_is_rotated_by_a_sqlite_server_and_every_key_moved_onto_the_new_one(
) {
    let app =
        crate::helpers::spawn_app_with(|settings| settings.vault.kek_rotation_days = 90).await;
    let owner = app.signed_in("owner@example.com").await;
    let (_, made) = call(
        &app,
        Method::POST,
        SECRETS,
        &owner.access,
        json!({"name": "token", "value": "a value kept across rotations"}),
    )
    .await;
    let id = made["id"].as_str().unwrap().to_owned();
    palisade::app::upkeep_step(&app.state, true, false).await;
    assert_eq!(
        app.state.key_rotation.active_kek_version(),
        1,
        "not yet due"
    );
    app.clock
        .advance(std::time::Duration::from_secs(91 * 24 * 3600));
    palisade::app::upkeep_step(&app.state, true, false).await;
    if app.db.as_postgres().is_some() {
        // Each instance holds a copy of the file: rotating alone would fork it, so the
        // server only warns, and the operator rotates (the test above).
        assert_eq!(app.state.key_rotation.active_kek_version(), 1);
        return;
    }
    assert_eq!(app.state.key_rotation.active_kek_version(), 2);
    assert_eq!(kek_versions_in_use(&app).await, [2]);
    let trigger: Vec<String> = app
        .inspect(
            "SELECT CAST(changes AS TEXT) FROM audit_events WHERE action = 'vault.kek_rotated'",
            None,
        )
        .await;
    assert_eq!(trigger.len(), 1);
    assert!(trigger[0].contains(r#""after":"schedule""#), "{trigger:?}");
    let owner = app.login("owner@example.com").await;
    assert_reveals(&app, &owner.access, &id, "a value kept across rotations").await;
    // Once only: the new version is young.
    palisade::app::upkeep_step(&app.state, true, false).await;
    assert_eq!(app.state.key_rotation.active_kek_version(), 2);
}

// claim: SEC-1, ID-12
#[tokio::test]
async fn what_the_master_key_file_sealed_is_sealed_again_under_the_vault_at_start_up() {
    // A deployment from before the vault: its master key file, and a TOTP secret it sealed.
    let legacy_dir = tempfile::tempdir().unwrap();
    let master_path = legacy_dir.path().join("master.key");
    let master = palisade::crypto::SealingKey::load_or_create(&master_path).unwrap();
    let with_master = |settings: &mut palisade::config::Settings| {
        settings.auth.master_key_file = Some(master_path.clone());
    };
    let app = crate::helpers::spawn_app_with(with_master).await;
    let session = app.signed_in("ada@example.com").await;
    let (secret, _) = crate::mfa::enable_totp(&app, &session).await;
    let user = crate::tenancy::user_id_of(&app, &session).await;
    let legacy = master.seal(&secret, format!("totp:{user}").as_bytes());
    let hex: String = legacy.iter().map(|b| format!("{b:02x}")).collect();
    let literal = match app.db.as_postgres() {
        Some(_) => format!("'\\x{hex}'::bytea"),
        None => format!("X'{hex}'"),
    };
    let _: Vec<i32> = app
        .inspect(
            &format!("UPDATE totp_factors SET sealed_secret = {literal} RETURNING 1"),
            None,
        )
        .await;

    // The next start re-seals it under the platform's data key; the factor still works.
    let sibling = app.spawn_sibling_with(with_master).await;
    let stored: Vec<Vec<u8>> = app
        .inspect("SELECT sealed_secret FROM totp_factors", None)
        .await;
    assert!(stored[0].starts_with(b"pdk\x01"), "re-sealed");
    assert_ne!(stored[0], legacy);
    let keys: Vec<Vec<u8>> = app
        .inspect("SELECT sealed_private_key FROM signing_keys", None)
        .await;
    assert!(
        keys.iter().all(|k| k.starts_with(b"pdk\x01")),
        "signing keys under the vault"
    );
    assert_eq!(totp_sign_in(&app, &sibling, &secret).await, 200);
    sibling.stop().await;
    // Without the master key file, everything still opens: it is no longer needed.
    std::fs::remove_file(&master_path).unwrap();
    let without = app.spawn_sibling_with(with_master).await;
    let jwks = without
        .client
        .get(format!("{}/.well-known/jwks.json", without.base))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    assert_eq!(totp_sign_in(&app, &without, &secret).await, 200);
    without.stop().await;
}

/// Ada signs in at `instance` with her password and the next window's TOTP code.
async fn totp_sign_in(app: &TestApp, instance: &crate::helpers::Instance, secret: &[u8]) -> u16 {
    app.clock.advance(std::time::Duration::from_secs(30));
    let body = json!({"email": "ada@example.com", "password": crate::helpers::PASSWORD,
                      "totp": crate::mfa::code(app, secret)});
    let login = instance
        .client
        .post(format!("{}/api/v1/auth/login", instance.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    login.status().as_u16()
}

// claim: SEC-3
#[tokio::test]
async fn a_secret_keeps_at_most_a_hundred_versions_until_old_ones_are_deleted() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.rate_limits.default_per_minute = 1_000;
    })
    .await;
    let owner = app.signed_in("owner@example.com").await;
    let (_, made) = call(
        &app,
        Method::POST,
        SECRETS,
        &owner.access,
        json!({"name": "rotated", "value": "version 1"}),
    )
    .await;
    let path = format!("{SECRETS}/{}", made["id"].as_str().unwrap());
    for n in 2..=100 {
        let (status, _) = call(
            &app,
            Method::PUT,
            &path,
            &owner.access,
            json!({"value": format!("version {n}")}),
        )
        .await;
        assert_eq!(status, 200, "version {n}");
    }
    let (status, refused) = call(
        &app,
        Method::PUT,
        &path,
        &owner.access,
        json!({"value": "one more"}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{refused}"
    );
    let (_, one) = call(&app, Method::GET, &path, &owner.access, Value::Null).await;
    assert_eq!(one["versions"].as_array().unwrap().len(), 100);
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("{path}?version=1"),
            &owner.access,
            Value::Null
        )
        .await
        .0,
        204
    );
    let (status, replaced) = call(
        &app,
        Method::PUT,
        &path,
        &owner.access,
        json!({"value": "one more"}),
    )
    .await;
    assert_eq!((status, replaced["version"].as_u64()), (200, Some(101)));
}

const DATA_KEYS: &str = "/api/v1/vault/data-keys";

/// The tenant's data keys as (version, values it seals), newest first.
async fn data_keys(app: &TestApp, access: &str) -> Vec<(u64, u64)> {
    let (status, keys) = call(app, Method::GET, DATA_KEYS, access, Value::Null).await;
    assert_eq!(status, 200, "{keys}");
    keys.as_array()
        .unwrap()
        .iter()
        .map(|key| {
            (
                key["version"].as_u64().unwrap(),
                key["sealed_values"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn audited(app: &TestApp, access: &str, action: &str) -> Vec<Value> {
    let (status, events) = call(
        app,
        Method::GET,
        &format!("/api/v1/audit/events?action={action}"),
        access,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{events}");
    events["events"].as_array().unwrap().clone()
}

// claim: SEC-2
#[tokio::test]
async fn a_tenants_data_key_rotates_its_values_move_onto_the_new_key_and_the_old_key_is_deleted() {
    let crate::webhooks::SetUp {
        app,
        receiver,
        owner,
        secret: signing_secret,
        ..
    } = crate::webhooks::set_up(0, &["workorder.assigned"]).await;
    let (_, a) = call(
        &app,
        Method::POST,
        SECRETS,
        &owner.access,
        json!({"name": "a", "value": VALUE}),
    )
    .await;
    let a = a["id"].as_str().unwrap().to_owned();
    let a2 = "the second version of a, long enough";
    let (status, _) = call(
        &app,
        Method::PUT,
        &format!("{SECRETS}/{a}"),
        &owner.access,
        json!({"value": a2}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, b) = call(
        &app,
        Method::POST,
        SECRETS,
        &owner.access,
        json!({"name": "b", "value": "b's value"}),
    )
    .await;
    let b = b["id"].as_str().unwrap().to_owned();
    // Three secrets' versions and the endpoint's signing secret.
    assert_eq!(data_keys(&app, &owner.access).await, [(1, 4)]);

    // Rotating needs its action: a Manager reads the keys but may not.
    app.sign_up("manager@example.com").await;
    crate::sessions::add_membership(&app, "manager@example.com", &owner.tenant, "manager").await;
    let manager = crate::tenancy::login_to(&app, "manager@example.com", &owner.tenant).await;
    assert_eq!(data_keys(&app, &manager.access).await, [(1, 4)]);
    let (status, refused) = call(&app, Method::POST, DATA_KEYS, &manager.access, Value::Null).await;
    assert_eq!(status, 403, "{refused}");

    let (status, keys) = call(&app, Method::POST, DATA_KEYS, &owner.access, Value::Null).await;
    assert_eq!(status, 201, "{keys}");
    assert_eq!(keys[0]["version"], 2);
    assert_eq!(keys[0]["kek_version"], 1);
    assert!(keys[0]["destroyed_at"].is_null(), "{keys}");
    let rotated = audited(&app, &owner.access, "vault.data_key_rotated").await;
    assert_eq!(rotated.len(), 1);
    assert_eq!(
        rotated[0]["changes"]["data_key_version"],
        json!({"before": 1, "after": 2})
    );
    // New values are sealed by the new key at once; every value opens throughout.
    let (_, c) = call(
        &app,
        Method::POST,
        SECRETS,
        &owner.access,
        json!({"name": "c", "value": "c's value"}),
    )
    .await;
    let c = c["id"].as_str().unwrap().to_owned();
    assert_eq!(data_keys(&app, &owner.access).await, [(2, 1), (1, 4)]);
    let every_value_opens = |access: String| {
        let (app, a, b, c) = (&app, a.clone(), b.clone(), c.clone());
        async move {
            assert_reveals(app, &access, &a, a2).await;
            let (status, first) =
                reveal(app, &access, &a, json!({"reason": "r", "version": 1})).await;
            assert_eq!((status, first["value"].as_str()), (200, Some(VALUE)));
            assert_reveals(app, &access, &b, "b's value").await;
            assert_reveals(app, &access, &c, "c's value").await;
        }
    };
    every_value_opens(owner.access.clone()).await;

    // Upkeep seals every older value again under the new key; the old key stays a while,
    // for any write that took it as the newest just before the rotation.
    palisade::app::upkeep_step(&app.state, true, false).await;
    assert_eq!(data_keys(&app, &owner.access).await, [(2, 5), (1, 0)]);
    let health: Value = app.get("/api/health").await.json().await.unwrap();
    assert_eq!(
        health["checks"]["vault"]["detail"],
        "KEK version 1; every data key on it; 1 tenant(s) moving onto a new data key",
        "{health}"
    );
    every_value_opens(owner.access.clone()).await;
    // The endpoint's signing secret, sealed again, still signs what a verifier accepts.
    let (status, _) = call(
        &app,
        Method::POST,
        crate::webhooks::MESSAGES,
        &owner.access,
        json!({"event_type": "workorder.assigned", "payload": {}}),
    )
    .await;
    assert_eq!(status, 202);
    crate::webhooks::dispatch(&app).await;
    crate::webhooks::verified_by_the_reference_library(&signing_secret, &receiver.accepted())
        .await
        .unwrap();

    // Past that, the key that seals nothing is deleted, recorded as the system's doing.
    app.clock.advance(std::time::Duration::from_secs(11 * 60));
    palisade::app::upkeep_step(&app.state, true, false).await;
    let owner = app.login("owner@example.com").await;
    assert_eq!(data_keys(&app, &owner.access).await, [(2, 5)]);
    let retired = audited(&app, &owner.access, "vault.data_key_retired").await;
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(retired[0]["actor_type"], "system", "{retired:?}");
    assert_eq!(
        retired[0]["changes"]["retired_data_key_versions"]["after"],
        json!([1])
    );
    let versions: Vec<i32> = app
        .inspect(
            "SELECT DISTINCT dek_version FROM secret_versions ORDER BY 1",
            None,
        )
        .await;
    assert_eq!(versions, [2]);
    every_value_opens(owner.access.clone()).await;
    // Nothing is left for the sweep.
    let health: Value = app.get("/api/health").await.json().await.unwrap();
    assert_eq!(
        health["checks"]["vault"]["detail"],
        "KEK version 1; every data key on it"
    );
}
