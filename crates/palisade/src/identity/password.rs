//! argon2id password hashing on a bounded blocking pool (claim ID-1).
//!
//! Hashing costs ~20 MiB and tens of milliseconds of CPU, so it never runs on the async
//! runtime: a semaphore admits `max_concurrent_hashes` at a time to `spawn_blocking`, at most
//! `max_queued_hashes` wait for a slot, and beyond that callers get `Overloaded` at once, so
//! a flood of sign-ins queues briefly and then sheds load instead of exhausting memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::PasswordSettings;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password hashes are waiting")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

pub struct PasswordHasher {
    params: Params,
    slots: Arc<Semaphore>,
    /// Callers inside `on_pool`: hashing now or waiting for a slot.
    admitted: AtomicUsize,
    /// Slots plus queue places.
    capacity: usize,
}

impl PasswordHasher {
    pub fn new(settings: &PasswordSettings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            1,
            None,
        )
        .map_err(|e| HashError::Failed(e.to_string()))?;
        Ok(Self {
            params,
            slots: Arc::new(Semaphore::new(settings.max_concurrent_hashes)),
            admitted: AtomicUsize::new(0),
            capacity: settings.max_concurrent_hashes + settings.max_queued_hashes,
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Hashes a password, NFKC-normalised (NIST SP 800-63B: `pässwörd` typed precomposed
    /// or decomposed is one password), into a PHC string (`$argon2id$v=19$m=…`), salt
    /// included.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        let params = self.params.clone();
        self.on_pool(move || {
            let salt = SaltString::generate(&mut OsRng);
            let normalised = normalised(&password);
            Self::argon2(params)
                .hash_password(normalised.expose_secret().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| HashError::Failed(e.to_string()))
        })
        .await
    }

    /// Verifies against a stored hash — argon2id, or bcrypt for an imported user (claim
    /// ID-1) — in constant time (the libraries' compares). The NFKC form is tried first;
    /// a hash made before passwords were normalised (or imported) may hold the bytes as
    /// typed, so those are tried too when they differ, and a match there asks for an
    /// upgrade. `needs_upgrade` says the hash should be replaced now that it matched.
    pub async fn verify_stored(
        &self,
        password: SecretString,
        stored: String,
    ) -> Result<Verified, HashError> {
        let weak = is_bcrypt(&stored)
            || PasswordHash::new(&stored).is_ok_and(|parsed| {
                Params::try_from(&parsed).map_or(true, |params| {
                    parsed.algorithm != Algorithm::Argon2id.ident()
                        || params.m_cost() < self.params.m_cost()
                        || params.t_cost() < self.params.t_cost()
                })
            });
        let params = self.params.clone();
        self.on_pool(move || {
            let normalised = normalised(&password);
            let as_typed = password.expose_secret();
            let matches = |candidate: &str| -> Result<bool, HashError> {
                if is_bcrypt(&stored) {
                    return Ok(bcrypt::verify(candidate.as_bytes(), &stored).unwrap_or(false));
                }
                let parsed =
                    PasswordHash::new(&stored).map_err(|e| HashError::Failed(e.to_string()))?;
                Ok(Self::argon2(params.clone())
                    .verify_password(candidate.as_bytes(), &parsed)
                    .is_ok())
            };
            if matches(normalised.expose_secret())? {
                return Ok(Verified {
                    matches: true,
                    needs_upgrade: weak,
                });
            }
            let legacy = normalised.expose_secret() != as_typed && matches(as_typed)?;
            Ok(Verified {
                matches: legacy,
                needs_upgrade: legacy,
            })
        })
        .await
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let ahead = self.admitted.fetch_add(1, Ordering::AcqRel);
        let _leave = LeaveQueue(&self.admitted);
        if ahead >= self.capacity {
            return Err(HashError::Overloaded);
        }
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashError::Failed("hasher closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }
}

/// The password in NFKC form, the one form that is hashed.
fn normalised(password: &SecretString) -> SecretString {
    use unicode_normalization::UnicodeNormalization;
    SecretString::from(password.expose_secret().nfkc().collect::<String>())
}

/// The outcome of checking a password against a stored hash.
pub struct Verified {
    pub matches: bool,
    pub needs_upgrade: bool,
}

/// `$2a$`, `$2b$` or `$2y$`: a bcrypt hash from an imported user base.
pub fn is_bcrypt(stored: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
}

struct LeaveQueue<'a>(&'a AtomicUsize);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(max_concurrent: usize, max_queued: usize) -> PasswordHasher {
        PasswordHasher::new(&PasswordSettings {
            max_concurrent_hashes: max_concurrent,
            max_queued_hashes: max_queued,
            ..PasswordSettings::default()
        })
        .unwrap()
    }

    // claim: ID-1
    #[tokio::test]
    async fn hashes_are_argon2id_at_owasp_parameters_and_verify() {
        let hasher = hasher(1, 8);
        let secret = || SecretString::from("correct horse battery".to_owned());
        let phc = hasher.hash(secret()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        let verify = |password: &str, phc: &str| {
            let (password, phc) = (SecretString::from(password.to_owned()), phc.to_owned());
            let hasher = &hasher;
            async move { hasher.verify_stored(password, phc).await.unwrap() }
        };
        assert!(verify("correct horse battery", &phc).await.matches);
        assert!(!verify("correct horse battery!", &phc).await.matches);
    }

    // claim: ID-2
    #[tokio::test]
    async fn a_password_typed_precomposed_or_decomposed_is_one_password_and_old_hashes_still_verify(
    ) {
        let hasher = hasher(1, 8);
        let precomposed = "p\u{e4}ssw\u{f6}rd-correct-horse";
        let decomposed = "pa\u{308}sswo\u{308}rd-correct-horse";
        let verify = |password: &str, phc: &str| {
            let (password, phc) = (SecretString::from(password.to_owned()), phc.to_owned());
            let hasher = &hasher;
            async move { hasher.verify_stored(password, phc).await.unwrap() }
        };
        let phc = hasher
            .hash(SecretString::from(decomposed.to_owned()))
            .await
            .unwrap();
        for typed in [precomposed, decomposed] {
            let verified = verify(typed, &phc).await;
            assert!(verified.matches && !verified.needs_upgrade, "{typed:?}");
        }
        // A hash of the decomposed bytes, made before passwords were normalised.
        let legacy = bcrypt::hash(decomposed, 4).unwrap();
        let verified = verify(decomposed, &legacy).await;
        assert!(verified.matches && verified.needs_upgrade);
        assert!(
            !verify("pa\u{308}sswo\u{308}rd-correct-horsE", &legacy)
                .await
                .matches
        );
    }

    #[tokio::test]
    async fn a_flood_beyond_the_queue_is_shed_not_buffered() {
        let hasher = Arc::new(hasher(1, 2));
        let attempts: Vec<_> = (0..12)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    hasher
                        .hash(SecretString::from("a long enough password".to_owned()))
                        .await
                })
            })
            .collect();
        let mut shed = 0;
        let mut done = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(_) => done += 1,
                Err(HashError::Overloaded) => shed += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(done >= 1, "some hashes complete");
        assert!(shed >= 1, "the excess is refused");
        assert_eq!(hasher.admitted.load(Ordering::Acquire), 0);
    }
}
