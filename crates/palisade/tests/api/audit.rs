//! The audit log (AUD-1 to AUD-6): what an event records, that nothing rewrites it, that
//! tampering directly in the database is named at the right event, the verifiable export,
//! retention that keeps the chain verifiable, and the filtered, paginated query.

use palisade::audit::export::{verify_export, ExportProblem};
use palisade::audit::signing::PublicKey;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Session, TestApp};

/// Tenant chains only: the platform stream is the nil id.
pub const TENANT_ROWS: &str = "tenant_id <> '00000000-0000-0000-0000-000000000000'";

/// An Owner whose tenant chain holds 6 events: sign-up, sign-in and four invitations.
async fn six_events(app: &TestApp) -> Session {
    let owner = app.signed_in("owner@example.com").await;
    for n in 0..4 {
        let invited = app
            .post_as(
                "/api/v1/invitations",
                &owner.access,
                Some(&json!({"email": format!("guest{n}@example.com"), "role": "member"})),
            )
            .await;
        assert_eq!(invited.status(), 201);
    }
    owner
}

pub async fn verdict(app: &TestApp, owner: &Session) -> Value {
    let response = app.get_as("/api/v1/audit/verify", &owner.access).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

pub async fn first_problem(app: &TestApp, owner: &Session) -> (i64, String) {
    let verdict = verdict(app, owner).await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    let problem = &verdict["first_problem"];
    (
        problem["seq"].as_i64().unwrap(),
        problem["problem"].as_str().unwrap().to_owned(),
    )
}

async fn events(app: &TestApp, access: &str, query: &str) -> Value {
    let response = app
        .get_as(&format!("/api/v1/audit/events{query}"), access)
        .await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

// claim: AUD-1
#[tokio::test]
async fn an_event_names_actor_role_target_origin_and_what_changed() {
    let app = spawn_app().await;
    let sessions = crate::tenancy::staffed_tenant(&app).await;
    let owner = &sessions["owner"];
    let member_id = crate::tenancy::user_id_of(&app, &sessions["member"]).await;
    let changed = app
        .client
        .patch(app.url(&format!("/api/v1/members/{member_id}")))
        .bearer_auth(&owner.access)
        .header("user-agent", "audit-test/1.0")
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert!(changed.status().is_success(), "{}", changed.status());
    let request_id = changed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let page = events(&app, &owner.access, "?action=members.role_changed").await;
    let event = &page["events"][0];
    let owner_id = crate::tenancy::user_id_of(&app, owner).await;
    assert_eq!(event["actor_type"], "user");
    assert_eq!(event["actor_id"], owner_id);
    assert_eq!(event["actor_role"], "owner");
    assert_eq!(event["target_type"], "user");
    assert_eq!(event["target_id"], member_id);
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["user_agent"], "audit-test/1.0");
    assert_eq!(event["request_id"], request_id);
    // An object, not the text the chain hashes (the export keeps that).
    assert_eq!(
        event["changes"],
        json!({"role": {"before": "member", "after": "admin"}})
    );
    assert!(event["occurred_at_us"].as_i64().unwrap() > 0);
    assert_eq!(event["stream"], owner.tenant);

    // Sign-in outcomes: a success in the tenant's chain, a failure in the platform stream.
    let failed = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "owner@example.com", "password": "wrong password here"}),
        )
        .await;
    assert_eq!(failed.status(), 401);
    let logins = events(&app, &owner.access, "?action=auth.login").await;
    assert!(logins["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["outcome"] == "success"));
    let failures: Vec<String> = app
        .inspect(
            "SELECT outcome FROM audit_events WHERE action = 'auth.login'
             AND tenant_id = '00000000-0000-0000-0000-000000000000'",
            None,
        )
        .await;
    assert_eq!(failures, ["failure"]);
    app.stop().await;
}

// claim: AUD-2
#[tokio::test]
async fn nothing_updates_or_deletes_an_event_neither_the_api_nor_the_database_roles() {
    let app = spawn_app_with(|s| s.audit.checkpoint_every = 2).await;
    let owner = six_events(&app).await;
    app.state.audit.checkpoint_due().await.unwrap();
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/audit") || path == "/api/v1/audit/retention" {
            continue;
        }
        // Reads, and the app's appends (claim APP-4); no update or delete anywhere.
        let methods: Vec<&String> = item.as_object().unwrap().keys().collect();
        let appends = path == "/api/v1/audit/events" || path == "/api/v1/audit/events/batch";
        for method in methods {
            assert!(
                method == "get" || (appends && method == "post"),
                "{path} offers {method}"
            );
        }
    }
    for statement in [
        format!("UPDATE audit_events SET action = 'edited' WHERE {TENANT_ROWS}"),
        format!("DELETE FROM audit_events WHERE {TENANT_ROWS}"),
        "UPDATE audit_checkpoints SET seq = seq".to_owned(),
    ] {
        let refused = app.as_superuser(&statement).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("append-only")),
            "{statement}: {refused:?}"
        );
    }
    if let Some(pg) = app.db.as_postgres() {
        let runtime = sqlx::PgPool::connect(&pg.direct_url(crate::helpers::TEST_APP))
            .await
            .unwrap();
        for statement in [
            "UPDATE audit_events SET action = 'edited'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "UPDATE audit_checkpoints SET seq = seq",
        ] {
            let refused = sqlx::query(statement).execute(&runtime).await;
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains("permission denied")),
                "the runtime role could run {statement}"
            );
        }
        runtime.close().await;
    }
    assert_eq!(verdict(&app, &owner).await["ok"], true);
    app.stop().await;
}

