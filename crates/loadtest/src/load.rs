//! Drives one target with N keep-alive HTTP/1.1 connections for a fixed time and tallies what came back.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use crate::histogram::LatencyHistogram;
use crate::target::{RequestTemplate, Target};

/// Keeps a worker facing a dead server from spinning on connect() and stealing the
/// CPU that the rest of the run (and the machine) needs.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug)]
pub struct LoadPlan {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    #[serde(rename = "2xx")]
    pub success: u64,
    #[serde(rename = "3xx")]
    pub redirection: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
    /// 1xx final responses or nonstandard codes; should stay zero.
    pub other: u64,
}

impl StatusCounts {
    pub(crate) fn count(&mut self, status: StatusCode) {
        let slot = match status.as_u16() / 100 {
            2 => &mut self.success,
            3 => &mut self.redirection,
            4 => &mut self.client_error,
            5 => &mut self.server_error,
            _ => &mut self.other,
        };
        *slot += 1;
    }

    pub(crate) fn add(&mut self, other: &StatusCounts) {
        self.success += other.success;
        self.redirection += other.redirection;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.other += other.other;
    }

    pub fn non_success(&self) -> u64 {
        self.redirection + self.client_error + self.server_error + self.other
    }
}

/// What the measured window (warm-up excluded) produced, for one run or several merged.
#[derive(Clone, Debug)]
pub struct LoadOutcome {
    pub latency: LatencyHistogram,
    pub status: StatusCounts,
    pub transport_errors: u64,
    /// Connections opened after a worker's first one, i.e. the server (or an error)
    /// closed a keep-alive connection; a high count means the numbers include handshakes.
    pub reconnects: u64,
    /// Kept so a user can tell "connection refused" from "reset by peer" without a debugger.
    pub first_error: Option<String>,
    pub measured: Duration,
}

impl LoadOutcome {
    fn empty(measured: Duration) -> Self {
        Self {
            latency: LatencyHistogram::new(),
            status: StatusCounts::default(),
            transport_errors: 0,
            reconnects: 0,
            first_error: None,
            measured,
        }
    }

    pub fn requests(&self) -> u64 {
        self.latency.count()
    }

    pub fn requests_per_sec(&self) -> f64 {
        let seconds = self.measured.as_secs_f64();
        if seconds > 0.0 {
            self.requests() as f64 / seconds
        } else {
            0.0
        }
    }

    /// Pools two runs as if they were one longer run, so throughput becomes their mean
    /// and percentiles come from all samples.
    pub fn merge(&mut self, other: &LoadOutcome) {
        self.add_counts(other);
        self.measured += other.measured;
    }

