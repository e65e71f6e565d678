//! `palisade users import`: users from another system keep their bcrypt hashes until their
//! next sign-in, which replaces them with argon2id (claim ID-1).

use std::process::Command;

use serde_json::json;

use crate::helpers::{spawn_app, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// Runs `palisade users import` against the app's database and data directory.
async fn import(app: &TestApp, tenant: &str, lines: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, lines).unwrap();
    let file = file.display().to_string();
    palisade_command(app, &["users", "import", "--tenant", tenant, &file]).await
}

/// Runs the `palisade` binary with `args` on the app's database and data directory.
pub async fn palisade_command(app: &TestApp, args: &[&str]) -> (bool, String) {
    let data_dir = app.sqlite_path().parent().unwrap().to_owned();
    let env = app.db.env();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .arg("--data-dir")
            .arg(&data_dir)
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn stored_hash(app: &TestApp, email: &str) -> String {
    app.inspect(
        "SELECT password_hash FROM users WHERE email = $1",
        Some(email),
    )
    .await
    .remove(0)
}

// claim: ID-1
#[tokio::test]
async fn imported_bcrypt_users_sign_in_and_their_hash_becomes_argon2id() {
    let app = spawn_app().await;
    let owner = app.signed_in("ada@example.com").await;
    let legacy = bcrypt::hash("legacy password 2019", 4).unwrap();
    let lines = format!(
        "{}\n{}\n",
        json!({"email": "Grace@Example.com", "bcrypt_hash": legacy, "role": "admin"}),
        json!({"email": "ada@example.com", "bcrypt_hash": legacy}),
    );
    let (ok, output) = import(&app, &owner.tenant, &lines).await;
    assert!(ok, "{output}");
    assert!(output.contains("imported 1 users"), "{output}");
    assert!(output.contains("skipped ada@example.com"), "{output}");
    assert!(stored_hash(&app, "grace@example.com")
        .await
        .starts_with("$2b$"));

    let login = |password: &'static str| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": "grace@example.com", "password": password}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(login("not the legacy one").await, 401);
    assert!(stored_hash(&app, "grace@example.com")
        .await
        .starts_with("$2b$"));
    assert_eq!(login("legacy password 2019").await, 200);
    assert!(
        stored_hash(&app, "grace@example.com")
            .await
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "upgraded at sign-in"
    );
    assert_eq!(
        login("legacy password 2019").await,
        200,
        "and still signs in"
    );
    assert_eq!(
        stored_hash(&app, "ada@example.com").await[..10].to_owned(),
        "$argon2id$",
        "an existing account is untouched"
    );
}

// claim: ID-1
#[tokio::test]
async fn an_import_with_one_bad_line_writes_nothing_and_names_the_line() {
    let app = spawn_app().await;
    let owner = app.signed_in("ada@example.com").await;
    let legacy = bcrypt::hash("legacy password 2019", 4).unwrap();
    let lines = format!(
        "{}\n{}\n",
        json!({"email": "grace@example.com", "bcrypt_hash": legacy}),
        json!({"email": "linus@example.com", "bcrypt_hash": "plaintext-password"}),
    );
    let (ok, output) = import(&app, &owner.tenant, &lines).await;
    assert!(!ok);
    assert!(output.contains("line 2"), "{output}");
    assert!(!output.contains("plaintext-password"), "{output}");
    assert_eq!(app.count_rows("users").await, 1);

    let (ok, _) = import(
        &app,
        "ten_00000000000000000000000000000000",
        &format!(
            "{}\n",
            json!({"email": "grace@example.com", "bcrypt_hash": legacy})
        ),
    )
    .await;
    assert!(!ok, "an unknown tenant is refused");
    assert_eq!(app.count_rows("users").await, 1);
}