// claim: AUD-3
#[tokio::test]
async fn an_intact_chain_verifies_through_the_api_with_its_signed_checkpoints() {
    let app = spawn_app_with(|s| s.audit.checkpoint_every = 2).await;
    let owner = six_events(&app).await;
    app.state.audit.checkpoint_due().await.unwrap();
    let verdict = verdict(&app, &owner).await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["events"], 6);
    assert_eq!(verdict["first_seq"], 1);
    assert_eq!(verdict["last_seq"], 6);
    assert_eq!(verdict["checkpoints"], 1);
    assert!(verdict["first_problem"].is_null());
    app.stop().await;
}

/// Six events, `statements` run behind the guards' back, then the verdict's first problem.
async fn tampered(statements: &[&str]) -> (i64, String) {
    let app = spawn_app().await;
    let owner = six_events(&app).await;
    app.tamper(statements).await;
    let found = first_problem(&app, &owner).await;
    app.stop().await;
    found
}

// claim: AUD-3
#[tokio::test]
async fn an_edited_event_is_named() {
    let edit =
        format!("UPDATE audit_events SET target_id = 'forged' WHERE seq = 3 AND {TENANT_ROWS}");
    assert_eq!(tampered(&[&edit]).await, (3, "edited".to_owned()));
}

// claim: AUD-3
#[tokio::test]
async fn a_deleted_event_is_named() {
    let delete = format!("DELETE FROM audit_events WHERE seq = 4 AND {TENANT_ROWS}");
    assert_eq!(tampered(&[&delete]).await, (4, "missing".to_owned()));
    let delete_last = format!("DELETE FROM audit_events WHERE seq = 6 AND {TENANT_ROWS}");
    assert_eq!(tampered(&[&delete_last]).await, (6, "missing".to_owned()));
}

// claim: AUD-3
#[tokio::test]
async fn an_inserted_event_is_named() {
    let make_room =
        format!("UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3 AND {TENANT_ROWS}");
    let close_up =
        format!("UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000 AND {TENANT_ROWS}");
    let forge = format!(
        "INSERT INTO audit_events SELECT tenant_id, 3, '0190aaaa-0000-7000-8000-000000000001',
           occurred_at_us, actor_type, actor_id, actor_role, action, target_type, 'forged',
           outcome, ip, user_agent, request_id, changes, prev_hash, hash, app, redaction
         FROM audit_events WHERE seq = 2 AND {TENANT_ROWS}"
    );
    assert_eq!(
        tampered(&[&make_room, &close_up, &forge]).await,
        (3, "inserted".to_owned())
    );
}

// claim: AUD-3
#[tokio::test]
async fn swapped_events_are_named() {
    let swap = [
        format!("UPDATE audit_events SET seq = 1004 WHERE seq = 4 AND {TENANT_ROWS}"),
        format!("UPDATE audit_events SET seq = 4 WHERE seq = 5 AND {TENANT_ROWS}"),
        format!("UPDATE audit_events SET seq = 5 WHERE seq = 1004 AND {TENANT_ROWS}"),
    ];
    let swap: Vec<&str> = swap.iter().map(String::as_str).collect();
    assert_eq!(tampered(&swap).await, (4, "reordered".to_owned()));
}

// claim: AUD-3
#[tokio::test]
async fn a_checkpoint_whose_signature_fails_is_named() {
    let app = spawn_app_with(|s| s.audit.checkpoint_every = 2).await;
    let owner = six_events(&app).await;
    app.state.audit.checkpoint_due().await.unwrap();
    app.tamper(&[&format!(
        "UPDATE audit_checkpoints SET signed_at_us = signed_at_us + 1 WHERE {TENANT_ROWS}"
    )])
    .await;
    assert_eq!(
        first_problem(&app, &owner).await,
        (6, "checkpoint_signature".to_owned())
    );
    app.stop().await;
}

pub async fn export(app: &TestApp, access: &str, query: &str) -> String {
    let response = app
        .get_as(&format!("/api/v1/audit/export{query}"), access)
        .await;
    assert_eq!(response.status(), 200, "{query}");
    response.text().await.unwrap()
}

pub async fn published_key(app: &TestApp) -> PublicKey {
    let key: Value = app
        .get("/api/v1/audit/checkpoint-key")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(key["algorithm"], "Ed25519");
    PublicKey::parse(key["public_key"].as_str().unwrap()).unwrap()
}

