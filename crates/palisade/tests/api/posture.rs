//! The posture report (claim OPS-7): every claim of the specification checked on a running
//! instance, from inside (`GET /api/v1/posture`) and from outside (`palisade posture`),
//! with each failure named when a check is broken on purpose.

use serde_json::Value;

use crate::backup::{backed_up_app_with, backup_now, Operator};
use crate::helpers::{spawn_app_with, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");
const TOKEN: &str = "posture-token-0123456789";

fn with_token(settings: &mut palisade::config::Settings) {
    settings.posture.bearer_token = Some(TOKEN.to_owned().into());
}

async fn report(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/api/v1/posture"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn claim<'r>(report: &'r Value, id: &str) -> (&'r str, &'r str) {
    let found = report["claims"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in the report"));
    (
        found["status"].as_str().unwrap(),
        found["evidence"].as_str().unwrap(),
    )
}

fn failures(report: &Value) -> Vec<String> {
    report["claims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| format!("{}: {}", c["id"], c["evidence"]))
        .collect()
}

/// `palisade posture --url … [--token-file …] --json`: its exit status and report.
async fn run_posture(app: &TestApp, with_token: bool) -> (bool, Value, String) {
    run_posture_with(app, with_token, &[]).await
}

async fn run_posture_with(
    app: &TestApp,
    with_token: bool,
    extra: &[&str],
) -> (bool, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let mut command = std::process::Command::new(BIN);
    command
        .arg("--data-dir")
        .arg(dir.path().join("unused"))
        .args(["posture", "--json", "--url", &app.base])
        .args(extra);
    if with_token {
        command.arg("--token-file").arg(&token_file);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    let parsed = serde_json::from_str(&printed).unwrap_or_else(|_| panic!("{printed}{said}"));
    (output.status.success(), parsed, said)
}

// claim: OPS-7
#[tokio::test]
async fn an_instance_with_its_backups_on_passes_every_check_and_reports_every_claim() {
    let operator = Operator::new().await;
    let app = backed_up_app_with(&operator, with_token).await;
    backup_now(&app).await;
    // The operator's credential only.
    assert_eq!(app.get("/api/v1/posture").await.status(), 401);
    let wrong = app
        .client
        .get(app.url("/api/v1/posture"))
        .bearer_auth("posture-token-but-not-this-one")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let session = app.signed_in("owner@example.com").await;
    assert_eq!(
        app.get_as("/api/v1/posture", &session.access)
            .await
            .status(),
        401
    );

    let inside = report(&app).await;
    let ids: Vec<&str> = inside["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        palisade::posture::CLAIMS,
        "every claim, once, in order"
    );
    assert!(failures(&inside).is_empty(), "{:?}", failures(&inside));
    for id in ["ID-1", "ID-3", "ID-8", "SEC-2", "AUD-3", "OPS-2", "OPS-3"] {
        assert_eq!(
            claim(&inside, id).0,
            "pass",
            "{id}: {}",
            claim(&inside, id).1
        );
    }
    assert!(claim(&inside, "OPS-3").1.contains("test restore passed"));
    let isolation = claim(&inside, "TEN-3");
    match app.db.as_postgres() {
        Some(_) => assert_eq!(isolation.0, "pass", "{}", isolation.1),
        None => assert_eq!(isolation.0, "not_checkable"),
    }
    if app.db.as_postgres().is_some() {
        assert_eq!(
            claim(&inside, "AUD-2").0,
            "pass",
            "{}",
            claim(&inside, "AUD-2").1
        );
    }
    assert!(claim(&inside, "SEC-4").1.contains("does not provide"));

    // From outside, and both together, through the command an operator runs.
    let (succeeded, merged, said) = run_posture(&app, true).await;
    assert!(succeeded, "{said} {:?}", failures(&merged));
    assert_eq!(merged["failed"], 0, "{:?}", failures(&merged));
    for id in ["WEB-2", "WEB-4", "WEB-5", "ID-8", "OPS-6", "APP-3", "AUD-3"] {
        assert_eq!(
            claim(&merged, id).0,
            "pass",
            "{id}: {}",
            claim(&merged, id).1
        );
    }
    assert_eq!(
        claim(&merged, "WEB-1").0,
        "not_checkable",
        "loopback, plain HTTP"
    );
}

// claim: OPS-7
#[tokio::test]
async fn each_check_broken_on_purpose_is_named_and_fails_the_command() {
    // A default instance: no backups.
    let app = spawn_app_with(with_token).await;
    let (succeeded, outside_and_in, _) = run_posture(&app, true).await;
    assert!(!succeeded, "a failing claim makes the command fail");
    let (status, evidence) = claim(&outside_and_in, "OPS-3");
    assert_eq!(status, "fail");
    assert!(evidence.contains("backups are off"), "{evidence}");

    // An edited audit event.
    let owner = app.signed_in("owner@example.com").await;
    let _ = owner;
    app.tamper(&[&format!(
        "UPDATE audit_events SET target_id = 'forged' WHERE seq = 1 AND {}",
        crate::audit::TENANT_ROWS
    )])
    .await;
    let inside = report(&app).await;
    let (status, evidence) = claim(&inside, "AUD-3");
    assert_eq!(status, "fail");
    assert!(evidence.contains("at 1: edited"), "{evidence}");

    // Row-level security switched off on one table (PostgreSQL, its second layer).
    if app.db.as_postgres().is_some() {
        app.as_superuser("ALTER TABLE secrets NO FORCE ROW LEVEL SECURITY")
            .await
            .unwrap();
        let inside = report(&app).await;
        let (status, evidence) = claim(&inside, "TEN-3");
        assert_eq!(status, "fail");
        assert!(evidence.contains("secrets"), "{evidence}");
    }
    app.stop().await;

    // A stale backup: 27 hours old on the injected clock.
    let operator = Operator::new().await;
    let app = backed_up_app_with(&operator, with_token).await;
    backup_now(&app).await;
    app.clock.advance(std::time::Duration::from_secs(27 * 3600));
    let inside = report(&app).await;
    let (status, evidence) = claim(&inside, "OPS-3");
    assert_eq!(status, "fail", "{evidence}");

    // A proxy in front that drops the security headers.
    let stripped = headerless_server().await;
    let client = reqwest::Client::new();
    let findings = palisade::posture::outside::probe(&client, &stripped)
        .await
        .unwrap();
    let web2 = findings.iter().find(|f| f.id == "WEB-2").unwrap();
    assert_eq!(web2.status, palisade::posture::Status::Fail);
    assert!(
        web2.evidence
            .contains("content-security-policy on /api/health"),
        "{}",
        web2.evidence
    );
}

/// A server answering every request 200 `{}` with no security header: what a
/// misconfigured proxy in front of Palisade shows a client.
async fn headerless_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    format!("http://{address}")
}

// claim: OPS-7, WEB-1
#[tokio::test]
async fn over_tls_the_report_checks_hsts_from_outside_and_the_listener_from_inside() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (cert, key) = (fixtures.join("tls-cert.pem"), fixtures.join("tls-key.pem"));
    let app = spawn_app_with(move |settings| {
        with_token(settings);
        settings.tls.cert = Some(cert);
        settings.tls.key = Some(key);
        settings.tls.redirect_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    assert!(app.base.starts_with("https://"));
    let ca = fixtures.join("tls-ca.pem");
    let (_, merged, said) =
        run_posture_with(&app, true, &["--ca-file", ca.to_str().unwrap()]).await;
    let (status, evidence) = claim(&merged, "WEB-1");
    assert_eq!(status, "pass", "{evidence} {said}");
    assert!(
        evidence.contains("max-age=31536000; includeSubDomains; preload"),
        "{evidence}"
    );
    assert!(evidence.contains("TLS 1.2+ on"), "inside, too: {evidence}");
    // Without the CA the instance cannot be reached at all: said, and a failure.
    let (succeeded, said) = run_posture_without_its_ca(&app).await;
    assert!(!succeeded);
    assert!(said.contains("cannot be reached"), "{said}");
}

/// The command against `app` without its CA: its exit status and what it said.
async fn run_posture_without_its_ca(app: &TestApp) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(BIN);
    command
        .arg("--data-dir")
        .arg(dir.path().join("unused"))
        .args(["posture", "--url", &app.base]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
