//! Backups (claims OPS-2, OPS-3, OPS-4): encrypted to the operator's age key (made and
//! read by age's reference TypeScript implementation, not by our code), test-restored as they are made, reported by
//! health, and brought back by `palisade restore` into a server that starts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use palisade::backup::archive::{self, Manifest};
use palisade::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{run_outside, spawn_app_in, TestApp, TestDatabase};
use crate::tenancy::{send, staffed_tenant};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");
const VALUE: &str = "xoxb-0123456789-BACKEDupSECRET";

/// age's reference TypeScript implementation (tests/interop/age.mjs), installed on first use.
async fn age_tool(args: &[&std::ffi::OsStr]) -> std::process::Command {
    let dir = crate::jwks::interop_dir();
    crate::jwks::install_interop_once(&dir).await;
    let mut command = std::process::Command::new("node");
    command.current_dir(&dir).arg("age.mjs").args(args);
    command
}

/// The operator's age key pair, made as `age-keygen` makes it.
pub(crate) struct Operator {
    _dir: tempfile::TempDir,
    identity: PathBuf,
    recipient: String,
}

impl Operator {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join("backup-identity.txt");
        run_outside(age_tool(&["keygen".as_ref(), identity.as_os_str()]).await).await;
        let text = std::fs::read_to_string(&identity).unwrap();
        let recipient = text
            .lines()
            .find_map(|line| line.strip_prefix("# public key: "))
            .expect("the identity file names its public key in a comment")
            .to_owned();
        Self {
            _dir: dir,
            identity,
            recipient,
        }
    }
}

/// A server with backups on, to `operator`'s key (on PostgreSQL as the backup role of
/// docs/postgres.md: not a superuser; it bypasses row-level security, reads every table
/// and may create the check's scratch database).
async fn backed_up_app(operator: &Operator) -> TestApp {
    backed_up_app_with(operator, |_| {}).await
}

/// [`backed_up_app`], with `configure` applied to its settings too.
pub(crate) async fn backed_up_app_with(
    operator: &Operator,
    configure: impl FnOnce(&mut Settings) + Send + 'static,
) -> TestApp {
    let db = TestDatabase::create().await;
    let backup_url = db.as_postgres().map(|pg| pg.backup_url());
    let recipient = operator.recipient.clone();
    spawn_app_in(
        tempfile::tempdir().unwrap(),
        db,
        move |settings: &mut Settings| {
            settings.backup.recipients = vec![recipient];
            settings.backup.database_url = backup_url.map(Into::into);
            configure(settings);
        },
    )
    .await
}

pub(crate) async fn backup_now(app: &TestApp) -> (PathBuf, Manifest) {
    let manifest = app
        .state
        .backups
        .run(Arc::new(|_: &str, _: u64| {}))
        .await
        .unwrap();
    let (dir, listed) = app.state.backups.list().unwrap().remove(0);
    assert_eq!(listed.unwrap().id, manifest.id);
    (dir, manifest)
}

