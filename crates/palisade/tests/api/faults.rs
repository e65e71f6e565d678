//! Faults (the hardening suite): the database lost under load, slow clients that trickle
//! headers or bodies. The full disk and the flood of idle connections need the real
//! binary's process and are in `process.rs`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, spawn_app_with};

/// What the load saw: names acknowledged as created, and every failure.
#[derive(Default)]
struct Observed {
    acknowledged: Mutex<BTreeSet<String>>,
    successes: AtomicUsize,
    failures: Mutex<Vec<(u16, String, Duration)>>,
}

async fn wait_until(what: &str, deadline: Duration, done: impl Fn() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// claim: OPS-2, WEB-4
#[tokio::test]
async fn a_database_lost_under_load_fails_fast_writes_nothing_half_way_and_recovers_alone() {
    let mut app = spawn_app().await;
    let owner = app.signed_in("owner@example.com").await;
    let observed = Arc::new(Observed::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..6 {
        let (client, base, access) = (app.client.clone(), app.url(""), owner.access.clone());
        let (observed, stop) = (observed.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let name = format!("w{worker}-{n}");
                let started = Instant::now();
                // Writes and reads, interleaved.
                let request = if n % 2 == 0 {
                    client
                        .post(format!("{base}/api/v1/applications"))
                        .json(&json!({ "name": name }))
                } else {
                    client.get(format!("{base}/api/v1/members"))
                };
                let response = request.bearer_auth(&access).send().await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                if status == 201 {
                    observed.acknowledged.lock().unwrap().insert(name);
                }
                if status < 300 {
                    observed.successes.fetch_add(1, Ordering::SeqCst);
                } else {
                    let elapsed = started.elapsed();
                    observed
                        .failures
                        .lock()
                        .unwrap()
                        .push((status, text, elapsed));
                }
            }
        }));
    }
    let successes = || observed.successes.load(Ordering::SeqCst);
    let failures = || observed.failures.lock().unwrap().len();
    wait_until("load before the fault", Duration::from_secs(10), || {
        successes() >= 40
    })
    .await;

    app.break_database().await;
    let failures_before = failures();
    wait_until(
        "failures during the outage",
        Duration::from_secs(20),
        || failures() >= failures_before + 30,
    )
    .await;
    app.repair_database().await;
    // Nobody restarts anything: the pool reconnects by itself.
    let after_repair = successes();
    wait_until("recovery", Duration::from_secs(15), || {
        successes() >= after_repair + 40
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    // Every failure was a fast 503 in the error shape: no hang, no 500.
    for (status, text, elapsed) in observed.failures.lock().unwrap().iter() {
        assert_eq!(*status, 503, "{text}");
        let body: Value = serde_json::from_str(text).unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{text}");
        // The pool's acquire timeout is 1 s in the tests; nothing waits much past it.
        assert!(
            *elapsed < Duration::from_millis(2_500),
            "{elapsed:?}: {text}"
        );
    }
    // Every acknowledged write is there, and each row has its audit event: no write was
    // half-done (a write whose answer was lost may exist, whole).
    let listed: Value = app
        .get_as("/api/v1/applications", &owner.access)
        .await
        .json()
        .await
        .unwrap();
    let names: BTreeSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    let acknowledged = observed.acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.is_subset(&names),
        "lost: {:?}",
        acknowledged.difference(&names)
    );
    let events: Vec<i64> = app
        .inspect(
            "SELECT count(*) FROM audit_events WHERE action = $1",
            Some("applications.created"),
        )
        .await;
    assert_eq!(events[0], names.len() as i64);
    assert!(crate::audit::verdict_ok(&app, &owner).await);
    app.stop().await;
}

// claim: WEB-4
#[tokio::test]
async fn headers_trickled_byte_by_byte_are_cut_off_at_the_header_timeout() {
    let app = spawn_app_with(|s| s.http.header_read_timeout_ms = 500).await;
    // A hundred slow clients at once, each adding a header byte every 100 ms, forever.
    let mut clients = Vec::new();
    for _ in 0..100 {
        let addr = app.addr;
        clients.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            let mut trickle = b"X-Slow: ".iter().chain(std::iter::repeat(&b'a')).copied();
            let (mut reader, mut writer) = stream.into_split();
            let writing = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if writer.write_all(&[trickle.next().unwrap()]).await.is_err() {
                        break;
                    }
                }
            });
            let mut buffer = [0u8; 1024];
            let closed = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match reader.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            writing.abort();
            // The trickle never ends: closed at all is closed by the header timeout (no
            // tighter wall-clock bound, which a loaded machine could miss).
            assert!(
                closed.is_ok(),
                "a trickling client held its connection for 5 s"
            );
        }));
    }
    // Meanwhile the server answers everyone else.
    assert_eq!(app.get("/api/health").await.status(), 200);
    for client in clients {
        client.await.unwrap();
    }
    // A new connection: the server closes idle keep-alive ones at the same timeout.
    let fresh = reqwest::Client::new();
    let after = fresh.get(app.url("/api/health")).send().await.unwrap();
    assert_eq!(after.status(), 200);
    app.stop().await;
}

// claim: WEB-4
#[tokio::test]
async fn a_body_trickled_byte_by_byte_ends_with_408_at_the_request_deadline() {
    let app = spawn_app_with(|s| s.http.request_timeout_ms = 400).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let body = br#"{"email":"slow@example.com","password":"correct horse battery staple","tenant_name":"Slow"}"#;
    stream
        .write_all(
            format!(
                "POST /api/v1/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for byte in body {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        while !response.windows(2).any(|w| w == b"}}") {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(answered.is_ok(), "no answer within 5 s");
    // The whole body would have arrived after ~4.8 s and been a 201: a 408 is the deadline
    // (no wall-clock bound needed, so a loaded machine cannot fail this).
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // The body was never whole: nothing was created.
    assert_eq!(app.count_rows("users").await, 0);
    app.stop().await;
}
