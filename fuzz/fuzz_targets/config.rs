//! Configuration files: loading answers with settings or an error, never a panic, and an
//! error never repeats the database password the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::config::{Overrides, Settings};

fuzz_target!(|text: &str| {
    let dir = std::env::temp_dir().join(format!("palisade-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("palisade.toml");
    let file = format!("[database]\nurl = \"postgres://app:hunter2-secret@db/p\"\n{text}");
    std::fs::write(&path, &file).unwrap();
    if let Err(error) = Settings::load_from(Some(&path), Vec::new(), &Overrides::default()) {
        assert!(!error.to_string().contains("hunter2-secret"), "{error}");
    }
});