// claim: AUD-4
#[tokio::test]
async fn an_export_verifies_offline_and_truncation_or_tampering_is_detected() {
    let app = spawn_app_with(|s| s.audit.checkpoint_every = 2).await;
    let owner = six_events(&app).await;
    app.state.audit.checkpoint_due().await.unwrap();
    let key = published_key(&app).await;
    for format in ["ndjson", "csv"] {
        let text = export(&app, &owner.access, &format!("?format={format}")).await;
        let report = verify_export(text.as_bytes(), &key).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(report.stream, owner.tenant);
        assert!(report.events >= 6, "{format}: {report:?}");
        assert_eq!(report.first_seq, Some(1));
        assert_eq!(report.checkpoints, 1);

        let lines: Vec<&str> = text.lines().collect();
        let without_trailer = lines[..lines.len() - 1].join("\n");
        assert!(matches!(
            verify_export(without_trailer.as_bytes(), &key),
            Err(ExportProblem::Truncated(_))
        ));
        let cut_mid_line = &text[..text.len() - 20];
        assert!(matches!(
            verify_export(cut_mid_line.as_bytes(), &key),
            Err(ExportProblem::Truncated(_))
        ));
        let last_event = lines.len() - 2;
        let mut dropped_event = lines.clone();
        dropped_event.remove(last_event);
        assert!(verify_export(dropped_event.join("\n").as_bytes(), &key).is_err());
        let edited_event = text.replacen("auth.login", "auth.logon", 1);
        match verify_export(edited_event.as_bytes(), &key) {
            Err(ExportProblem::Chain(finding)) => assert_eq!(finding.seq, 2),
            other => panic!("{format}: {other:?}"),
        }
        let other_key = PublicKey::from_bytes(&[7; 32]).unwrap();
        assert!(verify_export(text.as_bytes(), &other_key).is_err());
    }
    // Every export is itself an event.
    let exported = events(&app, &owner.access, "?action=audit.exported").await;
    assert_eq!(exported["events"].as_array().unwrap().len(), 2);
    app.stop().await;
}

