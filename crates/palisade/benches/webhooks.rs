//! Webhook delivery benchmarks (claim HOOK-3; docs/benchmarks.md), in one process on
//! SQLite, to an https receiver on 127.0.0.1 (the tests' receiver):
//!  1. Baseline: MESSAGES signed-size POSTs straight through the delivery client (resolve,
//!     guard, TCP, TLS, one request a connection, as every delivery makes), 64 at a time.
//!  2. Deliveries per second: MESSAGES messages written to the outbox first, then dispatch
//!     rounds timed until none is due (claim, read, sign, send, record each attempt).
//!  3. End-to-end latency: with the dispatcher running as it does in `serve`, one message
//!     every 5 ms; from the write's commit to its arrival at the receiver, p50 and p99.
//!  4. Inbound (HOOK-5): MESSAGES Stripe-signed events received (verify, record the event
//!     id, hand on as a message: one transaction each), against 2's message writes (the
//!     same transaction without the verification and the dedupe row); then as many
//!     replays (verified, found, nothing written).
//!
//! `cargo bench -p palisade --bench webhooks [-- MESSAGES]`

#[allow(dead_code)]
#[path = "../tests/api/receiver.rs"]
mod receiver;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use palisade::access::TenantScope;
use palisade::app::App;
use palisade::audit::{Acting, TenantActing};
use palisade::clock::SystemClock;
use palisade::config::Settings;
use palisade::identity::service::Origin;
use palisade::ids::TenantId;
use palisade::webhooks::guard::AddressPolicy;
use palisade::webhooks::sender::{Sender, SystemResolver};
use palisade::webhooks::NewEndpoint;

