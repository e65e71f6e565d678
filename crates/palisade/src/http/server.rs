//! Serving: the accept loop, TLS (claim WEB-1), the HTTPS redirect listener, connection
//! limits, header-read deadline, and graceful shutdown.
//!
//! Our own loop instead of `axum::serve` because we need what it does not expose: a
//! header-read timeout against slow clients, a bound on open connections, TLS on the same
//! path as plain HTTP, and a shutdown that lets in-flight requests finish.

use std::future::Future;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::Settings;

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection-level limits, from the settings.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Limits {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            max_connections: settings.http.max_connections,
            header_read_timeout: Duration::from_millis(settings.http.header_read_timeout_ms),
            shutdown_grace: Duration::from_millis(settings.http.shutdown_grace_ms),
        }
    }
}

/// Resolves when the process is asked to stop (SIGTERM or SIGINT).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // Registered now, not when first polled: a SIGTERM that arrives between start-up and the
    // serving loop is then a graceful stop, not the default (fatal) action.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let first = |registered: Option<tokio::signal::unix::Signal>| async move {
                match registered {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = first(terminate) => {}
                () = first(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Loads the certificate chain and key into a TLS 1.2+ acceptor that offers HTTP/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |path: &Path| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let certs = rustls_pemfile::certs(&mut read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?)
        .map_err(|_| format!("{}: not a PEM private key", key.display()))?
        .ok_or_else(|| format!("{}: no private key found", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish for up to the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let graceful = GracefulShutdown::new();
    // Past the grace period, connections still open are dropped rather than waited for.
    let (force_close, forced) = tokio::sync::watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        // Waiting for a slot before accepting leaves excess clients in the kernel's backlog
        // instead of holding a file descriptor and buffers for each.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off rather than spin.
                    tracing::warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        let mut forced = forced.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let serve = async move {
                match tls {
                    None => serve_connection(&builder, stream, service, watcher).await,
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => {
                                serve_connection(&builder, stream, service, watcher).await
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(error = %error, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => {}
                _ = forced.wait_for(|forced| *forced) => {}
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            let _ = force_close.send(true);
        }
    }
}

async fn serve_connection<IO, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: IO,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(error = %error, "connection ended with an error");
    }
}

/// The plain-HTTP listener's routes: every request is sent to the same path over HTTPS,
/// on `public_host` when configured (so a forged Host header cannot pick the target), else
/// on the host the client asked for.
pub fn redirect_router(https_port: u16, public_host: Option<String>) -> Router {
    Router::new().fallback(move |req: Request<axum::body::Body>| {
        let public_host = public_host.clone();
        async move {
            redirect_to_https(
                public_host.as_deref(),
                req.headers().get(header::HOST),
                req.uri(),
                https_port,
            )
        }
    })
}

fn redirect_to_https(
    public_host: Option<&str>,
    host: Option<&HeaderValue>,
    uri: &Uri,
    https_port: u16,
) -> Response {
    let host = match public_host {
        Some(host) => Some(host.to_owned()),
        None => host
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
            .map(|authority| authority.host().to_owned()),
    };
    let Some(host) = host else {
        return crate::http::error::ApiError::bad_request("a Host header is required")
            .into_response();
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{host}{port}{path}");
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