async fn health(app: &TestApp) -> (u16, Value) {
    let response = app.get("/api/health").await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// `palisade restore` into `target` (and `target_db` on PostgreSQL): its output, or why not.
async fn restore(
    backup: &Path,
    operator: &Operator,
    target: &Path,
    target_db: &TestDatabase,
    public_key: Option<&str>,
) -> Result<String, String> {
    let mut command = std::process::Command::new(BIN);
    command
        .arg("--data-dir")
        .arg(target)
        .arg("restore")
        .arg(backup)
        .arg("--identity")
        .arg(&operator.identity)
        .env_remove("PALISADE_RESTORE_DATABASE_URL");
    if let Some(key) = public_key {
        command.args(["--public-key", key]);
    }
    if let Some(pg) = target_db.as_postgres() {
        command.env("PALISADE_RESTORE_DATABASE_URL", pg.superuser_url());
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.success() {
        true => Ok(printed),
        false => Err(said),
    }
}

async fn checkpoint_key(app: &TestApp) -> String {
    crate::audit::published_key(app).await.encoded()
}

// claim: OPS-3, OPS-4
#[tokio::test]
async fn a_backup_made_under_write_load_restores_into_a_server_that_starts_with_its_rows_keys_and_verifying_chains(
) {
    let operator = Operator::new().await;
    let app = backed_up_app(&operator).await;
    let staff = staffed_tenant(&app).await;
    let (status, secret) = send(
        &app,
        Method::POST,
        "/api/v1/secrets",
        &staff["manager"].access,
        Some(json!({"name": "crm/token", "value": VALUE})),
    )
    .await;
    assert_eq!(status, 201, "{secret}");

    // Sign-ups go on while the snapshot is taken, encrypted and test-restored.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, client, base) = (stop.clone(), app.client.clone(), app.base.clone());
        tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(Ordering::SeqCst) || written < 3 {
                let response = client
                    .post(format!("{base}/api/v1/auth/signup"))
                    .json(&json!({
                        "email": format!("load-{written}@example.com"),
                        "password": crate::helpers::PASSWORD,
                        "tenant_name": "Load",
                    }))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                written += 1;
            }
            written
        })
    };
    let (dir, manifest) = backup_now(&app).await;
    stop.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();
    assert!(
        manifest.restore_check.passed,
        "{}",
        manifest.restore_check.detail
    );
    assert!(manifest.tables["users"] >= 5, "{:?}", manifest.tables);
    assert!(manifest.tables["secret_versions"] >= 1);
    assert!(manifest.tables["audit_events"] > 0);
    let (status, report) = health(&app).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("ok")),
        "{report}"
    );
    assert_eq!(report["checks"]["backups"]["status"], "up", "{report}");
    assert!(report["checks"]["backups"]["detail"]
        .as_str()
        .unwrap()
        .contains("test restore passed"));

    // Nothing in the backup is readable without the operator's key; with it, another
    // implementation of age opens the database.
    for file in [archive::DATABASE, archive::KEYS] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{file}");
        assert!(!bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()));
        assert!(!bytes.windows(17).any(|w| w == b"owner@example.com"));
    }
    let plain = dir.parent().unwrap().join("outside.plain");
    let database = dir.join(archive::DATABASE);
    let decrypt = age_tool(&[
        "decrypt".as_ref(),
        operator.identity.as_os_str(),
        database.as_os_str(),
        plain.as_os_str(),
    ])
    .await;
    run_outside(decrypt).await;
    match app.db.as_postgres() {
        None => {
            let header = std::fs::read(&plain).unwrap();
            assert!(header.starts_with(b"SQLite format 3\0"));
        }
        Some(_) => {
            let mut list = std::process::Command::new("pg_restore");
            list.arg("--list").arg(&plain);
            let listed = run_outside(list).await;
            assert!(
                listed.contains("TABLE DATA public audit_events"),
                "{listed}"
            );
        }
    }
    std::fs::remove_file(&plain).unwrap();

    // Restored into a new data directory (and an empty database), a server starts on it.
    let target = tempfile::tempdir().unwrap();
    let target_db = TestDatabase::create().await;
    let key = checkpoint_key(&app).await;
    let printed = restore(
        &dir,
        &operator,
        &target.path().join("data"),
        &target_db,
        Some(&key),
    )
    .await
    .unwrap();
    assert!(
        printed.contains(&format!("restored backup {}", manifest.id)),
        "{printed}"
    );
    assert!(printed.contains("as in the snapshot"), "{printed}");
    let restored = spawn_app_in(target, target_db, |_| {}).await;
    let counts = restored.table_counts().await;
    for (table, rows) in &counts {
        assert_eq!(Some(rows), manifest.tables.get(table), "{table}");
    }
    assert!(
        manifest.tables["users"] < written + 5,
        "the snapshot is of one moment, not of the end of the load"
    );
    for chain in restored.state.audit.streams().await.unwrap() {
        let verdict = restored.state.audit.verify(chain).await.unwrap();
        assert!(verdict.first_problem.is_none(), "{}", verdict.stream);
    }
    // The key files came back: the restored vault opens the secret, and users sign in.
    let owner = restored.login("owner@example.com").await;
    let manager = crate::tenancy::login_to(&restored, "manager@example.com", &owner.tenant).await;
    let (status, revealed) = send(
        &restored,
        Method::POST,
        &format!("/api/v1/secrets/{}/reveal", secret["id"].as_str().unwrap()),
        &staff_admin_of(&restored, &owner).await,
        Some(json!({"reason": "restore drill"})),
    )
    .await;
    assert_eq!(
        (status, revealed["value"].as_str()),
        (200, Some(VALUE)),
        "{revealed}"
    );
    assert_eq!(
        restored.me(&manager).await["user"]["email"],
        "manager@example.com"
    );
    restored.stop().await;
    app.stop().await;
}

/// The restored tenant's admin (Admins may reveal), signed in on the restored server.
async fn staff_admin_of(app: &TestApp, owner: &crate::helpers::Session) -> String {
    crate::tenancy::login_to(app, "admin@example.com", &owner.tenant)
        .await
        .access
}

