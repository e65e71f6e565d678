//! An https receiver of webhooks for the tests and the webhook benchmark (included by
//! `benches/webhooks.rs` through `#[path]`): on 127.0.0.1 with the fixtures' certificate,
//! it records every request and answers 500 to its first `failing` ones, then 204.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// The status it answered.
    pub status: u16,
    /// When it arrived (the benchmark's latency; the tests use the injected clock).
    #[allow(dead_code)]
    pub at: Instant,
}

/// An https receiver on 127.0.0.1 (the fixtures' certificate): answers 500 to its first
/// `failing` requests, then 204.
pub struct Receiver {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicUsize>,
    /// While set, a request is recorded and never answered (a receiver that hangs).
    stalling: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(failing: usize) -> Self {
        use hyper::service::service_fn;
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let acceptor = palisade::http::server::tls_acceptor(
            &fixtures.join("tls-cert.pem"),
            &fixtures.join("tls-key.pem"),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicUsize::new(failing));
        let stalling = Arc::new(AtomicBool::new(false));
        let (log, left, stall) = (received.clone(), failing.clone(), stalling.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, log, left, stall) =
                    (acceptor.clone(), log.clone(), left.clone(), stall.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (log, left, stall) = (log.clone(), left.clone(), stall.clone());
                            async move {
                                use http_body_util::BodyExt;
                                let headers = request
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect();
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                let fail = left
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok();
                                let status = if fail { 500 } else { 204 };
                                log.lock().unwrap().push(Received {
                                    at: Instant::now(),
                                    headers,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                    status,
                                });
                                if stall.load(Ordering::SeqCst) {
                                    std::future::pending::<()>().await;
                                }
                                let answer = if fail { "receiver down" } else { "" };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(http_body_util::Full::new(bytes::Bytes::from(answer)))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            failing,
            stalling,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/hooks", self.addr.port())
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The deliveries it accepted.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.status == 204)
            .collect()
    }

    /// While `on`, requests are recorded and never answered.
    pub fn stall(&self, on: bool) {
        self.stalling.store(on, Ordering::SeqCst);
    }

    pub fn fail_next(&self, count: usize) {
        self.failing.store(count, Ordering::SeqCst);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
