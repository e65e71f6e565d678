//! Palisade's own sealed material — access-token signing keys, TOTP secrets — under the
//! vault's hierarchy (claim SEC-1): sealed by the platform's data key, which is stored only
//! wrapped by the KEK like every tenant's (re-wrapped by a KEK rotation alike). What the
//! master key file sealed before is still opened with it, and re-sealed at start-up
//! (`Identity::reseal_legacy`), after which the file is no longer needed.

use zeroize::Zeroizing;

use super::keys::{VaultError, WrappedKey};
use super::store::PlatformKeyStore;
use super::Vault;
use crate::crypto::{SealingKey, Unsealable};
use crate::ids::TenantId;

/// Marks a value sealed by the platform's data key: then its version (4 bytes, big endian),
/// then nonce, ciphertext and tag. A value without it was sealed by the master key.
const MAGIC: &[u8; 4] = b"pdk\x01";

/// The platform's place in the hierarchy: the tenant id of the platform stream.
pub fn platform_tenant() -> TenantId {
    TenantId::from_uuid(uuid::Uuid::nil())
}

pub struct PlatformSealer {
    version: u32,
    key: SealingKey,
    /// The master key file's key, when the file exists: opens what it sealed before.
    legacy: Option<SealingKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformKeyError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the platform's data key does not open with the vault's KEKs: the KEK file is not this deployment's")]
    Unsealable,
}

impl From<VaultError> for PlatformKeyError {
    fn from(_: VaultError) -> Self {
        PlatformKeyError::Unsealable
    }
}

impl PlatformSealer {
    /// The platform's data key, made (version 1) on the first start under the vault.
    pub async fn load(
        vault: &Vault,
        store: &dyn PlatformKeyStore,
        legacy: Option<SealingKey>,
        now: time::OffsetDateTime,
    ) -> Result<Self, PlatformKeyError> {
        let tenant = platform_tenant();
        let new_key = |version| vault.new_data_key(tenant, version);
        let stored: WrappedKey = store.platform_key(&new_key, now).await?;
        Ok(Self {
            version: stored.version,
            key: vault.unwrap_key(tenant, &stored)?,
            legacy,
        })
    }

    /// Only for tests: a sealer over a given key.
    pub fn from_key(key: SealingKey, legacy: Option<SealingKey>) -> Self {
        Self {
            version: 1,
            key,
            legacy,
        }
    }

    /// `purpose` binds the value to its place, as the master key's seal did.
    pub fn seal(&self, plaintext: &[u8], purpose: &[u8]) -> Vec<u8> {
        let mut sealed = MAGIC.to_vec();
        sealed.extend_from_slice(&self.version.to_be_bytes());
        sealed.extend_from_slice(&self.key.seal(plaintext, purpose));
        sealed
    }

    pub fn open(&self, sealed: &[u8], purpose: &[u8]) -> Result<Zeroizing<Vec<u8>>, Unsealable> {
        if let Some(body) = self.current_body(sealed) {
            if let Ok(opened) = self.key.open(body, purpose) {
                return Ok(opened);
            }
        }
        // A master-key seal whose random nonce happens to begin with the marker is tried
        // as one too.
        match &self.legacy {
            Some(legacy) => legacy.open(sealed, purpose),
            None => Err(Unsealable),
        }
    }

    /// Whether `sealed` is this data key's already (nothing to re-seal).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        self.current_body(sealed).is_some()
    }

    fn current_body<'a>(&self, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let rest = sealed.strip_prefix(&MAGIC[..])?;
        let (version, body) = rest.split_at_checked(4)?;
        (version == self.version.to_be_bytes()).then_some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // claim: SEC-1
    #[test]
    fn the_platform_key_opens_its_own_seals_and_the_master_keys_old_ones() {
        let master = SealingKey::from_bytes(&[3u8; 32]).unwrap();
        let old = master.seal(b"totp secret", b"totp:usr_1");
        let sealer = PlatformSealer::from_key(
            SealingKey::from_bytes(&[4u8; 32]).unwrap(),
            Some(SealingKey::from_bytes(&[3u8; 32]).unwrap()),
        );
        assert!(!sealer.is_current(&old));
        assert_eq!(
            &sealer.open(&old, b"totp:usr_1").unwrap()[..],
            b"totp secret"
        );
        let new = sealer.seal(b"totp secret", b"totp:usr_1");
        assert!(sealer.is_current(&new));
        assert_eq!(
            &sealer.open(&new, b"totp:usr_1").unwrap()[..],
            b"totp secret"
        );
        assert!(sealer.open(&new, b"totp:usr_2").is_err());
        // Without the master key, only the platform key's seals open.
        let without = PlatformSealer::from_key(SealingKey::from_bytes(&[4u8; 32]).unwrap(), None);
        assert!(without.open(&old, b"totp:usr_1").is_err());
        assert!(without.open(&new, b"totp:usr_1").is_ok());
    }
}