// claim: OPS-4
#[tokio::test]
async fn a_tampered_truncated_or_re_signed_backup_a_wrong_key_and_a_used_target_are_refused_by_name(
) {
    let operator = Operator::new().await;
    let app = backed_up_app(&operator).await;
    app.signed_in("owner@example.com").await;
    let (dir, manifest) = backup_now(&app).await;
    let key = checkpoint_key(&app).await;
    let target_db = TestDatabase::create().await;
    let scratch = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let copy = scratch.path().join(name);
        std::fs::create_dir(&copy).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        copy
    };
    let refused = |why: &str, said: Result<String, String>, expected: &str| {
        let said = said.expect_err(why);
        assert!(said.contains(expected), "{why}: {said}");
    };
    let target = scratch.path().join("target");

    let flipped = copy("flipped");
    let mut bytes = std::fs::read(flipped.join(archive::DATABASE)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(flipped.join(archive::DATABASE), bytes).unwrap();
    refused(
        "a flipped bit",
        restore(&flipped, &operator, &target, &target_db, Some(&key)).await,
        "database.age does not match the manifest's SHA-256",
    );

    let truncated = copy("truncated");
    let keys = truncated.join(archive::KEYS);
    let length = std::fs::metadata(&keys).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&keys)
        .unwrap()
        .set_len(length - 20)
        .unwrap();
    refused(
        "a truncated file",
        restore(&truncated, &operator, &target, &target_db, Some(&key)).await,
        &format!(
            "keys.age is {} bytes, the manifest says {length}",
            length - 20
        ),
    );

    // Counts edited, the hashes left alone: the signature no longer holds.
    let edited = copy("edited");
    let mut changed = Manifest::read(&edited).unwrap();
    *changed.tables.get_mut("users").unwrap() += 1;
    std::fs::write(
        edited.join(archive::MANIFEST),
        serde_json::to_vec(&changed).unwrap(),
    )
    .unwrap();
    refused(
        "an edited manifest",
        restore(&edited, &operator, &target, &target_db, Some(&key)).await,
        "manifest.json is not signed by the checkpoint key",
    );
    // Signed by another deployment's key: refused against ours.
    let other = crate::helpers::spawn_app().await;
    refused(
        "another deployment's key",
        restore(
            &dir,
            &operator,
            &target,
            &target_db,
            Some(&checkpoint_key(&other).await),
        )
        .await,
        "manifest.json is not signed by the checkpoint key",
    );
    other.stop().await;

    let stranger = Operator::new().await;
    refused(
        "another operator's identity",
        restore(&dir, &stranger, &target, &target_db, Some(&key)).await,
        "keys.age does not open with this identity",
    );
    assert!(!target.exists(), "nothing was written for a refused backup");

    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("palisade.db"), b"someone's data").unwrap();
    refused(
        "a used data directory",
        restore(&dir, &operator, &target, &target_db, Some(&key)).await,
        "is not empty: restore only into a new data directory",
    );
    assert_eq!(
        std::fs::read(target.join("palisade.db")).unwrap(),
        b"someone's data"
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    assert!(manifest.restore_check.passed);
    app.stop().await;
}

