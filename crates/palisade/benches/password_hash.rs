//! argon2id capacity of this machine, through the same bounded pool sign-in uses: the
//! baseline the sign-in benchmark is compared with (docs/benchmarks.md).
//! `cargo bench -p palisade --bench password_hash [-- SECONDS]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade::config::PasswordSettings;
use palisade::identity::password::PasswordHasher;
use secrecy::SecretString;

fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10.0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let settings = PasswordSettings::default();
        let workers = settings.max_concurrent_hashes * 4;
        let hasher = Arc::new(PasswordHasher::new(&settings).expect("valid parameters"));
        let phc = hasher
            .hash(SecretString::from("correct horse battery staple".to_owned()))
            .await
            .expect("hash");
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (hasher, done, phc) = (hasher.clone(), done.clone(), phc.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let password = SecretString::from("correct horse battery staple".to_owned());
                        assert!(hasher.verify_stored(password, phc.clone()).await.expect("verify").matches);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let count = done.load(Ordering::Relaxed);
        println!(
            "argon2id m={} KiB t={} p=1 on {} threads: {count} verifications in {elapsed:.1} s = {:.1}/s",
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.max_concurrent_hashes,
            count as f64 / elapsed
        );
    });
}
