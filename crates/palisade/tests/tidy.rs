//! Style rules that matter, checked as tests: they fail the build, not a review.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(sub: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn every_source_file_starts_by_saying_what_it_is_for() {
    for sub in ["src", "tests", "../loadtest/src"] {
        for (path, text) in sources(sub) {
            assert!(
                text.starts_with("//!"),
                "{} has no leading //! line",
                path.display()
            );
        }
    }
}

/// Routes are added only through `utoipa_axum::routes!`, so none can be served undocumented.
#[test]
fn every_route_goes_through_the_openapi_router() {
    for (path, text) in sources("src") {
        assert!(
            !text.contains(".route("),
            "{}: use OpenApiRouter::routes(routes!(…))",
            path.display()
        );
    }
}

/// claim: WEB-6 — SQL text is never built from runtime values. A statement is either a
/// string literal handed straight to sqlx, or one of the few listed here, which format in
/// constants only (identifiers cannot be bound).
#[test]
fn sql_is_never_built_from_runtime_values() {
    const SQL_STARTS: &[&str] = &[
        "SELECT", "INSERT", "UPDATE", "DELETE", "GRANT", "REVOKE", "CREATE", "ALTER", "DROP",
        "PRAGMA", "SET ", "BEGIN", "WITH",
    ];
    let allowed = [
        // GRANT names the runtime group role, a constant.
        "\"GRANT SELECT ON palisade_migrations TO {}\"",
        // Embedded migration files (include_str!), and COMMIT/ROLLBACK chosen from literals.
        "raw_sql(m.sql)",
        "sqlx::query(end)",
        // Each statement of a const array of literals, in turn (an erasure's, a deletion's).
        "sqlx::query(statement)",
        // Backups name tables the catalog lists and a scratch database they generate:
        // each checked to be a plain lowercase identifier, then quoted (backup/snapshot.rs).
        "query_scalar::<DB, i64>(&statement)",
        "query(&create_database(&name)?)",
        "query(&drop_database(&name)?)",
        "\"SELECT count(*) FROM {schema}\\\"{table}\\\"\"",
        "\"CREATE DATABASE \\\"{name}\\\" TEMPLATE template0\"",
        "\"DROP DATABASE IF EXISTS \\\"{name}\\\" WITH (FORCE)\"",
    ];
    let sqlx_calls = [
        "query(",
        "query_as(",
        "query_scalar(",
        "raw_sql(",
        "query_with(",
    ];
    for (path, text) in sources("src") {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let next = lines.get(n + 1).copied().unwrap_or("");
            let joined = format!("{} {}", line.trim(), next.trim());
            let formats_sql = joined.match_indices("format!(").any(|(i, _)| {
                let rest = joined[i + 8..].trim_start().trim_start_matches('"');
                SQL_STARTS.iter().any(|k| rest.starts_with(k))
            });
            // A sqlx call whose argument is not a literal: a variable or expression of SQL.
            let dynamic_call = sqlx_calls.iter().any(|call| {
                line.match_indices(call).any(|(i, _)| {
                    let arg = line[i + call.len()..].trim_start();
                    let preceded_by_sqlx = line[..i].ends_with("sqlx::") || line[..i].ends_with('.');
                    preceded_by_sqlx && !arg.is_empty() && !arg.starts_with('"') && !arg.starts_with("r#\"") && !arg.starts_with(')')
                        // A `const` of SQL text is a literal too.
                        && !arg.starts_with(|c: char| c.is_ascii_uppercase())
                })
            });
            if formats_sql || dynamic_call {
                assert!(
                    allowed.iter().any(|a| line.contains(a) || next.contains(a)),
                    "{}:{}: SQL not given as a literal: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}

/// The domain and the stores never see HTTP.
#[test]
fn services_and_stores_do_not_import_axum() {
    for (path, text) in sources("src") {
        let name = path.file_name().unwrap().to_string_lossy();
        let is_domain = ["service.rs", "store.rs", "domain.rs", "password.rs"]
            .contains(&name.as_ref())
            || path.components().any(|c| c.as_os_str() == "store");
        if is_domain {
            assert!(!text.contains("axum"), "{} imports axum", path.display());
        }
    }
}

/// The access module is a leaf: who may do what is decided with nothing from the modules
/// that verify credentials or manage tenants, so there is one permission rule and no cycle.
#[test]
fn access_imports_nothing_from_identity_keys_or_tenancy() {
    for (path, text) in sources("src/access") {
        for module in ["identity", "keys", "tenancy", "http", "store", "audit"] {
            assert!(
                !text.contains(&format!("crate::{module}")),
                "{} imports crate::{module}",
                path.display()
            );
        }
    }
}

/// claim: TEN-2 — a tenant scope is made only where a credential has just been verified,
/// by the named system entry in the few places no request names the tenant, or for the
/// app's backend naming a tenant under its verified service credential (relations, tenant
/// tokens).
#[test]
fn tenant_scopes_are_made_only_from_verified_credentials_or_by_the_system_entry() {
    let allowed: &[(&str, &[&str])] = &[
        (
            "TenantScope::of_verified_credential(",
            &[
                "src/access/caller.rs",
                "src/identity/sessions.rs",
                "src/identity/store/sessions.rs",
                "src/keys/mod.rs",
                "src/services/tenant_tokens.rs",
            ],
        ),
        (
            "TenantScope::for_system(",
            &[
                "src/access/caller.rs",
                "src/audit/store/mod.rs",
                "src/identity/store/accounts.rs",
                "src/identity/store/erasure.rs",
                "src/identity/store/mod.rs",
                "src/keys/store.rs",
                "src/services/store.rs",
                "src/tenancy/store.rs",
                "src/vault/store.rs",
                "src/webhooks/store.rs",
            ],
        ),
        (
            "TenantScope::named_by_service(",
            &[
                "src/access/caller.rs",
                "src/relations/mod.rs",
                "src/services/store.rs",
            ],
        ),
    ];
    for (path, text) in sources("src") {
        let relative = path.to_string_lossy().replace('\\', "/");
        for (constructor, files) in allowed {
            if text.contains(constructor) {
                assert!(
                    files.iter().any(|f| relative.ends_with(f)),
                    "{} makes a TenantScope with {constructor}",
                    path.display()
                );
            }
        }
    }
}
