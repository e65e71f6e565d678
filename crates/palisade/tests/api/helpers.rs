//! The test harness: the real server on 127.0.0.1:0, on a fresh SQLite file or a fresh
//! PostgreSQL database reached as an ordinary role, and ways to break its database.
//!
//! The backend is chosen by `PALISADE_TEST_BACKEND` (`sqlite`, the default, or `postgres`);
//! PostgreSQL also needs `PALISADE_TEST_POSTGRES_URL`, a superuser URL used only to create
//! roles and databases. Every test runs unchanged on both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use palisade::app::{App, AppState};
use palisade::clock::{Clock, SystemClock};
use palisade::config::{Overrides, Settings};
use palisade::store::Database;
use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;
use tokio::task::AbortHandle;

pub const RUNTIME_GROUP: &str = "palisade_runtime";
pub const TEST_OWNER: &str = "palisade_test_owner";
pub const TEST_APP: &str = "palisade_test_app";
pub const PLATFORM_GROUP: &str = "palisade_platform";
/// The platform operator's role: BYPASSRLS, for `palisade admin …` only.
pub const TEST_PLATFORM: &str = "palisade_test_platform";
/// The backup role of docs/postgres.md: BYPASSRLS, CREATEDB, reads every table.
pub const TEST_BACKUP: &str = "palisade_test_backup";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend() -> Backend {
    match std::env::var("PALISADE_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("PALISADE_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

/// Says that this test checked nothing on this backend, and why. A skip must never pass
/// for a proof: the line goes to stderr and, when `PALISADE_TEST_SKIP_LOG` names a file, is
/// appended there, so CI reports per backend how many tests only skipped.
pub fn skipped(why: &str) {
    note_skip("skipped", why);
}

/// Says that part of this test does not apply on this backend (the rest ran).
pub fn partly_skipped(why: &str) {
    note_skip("partly", why);
}

fn note_skip(kind: &str, why: &str) {
    use std::io::Write;
    // libtest names each test's thread after the test; tokio::test runs the body on it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("unnamed test");
    let backend = match backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let line = format!("SKIP {kind} {backend} {test}: {why}\n");
    eprint!("{line}");
    if let Some(path) = std::env::var_os("PALISADE_TEST_SKIP_LOG") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("the skip log opens");
        file.write_all(line.as_bytes())
            .expect("the skip log is written");
    }
}

/// The clock the server reads: starts at the real time, moves only when a test says so.
pub struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

pub struct TestApp {
    pub clock: Arc<TestClock>,
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub db: TestDatabase,
    pub redirect_addr: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _data_dir: tempfile::TempDir,
}

/// Starts the server with test defaults.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the server after `configure` has adjusted the settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    spawn_app_in(data_dir, TestDatabase::create().await, configure).await
}

/// Starts the server on a given database and data directory (`DIR/data`: a restored one,
/// say), after `configure` has adjusted the settings.
pub async fn spawn_app_in(
    data_dir: tempfile::TempDir,
    db: TestDatabase,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(&data_dir.path().join("data"), &db);
    configure(&mut settings);
    settings.validate().expect("test settings are valid");
    let clock = Arc::new(TestClock(Mutex::new(SystemClock.now())));
    let instance = Instance::start(settings, clock.clone()).await;
    TestApp {
        clock,
        addr: instance.addr,
        base: instance.base.clone(),
        client: instance.client.clone(),
        state: instance.state.clone(),
        db,
        redirect_addr: instance.redirect_addr,
        stop: Some(instance.stop),
        server: Some(instance.server),
        _data_dir: data_dir,
    }
}

/// An inbound webhook source, `walk`, of a tenant that does not exist: a walk of the
/// routes reaches the inbound handler, which refuses what it sends as unsigned.
pub fn with_an_inbound_source(settings: &mut Settings) {
    settings.webhooks.inbound.insert(
        "walk".to_owned(),
        palisade::config::InboundSource {
            scheme: palisade::config::InboundScheme::Stripe,
            secret: "whsec_the_walks_inbound_source".to_owned().into(),
            tenant: "ten_0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0".to_owned(),
        },
    );
}

fn test_settings(data_dir: &std::path::Path, db: &TestDatabase) -> Settings {
    let mut settings = Settings::load_from(
        None,
        Vec::<(String, String)>::new(),
        &Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(data_dir.to_owned()),
        },
    )
    .expect("default settings are valid");
    settings.database.health_timeout_ms = 500;
    // Each health call probes afresh, so fault tests see the database's state at once.
    settings.database.health_cache_ms = 0;
    settings.database.acquire_timeout_ms = 1_000;
    // Limits stay on (every request passes the layer) but out of the way; the rate-limit
    // tests set their own.
    settings.rate_limits.default_per_minute = 1_000_000;
    settings.rate_limits.read_per_minute = 1_000_000;
    settings.rate_limits.sign_in_per_minute = 1_000_000;
    db.configure(&mut settings);
    settings
}