fn main() {
    let messages = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(4000);
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("webhook benchmarks, {machine} cores, {messages} messages, SQLite");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(messages));
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn run(messages: usize) {
    let receiver = receiver::Receiver::start(0).await;
    let url = receiver.url();
    let body = Bytes::from(format!(
        r#"{{"type":"workorder.assigned","timestamp":"2026-12-03T00:00:00Z","data":{{"workorder_id":"wo_{}"}}}}"#,
        "0".repeat(26)
    ));

    // 1. The wire alone.
    let sender = Sender::new(
        AddressPolicy::new(vec!["127.0.0.1/32".parse().expect("a network")]),
        Some(&fixtures().join("tls-ca.pem")),
        Arc::new(SystemResolver),
    )
    .expect("a sender");
    let headers = [
        ("webhook-id", "msg_bench".to_owned()),
        ("webhook-timestamp", "0".to_owned()),
        ("webhook-signature", "v1,AAAA".to_owned()),
    ];
    let started = Instant::now();
    let ok = futures_util::stream::iter(0..messages)
        .map(|_| sender.post(&url, &headers, body.clone()))
        .buffer_unordered(64)
        .filter(|outcome| std::future::ready(outcome.succeeded))
        .count()
        .await;
    let wire = ok as f64 / started.elapsed().as_secs_f64();
    assert_eq!(ok, messages);
    println!("baseline, the delivery client alone (64 at a time): {wire:.0} POSTs/s");

    // 2. Through the outbox and the dispatcher.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().expect("an address"),
        ..Settings::default()
    };
    settings.access.manifest = Some(fixtures().join("workorders-manifest.toml"));
    settings.webhooks.allowed_networks = vec!["127.0.0.1/32".into()];
    settings.webhooks.ca_file = Some(fixtures().join("tls-ca.pem"));
    let tenant: TenantId = format!("ten_{}", uuid::Uuid::now_v7().simple())
        .parse()
        .expect("an id");
    settings.webhooks.inbound.insert(
        "billing".into(),
        palisade::config::InboundSource {
            scheme: palisade::config::InboundScheme::Stripe,
            secret: INBOUND_SECRET.to_owned().into(),
            tenant: tenant.to_string(),
        },
    );
    let app = App::build_with_clock(settings, Arc::new(SystemClock))
        .await
        .expect("the app starts");
    let state = app.state().clone();
    let palisade::store::Database::Sqlite(pool) = &state.db else {
        unreachable!("the bench runs on SQLite")
    };
    sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, 'bench', $2)")
        .bind(tenant)
        .bind(time::OffsetDateTime::now_utc())
        .execute(pool)
        .await
        .expect("tenant");
    let actor = TenantActing {
        scope: TenantScope::for_system(tenant),
        acting: Acting::System,
    };
    let origin = Origin {
        request_id: "bench".into(),
        ip: None,
        user_agent: None,
    };
    state
        .webhooks
        .create_endpoint(
            &actor,
            NewEndpoint {
                url: url.clone(),
                description: None,
                event_types: vec!["workorder.assigned".into(), "inbound.billing".into()],
                enabled: true,
            },
            &origin,
        )
        .await
        .expect("an endpoint");
    let payload = serde_json::json!({"workorder_id": "wo_00000000000000000000000000"});
    let started = Instant::now();
    for _ in 0..messages {
        state
            .webhooks
            .send_message(&actor, "workorder.assigned", &payload, None, &origin)
            .await
            .expect("a message");
    }
    let written = messages as f64 / started.elapsed().as_secs_f64();
    let before = receiver.accepted().len();
    let started = Instant::now();
    let mut delivered = 0;
    loop {
        let done = state.webhooks.dispatch_due().await.expect("a round");
        if done == 0 {
            break;
        }
        delivered += done;
    }
    let rate = delivered as f64 / started.elapsed().as_secs_f64();
    assert_eq!(receiver.accepted().len() - before, messages);
    println!("messages written to the outbox (one transaction each, audited): {written:.0}/s");
    println!(
        "deliveries through the dispatcher: {rate:.0}/s = {:.1}% of the baseline",
        100.0 * rate / wire
    );

    // 3. From the write to the receiver, with the dispatcher running as in `serve`.
    let dispatcher = tokio::spawn(state.webhooks.clone().run());
    let samples = 400.min(messages);
    let mut sent_at = std::collections::HashMap::new();
    let before = receiver.accepted().len();
    for _ in 0..samples {
        let (id, _) = state
            .webhooks
            .send_message(&actor, "workorder.assigned", &payload, None, &origin)
            .await
            .expect("a message");
        sent_at.insert(id.to_string(), Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.accepted().len() - before < samples && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dispatcher.abort();
    let mut latencies: Vec<Duration> = receiver.accepted()[before..]
        .iter()
        .filter_map(|r| {
            let sent = sent_at.get(r.headers.get("webhook-id")?)?;
            Some(r.at.saturating_duration_since(*sent))
        })
        .collect();
    latencies.sort();
    assert_eq!(latencies.len(), samples, "every message arrived");
    println!(
        "end to end, commit to arrival ({samples} messages, one every 5 ms): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );

    // 4. Inbound: verified, recorded once, handed on.
    let events: Vec<(String, String)> = (0..messages)
        .map(|n| {
            let body = format!(r#"{{"id":"evt_{n:024}","type":"invoice.paid"}}"#);
            let at = time::OffsetDateTime::now_utc().unix_timestamp();
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, INBOUND_SECRET.as_bytes());
            let tag = ring::hmac::sign(&key, format!("{at}.{body}").as_bytes());
            let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            (format!("t={at},v1={hex}"), body)
        })
        .collect();
    let receive_all = || async {
        let started = Instant::now();
        let mut duplicates = 0;
        for (header, body) in &events {
            let (_, duplicate) = state
                .webhooks
                .receive(
                    "billing",
                    |name| (name == "stripe-signature").then_some(header.as_str()),
                    body.as_bytes(),
                    &origin,
                )
                .await
                .expect("received");
            duplicates += usize::from(duplicate);
        }
        (
            messages as f64 / started.elapsed().as_secs_f64(),
            duplicates,
        )
    };
    let (received, duplicates) = receive_all().await;
    assert_eq!(duplicates, 0);
    let (replayed, duplicates) = receive_all().await;
    assert_eq!(duplicates, messages);
    println!(
        "inbound events received (verified, recorded, handed on): {received:.0}/s = {:.1}% of the message writes",
        100.0 * received / written
    );
    println!("inbound replays (verified, found, nothing written): {replayed:.0}/s");
    state.db.close().await;
}

const INBOUND_SECRET: &str = "whsec_the_benchmarks_billing_source";