// claim: AUD-4
#[tokio::test]
async fn a_formula_in_a_user_agent_reaches_the_csv_export_neutralised_and_still_verifies() {
    let app = spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let formula = "=cmd|' /C calc'!A0";
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", formula)
        .json(&json!({"email": "owner@example.com", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = export(&app, &owner.access, "?format=csv").await;
    assert!(
        !text.contains(&format!(",{formula}")),
        "no cell starts a formula"
    );
    assert!(text.contains(&format!(",\"'{}\",", formula.replace('"', "\"\""))));
    let key = published_key(&app).await;
    verify_export(text.as_bytes(), &key).unwrap_or_else(|p| panic!("{p}"));
    // The API and NDJSON keep the value exactly.
    let ndjson = export(&app, &owner.access, "?format=ndjson").await;
    assert!(ndjson.contains(&serde_json::to_string(formula).unwrap()));
}

// claim: AUD-4
#[tokio::test]
async fn an_export_of_a_time_range_holds_that_range_and_still_verifies() {
    let app = spawn_app().await;
    six_events(&app).await;
    app.clock.advance(std::time::Duration::from_secs(3600));
    let middle = rfc3339(app.clock_now());
    app.login("owner@example.com").await;
    app.clock.advance(std::time::Duration::from_secs(3600));
    let end = rfc3339(app.clock_now());
    let owner = app.login("owner@example.com").await;
    let key = published_key(&app).await;
    let query = format!("?from={}&to={}", urlencode(&middle), urlencode(&end));
    let text = export(&app, &owner.access, &query).await;
    let report = verify_export(text.as_bytes(), &key).unwrap_or_else(|p| panic!("{p}"));
    assert_eq!((report.first_seq, report.last_seq), (Some(7), Some(7)));
    let backwards = app
        .get_as(
            &format!(
                "/api/v1/audit/export?from={}&to={}",
                urlencode(&end),
                urlencode(&middle)
            ),
            &owner.access,
        )
        .await;
    // A range that ends before it starts holds no events: an empty, still signed export.
    assert_eq!(backwards.status(), 200);
    let empty = backwards.text().await.unwrap();
    assert_eq!(empty.lines().count(), 1, "{empty}");
    assert!(empty.contains("\"count\":0"), "{empty}");
    let unknown = app
        .get_as("/api/v1/audit/export?format=xml", &owner.access)
        .await;
    assert_eq!(unknown.status(), 422);
    app.stop().await;
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

// claim: AUD-5
#[tokio::test]
async fn retention_prunes_from_the_oldest_and_the_rest_still_verifies() {
    let app = spawn_app().await;
    let owner = six_events(&app).await;
    let set = app
        .client
        .put(app.url("/api/v1/audit/retention"))
        .bearer_auth(&owner.access)
        .json(&json!({"days": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let shown: Value = app
        .get_as("/api/v1/audit/retention", &owner.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["days"], 30);
    assert_eq!(app.state.audit.enforce_retention().await.unwrap(), 0);

    app.clock
        .advance(std::time::Duration::from_secs(31 * 86_400));
    let owner = app.login("owner@example.com").await;
    let pruned = app.state.audit.enforce_retention().await.unwrap();
    assert_eq!(
        pruned, 7,
        "sign-up, sign-in, four invitations, the retention change"
    );
    let verdict = verdict(&app, &owner).await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["first_seq"], 8);
    let remaining: Vec<String> = app
        .inspect(
            &format!("SELECT action FROM audit_events WHERE {TENANT_ROWS} ORDER BY seq"),
            None,
        )
        .await;
    assert_eq!(remaining, ["auth.login", "audit.pruned"]);
    // Only what the anchor covers could be deleted; the rest stays append-only.
    let refused = app
        .as_superuser(&format!("DELETE FROM audit_events WHERE {TENANT_ROWS}"))
        .await;
    assert!(refused.is_err_and(|e| e.contains("append-only")));
    // And the chain goes on from the anchor.
    app.post_as(
        "/api/v1/invitations",
        &owner.access,
        Some(&json!({"email": "later@example.com", "role": "viewer"})),
    )
    .await;
    assert!(verdict_ok(&app, &owner).await);
    let bad = app
        .client
        .put(app.url("/api/v1/audit/retention"))
        .bearer_auth(&owner.access)
        .json(&json!({"days": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    app.stop().await;
}

// claim: AUD-5
#[tokio::test]
async fn an_admin_cannot_shrink_the_audit_history_to_a_day_to_cover_their_tracks() {
    let app = spawn_app().await;
    let staff = crate::tenancy::staffed_tenant(&app).await;
    let put = |session: &Session, days: Value| {
        let request = app
            .client
            .put(app.url("/api/v1/audit/retention"))
            .bearer_auth(&session.access)
            .json(&json!({ "days": days }));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let (owner, admin) = (&staff["owner"], &staff["admin"]);
    assert_eq!(put(admin, json!(1)).await, 422, "below the floor");
    assert_eq!(
        put(owner, json!(29)).await,
        422,
        "below the floor, even for an Owner"
    );
    assert_eq!(
        put(admin, json!(365)).await,
        403,
        "from keeping all: shorter"
    );
    assert_eq!(put(owner, json!(365)).await, 200);
    assert_eq!(put(admin, json!(30)).await, 403, "shorter");
    assert_eq!(put(admin, json!(730)).await, 200, "longer is fine");
    assert_eq!(put(admin, Value::Null).await, 200, "keeping all is fine");
    assert_eq!(put(owner, json!(30)).await, 200, "an Owner shortens it");
    let shown: Value = app
        .get_as("/api/v1/audit/retention", &owner.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["days"], 30);
}

/// Whether the tenant's chain verifies through the API.
pub(crate) async fn verdict_ok(app: &TestApp, owner: &Session) -> bool {
    verdict(app, owner).await["ok"] == true
}

// claim: AUD-6
#[tokio::test]
async fn events_are_filtered_and_paged_by_cursor_within_the_callers_tenant_only() {
    let app = spawn_app().await;
    let owner = six_events(&app).await;
    let invited = events(&app, &owner.access, "?action=members.invited").await;
    assert_eq!(invited["events"].as_array().unwrap().len(), 4);
    let me = crate::tenancy::user_id_of(&app, &owner).await;
    let by_owner = events(&app, &owner.access, &format!("?actor={me}")).await;
    assert_eq!(by_owner["events"].as_array().unwrap().len(), 6);
    let target = invited["events"][0]["target_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = events(
        &app,
        &owner.access,
        &format!("?target_type=invitation&target_id={target}"),
    )
    .await;
    assert_eq!(one["events"].as_array().unwrap().len(), 1);

    // Pages of two, newest first, no event twice, none missed.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = events(&app, &owner.access, &query).await;
        let batch = page["events"].as_array().unwrap();
        assert!(batch.len() <= 2);
        seen.extend(batch.iter().map(|e| e["seq"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, [6, 5, 4, 3, 2, 1]);

    let future = events(&app, &owner.access, "?from=2999-01-01T00:00:00Z").await;
    assert!(future["events"].as_array().unwrap().is_empty());

    // Another tenant sees only its own chain.
    let other = app.signed_in("other@example.com").await;
    let theirs = events(&app, &other.access, "").await;
    let theirs = theirs["events"].as_array().unwrap();
    assert_eq!(theirs.len(), 2);
    assert!(theirs.iter().all(|e| e["stream"] == other.tenant));

    for bad in [
        "?cursor=zz",
        "?limit=0",
        "?limit=501",
        "?colour=blue",
        "?from=yesterday",
    ] {
        let refused = app
            .get_as(&format!("/api/v1/audit/events{bad}"), &owner.access)
            .await;
        assert_eq!(refused.status(), 422, "{bad}");
    }
    app.stop().await;
}

// claim: AUD-6, RBAC-1
#[tokio::test]
async fn reading_the_log_needs_audit_read() {
    let app = spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let key: Value = app
        .post_as(
            "/api/v1/api-keys",
            &owner.access,
            Some(&json!({"name": "viewer", "role": "viewer"})),
        )
        .await
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/audit/events",
        "/api/v1/audit/verify",
        "/api/v1/audit/export",
    ] {
        let refused = app
            .client
            .get(app.url(path))
            .header("x-api-key", key["secret"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{path}");
    }
    app.stop().await;
}

// claim: AUD-1, AUD-3
#[tokio::test]
async fn events_without_a_transaction_are_committed_in_groups_and_chain_in_order() {
    let app = spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let tenant: palisade::ids::TenantId = owner.tenant.parse().unwrap();
    let now = app.clock_now();
    let appends = (0..300).map(|n| {
        let audit = app.state.audit.clone();
        let event = palisade::audit::AuditRecord::new(
            "test.burst",
            "success",
            now,
            format!("req_{n}"),
            None,
            None,
        );
        let event = if n % 3 == 0 {
            event
        } else {
            event.in_tenant(tenant)
        };
        tokio::spawn(async move { audit.record(event).await })
    });
    for append in futures_util::future::join_all(appends).await {
        append.unwrap().unwrap();
    }
    let recorded: Vec<i64> = app
        .inspect(
            "SELECT count(*) FROM audit_events WHERE action = 'test.burst'",
            None,
        )
        .await;
    assert_eq!(recorded, [300]);
    assert!(verdict_ok(&app, &owner).await);
    // The server's own role cannot read the platform stream on PostgreSQL (the operator's
    // `palisade audit verify` does); on SQLite the same service verifies it.
    if app.db.as_postgres().is_none() {
        let platform = app
            .state
            .audit
            .verify(palisade::audit::store::Chain::for_upkeep(
                palisade::audit::PLATFORM_STREAM,
            ))
            .await
            .unwrap();
        assert!(platform.ok, "{platform:?}");
        // The burst's hundred, and the owner's verification mail request.
        assert!(platform.summary.events >= 100, "{platform:?}");
    }
    app.stop().await;
}

/// A credential for one step of the walk.
enum Auth<'a> {
    Anonymous,
    Bearer(&'a str),
    Cookie(&'a str),
}

/// A walked request's body: JSON for most operations, a form for the OAuth endpoints.
enum Body {
    Empty,
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

impl From<Option<Value>> for Body {
    fn from(body: Option<Value>) -> Self {
        body.map_or(Body::Empty, Body::Json)
    }
}

/// Calls every state-changing operation once, successfully, and checks that each left an
/// event carrying the response's request id.
struct Walk<'a> {
    app: &'a TestApp,
    covered: std::collections::BTreeSet<String>,
}

impl Walk<'_> {
    async fn call(
        &mut self,
        method: reqwest::Method,
        template: &str,
        path: &str,
        auth: Auth<'_>,
        body: impl Into<Body>,
    ) -> (Value, Option<String>) {
        let mut request = self.app.client.request(method.clone(), self.app.url(path));
        request = match auth {
            Auth::Anonymous => request,
            Auth::Bearer(access) => request.bearer_auth(access),
            Auth::Cookie(refresh) => request
                .header(
                    "cookie",
                    format!("{}={refresh}", crate::helpers::REFRESH_COOKIE),
                )
                .header(
                    crate::helpers::CSRF_HEADER,
                    crate::helpers::csrf_token(refresh),
                ),
        };
        request = match body.into() {
            Body::Empty => request,
            Body::Json(body) => request.json(&body),
            Body::Form(fields) => request.form(&fields),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let cookie = crate::helpers::refresh_cookie(&response);
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        // Work answered before it is done (mail requests) is audited when it is done.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let recorded: Vec<i64> = self
                .app
                .inspect(
                    "SELECT count(*) FROM audit_events WHERE request_id = $1",
                    Some(&request_id),
                )
                .await;
            if recorded[0] > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{method} {template} changed state without an audit event"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.covered.insert(format!("{method} {template}"));
        (serde_json::from_str(&text).unwrap_or(Value::Null), cookie)
    }
}

/// The token of the newest mail to `to` containing `needle`, once it has been written.
async fn mail_token(app: &TestApp, needle: &str, to: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mails = app.outbox(0).await;
        if let Some(mail) = mails
            .iter()
            .rev()
            .find(|m| m.contains(needle) && m.contains(to))
        {
            return crate::helpers::token_in_mail(mail);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle} mail to {to}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn session_id(access: &str) -> String {
    use base64::Engine;
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

fn totp(app: &TestApp, secret: &str) -> String {
    use palisade::identity::mfa::{hotp, time_step};
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut key) = (0u64, 0u32, Vec::new());
    for c in secret.chars() {
        buffer = (buffer << 5) | ALPHABET.find(c).unwrap() as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            key.push((buffer >> bits) as u8);
        }
    }
    format!("{:06}", hotp(&key, time_step(app.clock_now()) as u64, 6))
}

// claim: AUD-1
#[tokio::test]
async fn every_state_changing_route_writes_an_event_with_its_request_id() {
    use reqwest::Method;
    // With the work-order manifest, so relations of its resource types can be written.
    let app = crate::manifest::with_workorders().await;
    let mut walk = Walk {
        app: &app,
        covered: Default::default(),
    };
    const NEW: &str = "another long passphrase";
    let owner = "walker@example.com";
    let credentials = |email: &str, password: &str| json!({"email": email, "password": password});
    let signup = |email: &str| json!({"email": email, "password": crate::helpers::PASSWORD, "tenant_name": "Walk"});

    // Accounts: sign-up, verification, reset, sign-in, password change.
    let post = Method::POST;
    walk.call(
        post.clone(),
        "/api/v1/auth/signup",
        "/api/v1/auth/signup",
        Auth::Anonymous,
        Some(signup(owner)),
    )
    .await;
    walk.call(
        post.clone(),
        "/api/v1/auth/verify-email/request",
        "/api/v1/auth/verify-email/request",
        Auth::Anonymous,
        Some(json!({"email": owner})),
    )
    .await;
    let token = mail_token(&app, "verify-email", owner).await;
    walk.call(
        post.clone(),
        "/api/v1/auth/verify-email",
        "/api/v1/auth/verify-email",
        Auth::Anonymous,
        Some(json!({"token": token})),
    )
    .await;
    walk.call(
        post.clone(),
        "/api/v1/auth/password-reset/request",
        "/api/v1/auth/password-reset/request",
        Auth::Anonymous,
        Some(json!({"email": owner})),
    )
    .await;
    let token = mail_token(&app, "reset-password", owner).await;
    walk.call(
        post.clone(),
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset",
        Auth::Anonymous,
        Some(json!({"token": token, "new_password": NEW})),
    )
    .await;
    let (login, _) = walk
        .call(
            post.clone(),
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            Auth::Anonymous,
            Some(credentials(owner, NEW)),
        )
        .await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let tenant = login["tenant_id"].as_str().unwrap().to_owned();
    walk.call(
        post.clone(),
        "/api/v1/auth/password",
        "/api/v1/auth/password",
        Auth::Bearer(&access),
        Some(json!({"current_password": NEW, "new_password": crate::helpers::PASSWORD})),
    )
    .await;
    let owner_session = app.login(owner).await;
    let access = owner_session.access.clone();

    // The app's backend: relations of its resources, under its service credential.
    let (_, service) = crate::access::service_credential(&app).await;
    let owner_id = crate::tenancy::user_id_of(&app, &owner_session).await;
    let assignment = json!({"tenant_id": tenant, "relations": [{
        "resource": {"type": "workorder", "id": "wo_1"},
        "relation": "assignee",
        "subject": {"type": "user", "id": owner_id},
    }]});
    for method in [Method::PUT, Method::DELETE] {
        walk.call(
            method,
            "/access/v1/relations",
            "/access/v1/relations",
            Auth::Bearer(&service),
            Some(assignment.clone()),
        )
        .await;
    }
    // Ending a session by one of its tokens (a session of its own, so the walk goes on).
    let spare = app.login(owner).await;
    walk.call(
        post.clone(),
        "/oauth/revoke",
        "/oauth/revoke",
        Auth::Bearer(&service),
        Body::Form(vec![("token", spare.access)]),
    )
    .await;
    // The app's own events, one under a tenant token (its own work) and a batch under the
    // service credential (a user's), and the tenant token itself.
    let (issued, _) = walk
        .call(
            post.clone(),
            "/api/v1/services/tenant-token",
            "/api/v1/services/tenant-token",
            Auth::Bearer(&service),
            Some(json!({"tenant_id": tenant})),
        )
        .await;
    let tenant_token = issued["token"].as_str().unwrap().to_owned();
    let target = json!([{"type": "workorder", "id": "wo_1"}]);
    walk.call(
        post.clone(),
        "/api/v1/audit/events",
        "/api/v1/audit/events",
        Auth::Bearer(&tenant_token),
        Some(json!({"action": "workorder.update", "actor": "system", "targets": target})),
    )
    .await;
    walk.call(
        post.clone(),
        "/api/v1/audit/events/batch",
        "/api/v1/audit/events/batch",
        Auth::Bearer(&service),
        Some(json!({"events": [
            {"action": "workorder.read", "actor": {"access_token": access}, "targets": target},
        ]})),
    )
    .await;

    // The tenant: applications, keys, custom roles, invitations, members, policies.
    let (application, _) = walk
        .call(
            post.clone(),
            "/api/v1/applications",
            "/api/v1/applications",
            Auth::Bearer(&access),
            Some(json!({"name": "Sync"})),
        )
        .await;
    let application = application["id"].as_str().unwrap().to_owned();
    let (key, _) = walk
        .call(
            post.clone(),
            "/api/v1/api-keys",
            "/api/v1/api-keys",
            Auth::Bearer(&access),
            Some(json!({"name": "CI", "role": "viewer", "application_id": application})),
        )
        .await;
    let key = key["id"].as_str().unwrap().to_owned();
    walk.call(
        post.clone(),
        "/api/v1/api-keys/{key_id}/rotate",
        &format!("/api/v1/api-keys/{key}/rotate"),
        Auth::Bearer(&access),
        Some(json!({"overlap_seconds": 0})),
    )
    .await;
    walk.call(
        Method::DELETE,
        "/api/v1/api-keys/{key_id}",
        &format!("/api/v1/api-keys/{key}"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    // The vault: a secret stored, replaced, revealed, a kept version deleted, the tenant's
    // data key rotated, then the secret deleted.
    let (secret, _) = walk
        .call(
            post.clone(),
            "/api/v1/secrets",
            "/api/v1/secrets",
            Auth::Bearer(&access),
            Some(json!({"name": "slack", "value": "xoxb-walked-value"})),
        )
        .await;
    let secret = secret["id"].as_str().unwrap().to_owned();
    walk.call(
        Method::PUT,
        "/api/v1/secrets/{secret_id}",
        &format!("/api/v1/secrets/{secret}"),
        Auth::Bearer(&access),
        Some(json!({"value": "xoxb-walked-again"})),
    )
    .await;
    walk.call(
        post.clone(),
        "/api/v1/secrets/{secret_id}/reveal",
        &format!("/api/v1/secrets/{secret}/reveal"),
        Auth::Bearer(&access),
        Some(json!({"reason": "the walk", "version": 1})),
    )
    .await;
    walk.call(
        Method::DELETE,
        "/api/v1/secrets/{secret_id}",
        &format!("/api/v1/secrets/{secret}?version=1"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    walk.call(
        post.clone(),
        "/api/v1/vault/data-keys",
        "/api/v1/vault/data-keys",
        Auth::Bearer(&access),
        None,
    )
    .await;
    walk.call(
        Method::DELETE,
        "/api/v1/secrets/{secret_id}",
        &format!("/api/v1/secrets/{secret}"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    // Webhooks: an endpoint registered (a public address: nothing is delivered in this
    // test), changed, its secret rotated, a message sent, replayed, recovered, deleted.
    let (endpoint, _) = walk
        .call(
            post.clone(),
            "/api/v1/webhooks/endpoints",
            "/api/v1/webhooks/endpoints",
            Auth::Bearer(&access),
            Some(json!({"url": "https://93.184.216.34/hooks", "event_types": ["member.added"]})),
        )
        .await;
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    walk.call(
        Method::PATCH,
        "/api/v1/webhooks/endpoints/{endpoint_id}",
        &format!("/api/v1/webhooks/endpoints/{endpoint}"),
        Auth::Bearer(&access),
        Some(json!({"event_types": ["member.added", "workorder.status_changed"]})),
    )
    .await;
    walk.call(
        post.clone(),
        "/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret",
        &format!("/api/v1/webhooks/endpoints/{endpoint}/rotate-secret"),
        Auth::Bearer(&access),
        Some(json!({})),
    )
    .await;
    let (message, _) = walk
        .call(
            post.clone(),
            "/api/v1/webhooks/messages",
            "/api/v1/webhooks/messages",
            Auth::Bearer(&access),
            Some(json!({"event_type": "workorder.status_changed", "payload": {"status": "done"}})),
        )
        .await;
    walk.call(
        post.clone(),
        "/api/v1/webhooks/endpoints/{endpoint_id}/replay",
        &format!("/api/v1/webhooks/endpoints/{endpoint}/replay"),
        Auth::Bearer(&access),
        Some(json!({"message_id": message["id"]})),
    )
    .await;
    walk.call(
        post.clone(),
        "/api/v1/webhooks/endpoints/{endpoint_id}/recover",
        &format!("/api/v1/webhooks/endpoints/{endpoint}/recover"),
        Auth::Bearer(&access),
        Some(json!({"since": "2020-01-01T00:00:00Z"})),
    )
    .await;
    walk.call(
        Method::DELETE,
        "/api/v1/webhooks/endpoints/{endpoint_id}",
        &format!("/api/v1/webhooks/endpoints/{endpoint}"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    walk.call(
        Method::DELETE,
        "/api/v1/applications/{application_id}",
        &format!("/api/v1/applications/{application}"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    let (role, _) = walk
        .call(
            post.clone(),
            "/api/v1/custom-roles",
            "/api/v1/custom-roles",
            Auth::Bearer(&access),
            Some(json!({"name": "Auditor", "actions": ["members.read"]})),
        )
        .await;
    let role = role["id"].as_str().unwrap().to_owned();
    let (invitation, _) = walk
        .call(
            post.clone(),
            "/api/v1/invitations",
            "/api/v1/invitations",
            Auth::Bearer(&access),
            Some(json!({"email": "later@example.com", "role": "member"})),
        )
        .await;
    let invitation = invitation["id"].as_str().unwrap().to_owned();
    walk.call(
        Method::DELETE,
        "/api/v1/invitations/{invitation_id}",
        &format!("/api/v1/invitations/{invitation}"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    let mut members: Vec<String> = Vec::new();
    for joiner in ["first@example.com", "second@example.com"] {
        app.sign_up(joiner).await;
        let verification = mail_token(&app, "verify-email", joiner).await;
        walk.call(
            post.clone(),
            "/api/v1/auth/verify-email",
            "/api/v1/auth/verify-email",
            Auth::Anonymous,
            Some(json!({"token": verification})),
        )
        .await;
        walk.call(
            post.clone(),
            "/api/v1/invitations",
            "/api/v1/invitations",
            Auth::Bearer(&access),
            Some(json!({"email": joiner, "role": "member"})),
        )
        .await;
        let token = mail_token(&app, "invit", joiner).await;
        let joined = app.login(joiner).await;
        walk.call(
            post.clone(),
            "/api/v1/invitations/accept",
            "/api/v1/invitations/accept",
            Auth::Bearer(&joined.access),
            Some(json!({"token": token})),
        )
        .await;
        members.push(crate::tenancy::user_id_of(&app, &joined).await);
    }
    let (first, second) = (&members[0], &members[1]);
    walk.call(
        Method::PATCH,
        "/api/v1/members/{user_id}",
        &format!("/api/v1/members/{first}"),
        Auth::Bearer(&access),
        Some(json!({"role": "viewer"})),
    )
    .await;
    walk.call(
        Method::PUT,
        "/api/v1/members/{user_id}/custom-role",
        &format!("/api/v1/members/{first}/custom-role"),
        Auth::Bearer(&access),
        Some(json!({"custom_role_id": role})),
    )
    .await;
    walk.call(
        Method::DELETE,
        "/api/v1/custom-roles/{role_id}",
        &format!("/api/v1/custom-roles/{role}"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    walk.call(
        Method::DELETE,
        "/api/v1/members/{user_id}",
        &format!("/api/v1/members/{first}"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    walk.call(
        Method::PUT,
        "/api/v1/audit/retention",
        "/api/v1/audit/retention",
        Auth::Bearer(&access),
        Some(json!({"days": 365})),
    )
    .await;
    walk.call(
        Method::PUT,
        "/api/v1/tenant/mfa-policy",
        "/api/v1/tenant/mfa-policy",
        Auth::Bearer(&access),
        Some(json!({"required": false})),
    )
    .await;
    walk.call(
        post.clone(),
        "/api/v1/tenant/transfer-ownership",
        "/api/v1/tenant/transfer-ownership",
        Auth::Bearer(&access),
        Some(json!({"user_id": second})),
    )
    .await;

    // Second factor: enrol, confirm, remove.
    let (enrolment, _) = walk
        .call(
            post.clone(),
            "/api/v1/auth/mfa/totp",
            "/api/v1/auth/mfa/totp",
            Auth::Bearer(&access),
            Some(json!({"password": crate::helpers::PASSWORD})),
        )
        .await;
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    walk.call(
        post.clone(),
        "/api/v1/auth/mfa/totp/confirm",
        "/api/v1/auth/mfa/totp/confirm",
        Auth::Bearer(&access),
        Some(json!({"code": totp(&app, &secret)})),
    )
    .await;
    app.clock.advance(std::time::Duration::from_secs(30));
    walk.call(
        post.clone(),
        "/api/v1/auth/mfa/totp/disable",
        "/api/v1/auth/mfa/totp/disable",
        Auth::Bearer(&access),
        Some(json!({"code": totp(&app, &secret)})),
    )
    .await;

    // Sessions: refresh, end another, switch tenant, end all, sign out.
    let (_, refreshed) = walk
        .call(
            post.clone(),
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            Auth::Cookie(&owner_session.refresh),
            None,
        )
        .await;
    assert!(refreshed.is_some());
    let phone = app.login(owner).await;
    let phone_id = session_id(&phone.access);
    walk.call(
        Method::DELETE,
        "/api/v1/auth/sessions/{session_id}",
        &format!("/api/v1/auth/sessions/{phone_id}"),
        Auth::Bearer(&access),
        None,
    )
    .await;
    app.sign_up("elsewhere@example.com").await;
    let elsewhere = app.login("elsewhere@example.com").await;
    crate::sessions::add_membership(&app, owner, &elsewhere.tenant, "member").await;
    let (switched, _) = walk
        .call(
            post.clone(),
            "/api/v1/auth/switch-tenant",
            "/api/v1/auth/switch-tenant",
            Auth::Bearer(&access),
            Some(json!({"tenant_id": elsewhere.tenant})),
        )
        .await;
    let switched = switched["access_token"].as_str().unwrap().to_owned();
    walk.call(
        post.clone(),
        "/api/v1/auth/revoke-all",
        "/api/v1/auth/revoke-all",
        Auth::Bearer(&switched),
        None,
    )
    .await;
    let last = app.login(owner).await;
    walk.call(
        post.clone(),
        "/api/v1/auth/logout",
        "/api/v1/auth/logout",
        Auth::Cookie(&last.refresh),
        None,
    )
    .await;
    let _ = tenant;

    // Erasure (OPS-5): an account, with the tenant it alone belongs to, and a tenant.
    app.sign_up("leaver@example.com").await;
    let leaver = app.login("leaver@example.com").await;
    let password = json!({ "password": crate::helpers::PASSWORD });
    walk.call(
        post.clone(),
        "/api/v1/me/erase",
        "/api/v1/me/erase",
        Auth::Bearer(&leaver.access),
        Some(password.clone()),
    )
    .await;
    let elsewhere = app.login("elsewhere@example.com").await;
    walk.call(
        post.clone(),
        "/api/v1/tenant/delete",
        "/api/v1/tenant/delete",
        Auth::Bearer(&elsewhere.access),
        Some(password),
    )
    .await;

    // Nothing that changes state was left out.
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let mut changing = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            // Decisions, searches, introspection and the app's limit checks change no
            // stored state (`api::access` counts every table around a batch); relation
            // writes and token revocation do.
            let writes = [
                "/access/v1/relations",
                "/oauth/revoke",
                "/api/v1/services/tenant-token",
                "/api/v1/audit/events",
                "/api/v1/audit/events/batch",
            ];
            // Its sources are settings naming a tenant made before the start:
            // `api::inbound` checks its event and request id on an instance of its own.
            if path == "/api/v1/webhooks/inbound/{source}" {
                continue;
            }
            let decides = palisade::ratelimit::is_integration(&method.to_uppercase(), path)
                && !writes.contains(&path.as_str());
            if method != "get" && !decides {
                changing.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let missing: Vec<_> = changing.difference(&walk.covered).collect();
    assert!(missing.is_empty(), "not walked: {missing:?}");
    app.stop().await;
}
