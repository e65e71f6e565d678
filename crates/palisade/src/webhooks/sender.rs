//! One delivery over the wire (claims HOOK-3, HOOK-4): https only; the host resolved here,
//! every address checked by the guard, and the connection made to a checked address — so
//! what was checked is what is reached. A connection is kept for the next delivery to the
//! same host (up to 30 s idle), and reused only when its address is among the ones the
//! guard has just passed for that delivery. A 2xx within the timeout is success; anything
//! else (a redirect included: never followed) is a failure, with the answer's first KiB
//! kept.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::http::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::guard::AddressPolicy;

/// The whole attempt — resolve, connect, TLS, request, answer — must end within this.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Of the receiver's answer, this much is kept with the attempt.
pub const KEPT_RESPONSE_BYTES: usize = 1024;
const MAX_URL_LEN: usize = 2048;
/// A host that does not resolve within this is unresolvable (registration answers 422).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns a host into addresses; the system's resolver, or a test's.
#[async_trait::async_trait]
pub trait Resolve: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// Why a URL is not a delivery target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlProblem {
    #[error("the url must be an absolute https:// URL of at most 2048 characters, without credentials or fragment")]
    Malformed,
    #[error("the url must use https")]
    NotHttps,
    #[error("the url's host does not resolve")]
    Unresolvable,
    #[error("the url's host resolves to {0}, an address deliveries may not reach (private, loopback, link-local or reserved; see webhooks.allowed_networks)")]
    Forbidden(IpAddr),
}

/// A URL taken apart: what is resolved, what TLS checks, what is asked for.
#[derive(Clone, Debug)]
pub struct Target {
    host: String,
    port: u16,
    path: String,
    /// The Host header: the URL's authority.
    authority: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, UrlProblem> {
        if url.len() > MAX_URL_LEN || url.contains('#') || url.chars().any(char::is_whitespace) {
            return Err(UrlProblem::Malformed);
        }
        let uri: Uri = url.parse().map_err(|_| UrlProblem::Malformed)?;
        match uri.scheme_str() {
            Some("https") => {}
            Some(_) => return Err(UrlProblem::NotHttps),
            None => return Err(UrlProblem::Malformed),
        }
        let authority = uri.authority().ok_or(UrlProblem::Malformed)?;
        if authority.as_str().contains('@') {
            return Err(UrlProblem::Malformed);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(UrlProblem::Malformed);
        }
        Ok(Self {
            host,
            port: authority.port_u16().unwrap_or(443),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            authority: authority.as_str().to_owned(),
        })
    }
}

/// What one attempt came to.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub succeeded: bool,
    pub status: Option<u16>,
    pub latency_ms: u32,
    /// The answer's first KiB (lossy UTF-8), or why there was none.
    pub response: String,
}

pub struct Sender {
    policy: AddressPolicy,
    tls: tokio_rustls::TlsConnector,
    resolver: Arc<dyn Resolve>,
    /// Connections kept open after a delivery, by host and port.
    idle: std::sync::Mutex<HashMap<(String, u16), Vec<Idle>>>,
}

type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A connection kept for the next delivery to its host, with the address it was made to.
struct Idle {
    address: SocketAddr,
    sender: Connection,
    since: Instant,
}

/// A kept connection is used again within this long, and at most this many per host.
const IDLE_FOR: Duration = Duration::from_secs(30);
const IDLE_PER_HOST: usize = 64;

