//! Key-encryption keys (claims SEC-1, SEC-2): versioned, held outside the database, behind
//! [`KeyProvider`]. Built in: the `vault-kek` file in the data directory (one
//! `VERSION:BASE64[:CREATED]` line per key, 0600) or the `vault.kek` setting. The highest
//! version wraps new data keys; older versions still unwrap until the re-wrap has moved
//! every data key off them and they are retired. A KMS would be one more provider.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::crypto::{random_bytes, SealingKey};

/// Where the KEKs come from, and what the vault asks of it.
pub trait KeyProvider: Send + Sync {
    /// The version new data keys are wrapped under (the newest), and that key.
    fn active(&self) -> (u32, Arc<SealingKey>);
    /// Any version this deployment still holds, to unwrap what it wrapped.
    fn version(&self, version: u32) -> Option<Arc<SealingKey>>;
    /// When the active version was made, if the source records it.
    fn active_since(&self) -> Option<OffsetDateTime>;
    /// Reads the source again: a version another process added appears, and the newest
    /// becomes active. Sources that cannot change answer Ok.
    fn reload(&self) -> Result<(), KekError>;
}

#[derive(Debug, thiserror::Error)]
#[error("vault key-encryption keys ({source_name}): {reason}")]
pub struct KekError {
    source_name: String,
    reason: String,
}

impl KekError {
    fn new(source_name: &str, reason: impl Into<String>) -> Self {
        Self {
            source_name: source_name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// One version: the key, and when it was made (when the source says).
struct Kek {
    key: Arc<SealingKey>,
    created: Option<OffsetDateTime>,
}

/// Parsed KEK versions: at least one.
struct KekSet(BTreeMap<u32, Kek>);

impl KekSet {
    /// `VERSION:BASE64[:CREATED_UNIX_SECONDS]` entries, separated by new lines or commas.
    fn parse(text: &str, source_name: &str) -> Result<Self, KekError> {
        let fail = |reason: &str| KekError::new(source_name, reason);
        let mut keys = BTreeMap::new();
        for entry in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let mut fields = entry.split(':');
            let (Some(version), Some(key)) = (fields.next(), fields.next()) else {
                return Err(fail("each entry is VERSION:BASE64[:CREATED]"));
            };
            let version: u32 = version
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| fail("a version is a whole number from 1"))?;
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(key)
                    .map_err(|_| fail("a key is not base64"))?,
            );
            let key =
                SealingKey::from_bytes(&bytes).ok_or_else(|| fail("a key is not 32 bytes"))?;
            let created = match fields.next() {
                None => None,
                Some(seconds) => Some(
                    seconds
                        .parse::<i64>()
                        .ok()
                        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                        .ok_or_else(|| fail("a creation time is seconds since 1970"))?,
                ),
            };
            if fields.next().is_some() {
                return Err(fail("each entry is VERSION:BASE64[:CREATED]"));
            }
            let kek = Kek {
                key: Arc::new(key),
                created,
            };
            if keys.insert(version, kek).is_some() {
                return Err(fail("a version appears twice"));
            }
        }
        if keys.is_empty() {
            return Err(fail("no key"));
        }
        Ok(Self(keys))
    }

    fn active(&self) -> (u32, &Kek) {
        let (version, kek) = self.0.last_key_value().expect("at least one key, by parse");
        (*version, kek)
    }
}

/// The built-in provider: the setting's fixed versions, or the file's, re-read on demand.
pub struct FileOrSetting {
    file: Option<PathBuf>,
    keys: RwLock<Arc<KekSet>>,
}

/// The line a new version is written as.
fn new_line(version: u32, now: OffsetDateTime) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{version}:{}:{}\n",
        STANDARD.encode(random_bytes::<32>()),
        now.unix_timestamp()
    ))
}

fn read_file(path: &Path) -> Result<KekSet, KekError> {
    let name = path.display().to_string();
    crate::crypto::refuse_loose_permissions(path).map_err(|reason| KekError::new(&name, reason))?;
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| KekError::new(&name, e.to_string()))?,
    );
    KekSet::parse(&text, &name)
}

impl FileOrSetting {
    /// The KEKs of `setting` when set, else of the file at `path`, created (0600, version
    /// 1) on first start. A file others may read is refused.
    pub fn load(
        setting: Option<&SecretString>,
        path: &Path,
        now: OffsetDateTime,
    ) -> Result<Self, KekError> {
        if let Some(value) = setting {
            let keys = KekSet::parse(value.expose_secret(), "vault.kek")?;
            return Ok(Self {
                file: None,
                keys: RwLock::new(Arc::new(keys)),
            });
        }
        let name = path.display().to_string();
        if !path.exists() {
            match crate::crypto::create_owner_only(path) {
                Ok(mut file) => file
                    .write_all(new_line(1, now).as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| KekError::new(&name, e.to_string()))?,
                // Another instance made it first: read theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(KekError::new(&name, e.to_string())),
            }
        }
        Ok(Self {
            keys: RwLock::new(Arc::new(read_file(path)?)),
            file: Some(path.to_owned()),
        })
    }

    /// Only for tests: fixed versions from text.
    pub fn parse(text: &str) -> Result<Self, KekError> {
        Ok(Self {
            file: None,
            keys: RwLock::new(Arc::new(KekSet::parse(text, "text")?)),
        })
    }

