//! TLS: HTTPS with HSTS when a certificate is configured, and plain HTTP redirected.

use crate::helpers::spawn_app_with;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// TLS with the test certificate, and a plain-HTTP redirect listener on a free port.
fn with_tls(settings: &mut palisade::config::Settings) {
    settings.tls.cert = Some(fixture("tls-cert.pem"));
    settings.tls.key = Some(fixture("tls-key.pem"));
    settings.tls.redirect_listen = Some("127.0.0.1:0".parse().unwrap());
}

// claim: WEB-1
#[tokio::test]
async fn https_serves_with_hsts_and_plain_http_redirects_to_it() {
    let app = spawn_app_with(with_tls).await;
    assert!(app.base.starts_with("https://"));
    let cert =
        reqwest::Certificate::from_pem(&std::fs::read(fixture("tls-ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(cert)
        .redirect(reqwest::redirect::Policy::none())
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let response = client.get(app.url("/api/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let hsts = response.headers()["strict-transport-security"]
        .to_str()
        .unwrap();
    assert_eq!(hsts, "max-age=31536000; includeSubDomains; preload");
    // Errors carry HSTS too.
    let missing = client.get(app.url("/missing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("strict-transport-security"));

    // Plain HTTP on the API port is not served.
    let plain = app
        .client
        .get(format!("http://{}/api/health", app.addr))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    let redirect = app.redirect_addr.expect("redirect listener");
    let response = app
        .client
        .get(format!("http://{redirect}/api/health?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        format!("https://127.0.0.1:{}/api/health?x=1", app.addr.port()).as_str()
    );
    // The redirect passes the same frame: WEB-2 headers, a request id, never cached.
    for header in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "x-request-id",
    ] {
        assert!(
            response.headers().contains_key(header),
            "redirect lacks {header}"
        );
    }
    assert_eq!(response.headers()["cache-control"], "no-store");
    app.stop().await;
}

// claim: WEB-1
#[tokio::test]
async fn with_a_public_host_the_redirect_ignores_a_forged_host_header() {
    let app = spawn_app_with(|s| {
        with_tls(s);
        s.tls.public_host = Some("localhost".into());
    })
    .await;
    let redirect = app.redirect_addr.unwrap();
    let response = app
        .client
        .get(format!("http://{redirect}/x"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(location, format!("https://localhost:{}/x", app.addr.port()));
    app.stop().await;
}

#[tokio::test]
async fn a_key_that_is_not_a_key_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::settings_in(dir.path());
    settings.tls.cert = Some(fixture("tls-cert.pem"));
    settings.tls.key = Some(fixture("tls-cert.pem"));
    let error = palisade::app::App::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("private key"), "{error}");
}
