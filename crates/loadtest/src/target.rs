//! Validates where the load goes (loopback only) and pre-parses the request so workers replay it without re-parsing anything.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use hyper::{HeaderMap, Method, Request, Uri};

/// Method, user headers and body as given on the command line; shared by every URL
/// a comparison drives so the baseline and the target receive identical requests.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RequestSpec {
    pub fn parse(method: &str, header_lines: &[String], body: Option<&str>) -> Result<Self> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| anyhow!("invalid HTTP method {method:?}"))?;
        let mut headers = HeaderMap::new();
        for line in header_lines {
            let (name, value) = parse_header(line)?;
            headers.append(name, value);
        }
        let body = body.map(|text| Bytes::copy_from_slice(text.as_bytes()));
        Ok(Self {
            method,
            headers,
            body: body.unwrap_or_default(),
        })
    }
}

/// Parses `Name: value` as given to `-H`.
pub fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue)> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| anyhow!("header {line:?} is not of the form 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| anyhow!("invalid header name {name:?} in {line:?}"))?;
    // Letting these through would contradict the framing hyper derives from --body.
    if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
        bail!("header {name} is derived from --body and cannot be set with -H");
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| anyhow!("invalid value for header {name} in {line:?}"))?;
    Ok((name, value))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoopbackHost {
    Ip(IpAddr),
    /// Resolved later, and only accepted if every address it resolves to is loopback.
    Localhost,
}

/// The tool generates heavy traffic, so it must only ever hit this machine.
pub fn check_loopback_host(host: &str) -> Result<LoopbackHost> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(LoopbackHost::Localhost);
    }
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    match unbracketed.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(LoopbackHost::Ip(ip)),
        _ => bail!(
            "refusing to load {host:?}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed"
        ),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopbackUrl {
    pub host: LoopbackHost,
    pub port: u16,
    /// Sent as the Host header, since hyper's connection-level client does not add one.
    pub authority: String,
    /// Origin-form request target; HTTP/1.1 servers expect this, not the absolute URL.
    pub path_and_query: Uri,
}

pub fn parse_loopback_url(url: &str) -> Result<LoopbackUrl> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            bail!("{url}: https is not supported; point the tool at a plain http listener")
        }
        Some(other) => bail!("{url}: unsupported scheme {other:?}, expected http"),
        None => bail!("{url}: missing scheme, expected http://HOST:PORT/PATH"),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow!("{url}: missing host"))?;
    if authority.as_str().contains('@') {
        bail!("{url}: credentials in the URL are not supported");
    }
    let host = check_loopback_host(authority.host())?;
    let path_and_query = uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    Ok(LoopbackUrl {
        host,
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_owned(),
        path_and_query: path_and_query.parse()?,
    })
}

/// Everything a worker needs: where to connect and what to send, already parsed.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub connect_addr: SocketAddr,
    pub template: RequestTemplate,
}

impl Target {
    pub async fn resolve(url: &str, spec: &RequestSpec) -> Result<Self> {
        let parsed = parse_loopback_url(url)?;
        let connect_addr = match parsed.host {
            LoopbackHost::Ip(ip) => SocketAddr::new(ip, parsed.port),
            LoopbackHost::Localhost => resolve_localhost(parsed.port).await?,
        };
        let mut headers = spec.headers.clone();
        if !headers.contains_key(HOST) {
            headers.insert(HOST, HeaderValue::from_str(&parsed.authority)?);
        }
        Ok(Self {
            url: url.to_owned(),
            connect_addr,
            template: RequestTemplate {
                method: spec.method.clone(),
                path_and_query: parsed.path_and_query,
                headers,
                body: spec.body.clone(),
            },
        })
    }
}

/// A hosts file could point `localhost` anywhere, so every answer must be loopback.
/// Among the answers, the first one that accepts a connection wins, because a server
/// often listens on only one of 127.0.0.1 and ::1.
async fn resolve_localhost(port: u16) -> Result<SocketAddr> {
    let candidates: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", port))
        .await
        .context("resolving localhost")?
        .collect();
    if let Some(outside) = candidates.iter().find(|addr| !addr.ip().is_loopback()) {
        bail!("refusing: localhost resolves to {outside}, which is not a loopback address");
    }
    let first = *candidates
        .first()
        .ok_or_else(|| anyhow!("localhost does not resolve to any address"))?;
    for candidate in &candidates {
        let probe = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(candidate),
        );
        if matches!(probe.await, Ok(Ok(_))) {
            return Ok(*candidate);
        }
    }
    Ok(first)
}

