//! The soak profile: Palisade's mixed traffic (sign-ins, authenticated reads, writes, API
//! key checks, and with a service credential the app's calls: decisions, key
//! verifications, introspections and audit events) at a fixed fraction of the capacity
//! measured first, for a long time, with every write counted back at the end and the
//! server's memory sampled as it goes.
//!
//! The load is open-loop: requests are scheduled at the target rate whatever the server
//! does, and each latency runs from the scheduled moment, so a stall shows up as latency
//! instead of as fewer requests.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;
use tokio::time::Instant;

use crate::histogram::LatencyHistogram;
use crate::load::{LiveConnection, StatusCounts};
use crate::target::parse_loopback_url;

/// With the app's calls, out of every 20: 1 sign-in, 3 writes, 5 reads, 3 key checks, 2
/// decisions, 2 key verifications, 2 introspections and 2 of the app's audit events.
const MIX_WITH_APP: [Kind; 20] = {
    use Kind::*;
    [
        Read, Evaluate, Write, KeyCheck, Verify, Read, Introspect, AppEvent, Write, SignIn, Read,
        Evaluate, KeyCheck, Verify, Read, Introspect, Write, AppEvent, Read, KeyCheck,
    ]
};

/// Out of every 20 requests: 1 sign-in, 4 writes, 8 authenticated reads, 7 key checks.
const MIX: [Kind; 20] = {
    use Kind::*;
    [
        Read, KeyCheck, Write, Read, KeyCheck, Read, Write, KeyCheck, Read, SignIn, Read, KeyCheck,
        Write, Read, KeyCheck, Read, Write, KeyCheck, Read, KeyCheck,
    ]
};

const PASSWORD: &str = "correct horse battery staple";

/// Sign-ins rotate over this many accounts, as a product's users do; one account signing
/// in many times at once is what the brute-force limit (ID-9) refuses.
const SIGN_IN_ACCOUNTS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SignIn,
    Read,
    Write,
    KeyCheck,
    Evaluate,
    Verify,
    Introspect,
    AppEvent,
}

const KINDS: [Kind; 8] = [
    Kind::SignIn,
    Kind::Read,
    Kind::Write,
    Kind::KeyCheck,
    Kind::Evaluate,
    Kind::Verify,
    Kind::Introspect,
    Kind::AppEvent,
];

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Kind::SignIn => "sign-in (POST /api/v1/auth/login)",
            Kind::Read => "read (GET /api/v1/members, bearer)",
            Kind::Write => "write (POST /api/v1/applications)",
            Kind::KeyCheck => "key check (GET /api/v1/tenant, X-Api-Key)",
            Kind::Evaluate => "decision (POST /access/v1/evaluation)",
            Kind::Verify => "key verify (POST /api/v1/keys/verify)",
            Kind::Introspect => "introspection (POST /oauth/introspect)",
            Kind::AppEvent => "app event (POST /api/v1/audit/events)",
        }
    }
}

