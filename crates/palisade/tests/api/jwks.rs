//! Interoperability: access tokens verified by jose (Node.js), an independent JOSE
//! implementation, from nothing but `/.well-known/jwks.json`, across a key rotation.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{spawn_app, TestApp};

pub(crate) fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs the pinned verifiers (jose, standardwebhooks, stripe, age-encryption:
/// package-lock.json, from the npm
/// registry) the first time a test needs them, so `cargo test --workspace` on a fresh
/// clone needs no step of its own.
pub(crate) async fn install_interop_once(dir: &std::path::Path) {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            if ["jose", "standardwebhooks", "stripe", "age-encryption"]
                .iter()
                .all(|package| dir.join("node_modules").join(package).is_dir())
            {
                return;
            }
            let dir = dir.to_owned();
            let output = tokio::task::spawn_blocking(move || {
                Command::new("npm")
                    .current_dir(&dir)
                    .args(["ci", "--no-audit", "--no-fund"])
                    .output()
            })
            .await
            .unwrap();
            match output {
                Ok(output) if output.status.success() => {}
                Ok(output) => panic!(
                    "`npm ci` for the interop verifiers failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(error) => panic!("node and npm are needed for the interop tests: {error}"),
            }
        })
        .await;
}

/// Runs the jose verifier; `Ok(payload)` when it accepts the token.
async fn verify_with_jose(app: &TestApp, token: &str) -> Result<Value, String> {
    let dir = interop_dir();
    install_interop_once(&dir).await;
    let jwks = app.url("/.well-known/jwks.json");
    let token = token.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&dir)
            .args(["verify-jwt.mjs", &jwks, "palisade", "palisade-api", &token])
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    if output.status.success() {
        let verified: Value = serde_json::from_slice(&output.stdout).unwrap();
        Ok(verified["payload"].clone())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

// claim: ID-8, ID-3
#[tokio::test]
async fn a_third_party_library_verifies_our_tokens_from_the_jwks_across_a_rotation() {
    let app = spawn_app().await;
    let before = app.signed_in("ada@example.com").await;
    let payload = verify_with_jose(&app, &before.access).await.unwrap();
    assert_eq!(payload["tid"], before.tenant.as_str());
    assert!(payload["sub"].as_str().unwrap().starts_with("usr_"));

    // Flip a character early in the signature (the last one may carry only padding bits).
    let signature_start = before.access.rfind('.').unwrap() + 1;
    let mut forged = before.access.clone().into_bytes();
    forged[signature_start + 2] = if forged[signature_start + 2] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = String::from_utf8(forged).unwrap();
    assert!(
        verify_with_jose(&app, &forged).await.is_err(),
        "a bad signature is refused"
    );

    let identity = &app.state.identity;
    identity
        .tokens()
        .rotate(identity.store(), identity.now())
        .await
        .unwrap();
    let after = app.login("ada@example.com").await;
    verify_with_jose(&app, &after.access)
        .await
        .expect("a token of the new key verifies");
    verify_with_jose(&app, &before.access)
        .await
        .expect("a token of the retired key still verifies while it lives");

    // Once the retired key's tokens have expired it is withdrawn, and nobody accepts them.
    app.clock.advance(Duration::from_secs(15 * 60 + 61));
    let refused = verify_with_jose(&app, &before.access).await.unwrap_err();
    assert!(refused.contains("ERR_JWKS_NO_MATCHING_KEY"), "{refused}");
}
