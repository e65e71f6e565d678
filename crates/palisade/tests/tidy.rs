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

/// claim: WEB-6 — SQL text is never built from values. The few statements assembled with
/// `format!` take only constants (identifiers cannot be bound); each is listed here.
#[test]
fn sql_is_never_built_from_runtime_values() {
    let allowed = [
        // GRANT names the runtime group role, a constant.
        "\"GRANT SELECT ON palisade_migrations TO {}\"",
    ];
    for (path, text) in sources("src") {
        for (n, line) in text.lines().enumerate() {
            let builds_sql = line.contains("query(&format!")
                || line.contains("query_scalar(&format!")
                || line.contains("raw_sql(&format!")
                || (line.contains("format!(") && line.contains("SELECT "))
                || (line.contains("format!(") && line.contains("INSERT "));
            if builds_sql {
                let next = text.lines().nth(n + 1).unwrap_or("");
                assert!(
                    allowed.iter().any(|a| line.contains(a) || next.contains(a)),
                    "{}:{}: SQL built with format!: {line}",
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