/// The token of the verification link mailed to `email`, read from the server's outbox
/// (mail goes there in the background: waits up to 10 s).
async fn verification_token(outbox: &std::path::Path, email: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut paths: Vec<_> = std::fs::read_dir(outbox)
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            let addressed = text
                .lines()
                .any(|line| line.eq_ignore_ascii_case(&format!("To: {email}")));
            let Some(start) = text.find("verify-email?token=") else {
                continue;
            };
            if addressed {
                let token: String = text[start + "verify-email?token=".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .collect();
                return Ok(token);
            }
        }
        if Instant::now() > deadline {
            bail!("no verification mail to {email} in {}", outbox.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Names written by the soak start here, past any the capacity run used.
const SOAK_NAMES_FROM: u64 = 1 << 40;

pub struct SoakPlan {
    pub connections: usize,
    pub capacity_secs: Duration,
    /// The fraction of the measured capacity to hold (0.7).
    pub load: f64,
    /// Or a fixed rate, skipping the capacity run.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub window: Duration,
    /// Whose resident memory to sample (`/proc/PID/status`).
    pub server_pid: Option<u32>,
    /// The server's mail outbox (`<data_dir>/outbox`): the soak follows the verification
    /// links there, since an account signs in only once its address is verified.
    pub outbox: std::path::PathBuf,
    /// The app's service credential: with it the mix includes the app's calls (the server
    /// needs the work-order manifest for the app's events).
    pub service: Option<String>,
}

#[derive(Serialize)]
pub struct Window {
    pub second: u64,
    pub requests: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub server_errors: u64,
    pub rss_kib: Option<u64>,
}

#[derive(Serialize)]
pub struct KindSummary {
    pub kind: &'static str,
    pub requests: u64,
    pub client_errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Serialize)]
pub struct SoakReport {
    pub capacity_per_sec: Option<f64>,
    pub target_per_sec: f64,
    pub achieved_per_sec: f64,
    pub requests: u64,
    pub status: StatusCounts,
    pub transport_errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub kinds: Vec<KindSummary>,
    pub windows: Vec<Window>,
    pub rss_start_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// Writes answered 201 (applications made; with the app's calls, its events too),
    /// and how many of them a read at the end found.
    pub writes_acknowledged: usize,
    pub writes_found: usize,
    pub writes_lost: usize,
    /// Scheduled requests no worker could take up in time (the server fell behind).
    pub fell_behind: u64,
    /// A sample of the 4xx and 5xx answers: when, which request, status and body.
    pub failures: Vec<String>,
}

/// The credentials the mix uses, made once before the load.
struct Session {
    addr: SocketAddr,
    host: String,
    /// The first is the Owner whose tenant the reads and writes use.
    emails: Vec<String>,
    access: Mutex<String>,
    key: String,
    /// The Owner's user and tenant ids, for the decisions' subject and resource.
    user: String,
    tenant: String,
    service: Option<String>,
}

impl Session {
    fn mix(&self) -> &'static [Kind; 20] {
        if self.service.is_some() {
            &MIX_WITH_APP
        } else {
            &MIX
        }
    }

    fn request(&self, kind: Kind, n: u64) -> (Request<Full<Bytes>>, Option<String>) {
        let access = self.access.lock().unwrap().clone();
        let (method, path, body, name) = match kind {
            Kind::SignIn => (
                Method::POST,
                "/api/v1/auth/login",
                format!(
                    r#"{{"email":"{}","password":"{PASSWORD}"}}"#,
                    self.emails[Self::signer(n)]
                ),
                None,
            ),
            Kind::Read => (Method::GET, "/api/v1/members", String::new(), None),
            Kind::KeyCheck => (Method::GET, "/api/v1/tenant", String::new(), None),
            Kind::Write => {
                let name = format!("soak-{n}");
                (
                    Method::POST,
                    "/api/v1/applications",
                    format!(r#"{{"name":"{name}"}}"#),
                    Some(name),
                )
            }
            Kind::Evaluate => (
                Method::POST,
                "/access/v1/evaluation",
                format!(
                    r#"{{"subject":{{"type":"user","id":"{}","properties":{{"access_token":"{access}"}}}},"action":{{"name":"members.read"}},"resource":{{"type":"tenant","id":"{}"}}}}"#,
                    self.user, self.tenant
                ),
                None,
            ),
            Kind::Verify => (
                Method::POST,
                "/api/v1/keys/verify",
                format!(r#"{{"key":"{}","action":"members.read"}}"#, self.key),
                None,
            ),
            Kind::Introspect => (
                Method::POST,
                "/oauth/introspect",
                format!("token={access}"),
                None,
            ),
            Kind::AppEvent => (
                Method::POST,
                "/api/v1/audit/events",
                format!(
                    r#"{{"action":"workorder.update","actor":{{"access_token":"{access}"}},"targets":[{{"type":"workorder","id":"wo_{n}"}}],"changes":{{"before":{{"status":"open"}},"after":{{"status":"closed"}}}},"context":{{"ip":"203.0.113.7","user_agent":"soak","request_id":"soak-{n}"}}}}"#
                ),
                Some(format!("wo_{n}")),
            ),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        builder = match kind {
            Kind::KeyCheck => builder.header("x-api-key", &self.key),
            Kind::Read | Kind::Write => builder.header("authorization", format!("Bearer {access}")),
            Kind::Evaluate | Kind::Verify | Kind::Introspect | Kind::AppEvent => builder.header(
                "authorization",
                format!("Bearer {}", self.service.as_deref().unwrap_or_default()),
            ),
            Kind::SignIn => builder,
        };
        if kind == Kind::Introspect {
            builder = builder.header("content-type", "application/x-www-form-urlencoded");
        } else if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .expect("a well-formed request");
        (request, name)
    }

    /// Which account the `n`th request signs in as.
    fn signer(n: u64) -> usize {
        (n / MIX.len() as u64 % SIGN_IN_ACCOUNTS as u64) as usize
    }

    /// The Owner's user id, from `GET /api/v1/me`.
    async fn user_of(&self, connection: &mut LiveConnection, access: &str) -> Result<String> {
        let (status, me) = self
            .call(connection, Method::GET, "/api/v1/me", Some(access), "")
            .await?;
        me["user"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("GET /api/v1/me answered {status}"))
    }

    async fn call(
        &self,
        connection: &mut LiveConnection,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: &str,
    ) -> Result<(StatusCode, serde_json::Value)> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json");
        if let Some(token) = bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder.body(Full::new(Bytes::from(body.to_owned())))?;
        let (status, bytes) = connection.send(request).await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
    }

    /// Signs new Owners up, verifies their addresses, signs one in and makes an Admin key.
    async fn create(base: &str, outbox: &std::path::Path, service: Option<String>) -> Result<Self> {
        let url = parse_loopback_url(base)?;
        let addr = match url.host {
            crate::target::LoopbackHost::Ip(ip) => SocketAddr::new(ip, url.port),
            crate::target::LoopbackHost::Localhost => bail!("give the server's IP address"),
        };
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let mut session = Self {
            addr,
            host: url.authority,
            emails: (0..SIGN_IN_ACCOUNTS)
                .map(|i| format!("soak-{unique}-{i}@example.com"))
                .collect(),
            access: Mutex::new(String::new()),
            key: String::new(),
            user: String::new(),
            tenant: String::new(),
            service,
        };
        let mut connection = LiveConnection::connect(addr).await?;
        for email in &session.emails {
            let signup =
                format!(r#"{{"email":"{email}","password":"{PASSWORD}","tenant_name":"Soak"}}"#);
            let (status, _) = session
                .call(
                    &mut connection,
                    Method::POST,
                    "/api/v1/auth/signup",
                    None,
                    &signup,
                )
                .await?;
            if status != StatusCode::CREATED {
                bail!("sign-up answered {status}");
            }
        }
        for email in &session.emails {
            let token = verification_token(outbox, email).await?;
            let (status, _) = session
                .call(
                    &mut connection,
                    Method::POST,
                    "/api/v1/auth/verify-email",
                    None,
                    &format!(r#"{{"token":"{token}"}}"#),
                )
                .await?;
            if status != StatusCode::NO_CONTENT {
                bail!("verifying {email} answered {status}");
            }
        }
        let credentials = format!(
            r#"{{"email":"{}","password":"{PASSWORD}""#,
            session.emails[0]
        );
        let (status, login) = session
            .call(
                &mut connection,
                Method::POST,
                "/api/v1/auth/login",
                None,
                &format!("{credentials}}}"),
            )
            .await?;
        let access = login["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("sign-in answered {status}"))?
            .to_owned();
        session.tenant = login["tenant_id"].as_str().unwrap_or_default().to_owned();
        session.user = session.user_of(&mut connection, &access).await?;
        let (status, key) = session
            .call(
                &mut connection,
                Method::POST,
                "/api/v1/api-keys",
                Some(&access),
                r#"{"name":"soak","role":"admin"}"#,
            )
            .await?;
        session.key = key["secret"]
            .as_str()
            .ok_or_else(|| anyhow!("creating the key answered {status}"))?
            .to_owned();
        *session.access.lock().unwrap() = access;
        Ok(session)
    }

    async fn written_names(&self) -> Result<BTreeSet<String>> {
        let mut connection = LiveConnection::connect(self.addr).await?;
        let access = self.access.lock().unwrap().clone();
        let (status, listed) = self
            .call(
                &mut connection,
                Method::GET,
                "/api/v1/applications",
                Some(&access),
                "",
            )
            .await?;
        let mut names: BTreeSet<String> = listed
            .as_array()
            .ok_or_else(|| anyhow!("listing applications answered {status}"))?
            .iter()
            .filter_map(|a| a["name"].as_str().map(str::to_owned))
            .collect();
        if self.service.is_some() {
            names.extend(self.app_event_targets(&mut connection, &access).await?);
        }
        Ok(names)
    }

    /// The work orders the app's events name, read back page by page from the audit log.
    async fn app_event_targets(
        &self,
        connection: &mut LiveConnection,
        access: &str,
    ) -> Result<Vec<String>> {
        let mut targets = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(cursor) => format!(
                    "/api/v1/audit/events?action=workorder.update&limit=500&cursor={cursor}"
                ),
                None => "/api/v1/audit/events?action=workorder.update&limit=500".to_owned(),
            };
            let (status, page) = self
                .call(connection, Method::GET, &path, Some(access), "")
                .await?;
            let events = page["events"]
                .as_array()
                .ok_or_else(|| anyhow!("listing the app's events answered {status}"))?;
            targets.extend(
                events
                    .iter()
                    .filter_map(|e| e["target_id"].as_str().map(str::to_owned)),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(targets),
            }
        }
    }
}

/// What one worker saw.
struct Tally {
    windows: Vec<(LatencyHistogram, u64)>,
    /// Per kind: latencies and 4xx answers.
    kinds: Vec<(LatencyHistogram, u64)>,
    status: StatusCounts,
    transport_errors: u64,
    acknowledged: Vec<String>,
    /// The first few unexpected answers, so a failed soak says what failed.
    failures: Vec<String>,
}

impl Tally {
    fn new(windows: usize) -> Self {
        Self {
            windows: (0..windows).map(|_| (LatencyHistogram::new(), 0)).collect(),
            kinds: KINDS.iter().map(|_| (LatencyHistogram::new(), 0)).collect(),
            status: StatusCounts::default(),
            transport_errors: 0,
            acknowledged: Vec::new(),
            failures: Vec::new(),
        }
    }
}

/// How many unexpected answers each worker keeps for the report.
const FAILURES_KEPT: usize = 4;

/// A request scheduled for `due`, the `n`th of the run.
struct Job {
    n: u64,
    due: Instant,
}

async fn work(
    session: Arc<Session>,
    jobs: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>,
    started: Instant,
    window: Duration,
    windows: usize,
) -> Tally {
    let mut tally = Tally::new(windows);
    let mut connection: Option<LiveConnection> = None;
    loop {
        let next = jobs.lock().await.recv().await;
        let Some(job) = next else { break };
        let live = match connection.take().filter(|c| !c.is_closed()) {
            Some(live) => live,
            None => match LiveConnection::connect(session.addr).await {
                Ok(live) => live,
                Err(_) => {
                    tally.transport_errors += 1;
                    continue;
                }
            },
        };
        let mut live = live;
        let mix = session.mix();
        let kind = mix[(job.n % mix.len() as u64) as usize];
        let (request, name) = session.request(kind, job.n);
        match live.send(request).await {
            Ok((status, body)) => {
                tally.status.count(status);
                let latency = u64::try_from(job.due.elapsed().as_micros()).unwrap_or(u64::MAX);
                let slot = ((job.due - started).as_nanos() / window.as_nanos()) as usize;
                let (histogram, server_errors) = &mut tally.windows[slot.min(windows - 1)];
                histogram.record(latency);
                if status.is_server_error() {
                    *server_errors += 1;
                }
                let (by_kind, client_errors) = &mut tally.kinds[kind.index()];
                by_kind.record(latency);
                if status.is_client_error() {
                    *client_errors += 1;
                }
                if (status.is_client_error() || status.is_server_error())
                    && tally.failures.len() < FAILURES_KEPT
                {
                    let body = String::from_utf8_lossy(&body[..body.len().min(240)]);
                    let after = job.due.duration_since(started).as_secs_f64();
                    tally.failures.push(format!(
                        "t={after:.1}s {} {status} after {:.0} ms: {body}",
                        kind.label(),
                        latency as f64 / 1000.0
                    ));
                }
                if status == StatusCode::CREATED {
                    tally.acknowledged.extend(name);
                }
                if kind == Kind::SignIn && status == StatusCode::OK && Session::signer(job.n) == 0 {
                    // Later requests use the newest token, so none expires mid-soak.
                    if let Ok(login) = serde_json::from_slice::<serde_json::Value>(&body) {
                        if let Some(token) = login["access_token"].as_str() {
                            *session.access.lock().unwrap() = token.to_owned();
                        }
                    }
                }
                connection = Some(live);
            }
            Err(_) => tally.transport_errors += 1,
        }
    }
    tally
}

fn resident_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
}

/// Runs `rate` requests a second (or, without one, as many as the workers take) for
/// `duration`; returns the workers' tallies, the resident memory at each window's end,
/// and how many scheduled requests found every worker busy and the queue full.
async fn drive(
    session: &Arc<Session>,
    plan: &SoakPlan,
    rate: Option<f64>,
    duration: Duration,
    first: u64,
) -> Result<(Vec<Tally>, Vec<Option<u64>>, u64)> {
    let windows = (duration.as_nanos().div_ceil(plan.window.as_nanos())).max(1) as usize;
    // Two seconds of the schedule may wait for a worker: a stall shows up as latency, and
    // only a longer one drops requests (counted as falling behind, which fails the soak).
    let queue = rate.map_or(plan.connections * 4, |rate| {
        (rate * 2.0) as usize + plan.connections
    });
    let (sender, receiver) = tokio::sync::mpsc::channel::<Job>(queue.max(1));
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let started = Instant::now();
    let workers: Vec<_> = (0..plan.connections)
        .map(|_| {
            tokio::spawn(work(
                session.clone(),
                receiver.clone(),
                started,
                plan.window,
                windows,
            ))
        })
        .collect();
    let mut sent = 0u64;
    let mut fell_behind = 0u64;
    let mut rss = Vec::with_capacity(windows);
    let Some(rate) = rate else {
        while started.elapsed() < duration {
            let job = Job {
                n: first + sent,
                due: Instant::now(),
            };
            if sender.send(job).await.is_err() {
                break;
            }
            sent += 1;
        }
        drop(sender);
        let mut tallies = Vec::with_capacity(workers.len());
        for worker in workers {
            tallies.push(worker.await.context("soak worker panicked")?);
        }
        return Ok((tallies, rss, 0));
    };
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        while rss.len() < (elapsed.as_nanos() / plan.window.as_nanos()) as usize {
            rss.push(resident_kib(plan.server_pid));
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while sent < due {
            let job = Job {
                n: first + sent,
                due: started + Duration::from_secs_f64(sent as f64 / rate),
            };
            if sender.try_send(job).is_err() {
                fell_behind += 1;
            }
            sent += 1;
        }
    }
    drop(sender);
    let mut tallies = Vec::with_capacity(workers.len());
    for worker in workers {
        tallies.push(worker.await.context("soak worker panicked")?);
    }
    while rss.len() < windows {
        rss.push(resident_kib(plan.server_pid));
    }
    Ok((tallies, rss, fell_behind))
}

pub async fn run_soak(base: &str, plan: &SoakPlan) -> Result<SoakReport> {
    let session = Arc::new(Session::create(base, &plan.outbox, plan.service.clone()).await?);
    // Capacity: the same mix, closed loop (each worker takes the next request as soon as
    // it has an answer), for a short run.
    let capacity = match plan.rate {
        Some(_) => None,
        None => {
            let (tallies, _, _) = drive(&session, plan, None, plan.capacity_secs, 0).await?;
            let done: u64 = tallies
                .iter()
                .flat_map(|t| t.windows.iter())
                .map(|(h, _)| h.count())
                .sum();
            Some(done as f64 / plan.capacity_secs.as_secs_f64())
        }
    };
    let target = plan
        .rate
        .unwrap_or_else(|| capacity.unwrap_or(0.0) * plan.load);
    if target < 1.0 {
        bail!("a target rate of {target:.1}/s is too low to soak");
    }
    let rss_start = resident_kib(plan.server_pid);
    let (tallies, rss, fell_behind) =
        drive(&session, plan, Some(target), plan.duration, SOAK_NAMES_FROM).await?;
    let mut status = StatusCounts::default();
    let mut transport_errors = 0;
    let mut acknowledged = BTreeSet::new();
    let mut failures = Vec::new();
    let mut all = LatencyHistogram::new();
    let mut windows: Vec<(LatencyHistogram, u64)> = Vec::new();
    let mut kinds: Vec<(LatencyHistogram, u64)> =
        KINDS.iter().map(|_| (LatencyHistogram::new(), 0)).collect();
    for tally in tallies {
        for ((merged, merged_errors), (histogram, errors)) in kinds.iter_mut().zip(&tally.kinds) {
            merged.merge(histogram);
            *merged_errors += errors;
        }
        status.add(&tally.status);
        transport_errors += tally.transport_errors;
        acknowledged.extend(tally.acknowledged);
        failures.extend(tally.failures);
        for (i, (histogram, errors)) in tally.windows.into_iter().enumerate() {
            all.merge(&histogram);
            match windows.get_mut(i) {
                Some((merged, merged_errors)) => {
                    merged.merge(&histogram);
                    *merged_errors += errors;
                }
                None => windows.push((histogram, errors)),
            }
        }
    }
    let found = session.written_names().await?;
    // Writes from the capacity run are in the listing too; only this run's are counted.
    let lost = acknowledged.difference(&found).count();
    Ok(SoakReport {
        capacity_per_sec: capacity,
        target_per_sec: target,
        achieved_per_sec: all.count() as f64 / plan.duration.as_secs_f64(),
        requests: all.count(),
        status,
        transport_errors,
        p50_us: all.value_at_percentile(50.0),
        p99_us: all.value_at_percentile(99.0),
        max_us: all.max_us(),
        kinds: KINDS
            .iter()
            .zip(&kinds)
            .filter(|(_, (histogram, _))| histogram.count() > 0)
            .map(|(kind, (histogram, client_errors))| KindSummary {
                kind: kind.label(),
                requests: histogram.count(),
                client_errors: *client_errors,
                p50_us: histogram.value_at_percentile(50.0),
                p99_us: histogram.value_at_percentile(99.0),
            })
            .collect(),
        windows: windows
            .iter()
            .zip(rss)
            .enumerate()
            .map(|(i, ((histogram, errors), rss_kib))| Window {
                second: (i as u64 + 1) * plan.window.as_secs(),
                requests: histogram.count(),
                p50_us: histogram.value_at_percentile(50.0),
                p99_us: histogram.value_at_percentile(99.0),
                server_errors: *errors,
                rss_kib,
            })
            .collect(),
        rss_start_kib: rss_start,
        rss_end_kib: resident_kib(plan.server_pid),
        writes_acknowledged: acknowledged.len(),
        writes_found: acknowledged.intersection(&found).count(),
        writes_lost: lost,
        fell_behind,
        failures,
    })
}

impl SoakReport {
    /// The soak's bar: no 5xx (nor any 4xx: the mix sends only valid requests), no
    /// transport error, no lost write, no request the schedule could not place.
    pub fn passed(&self) -> bool {
        self.status.server_error == 0
            && self.status.client_error == 0
            && self.transport_errors == 0
            && self.writes_lost == 0
            && self.fell_behind == 0
    }

    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut text = String::new();
        let ms = |us: u64| us as f64 / 1000.0;
        if let Some(capacity) = self.capacity_per_sec {
            let _ = writeln!(
                text,
                "capacity (same mix, closed loop): {capacity:.0} req/s"
            );
        }
        let _ = writeln!(
            text,
            "target {:.0} req/s, achieved {:.0} req/s, {} requests; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.target_per_sec,
            self.achieved_per_sec,
            self.requests,
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.max_us)
        );
        let _ = writeln!(
            text,
            "status: 2xx {} 4xx {} 5xx {}; transport errors {}; fell behind {}",
            self.status.success,
            self.status.client_error,
            self.status.server_error,
            self.transport_errors,
            self.fell_behind
        );
        let _ = writeln!(
            text,
            "writes: {} acknowledged, {} found, {} lost",
            self.writes_acknowledged, self.writes_found, self.writes_lost
        );
        let rss = |kib: Option<u64>| {
            kib.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        };
        let _ = writeln!(
            text,
            "server RSS: start {}, end {}",
            rss(self.rss_start_kib),
            rss(self.rss_end_kib)
        );
        for kind in &self.kinds {
            let _ = writeln!(
                text,
                "  {:<44} {:>7} req  p50 {:>7.2} ms  p99 {:>7.2} ms  4xx {}",
                kind.kind,
                kind.requests,
                ms(kind.p50_us),
                ms(kind.p99_us),
                kind.client_errors
            );
        }
        for window in &self.windows {
            let _ = writeln!(
                text,
                "  t={:>4}s {:>7} req  p50 {:>7.2} ms  p99 {:>7.2} ms  5xx {}  RSS {}",
                window.second,
                window.requests,
                ms(window.p50_us),
                ms(window.p99_us),
                window.server_errors,
                rss(window.rss_kib)
            );
        }
        for failure in &self.failures {
            let _ = writeln!(text, "  unexpected: {failure}");
        }
        let _ = writeln!(text, "{}", if self.passed() { "PASS" } else { "FAIL" });
        text
    }
}