impl Sender {
    /// Trusts the public web's certificate authorities, and those in `ca_file`.
    pub fn new(
        policy: AddressPolicy,
        ca_file: Option<&std::path::Path>,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("webhooks.ca_file {}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut io::BufReader::new(file)) {
                let cert = cert.map_err(|e| format!("webhooks.ca_file: not PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("webhooks.ca_file: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            policy,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            resolver,
            idle: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The addresses `target` resolves to, every one permitted; a single refused address
    /// refuses the host (an answer mixing public and private addresses is an attack).
    async fn addresses(&self, target: &Target) -> Result<Vec<SocketAddr>, UrlProblem> {
        let addresses = match target.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, target.port)],
            Err(_) => tokio::time::timeout(
                RESOLVE_TIMEOUT,
                self.resolver.resolve(&target.host, target.port),
            )
            .await
            .map_err(|_| UrlProblem::Unresolvable)?
            .map_err(|_| UrlProblem::Unresolvable)?,
        };
        if addresses.is_empty() {
            return Err(UrlProblem::Unresolvable);
        }
        match addresses.iter().find(|a| !self.policy.permits(a.ip())) {
            Some(refused) => Err(UrlProblem::Forbidden(refused.ip())),
            None => Ok(addresses),
        }
    }

    /// Whether `url` may be registered now. Delivery checks again, every attempt.
    pub async fn check(&self, url: &str) -> Result<Target, UrlProblem> {
        let target = Target::parse(url)?;
        self.addresses(&target).await?;
        Ok(target)
    }

    /// POSTs `body` with `headers` to `url`, within [`TIMEOUT`].
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Outcome {
        let started = Instant::now();
        let result = tokio::time::timeout(TIMEOUT, self.attempt(url, headers, body)).await;
        let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let failed = |why: String| Outcome {
            succeeded: false,
            status: None,
            latency_ms,
            response: why,
        };
        match result {
            Err(_) => failed(format!("no answer within {} s", TIMEOUT.as_secs())),
            Ok(Err(why)) => failed(why),
            Ok(Ok((status, response))) => Outcome {
                succeeded: (200..300).contains(&status),
                status: Some(status),
                latency_ms,
                response,
            },
        }
    }

    /// An idle connection to `target` at one of `addresses` (all checked just now): a
    /// connection is reused only to an address the guard passed for this attempt.
    fn take_idle(
        &self,
        target: &Target,
        addresses: &[SocketAddr],
    ) -> Option<(SocketAddr, Connection)> {
        let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool.get_mut(&(target.host.clone(), target.port))?;
        while let Some(connection) = idle.pop() {
            if connection.since.elapsed() < IDLE_FOR
                && !connection.sender.is_closed()
                && addresses.contains(&connection.address)
            {
                return Some((connection.address, connection.sender));
            }
        }
        None
    }

    fn put_back(&self, target: &Target, address: SocketAddr, sender: Connection) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool.entry((target.host.clone(), target.port)).or_default();
        idle.retain(|c| c.since.elapsed() < IDLE_FOR && !c.sender.is_closed());
        if idle.len() < IDLE_PER_HOST {
            idle.push(Idle {
                address,
                sender,
                since: Instant::now(),
            });
        }
    }