// claim: OPS-2, OPS-3
#[tokio::test]
async fn health_degrades_when_the_newest_backup_is_27_hours_old_or_failed_its_test_restore() {
    let operator = Operator::new().await;
    let app = backed_up_app(&operator).await;
    let (status, report) = health(&app).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("ok")),
        "{report}"
    );
    assert_eq!(report["checks"]["backups"]["status"], "up");
    assert!(report["checks"]["backups"]["latency_ms"].is_number());
    assert!(app.state.backups.due());

    // The schedule's own path: a thread of its own, at the lowest priority.
    app.state.backups.start_if_due();
    let first = {
        let mut waited = 0;
        loop {
            let newest = app.state.backups.list().unwrap().pop();
            if let (Some((_, Ok(manifest))), false) = (newest, app.state.backups.is_running()) {
                break manifest;
            }
            assert!(waited < 600, "the scheduled backup did not finish in 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            waited += 1;
        }
    };
    assert!(first.restore_check.passed, "{}", first.restore_check.detail);
    assert!(!app.state.backups.due());
    app.clock.advance(std::time::Duration::from_secs(25 * 3600));
    assert!(app.state.backups.due(), "daily");
    assert_eq!(health(&app).await.1["checks"]["backups"]["status"], "up");
    app.clock.advance(std::time::Duration::from_secs(2 * 3600));
    let (status, report) = health(&app).await;
    assert_eq!(
        status, 200,
        "a stale backup degrades; the instance still serves"
    );
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(report["checks"]["backups"]["status"], "degraded");
    let detail = report["checks"]["backups"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&first.id) && detail.contains("27.0 h old (over 26 h)"),
        "{detail}"
    );

    // A backup whose file is cut short before its test restore reads it back: kept, with
    // the failure recorded and signed, and health says so.
    let made = app
        .state
        .backups
        .make(Arc::new(|_: &str, _: u64| {}))
        .await
        .unwrap();
    let database = made.dir().join(archive::DATABASE);
    let length = std::fs::metadata(&database).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&database)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    // While it is being made, neither this server nor another process starts one.
    assert!(matches!(
        app.state.backups.run(Arc::new(|_: &str, _: u64| {})).await,
        Err(palisade::backup::BackupError::Busy)
    ));
    let mut cli = std::process::Command::new(BIN);
    cli.arg("--data-dir")
        .arg(app.data_dir())
        .args(["backup", "now"])
        .envs(app.db.env())
        .env("PALISADE_BACKUP__RECIPIENTS", &operator.recipient);
    if let Some(pg) = app.db.as_postgres() {
        cli.env("PALISADE_BACKUP__DATABASE_URL", pg.backup_url());
    }
    let output = tokio::task::spawn_blocking(move || cli.output().unwrap())
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && said.contains("a backup is already running"),
        "{said}"
    );
    let failed = app.state.backups.check(made).await.unwrap();
    assert!(!failed.restore_check.passed);
    assert!(
        failed.restore_check.detail.contains("database.age"),
        "{}",
        failed.restore_check.detail
    );
    let (status, report) = health(&app).await;
    assert_eq!((status, report["status"].as_str()), (200, Some("degraded")));
    let detail = report["checks"]["backups"]["detail"].as_str().unwrap();
    assert!(detail.contains("test restore FAILED"), "{detail}");
    assert!(
        !detail.contains("database.age"),
        "health is public: the cause is not in it"
    );

    // The next good backup clears it; 31 days on, retention keeps only what is recent.
    app.clock.advance(std::time::Duration::from_secs(1));
    let (_, good) = backup_now(&app).await;
    assert!(good.restore_check.passed);
    assert_eq!(health(&app).await.1["status"], "ok");
    assert_eq!(app.state.backups.list().unwrap().len(), 3);
    app.clock
        .advance(std::time::Duration::from_secs(31 * 86400));
    let (_, latest) = backup_now(&app).await;
    let kept: Vec<String> = app
        .state
        .backups
        .list()
        .unwrap()
        .into_iter()
        .map(|(_, m)| m.unwrap().id)
        .collect();
    assert_eq!(kept, vec![latest.id]);
    app.stop().await;

    // Without recipients nothing is backed up, and health says so without failing.
    let plain = crate::helpers::spawn_app().await;
    let (status, report) = health(&plain).await;
    assert_eq!((status, report["status"].as_str()), (200, Some("ok")));
    assert_eq!(report["checks"]["backups"]["status"], "off");
    assert!(!plain.state.backups.due());
    plain.stop().await;
}

// claim: OPS-2, OPS-3
#[tokio::test]
async fn a_backup_that_cannot_be_written_is_retried_hourly_and_degrades_health_once_stale() {
    let operator = Operator::new().await;
    let blocked = tempfile::tempdir().unwrap();
    let file = blocked.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let db = TestDatabase::create().await;
    let backup_url = db.as_postgres().map(|pg| pg.backup_url());
    let (recipient, dir) = (operator.recipient.clone(), file.join("backups"));
    let app = spawn_app_in(
        tempfile::tempdir().unwrap(),
        db,
        move |settings: &mut Settings| {
            settings.backup.recipients = vec![recipient];
            settings.backup.database_url = backup_url.map(Into::into);
            settings.backup.dir = Some(dir);
        },
    )
    .await;
    assert!(app
        .state
        .backups
        .run(Arc::new(|_: &str, _: u64| {}))
        .await
        .is_err());
    let report = health(&app).await.1;
    assert_eq!(report["checks"]["backups"]["status"], "up", "{report}");
    let detail = report["checks"]["backups"]["detail"].as_str().unwrap();
    assert!(detail.contains("the last attempt failed"), "{detail}");
    assert!(
        !detail.contains("not-a-directory"),
        "no path on the public page"
    );
    assert!(
        !app.state.backups.due(),
        "not retried at every minute's upkeep"
    );
    app.clock.advance(std::time::Duration::from_secs(61 * 60));
    assert!(app.state.backups.due());
    app.clock.advance(std::time::Duration::from_secs(26 * 3600));
    let (status, report) = health(&app).await;
    assert_eq!(
        (status, report["status"].as_str()),
        (200, Some("degraded")),
        "{report}"
    );
    app.stop().await;
}

