//! The vault's key hierarchy (claim SEC-1): key-encryption keys (KEKs) held outside the
//! database behind [`KeyProvider`], each with a version; per-tenant data keys (DEKs) made
//! on first use and stored only wrapped by a KEK, the wrap bound to the tenant and the KEK's
//! version; values sealed by their tenant's DEK, bound to tenant, secret and version. A
//! ciphertext moved to another row, tenant or version does not open.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::crypto::{random_bytes, SealingKey, Unsealable};
use crate::ids::{SecretId, TenantId};

/// Where the KEKs come from. The file and the environment are built in; a KMS would be one
/// more implementation (docs/decisions.md), its callers unchanged.
pub trait KeyProvider: Send + Sync {
    /// The version new data keys are wrapped under: the newest.
    fn active(&self) -> (u32, &SealingKey);
    /// An older or the active version, to unwrap what it wrapped.
    fn version(&self, version: u32) -> Option<&SealingKey>;
}

#[derive(Debug, thiserror::Error)]
#[error("vault key-encryption keys ({source_name}): {reason}")]
pub struct KekError {
    source_name: String,
    reason: String,
}

/// KEK versions read once at start-up, from a file or a setting: one `VERSION:BASE64` per
/// line (or comma-separated in the setting), 32 bytes each; the highest version is active.
pub struct StaticKeys {
    keys: BTreeMap<u32, SealingKey>,
}

impl StaticKeys {
    /// Parses `VERSION:BASE64` entries, separated by new lines or commas.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, KekError> {
        let fail = |reason: &str| KekError {
            source_name: source_name.to_owned(),
            reason: reason.to_owned(),
        };
        let mut keys = BTreeMap::new();
        for entry in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (version, key) = entry
                .split_once(':')
                .ok_or_else(|| fail("each entry is VERSION:BASE64"))?;
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
            if keys.insert(version, key).is_some() {
                return Err(fail("a version appears twice"));
            }
        }
        if keys.is_empty() {
            return Err(fail("no key"));
        }
        Ok(Self { keys })
    }

    /// The KEKs of `setting` when set, else of the file at `path`, created (0600, version
    /// 1) on first start. A file others may read is refused.
    pub fn load(setting: Option<&SecretString>, path: &Path) -> Result<Self, KekError> {
        if let Some(value) = setting {
            return Self::parse(value.expose_secret(), "vault.kek");
        }
        let name = path.display().to_string();
        let fail = |reason: String| KekError {
            source_name: name.clone(),
            reason,
        };
        if !path.exists() {
            let line = Zeroizing::new(format!("1:{}\n", STANDARD.encode(random_bytes::<32>())));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut file) => file
                    .write_all(line.as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| fail(e.to_string()))?,
                // Another instance made it first: read theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        crate::crypto::refuse_loose_permissions(path).map_err(fail)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
        Self::parse(&text, &name)
    }
}

impl KeyProvider for StaticKeys {
    fn active(&self) -> (u32, &SealingKey) {
        let (version, key) = self
            .keys
            .last_key_value()
            .expect("at least one key, by parse");
        (*version, key)
    }

    fn version(&self, version: u32) -> Option<&SealingKey> {
        self.keys.get(&version)
    }
}

/// A tenant's data key as stored: its version among the tenant's, wrapped, with the KEK
/// version that wrapped it.
#[derive(Clone, Debug)]
pub struct WrappedKey {
    pub version: u32,
    pub kek_version: u32,
    pub wrapped: Vec<u8>,
}

/// The hierarchy's operations; holds the KEKs, never a plaintext DEK beyond one call.
pub struct Vault {
    keks: Box<dyn KeyProvider>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A stored wrap or value that does not open: another row's, another tenant's, altered,
    /// or wrapped by a KEK version this deployment no longer holds.
    #[error("a sealed value failed to open")]
    Unsealable,
}

impl From<Unsealable> for VaultError {
    fn from(_: Unsealable) -> Self {
        VaultError::Unsealable
    }
}

fn dek_purpose(tenant: TenantId, version: u32, kek_version: u32) -> Vec<u8> {
    format!("palisade/dek/{}/{version}/{kek_version}", tenant.as_uuid()).into_bytes()
}

fn value_purpose(tenant: TenantId, secret: SecretId, version: u32) -> Vec<u8> {
    format!(
        "palisade/secret/{}/{}/{version}",
        tenant.as_uuid(),
        secret.as_uuid()
    )
    .into_bytes()
}

impl Vault {
    pub fn new(keks: Box<dyn KeyProvider>) -> Self {
        Self { keks }
    }

    /// A fresh DEK for `tenant` as its `version`, wrapped by the active KEK: what a
    /// tenant's first secret stores, unless another request stored one first.
    pub fn new_data_key(&self, tenant: TenantId, version: u32) -> WrappedKey {
        let dek = Zeroizing::new(random_bytes::<32>());
        let (kek_version, kek) = self.keks.active();
        WrappedKey {
            version,
            kek_version,
            wrapped: kek.seal(&dek[..], &dek_purpose(tenant, version, kek_version)),
        }
    }

