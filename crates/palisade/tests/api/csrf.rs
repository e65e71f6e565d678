//! CSRF (claim WEB-3): the refresh cookie counts only with the session's CSRF token and,
//! from a browser, a trusted origin; bearer tokens and API keys are unaffected.

use serde_json::{json, Value};

use crate::helpers::{csrf_token, spawn_app_with, TestApp, CSRF_HEADER, REFRESH_COOKIE};

const APP_ORIGIN: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example";

/// A cookie-authenticated POST, with the headers given.
async fn with_cookie(
    app: &TestApp,
    path: &str,
    refresh: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(path))
        .header("cookie", format!("{REFRESH_COOKIE}={refresh}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn refreshes(app: &TestApp) -> i64 {
    app.inspect::<i64>(
        "SELECT count(*) FROM audit_events WHERE action = 'auth.refreshed'",
        None,
    )
    .await
    .remove(0)
}

// claim: WEB-3
#[tokio::test]
async fn the_refresh_cookie_alone_a_wrong_token_or_a_foreign_origin_is_refused_and_changes_nothing()
{
    let app = spawn_app_with(|s| s.http.cors_origins = vec![APP_ORIGIN.into()]).await;
    app.sign_up("ada@example.com").await;
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": crate::helpers::PASSWORD}),
        )
        .await;
    let refresh = crate::helpers::refresh_cookie(&login).unwrap();
    let body: Value = login.json().await.unwrap();
    let token = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(
        token,
        csrf_token(&refresh),
        "bound to the session's refresh token"
    );
    let access = body["access_token"].as_str().unwrap().to_owned();
    let other = app.signed_in("grace@example.com").await;
    let others_token = csrf_token(&other.refresh);
    let before = refreshes(&app).await;

    // What a cross-site page can make a browser send: a form post with the cookie.
    let form = [
        ("origin", EVIL),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    for (what, headers) in [
        ("a cross-site form post", form.to_vec()),
        (
            "the token from a foreign origin",
            vec![("origin", EVIL), (CSRF_HEADER, token.as_str())],
        ),
        (
            "a cross-site fetch",
            vec![
                ("sec-fetch-site", "cross-site"),
                (CSRF_HEADER, token.as_str()),
            ],
        ),
        ("no token", vec![("origin", APP_ORIGIN)]),
        (
            "another session's token",
            vec![(CSRF_HEADER, others_token.as_str())],
        ),
        (
            "the null origin",
            vec![("origin", "null"), (CSRF_HEADER, token.as_str())],
        ),
    ] {
        let (status, refused) = with_cookie(&app, "/api/v1/auth/refresh", &refresh, &headers).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (403, Some("csrf_rejected")),
            "{what}"
        );
        let (status, _) = with_cookie(&app, "/api/v1/auth/logout", &refresh, &headers).await;
        assert_eq!(status, 403, "logout: {what}");
    }
    assert_eq!(refreshes(&app).await, before, "nothing was refreshed");
    assert_eq!(
        app.get_as("/api/v1/me", &access).await.status(),
        200,
        "nothing ended"
    );

    // The app's own pages, and a client that is no browser, with the token: refreshed, and
    // the token moves on with the refresh token.
    let (status, rotated) = with_cookie(
        &app,
        "/api/v1/auth/refresh",
        &refresh,
        &[("origin", APP_ORIGIN), (CSRF_HEADER, token.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let next = rotated["csrf_token"].as_str().unwrap();
    assert_ne!(next, token);
    assert_eq!(refreshes(&app).await, before + 1);

    // Bearer tokens and API keys are not cookies: a foreign Origin changes nothing for them.
    let (_, key) =
        crate::keys::create_key(&app, &other, json!({"name": "ci", "role": "admin"})).await;
    for credential in [
        ("authorization", format!("Bearer {}", other.access)),
        ("x-api-key", key),
    ] {
        let made = app
            .client
            .post(app.url("/api/v1/applications"))
            .header(credential.0, &credential.1)
            .header("origin", EVIL)
            .json(&json!({"name": format!("Sync {}", credential.0)}))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201, "{}", credential.0);
    }
    let bearer_logout = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(&access)
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer_logout.status(), 204);
}