    /// Formats the message only for the first error, keeping error storms cheap.
    fn record_error(&mut self, describe: impl FnOnce() -> String) {
        self.transport_errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(describe());
        }
    }

    fn add_counts(&mut self, other: &LoadOutcome) {
        self.latency.merge(&other.latency);
        self.status.add(&other.status);
        self.transport_errors += other.transport_errors;
        self.reconnects += other.reconnects;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Runs the warm-up and the measured window back to back on the same connections,
/// so the measurement starts with warm connections and a warm server.
pub async fn run_load(target: Arc<Target>, plan: &LoadPlan) -> Result<LoadOutcome> {
    let started = Instant::now();
    let measure_from = started + plan.warmup;
    let stop_at = measure_from + plan.duration;
    let workers: Vec<_> = (0..plan.connections.max(1))
        .map(|_| tokio::spawn(drive_connection(target.clone(), measure_from, stop_at)))
        .collect();
    let mut total = LoadOutcome::empty(plan.duration);
    for worker in workers {
        let tally = worker.await.context("load worker panicked")?;
        total.add_counts(&tally);
    }
    Ok(total)
}

enum Step {
    Connected,
    ConnectFailed(anyhow::Error),
    /// The server closed an idle keep-alive connection; not a failed request.
    ConnectionClosed,
    Responded {
        status: StatusCode,
        sent_at: Instant,
    },
    RequestFailed(hyper::Error),
}

/// One worker = one connection at a time, requests strictly back to back.
async fn drive_connection(
    target: Arc<Target>,
    measure_from: Instant,
    stop_at: Instant,
) -> LoadOutcome {
    let mut tally = LoadOutcome::empty(Duration::ZERO);
    // A single timer per worker rather than one per request; it also abandons a
    // request the server never answers, which keeps every run bounded.
    let mut deadline = pin!(sleep_until(stop_at));
    let mut connection: Option<LiveConnection> = None;
    let mut has_connected_before = false;
    loop {
        let step = tokio::select! {
            biased;
            () = &mut deadline => break,
            step = next_step(&target, &mut connection) => step,
        };
        let now = Instant::now();
        let counts = now >= measure_from;
        match step {
            Step::Responded { status, sent_at } => {
                if counts {
                    tally.status.count(status);
                    let latency_us = u64::try_from((now - sent_at).as_micros()).unwrap_or(u64::MAX);
                    tally.latency.record(latency_us);
                }
            }
            Step::Connected => {
                if counts && has_connected_before {
                    tally.reconnects += 1;
                }
                has_connected_before = true;
            }
            Step::ConnectionClosed => {}
            Step::ConnectFailed(error) => {
                if counts {
                    tally.record_error(|| format!("connect to {}: {error:#}", target.connect_addr));
                }
            }
            Step::RequestFailed(error) => {
                if counts {
                    tally.record_error(|| format!("request: {error}"));
                }
            }
        }
    }
    tally
}

async fn next_step(target: &Target, connection: &mut Option<LiveConnection>) -> Step {
    let Some(live) = connection.as_mut().filter(|live| !live.sender.is_closed()) else {
        *connection = None;
        return match LiveConnection::open(target).await {
            Ok(opened) => {
                *connection = Some(opened);
                Step::Connected
            }
            Err(error) => {
                sleep(CONNECT_RETRY_PAUSE).await;
                Step::ConnectFailed(error)
            }
        };
    };
    let step = exchange(&mut live.sender, &target.template).await;
    if matches!(step, Step::ConnectionClosed | Step::RequestFailed(_)) {
        *connection = None;
    }
    step
}

async fn exchange(sender: &mut SendRequest<Full<Bytes>>, template: &RequestTemplate) -> Step {
    if sender.ready().await.is_err() {
        return Step::ConnectionClosed;
    }
    let sent_at = Instant::now();
    let response = match sender.send_request(template.build_request()).await {
        Ok(response) => response,
        Err(error) => return Step::RequestFailed(error),
    };
    let status = response.status();
    // Frames are dropped as they arrive: the whole body is read, nothing is buffered.
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Err(error) = frame {
            return Step::RequestFailed(error);
        }
    }
    Step::Responded { status, sent_at }
}

pub(crate) struct LiveConnection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl LiveConnection {
    async fn open(target: &Target) -> Result<Self> {
        Self::connect(target.connect_addr).await
    }

    pub(crate) async fn connect(addr: std::net::SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are small and sent one at a time; Nagle would add delayed-ACK stalls.
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Connection errors surface through the sender, so the driver's result is not needed.
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender, driver })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and reads the whole answer.
    pub(crate) async fn send(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

impl Drop for LiveConnection {
    /// Without this, a connection whose request was abandoned at the deadline would
    /// linger until the server answered, which it may never do.
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_by_class() {
        let mut counts = StatusCounts::default();
        for code in [200, 204, 301, 404, 429, 503, 101] {
            counts.count(StatusCode::from_u16(code).unwrap());
        }
        assert_eq!(
            counts,
            StatusCounts {
                success: 2,
                redirection: 1,
                client_error: 2,
                server_error: 1,
                other: 1,
            }
        );
        assert_eq!(counts.non_success(), 5);
    }

    #[test]
    fn merged_runs_average_their_throughput() {
        let mut first = LoadOutcome::empty(Duration::from_secs(1));
        let mut second = LoadOutcome::empty(Duration::from_secs(1));
        for _ in 0..100 {
            first.latency.record(10);
        }
        for _ in 0..300 {
            second.latency.record(20);
        }
        first.merge(&second);
        assert_eq!(first.requests(), 400);
        assert!((first.requests_per_sec() - 200.0).abs() < 1e-9);
    }
}
