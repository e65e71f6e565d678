//! End-to-end checks: the real `hello` binary under real load, and the `loadtest` CLI's refusal and comparison paths.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loadtest::baseline::BaselineServer;
use loadtest::load::{run_load, LoadPlan};
use loadtest::target::{RequestSpec, Target};

fn hello_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hello"))
}

fn short_plan(duration: Duration) -> LoadPlan {
    LoadPlan {
        connections: 2,
        warmup: Duration::ZERO,
        duration,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_serves_a_one_second_load_without_errors() {
    let server = BaselineServer::spawn(hello_bin()).unwrap();
    let spec = RequestSpec::parse("GET", &[], None).unwrap();
    let target = Arc::new(Target::resolve(&server.url(), &spec).await.unwrap());

    let outcome = run_load(target, &short_plan(Duration::from_secs(1)))
        .await
        .unwrap();

    assert!(outcome.requests() > 0);
    assert_eq!(outcome.transport_errors, 0, "{:?}", outcome.first_error);
    assert_eq!(outcome.status.success, outcome.requests());
    assert_eq!(outcome.status.non_success(), 0);
    assert_eq!(outcome.reconnects, 0, "hello must keep connections alive");
    assert!(outcome.latency.value_at_percentile(99.0) <= outcome.latency.max_us());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_port_yields_errors_and_still_stops_on_time() {
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = RequestSpec::parse("GET", &[], None).unwrap();
    let target = Arc::new(
        Target::resolve(&format!("http://127.0.0.1:{unused_port}/"), &spec)
            .await
            .unwrap(),
    );

    let started = Instant::now();
    let outcome = run_load(target, &short_plan(Duration::from_millis(300)))
        .await
        .unwrap();

    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(outcome.requests(), 0);
    assert!(outcome.transport_errors > 0);
    assert!(outcome.first_error.unwrap().contains("connect"));
}

#[test]
fn cli_refuses_a_non_loopback_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["run", "--url", "http://192.0.2.1/", "-d", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only loopback"), "{stderr}");
}

#[test]
fn cli_compare_of_hello_against_hello_reports_json_and_gates_on_min_ratio() {
    let target = BaselineServer::spawn(hello_bin()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["compare", "--target-url", &target.url()])
        .args(["--hello-bin", env!("CARGO_BIN_EXE_hello")])
        .args(["-c", "2", "-d", "0.5", "--warmup", "0", "--json"])
        // Unreachable on purpose, to exercise the failing gate.
        .args(["--min-ratio", "1000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["passed"], false);
    assert!(summary["ratio_pct"].as_f64().unwrap() > 0.0);
    for side in ["baseline", "target"] {
        assert!(summary[side]["requests"].as_u64().unwrap() > 0);
        assert_eq!(summary[side]["transport_errors"], 0);
    }
}
