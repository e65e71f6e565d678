//! Docs rendered from the tables the server enforces (docs/rbac.md, docs/errors.md): a test
//! fails when a file is out of step, and `PALISADE_WRITE_DOCS=1` rewrites it.

/// Compares `docs/<name>` with `rendered`, or writes it under `PALISADE_WRITE_DOCS`.
pub(crate) fn assert_in_step(name: &str, rendered: &str) {
    let path = format!("{}/../../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var_os("PALISADE_WRITE_DOCS").is_some() {
        std::fs::write(&path, rendered).unwrap();
    } else {
        assert_eq!(
            current, rendered,
            "docs/{name} is out of step: run PALISADE_WRITE_DOCS=1 cargo test -p palisade --lib"
        );
    }
}