/// The request every worker sends, kept in parsed form; cloning it is reference
/// counting plus one header-map copy, which is as cheap as hyper allows.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    method: Method,
    path_and_query: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestTemplate {
    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn build_request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path_and_query.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_on_the_first_colon_and_trim_the_value() {
        let (name, value) = parse_header("X-Forwarded-For:  10.0.0.1 ").unwrap();
        assert_eq!(name, "x-forwarded-for");
        assert_eq!(value, "10.0.0.1");
        let (name, value) = parse_header("Referer: http://a:1/b").unwrap();
        assert_eq!(name, "referer");
        assert_eq!(value, "http://a:1/b");
        let (_, value) = parse_header("X-Empty:").unwrap();
        assert_eq!(value, "");
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for line in [
            "no colon",
            ": value",
            "Bad Name: x",
            "X-Bad: a\nb",
            "Content-Length: 5",
            "transfer-encoding: chunked",
        ] {
            assert!(parse_header(line).is_err(), "{line:?} was accepted");
        }
    }

    #[test]
    fn request_spec_collects_repeated_headers() {
        let spec = RequestSpec::parse(
            "POST",
            &["Accept: a".to_owned(), "Accept: b".to_owned()],
            Some("{}"),
        )
        .unwrap();
        assert_eq!(spec.method, Method::POST);
        assert_eq!(spec.headers.get_all("accept").iter().count(), 2);
        assert_eq!(spec.body, Bytes::from_static(b"{}"));
        assert!(RequestSpec::parse("GE T", &[], None).is_err());
    }

    #[test]
    fn loopback_hosts_are_accepted() {
        assert_eq!(
            check_loopback_host("127.0.0.1").unwrap(),
            LoopbackHost::Ip("127.0.0.1".parse().unwrap())
        );
        assert!(check_loopback_host("127.200.3.4").is_ok());
        assert!(check_loopback_host("[::1]").is_ok());
        assert!(check_loopback_host("::1").is_ok());
        assert_eq!(
            check_loopback_host("LocalHost").unwrap(),
            LoopbackHost::Localhost
        );
    }

    #[test]
    fn other_hosts_are_refused() {
        for host in [
            "10.0.0.1",
            "0.0.0.0",
            "[::]",
            "[::ffff:127.0.0.1]",
            "example.com",
            "localhost.example.com",
            "127.0.0.1.example.com",
            "",
        ] {
            let error = check_loopback_host(host).unwrap_err().to_string();
            assert!(error.contains("only loopback"), "{host:?}: {error}");
        }
    }

    #[test]
    fn urls_are_split_into_connect_and_request_parts() {
        let url = parse_loopback_url("http://127.0.0.1:8080/api/v1?x=1").unwrap();
        assert_eq!(url.port, 8080);
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.path_and_query, "/api/v1?x=1");

        let url = parse_loopback_url("http://[::1]:9000").unwrap();
        assert_eq!(url.host, LoopbackHost::Ip("::1".parse().unwrap()));
        assert_eq!(url.path_and_query, "/");

        assert_eq!(parse_loopback_url("http://localhost/").unwrap().port, 80);
    }

    #[test]
    fn urls_that_could_leave_the_machine_are_refused() {
        for url in [
            "http://example.com/",
            "http://127.0.0.1@example.com/",
            "https://127.0.0.1/",
            "ftp://127.0.0.1/",
            "127.0.0.1:8080",
            "/just/a/path",
        ] {
            assert!(parse_loopback_url(url).is_err(), "{url} was accepted");
        }
    }

    #[tokio::test]
    async fn resolved_target_carries_a_host_header_unless_one_was_given() {
        let spec = RequestSpec::parse("GET", &[], None).unwrap();
        let target = Target::resolve("http://127.0.0.1:1234/x", &spec)
            .await
            .unwrap();
        let request = target.template.build_request();
        assert_eq!(request.headers()[HOST], "127.0.0.1:1234");
        assert_eq!(request.uri(), "/x");
        assert_eq!(target.connect_addr, "127.0.0.1:1234".parse().unwrap());

        let spec = RequestSpec::parse("GET", &["Host: palisade.test".to_owned()], None).unwrap();
        let target = Target::resolve("http://127.0.0.1:1234/", &spec)
            .await
            .unwrap();
        let request = target.template.build_request();
        assert_eq!(request.headers().get_all(HOST).iter().count(), 1);
        assert_eq!(request.headers()[HOST], "palisade.test");
    }
}