/// One running server.
pub struct Instance {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub redirect_addr: Option<SocketAddr>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Instance {
    async fn start(settings: Settings, clock: Arc<TestClock>) -> Self {
        let app = App::build_with_clock(settings, clock)
            .await
            .expect("the app starts");
        let addr = app.local_addr();
        let redirect_addr = app.redirect_addr();
        let scheme = app.scheme();
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // No real-time ticker: a test that needs periodic work runs that task itself
        // (`app.state.audit.checkpoint_due()`, …) when its clock says so.
        let server = tokio::spawn(app.run_with(
            async {
                let _ = stopped.await;
            },
            palisade::app::Upkeep::Manual,
        ));
        Self {
            addr,
            base: format!("{scheme}://{addr}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            state,
            redirect_addr,
            stop,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap();
    }
}

impl TestApp {
    /// The data directory: the SQLite file and the key files a second instance shares.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._data_dir.path().join("data")
    }

    /// A second server on the same database, data directory and clock: another instance
    /// behind the same load balancer.
    pub async fn spawn_sibling(&self) -> Instance {
        self.spawn_sibling_with(|_| {}).await
    }

    /// [`TestApp::spawn_sibling`] with adjusted settings (the same adjustments as this app's).
    pub async fn spawn_sibling_with(&self, configure: impl FnOnce(&mut Settings)) -> Instance {
        let mut settings = test_settings(&self.data_dir(), &self.db);
        configure(&mut settings);
        Instance::start(settings, self.clock.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Signs up a fresh account with [`PASSWORD`] and a tenant named Acme, its address
    /// verified (as if its owner had followed the mailed link; the recovery tests follow
    /// real links), so that it may sign in.
    pub async fn sign_up(&self, email: &str) {
        self.sign_up_unverified(email).await;
        self.mark_verified(email).await;
    }

    /// Marks an address verified without the mailed link (no audit event, no mail read).
    pub async fn mark_verified(&self, email: &str) {
        assert!(!email.contains('\''), "a test address");
        let verified = self
            .as_superuser(&format!(
                "UPDATE users SET email_verified_at = created_at
                 WHERE email = '{}' AND email_verified_at IS NULL",
                email.to_lowercase()
            ))
            .await
            .unwrap();
        assert_eq!(verified, 1, "{email} was signed up and not yet verified");
    }

    /// Signs up without verifying the address: the account cannot sign in yet.
    pub async fn sign_up_unverified(&self, email: &str) {
        let response = self
            .post_json(
                "/api/v1/auth/signup",
                &serde_json::json!({
                    "email": email,
                    "password": PASSWORD,
                    "tenant_name": "Acme",
                }),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    /// Signs up and signs in: the common start of an authenticated test.
    pub async fn signed_in(&self, email: &str) -> Session {
        self.sign_up(email).await;
        self.login(email).await
    }

    /// Signs in with [`PASSWORD`]; the sign-in must succeed.
    pub async fn login(&self, email: &str) -> Session {
        let response = self
            .post_json(
                "/api/v1/auth/login",
                &serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        Session::from_response(response).await
    }

    /// `POST /api/v1/auth/refresh` with the given refresh token in the cookie, and the
    /// session's CSRF token beside it as a client does (claim WEB-3).
    pub async fn refresh(&self, refresh: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/refresh"))
            .header("cookie", format!("{REFRESH_COOKIE}={refresh}"))
            .header(CSRF_HEADER, csrf_token(refresh))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_as(&self, path: &str, access: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(access)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /api/v1/me` as `session`: who it is and what it may do.
    pub async fn me(&self, session: &Session) -> serde_json::Value {
        self.get_as("/api/v1/me", &session.access)
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn post_as(
        &self,
        path: &str,
        access: &str,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let request = self.client.post(self.url(path)).bearer_auth(access);
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        request.send().await.expect("request sent")
    }

    /// Where mail goes without SMTP.
    pub fn outbox_dir(&self) -> std::path::PathBuf {
        self._data_dir.path().join("data").join("outbox")
    }

    /// The mails in the outbox, oldest first, waiting up to 5 s for at least `count`
    /// (mail is sent in the background).
    pub async fn outbox(&self, count: usize) -> Vec<String> {
        let dir = self.outbox_dir();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            if names.len() >= count || std::time::Instant::now() > deadline {
                return names
                    .iter()
                    .map(|p| std::fs::read_to_string(p).unwrap())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every table of the schema and its row count, read as the database's owner (the
    /// rate limiter's state excepted: every request moves it).
    pub async fn table_counts(&self) -> std::collections::BTreeMap<String, i64> {
        let tables: Vec<String> = match backend() {
            Backend::Sqlite => {
                self.inspect(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                    None,
                )
                .await
            }
            Backend::Postgres => {
                self.inspect(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                    None,
                )
                .await
            }
        };
        let mut counts = std::collections::BTreeMap::new();
        for table in tables {
            if table != "rate_limits" {
                counts.insert(table.clone(), self.count_rows(&table).await);
            }
        }
        assert!(counts.len() >= 10, "{counts:?}");
        counts
    }

    /// Rows in a table, counted past any tenant filter.
    pub async fn count_rows(&self, table: &str) -> i64 {
        assert!(table.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        self.inspect(&format!("SELECT count(*) FROM {table}"), None)
            .await
            .remove(0)
    }

    /// One column of a query, read past any tenant filter (as the database's owner sees
    /// it), with an optional text parameter `$1`: how tests look at what was stored.
    pub async fn inspect<T>(&self, sql: &str, param: Option<&str>) -> Vec<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>
            + Send
            + Unpin,
    {
        match &self.state.db {
            Database::Sqlite(pool) => {
                let query = sqlx::query_scalar(sql);
                let query = match param {
                    Some(value) => query.bind(value),
                    None => query,
                };
                query.fetch_all(pool).await.unwrap()
            }
            Database::Postgres(_) => {
                let owner = self.db.inspector_pool().await;
                let query = sqlx::query_scalar(sql);
                let query = match param {
                    Some(value) => query.bind(value),
                    None => query,
                };
                let rows = query.fetch_all(&owner).await.unwrap();
                owner.close().await;
                rows
            }
        }
    }

    /// Runs `statements` as an attacker with the database owner's rights who first turned
    /// the audit log's guard triggers off: what the hash chain must still catch.
    pub async fn tamper(&self, statements: &[&str]) {
        match &self.state.db {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                let triggers: Vec<(String, String)> = sqlx::query_as(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'
                     AND tbl_name IN ('audit_events', 'audit_checkpoints')",
                )
                .fetch_all(&mut *tx)
                .await
                .unwrap();
                for (name, _) in &triggers {
                    sqlx::query(&format!("DROP TRIGGER {name}"))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                for statement in statements {
                    sqlx::query(statement).execute(&mut *tx).await.unwrap();
                }
                for (_, sql) in &triggers {
                    sqlx::query(sql).execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            Database::Postgres(_) => {
                let pool = self.db.inspector_pool().await;
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("SET LOCAL session_replication_role = replica")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                for statement in statements {
                    sqlx::query(statement).execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
                pool.close().await;
            }
        }
    }

    /// Runs `statement` with every privilege the database has (SQLite's file, PostgreSQL's
    /// superuser) but the guards left on; the error's text when refused.
    pub async fn as_superuser(&self, statement: &str) -> Result<u64, String> {
        match &self.state.db {
            Database::Sqlite(pool) => sqlx::query(statement)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
                .map_err(|e| e.to_string()),
            Database::Postgres(_) => {
                let pool = self.db.inspector_pool().await;
                let outcome = sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(|e| e.to_string());
                pool.close().await;
                outcome
            }
        }
    }

    /// Makes the database unreachable for the server: PostgreSQL's connections are cut at
    /// the proxy between them; SQLite's file is write-locked by another connection.
    pub async fn break_database(&mut self) {
        let path = self.sqlite_path();
        match &mut self.db {
            TestDatabase::Postgres(pg) => pg.proxy.cut(),
            TestDatabase::Sqlite { lock } => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                *lock = Some(conn);
            }
        }
    }

    pub async fn repair_database(&mut self) {
        match &mut self.db {
            TestDatabase::Postgres(pg) => pg.proxy.restore(),
            TestDatabase::Sqlite { lock, .. } => {
                if let Some(mut conn) = lock.take() {
                    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                    conn.close().await.unwrap();
                }
            }
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

/// The password `sign_up` uses.
pub const PASSWORD: &str = "correct horse battery staple";
/// The refresh cookie's name with the default (Secure) settings.
pub const REFRESH_COOKIE: &str = "__Secure-palisade_refresh";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token that goes with a refresh token, as sign-in and refresh answer it.
pub fn csrf_token(refresh: &str) -> String {
    palisade::http::csrf::token_for(&refresh.to_owned().into())
}

/// A signed-in user's tokens.
#[derive(Clone, Debug)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub tenant: String,
}

impl Session {
    /// Reads a successful sign-in or refresh answer.
    pub async fn from_response(response: reqwest::Response) -> Self {
        let status = response.status();
        let refresh = refresh_cookie(&response);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        Self {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: refresh.expect("a refresh cookie is set"),
            tenant: body["tenant_id"].as_str().unwrap().to_owned(),
        }
    }
}

/// The refresh token a response sets, if any (an empty value clears the cookie).
/// POSTs `body` to `path` of the instance at `base` with `bearer`: the status and the JSON
/// answer (Null when there is none).
pub async fn post_json_on(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    bearer: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    json_call(
        client,
        reqwest::Method::POST,
        format!("{base}{path}"),
        bearer,
        body,
    )
    .await
}

/// A JSON request with `bearer`: the status and the JSON answer (Null when there is none).
pub async fn json_call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    bearer: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client
        .request(method, url)
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

pub fn refresh_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{REFRESH_COOKIE}=")))
        .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
}

/// The token of the newest verification link mailed to `email` in `outbox`, waiting up to
/// 5 s (mail is sent in the background).
pub async fn verification_token(outbox: &std::path::Path, email: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut paths: Vec<_> = std::fs::read_dir(outbox)
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.sort();
        let found = paths.iter().rev().find_map(|path| {
            let mail = std::fs::read_to_string(path).ok()?;
            let addressed = mail
                .lines()
                .any(|line| line.eq_ignore_ascii_case(&format!("To: {email}")));
            (addressed && mail.contains("verify-email")).then(|| token_in_mail(&mail))
        });
        if let Some(token) = found {
            return token;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verification mail to {email}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The token in a mailed link (`…?token=…`), after undoing the quoted-printable encoding a
/// mail client would undo.
pub fn token_in_mail(mail: &str) -> String {
    let text = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

pub enum TestDatabase {
    Sqlite {
        /// A connection holding the write lock while the database is "broken".
        lock: Option<sqlx::SqliteConnection>,
    },
    Postgres(PgTestDatabase),
}

pub struct PgTestDatabase {
    pub name: String,
    pub proxy: FaultProxy,
    server: SocketAddr,
}

impl TestDatabase {
    pub async fn create() -> Self {
        match backend() {
            Backend::Sqlite => Self::Sqlite { lock: None },
            Backend::Postgres => Self::Postgres(PgTestDatabase::create().await),
        }
    }

    fn configure(&self, settings: &mut Settings) {
        match self {
            Self::Sqlite { .. } => {}
            Self::Postgres(pg) => {
                settings.database.url = Some(SecretString::from(pg.runtime_url()));
                settings.database.migrate_url = Some(SecretString::from(pg.owner_url()));
            }
        }
    }

    /// Settings as environment variables, for tests that run the `palisade` binary.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Self::Sqlite { .. } => vec![],
            Self::Postgres(pg) => vec![
                // Straight to the server: the proxy lives on the test's runtime, which a test
                // driving a child process may block.
                ("PALISADE_DATABASE_URL".into(), pg.direct_url(TEST_APP)),
                ("PALISADE_DATABASE_MIGRATE_URL".into(), pg.owner_url()),
                (
                    "PALISADE_ADMIN__DATABASE_URL".into(),
                    pg.direct_url(TEST_PLATFORM),
                ),
            ],
        }
    }

    /// A superuser pool on the test database: sees every row, RLS notwithstanding
    /// (FORCE ROW LEVEL SECURITY binds even the schema owner).
    pub async fn inspector_pool(&self) -> PgPool {
        match self {
            Self::Postgres(pg) => connect(&pg.superuser_url()).await,
            Self::Sqlite { .. } => panic!("inspector_pool is for PostgreSQL"),
        }
    }

    pub fn as_postgres(&self) -> Option<&PgTestDatabase> {
        match self {
            Self::Postgres(pg) => Some(pg),
            Self::Sqlite { .. } => None,
        }
    }
}

/// Settings for a server the test builds itself (one expected to refuse to start).
pub fn settings_in(dir: &std::path::Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        ..Settings::default()
    }
}

impl TestApp {
    /// Where the SQLite file lives (the harness learns it after start-up).
    pub fn sqlite_path(&self) -> PathBuf {
        self._data_dir.path().join("data").join("palisade.db")
    }
}

/// The server's address, once the roles exist and stale databases are gone. No pool is
/// cached: each test has its own runtime, and a pool outlives none of them.
static ADMIN: OnceCell<SocketAddr> = OnceCell::const_new();
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

fn admin_url() -> String {
    std::env::var("PALISADE_TEST_POSTGRES_URL")
        .expect("PALISADE_TEST_POSTGRES_URL must name a superuser URL for the postgres backend")
}

async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// A superuser connection. The first call creates the roles and drops databases left behind
/// by earlier test processes that have exited.
async fn admin() -> (sqlx::PgConnection, SocketAddr) {
    let url = admin_url();
    let server = ADMIN
        .get_or_init(|| async {
            let mut pool = sqlx::PgConnection::connect(&url).await.unwrap();
            let pool = &mut pool;
            let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
            let host = options.get_host().to_owned();
            let port = options.get_port();
            let server = tokio::net::lookup_host((host.as_str(), port))
                .await
                .unwrap()
                .next()
                .unwrap();
            for statement in [
                format!("CREATE ROLE {RUNTIME_GROUP} NOLOGIN NOSUPERUSER NOBYPASSRLS"),
                format!("CREATE ROLE {TEST_OWNER} LOGIN NOSUPERUSER NOBYPASSRLS"),
                format!(
                    "CREATE ROLE {TEST_APP} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE {RUNTIME_GROUP}"
                ),
                format!("CREATE ROLE {PLATFORM_GROUP} NOLOGIN NOSUPERUSER"),
                format!("CREATE ROLE {TEST_PLATFORM} LOGIN NOSUPERUSER BYPASSRLS IN ROLE {PLATFORM_GROUP}"),
                format!("CREATE ROLE {TEST_BACKUP} LOGIN NOSUPERUSER BYPASSRLS CREATEDB IN ROLE pg_read_all_data"),
            ] {
                if let Err(e) = sqlx::query(&statement).execute(&mut *pool).await {
                    let duplicate = matches!(&e, sqlx::Error::Database(db)
                        if matches!(db.code().as_deref(), Some("42710") | Some("23505")));
                    assert!(duplicate, "{statement}: {e}");
                }
            }
            let stale: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE datname LIKE 'palisade_t\\_%'",
            )
            .fetch_all(&mut *pool)
            .await
            .unwrap();
            for name in stale {
                let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
                let alive =
                    pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut *pool)
                            .await;
                }
            }
            server
        })
        .await;
    (sqlx::PgConnection::connect(&url).await.unwrap(), *server)
}

impl PgTestDatabase {
    async fn create() -> Self {
        let (mut admin, server) = admin().await;
        let name = format!(
            "palisade_t_{}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(&format!("CREATE DATABASE \"{name}\" OWNER {TEST_OWNER}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let proxy = FaultProxy::start(server).await;
        Self {
            name,
            proxy,
            server,
        }
    }

    /// The runtime role's URL, through the fault proxy.
    pub fn runtime_url(&self) -> String {
        format!("postgres://{TEST_APP}@{}/{}", self.proxy.addr, self.name)
    }

    pub fn owner_url(&self) -> String {
        self.direct_url(TEST_OWNER)
    }

    /// The backup role's URL (docs/postgres.md), straight to the server.
    pub fn backup_url(&self) -> String {
        self.direct_url(TEST_BACKUP)
    }

    /// A URL for `role` straight to the server, bypassing the proxy.
    pub fn direct_url(&self, role: &str) -> String {
        format!("postgres://{role}@{}/{}", self.server, self.name)
    }

    /// A superuser URL for this test database.
    pub fn superuser_url(&self) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

/// A TCP proxy between the server and PostgreSQL that a test can cut and restore.
pub struct FaultProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let cut = cut.clone();
            let links = links.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            })
            .abort_handle()
        };
        Self {
            addr,
            cut,
            links,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// Asserts a response is an error in the one shape, and returns its code.
pub async fn assert_error_shape(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .expect("x-request-id header");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(content_type.as_deref(), Some("application/json"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).expect("error body is JSON");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {text}"));
    assert_eq!(error.len(), 3, "exactly code, message, request_id: {text}");
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{text}"
    );
    assert_eq!(error["request_id"].as_str(), Some(request_id.as_str()));
    (status, error["code"].as_str().unwrap().to_owned())
}

/// Runs an outside program (an interop client, a documented shell session) off the async
/// runtime; panics with its output unless it succeeds, and returns what it printed.
pub async fn run_outside(mut command: std::process::Command) -> String {
    let output = tokio::task::spawn_blocking(move || command.output().expect("the program runs"))
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    printed
}