    /// A new connection to the first of `addresses` that answers: TCP, TLS for the URL's
    /// host, HTTP/1.1.
    async fn connect(
        &self,
        target: &Target,
        addresses: &[SocketAddr],
    ) -> Result<(SocketAddr, Connection), String> {
        let mut last_error = String::from("no address");
        for &address in addresses {
            let stream = match TcpStream::connect(address).await {
                Ok(stream) => stream,
                Err(error) => {
                    last_error = format!("connecting to {address}: {error}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| "the url's host is not a TLS server name".to_owned())?;
            let tls = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
            // Ends when the receiver closes it or its sender is dropped.
            tokio::spawn(connection);
            return Ok((address, sender));
        }
        Err(last_error)
    }

    async fn attempt(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(u16, String), String> {
        let target = Target::parse(url).map_err(|e| e.to_string())?;
        let addresses = self.addresses(&target).await.map_err(|e| e.to_string())?;
        let request = || {
            let mut request = Request::post(target.path.as_str())
                .header("host", target.authority.as_str())
                .header("content-type", "application/json")
                .header(
                    "user-agent",
                    concat!("Palisade-Webhooks/", env!("CARGO_PKG_VERSION")),
                );
            for (name, value) in headers {
                request = request.header(*name, value.as_str());
            }
            request
                .body(Full::new(body.clone()))
                .map_err(|e| format!("building the request: {e}"))
        };
        // A kept connection the receiver closed meanwhile fails before any answer: the
        // request goes once more, on a new connection.
        let pooled = match self.take_idle(&target, &addresses) {
            Some((address, mut sender)) => sender
                .send_request(request()?)
                .await
                .ok()
                .map(|response| (address, sender, response)),
            None => None,
        };
        let (address, mut sender, response) = match pooled {
            Some(sent) => sent,
            None => {
                let (address, mut sender) = self.connect(&target, &addresses).await?;
                let response = sender
                    .send_request(request()?)
                    .await
                    .map_err(|e| format!("HTTP: {e}"))?;
                (address, sender, response)
            }
        };
        let status = response.status().as_u16();
        let mut kept = Vec::with_capacity(256);
        let mut body = response.into_body();
        // Kept for the next delivery only when its answer was read to the end.
        let mut reusable = false;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if kept.len() + data.len() > KEPT_RESPONSE_BYTES {
                            let room = KEPT_RESPONSE_BYTES - kept.len();
                            kept.extend_from_slice(&data[..room]);
                            break;
                        }
                        kept.extend_from_slice(data);
                    }
                }
                None => {
                    reusable = true;
                    break;
                }
                // The status is the answer; a body cut short does not change it.
                Some(Err(_)) => break,
            }
        }
        drop(body);
        if reusable {
            let ready = tokio::time::timeout(Duration::from_secs(1), sender.ready()).await;
            if matches!(ready, Ok(Ok(()))) {
                self.put_back(&target, address, sender);
            }
        }
        Ok((status, String::from_utf8_lossy(&kept).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A resolver whose answer the test changes.
    struct Switching(Mutex<Vec<SocketAddr>>);

    #[async_trait::async_trait]
    impl Resolve for Switching {
        async fn resolve(&self, _: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    #[test]
    fn only_absolute_https_urls_are_targets() {
        let target = Target::parse("https://hooks.example.com:8443/in?x=1").unwrap();
        assert_eq!(
            (target.host.as_str(), target.port),
            ("hooks.example.com", 8443)
        );
        assert_eq!(target.path, "/in?x=1");
        assert_eq!(Target::parse("https://[::1]/").unwrap().host, "::1");
        assert_eq!(
            Target::parse("http://example.com/").unwrap_err(),
            UrlProblem::NotHttps
        );
        for bad in [
            "example.com/hook",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "https:///path",
            "https://exa mple.com/",
        ] {
            assert_eq!(
                Target::parse(bad).unwrap_err(),
                UrlProblem::Malformed,
                "{bad}"
            );
        }
    }

    // claim: HOOK-4
    #[tokio::test]
    async fn a_dns_answer_that_changes_after_registration_is_refused_at_delivery() {
        let public: SocketAddr = "93.184.216.34:443".parse().unwrap();
        let resolver = Arc::new(Switching(Mutex::new(vec![public])));
        let sender = Sender::new(AddressPolicy::default(), None, resolver.clone()).unwrap();
        assert!(sender.check("https://hooks.example.com/in").await.is_ok());
        for rebound in [
            "127.0.0.1:443",
            "10.1.2.3:443",
            "169.254.169.254:443",
            "[::1]:443",
            "[::ffff:127.0.0.1]:443",
        ] {
            *resolver.0.lock().unwrap() = vec![public, rebound.parse().unwrap()];
            let outcome = sender
                .post(
                    "https://hooks.example.com/in",
                    &[],
                    Bytes::from_static(b"{}"),
                )
                .await;
            assert!(!outcome.succeeded);
            assert_eq!(outcome.status, None);
            assert!(
                outcome.response.contains("may not reach"),
                "{rebound}: {}",
                outcome.response
            );
        }
        for literal in [
            "https://127.0.0.1/",
            "https://10.0.0.7/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            assert!(
                matches!(sender.check(literal).await, Err(UrlProblem::Forbidden(_))),
                "{literal}"
            );
        }
    }
}