    fn unwrapped(
        &self,
        tenant: TenantId,
        stored: &WrappedKey,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let kek = self
            .keks
            .version(stored.kek_version)
            .ok_or(VaultError::Unsealable)?;
        Ok(kek.open(
            &stored.wrapped,
            &dek_purpose(tenant, stored.version, stored.kek_version),
        )?)
    }

    fn data_key(&self, tenant: TenantId, stored: &WrappedKey) -> Result<SealingKey, VaultError> {
        let dek = self.unwrapped(tenant, stored)?;
        SealingKey::from_bytes(&dek).ok_or(VaultError::Unsealable)
    }

    /// The active KEK version: what every DEK is wrapped under once the re-wrap is done.
    pub fn active_kek_version(&self) -> u32 {
        self.keks.active().0
    }

    /// `stored` wrapped again under the active KEK (SEC-2); the DEK itself is unchanged,
    /// so nothing it sealed needs sealing again.
    pub fn rewrapped(
        &self,
        tenant: TenantId,
        stored: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        let dek = self.unwrapped(tenant, stored)?;
        let (kek_version, kek) = self.keks.active();
        Ok(WrappedKey {
            version: stored.version,
            kek_version,
            wrapped: kek.seal(&dek[..], &dek_purpose(tenant, stored.version, kek_version)),
        })
    }

    /// `value` sealed by `tenant`'s DEK as version `version` of `secret`.
    pub fn seal(
        &self,
        tenant: TenantId,
        dek: &WrappedKey,
        secret: SecretId,
        version: u32,
        value: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let key = self.data_key(tenant, dek)?;
        Ok(key.seal(value, &value_purpose(tenant, secret, version)))
    }

    pub fn open(
        &self,
        tenant: TenantId,
        dek: &WrappedKey,
        secret: SecretId,
        version: u32,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key = self.data_key(tenant, dek)?;
        Ok(key.open(sealed, &value_purpose(tenant, secret, version))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault_of(text: &str) -> Vault {
        Vault::new(Box::new(StaticKeys::parse(text, "test").unwrap()))
    }

    const KEK_1: &str = "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    // claim: SEC-1
    #[test]
    fn a_value_opens_only_in_its_own_tenant_secret_and_version() {
        let vault = vault_of(KEK_1);
        let (tenant, other_tenant) = (TenantId::generate(), TenantId::generate());
        let (secret, other_secret) = (SecretId::generate(), SecretId::generate());
        let dek = vault.new_data_key(tenant, 1);
        let sealed = vault.seal(tenant, &dek, secret, 1, b"xoxb-token").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"xoxb-token"));
        assert_eq!(
            &vault.open(tenant, &dek, secret, 1, &sealed).unwrap()[..],
            b"xoxb-token"
        );
        assert!(vault.open(tenant, &dek, other_secret, 1, &sealed).is_err());
        assert!(vault.open(tenant, &dek, secret, 2, &sealed).is_err());
        // Another tenant's DEK, or this DEK's wrap presented as another tenant's.
        let theirs = vault.new_data_key(other_tenant, 1);
        assert!(vault.open(tenant, &theirs, secret, 1, &sealed).is_err());
        assert!(vault.open(other_tenant, &dek, secret, 1, &sealed).is_err());
        // A wrap claimed by another KEK version does not open.
        let relabelled = WrappedKey {
            kek_version: 2,
            ..dek.clone()
        };
        assert!(vault.open(tenant, &relabelled, secret, 1, &sealed).is_err());
        let renumbered = WrappedKey {
            version: 2,
            ..dek.clone()
        };
        assert!(vault.open(tenant, &renumbered, secret, 1, &sealed).is_err());
    }

    // claim: SEC-1
    #[test]
    fn the_newest_kek_wraps_and_older_ones_still_unwrap() {
        let old = vault_of(KEK_1);
        let tenant = TenantId::generate();
        let secret = SecretId::generate();
        let dek = old.new_data_key(tenant, 1);
        let sealed = old.seal(tenant, &dek, secret, 1, b"value").unwrap();
        let both = vault_of(&format!("{KEK_1}\n2:{}", STANDARD.encode([9u8; 32])));
        assert_eq!(both.new_data_key(tenant, 2).kek_version, 2);
        assert_eq!(
            &both.open(tenant, &dek, secret, 1, &sealed).unwrap()[..],
            b"value"
        );
        // Re-wrapped under version 2, the same DEK opens what it sealed.
        let rewrapped = both.rewrapped(tenant, &dek).unwrap();
        assert_eq!((rewrapped.version, rewrapped.kek_version), (1, 2));
        assert_eq!(
            &both.open(tenant, &rewrapped, secret, 1, &sealed).unwrap()[..],
            b"value"
        );
    }

    #[test]
    fn bad_kek_text_is_named_and_a_loose_file_refused() {
        for text in [
            "",
            "1",
            "0:AAAA",
            "1:not-base64!",
            "1:AAAA",
            &format!("{KEK_1},{KEK_1}"),
        ] {
            assert!(StaticKeys::parse(text, "test").is_err(), "{text:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.kek");
        let made = StaticKeys::load(None, &path).unwrap();
        assert_eq!(made.active().0, 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let refused = StaticKeys::load(None, &path).err().unwrap().to_string();
            assert!(refused.contains("chmod 600"), "{refused}");
        }
    }
}