    fn current(&self) -> Arc<KekSet> {
        self.keys.read().expect("kek lock").clone()
    }
}

impl KeyProvider for FileOrSetting {
    fn active(&self) -> (u32, Arc<SealingKey>) {
        let keys = self.current();
        let (version, kek) = keys.active();
        (version, kek.key.clone())
    }

    fn version(&self, version: u32) -> Option<Arc<SealingKey>> {
        self.current().0.get(&version).map(|kek| kek.key.clone())
    }

    fn active_since(&self) -> Option<OffsetDateTime> {
        self.current().active().1.created
    }

    fn reload(&self) -> Result<(), KekError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let keys = read_file(path)?;
        *self.keys.write().expect("kek lock") = Arc::new(keys);
        Ok(())
    }
}

/// Adds the next version to the KEK file (claim SEC-2) and returns it. Servers read it at
/// their next reload (within a minute, or at once on meeting a key it wrapped).
pub fn rotate_file(path: &Path, now: OffsetDateTime) -> Result<u32, KekError> {
    let name = path.display().to_string();
    // One rotation at a time, across processes: the lock file is made exclusively.
    let lock = path.with_extension("rotating");
    crate::crypto::create_owner_only(&lock)
        .map_err(|e| KekError::new(&name, format!("another rotation is under way ({e})")))?;
    let rotated = (|| {
        let current = read_file(path)?;
        let next = current.active().0 + 1;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| KekError::new(&name, e.to_string()))?;
        file.write_all(new_line(next, now).as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| KekError::new(&name, e.to_string()))?;
        Ok(next)
    })();
    let _ = std::fs::remove_file(&lock);
    rotated
}

/// Rewrites the KEK file without the versions below the active one that no data key uses
/// (`in_use`), and returns them. The active version always stays.
pub fn retire_unused(path: &Path, in_use: &BTreeSet<u32>) -> Result<Vec<u32>, KekError> {
    let name = path.display().to_string();
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| KekError::new(&name, e.to_string()))?,
    );
    let keys = KekSet::parse(&text, &name)?;
    let active = keys.active().0;
    let retired: Vec<u32> = keys
        .0
        .keys()
        .copied()
        .filter(|v| *v < active && !in_use.contains(v))
        .collect();
    if retired.is_empty() {
        return Ok(retired);
    }
    let kept = Zeroizing::new(
        text.lines()
            .filter(|line| {
                let version = line
                    .split(':')
                    .next()
                    .and_then(|v| v.trim().parse::<u32>().ok());
                !version.is_some_and(|v| retired.contains(&v))
            })
            .map(|line| format!("{line}\n"))
            .collect::<String>(),
    );
    // Written whole under another name and renamed: a crash leaves the old file or the new.
    let partial = path.with_extension("retiring");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&partial)
        .map_err(|e| KekError::new(&name, e.to_string()))?;
    file.write_all(kept.as_bytes())
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&partial, path))
        .map_err(|e| KekError::new(&name, e.to_string()))?;
    Ok(retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const KEK_1: &str = "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn bad_kek_text_is_named_and_a_loose_file_refused() {
        for text in [
            "",
            "1",
            "0:AAAA",
            "1:not-base64!",
            "1:AAAA",
            &format!("{KEK_1}:soon"),
            &format!("{KEK_1}:1:2"),
            &format!("{KEK_1},{KEK_1}"),
        ] {
            assert!(KekSet::parse(text, "test").is_err(), "{text:?}");
        }
        let now = OffsetDateTime::now_utc();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault-kek");
        let made = FileOrSetting::load(None, &path, now).unwrap();
        assert_eq!(made.active().0, 1);
        assert_eq!(
            made.active_since().map(|t| t.unix_timestamp()),
            Some(now.unix_timestamp())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let refused = FileOrSetting::load(None, &path, now)
                .err()
                .unwrap()
                .to_string();
            assert!(refused.contains("chmod 600"), "{refused}");
        }
    }

    // claim: SEC-2
    #[test]
    fn a_rotation_adds_the_next_version_which_a_reload_makes_active_and_retiring_keeps_what_is_used(
    ) {
        let now = OffsetDateTime::now_utc();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault-kek");
        let serving = FileOrSetting::load(None, &path, now).unwrap();
        let first = serving.version(1).unwrap();
        assert_eq!(rotate_file(&path, now).unwrap(), 2);
        assert_eq!(rotate_file(&path, now).unwrap(), 3);
        // Until it reloads, a server wraps with what it has; then with the newest, and the
        // old versions still unwrap.
        assert_eq!(serving.active().0, 1);
        serving.reload().unwrap();
        assert_eq!(serving.active().0, 3);
        let sealed = first.seal(b"dek", b"p");
        assert_eq!(
            &serving.version(1).unwrap().open(&sealed, b"p").unwrap()[..],
            b"dek"
        );
        // Retiring: version 1 still wraps a key, version 2 nothing; the active one stays.
        let retired = retire_unused(&path, &BTreeSet::from([1])).unwrap();
        assert_eq!(retired, [2]);
        serving.reload().unwrap();
        assert!(serving.version(2).is_none());
        assert!(serving.version(1).is_some() && serving.version(3).is_some());
        assert_eq!(retire_unused(&path, &BTreeSet::new()).unwrap(), [1]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