/// An S3-compatible object store on loopback: moto's server, from PyPI, installed into
/// tests/interop/.venv the first time a test needs it (pinned by requirements.txt).
struct ObjectStore {
    child: std::process::Child,
    endpoint: String,
    python: PathBuf,
}

const BUCKET: &str = "palisade-offsite";

impl ObjectStore {
    async fn start() -> Self {
        let python = python_interop().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto's server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while client.get(&endpoint).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "moto never answered");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let store = Self {
            child,
            endpoint,
            python,
        };
        store.s3(&["mkbucket", BUCKET]).await;
        store
    }

    /// tests/interop/s3.py, through boto3.
    async fn s3(&self, args: &[&str]) -> String {
        let mut command = std::process::Command::new(&self.python);
        command
            .arg(crate::jwks::interop_dir().join("s3.py"))
            .arg(&self.endpoint)
            .args(args);
        run_outside(command).await
    }

    /// Settings that copy every backup to this store's bucket.
    fn configure(&self) -> impl FnOnce(&mut Settings) + Send + 'static {
        let endpoint = self.endpoint.clone();
        move |settings: &mut Settings| {
            settings.backup.s3_endpoint = Some(endpoint);
            settings.backup.s3_bucket = Some(BUCKET.into());
            settings.backup.s3_access_key_id = Some("palisade-test".into());
            settings.backup.s3_secret_access_key = Some("palisade-test-secret".to_owned().into());
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The interop virtualenv's python, made and filled once per test run.
async fn python_interop() -> PathBuf {
    static READY: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let dir = crate::jwks::interop_dir();
            let venv = dir.join(".venv");
            let python = venv.join("bin/python");
            let requirements = dir.join("requirements.txt");
            let wanted = std::fs::read_to_string(&requirements).unwrap();
            let marker = venv.join("installed-requirements.txt");
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
                let mut make = std::process::Command::new("python3");
                make.args(["-m", "venv"]).arg(&venv);
                run_outside(make).await;
                let mut install = std::process::Command::new(&python);
                install
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "-q",
                        "--disable-pip-version-check",
                        "-r",
                    ])
                    .arg(&requirements);
                run_outside(install).await;
                std::fs::write(&marker, &wanted).unwrap();
            }
            python
        })
        .await
        .clone()
}

// claim: OPS-3, OPS-2
#[tokio::test]
async fn every_backup_is_copied_off_site_whole_and_pruned_there_and_a_failed_copy_degrades_health()
{
    let mut store = ObjectStore::start().await;
    let operator = Operator::new().await;
    let app = backed_up_app_with(&operator, store.configure()).await;
    app.signed_in("owner@example.com").await;
    let (_, first) = backup_now(&app).await;

    // Whole: every file, each as the signed manifest says, read back by AWS's own SDK.
    let listed = store.s3(&["list", BUCKET, "palisade-backups/"]).await;
    let keys: Vec<&str> = listed.lines().collect();
    for file in [archive::DATABASE, archive::KEYS, archive::MANIFEST] {
        let key = format!("palisade-backups/{}/{file}", first.id);
        assert!(keys.contains(&key.as_str()), "{key} in {keys:?}");
    }
    for entry in &first.files {
        let key = format!("palisade-backups/{}/{}", first.id, entry.name);
        let digest = store.s3(&["sha256", BUCKET, &key]).await;
        assert_eq!(digest.trim(), entry.sha256, "{key}");
    }
    let (_, said) = health(&app).await;
    let backups = said["checks"]["backups"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        backups.contains("copied to s3://palisade-offsite/"),
        "{said}"
    );

    // Past the retention window the old copy goes there as here.
    app.clock
        .advance(std::time::Duration::from_secs(31 * 24 * 3600));
    let (_, second) = backup_now(&app).await;
    let listed = store.s3(&["list", BUCKET, "palisade-backups/"]).await;
    assert!(!listed.contains(&first.id), "{listed}");
    assert!(listed.contains(&second.id), "{listed}");

    // A store that is gone: the backup is still made and kept, and health says the copy
    // failed.
    store.stop();
    app.clock.advance(std::time::Duration::from_secs(3600));
    let (dir, third) = backup_now(&app).await;
    assert!(third.restore_check.passed);
    assert!(dir.join(archive::MANIFEST).exists());
    let (status, said) = health(&app).await;
    assert_eq!(status, 200);
    assert_eq!(said["checks"]["backups"]["status"], "degraded", "{said}");
    assert!(
        said["checks"]["backups"]["detail"]
            .as_str()
            .unwrap()
            .contains("off-site copy FAILED"),
        "{said}"
    );
}
