//! The vault's key hierarchy (claim SEC-1): key-encryption keys (KEKs) held outside the
//! database behind [`KeyProvider`], each with a version; per-tenant data keys (DEKs) made
//! on first use and stored only wrapped by a KEK, the wrap bound to the tenant and the KEK's
//! version; values sealed by their tenant's DEK, bound to tenant, secret and version. A
//! ciphertext moved to another row, tenant or version does not open.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::kek::KeyProvider;
use crate::crypto::{random_bytes, SealingKey, Unsealable};
use crate::ids::{SecretId, SigningSecretId, TenantId};

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
    keks: Arc<dyn KeyProvider>,
    /// When the KEKs were last re-read for a version this instance did not hold (unix
    /// seconds): at most once a second, so a forged version cannot make every request read
    /// the file.
    reloaded_for_unknown: AtomicI64,
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

/// What a sealed value is bound to, besides its tenant: it opens only as the same one.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    /// A version of one of the tenant's secrets.
    Secret { secret: SecretId, version: u32 },
    /// A webhook endpoint's signing secret.
    SigningSecret(SigningSecretId),
}

impl Bound {
    fn purpose(self, tenant: TenantId) -> Vec<u8> {
        match self {
            Bound::Secret { secret, version } => format!(
                "palisade/secret/{}/{}/{version}",
                tenant.as_uuid(),
                secret.as_uuid()
            ),
            Bound::SigningSecret(id) => format!(
                "palisade/webhook-secret/{}/{}",
                tenant.as_uuid(),
                id.as_uuid()
            ),
        }
        .into_bytes()
    }
}

impl Vault {
    pub fn new(keks: Arc<dyn KeyProvider>) -> Self {
        Self {
            keks,
            reloaded_for_unknown: AtomicI64::new(0),
        }
    }

    pub fn keks(&self) -> &dyn KeyProvider {
        &*self.keks
    }

    /// KEK `version`, re-reading the source once when this instance does not hold it (a
    /// rotation another process made).
    fn kek(&self, version: u32) -> Result<Arc<SealingKey>, VaultError> {
        if let Some(kek) = self.keks.version(version) {
            return Ok(kek);
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if self.reloaded_for_unknown.swap(now, Ordering::Relaxed) != now {
            if let Err(error) = self.keks.reload() {
                tracing::warn!(%error, "re-reading the vault's KEKs failed");
            }
        }
        self.keks.version(version).ok_or(VaultError::Unsealable)
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
        let kek = self.kek(stored.kek_version)?;
        Ok(kek.open(
            &stored.wrapped,
            &dek_purpose(tenant, stored.version, stored.kek_version),
        )?)
    }

    /// The data key itself, for a holder that keeps it in memory (the platform's).
    pub fn unwrap_key(
        &self,
        tenant: TenantId,
        stored: &WrappedKey,
    ) -> Result<SealingKey, VaultError> {
        self.data_key(tenant, stored)
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

    /// `value` sealed by `tenant`'s DEK, bound to what it is.
    pub fn seal(
        &self,
        tenant: TenantId,
        dek: &WrappedKey,
        bound: Bound,
        value: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let key = self.data_key(tenant, dek)?;
        Ok(key.seal(value, &bound.purpose(tenant)))
    }

    pub fn open(
        &self,
        tenant: TenantId,
        dek: &WrappedKey,
        bound: Bound,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key = self.data_key(tenant, dek)?;
        Ok(key.open(sealed, &bound.purpose(tenant))?)
    }

    /// A value `old` sealed, sealed again by `new` (the tenant's newer DEK, SEC-2) bound to
    /// the same thing; the plaintext lives only in a zeroized buffer between the two.
    pub fn resealed(
        &self,
        tenant: TenantId,
        bound: Bound,
        old: &WrappedKey,
        new: &WrappedKey,
        sealed: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let plaintext = self.open(tenant, old, bound, sealed)?;
        self.seal(tenant, new, bound, &plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    use crate::vault::kek::FileOrSetting;

    fn vault_of(text: &str) -> Vault {
        Vault::new(Arc::new(FileOrSetting::parse(text).unwrap()))
    }

    const KEK_1: &str = "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    // claim: SEC-1
    #[test]
    fn a_value_opens_only_in_its_own_tenant_secret_and_version() {
        let vault = vault_of(KEK_1);
        let (tenant, other_tenant) = (TenantId::generate(), TenantId::generate());
        let (secret, other_secret) = (SecretId::generate(), SecretId::generate());
        let dek = vault.new_data_key(tenant, 1);
        let sealed = vault
            .seal(
                tenant,
                &dek,
                Bound::Secret { secret, version: 1 },
                b"xoxb-token",
            )
            .unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"xoxb-token"));
        assert_eq!(
            &vault
                .open(tenant, &dek, Bound::Secret { secret, version: 1 }, &sealed)
                .unwrap()[..],
            b"xoxb-token"
        );
        assert!(vault
            .open(
                tenant,
                &dek,
                Bound::Secret {
                    secret: other_secret,
                    version: 1
                },
                &sealed
            )
            .is_err());
        assert!(vault
            .open(tenant, &dek, Bound::Secret { secret, version: 2 }, &sealed)
            .is_err());
        // Another tenant's DEK, or this DEK's wrap presented as another tenant's.
        let theirs = vault.new_data_key(other_tenant, 1);
        assert!(vault
            .open(
                tenant,
                &theirs,
                Bound::Secret { secret, version: 1 },
                &sealed
            )
            .is_err());
        assert!(vault
            .open(
                other_tenant,
                &dek,
                Bound::Secret { secret, version: 1 },
                &sealed
            )
            .is_err());
        // A wrap claimed by another KEK version does not open.
        let relabelled = WrappedKey {
            kek_version: 2,
            ..dek.clone()
        };
        assert!(vault
            .open(
                tenant,
                &relabelled,
                Bound::Secret { secret, version: 1 },
                &sealed
            )
            .is_err());
        let renumbered = WrappedKey {
            version: 2,
            ..dek.clone()
        };
        assert!(vault
            .open(
                tenant,
                &renumbered,
                Bound::Secret { secret, version: 1 },
                &sealed
            )
            .is_err());
    }

    // claim: SEC-1
    #[test]
    fn the_newest_kek_wraps_and_older_ones_still_unwrap() {
        let old = vault_of(KEK_1);
        let tenant = TenantId::generate();
        let secret = SecretId::generate();
        let dek = old.new_data_key(tenant, 1);
        let sealed = old
            .seal(tenant, &dek, Bound::Secret { secret, version: 1 }, b"value")
            .unwrap();
        let both = vault_of(&format!("{KEK_1}\n2:{}", STANDARD.encode([9u8; 32])));
        assert_eq!(both.new_data_key(tenant, 2).kek_version, 2);
        assert_eq!(
            &both
                .open(tenant, &dek, Bound::Secret { secret, version: 1 }, &sealed)
                .unwrap()[..],
            b"value"
        );
        // Re-wrapped under version 2, the same DEK opens what it sealed.
        let rewrapped = both.rewrapped(tenant, &dek).unwrap();
        assert_eq!((rewrapped.version, rewrapped.kek_version), (1, 2));
        assert_eq!(
            &both
                .open(
                    tenant,
                    &rewrapped,
                    Bound::Secret { secret, version: 1 },
                    &sealed
                )
                .unwrap()[..],
            b"value"
        );
    }

    // claim: SEC-2
    #[test]
    fn a_value_sealed_again_under_a_newer_data_key_opens_only_under_it_and_as_itself() {
        let vault = vault_of(KEK_1);
        let tenant = TenantId::generate();
        let bound = Bound::Secret {
            secret: SecretId::generate(),
            version: 3,
        };
        let (old, new) = (vault.new_data_key(tenant, 1), vault.new_data_key(tenant, 2));
        let sealed = vault.seal(tenant, &old, bound, b"xoxb-token").unwrap();
        let again = vault.resealed(tenant, bound, &old, &new, &sealed).unwrap();
        assert_eq!(
            &vault.open(tenant, &new, bound, &again).unwrap()[..],
            b"xoxb-token"
        );
        assert!(vault.open(tenant, &old, bound, &again).is_err());
        let elsewhere = Bound::SigningSecret(SigningSecretId::generate());
        assert!(vault.open(tenant, &new, elsewhere, &again).is_err());
        // A value the old key did not seal, or sealed as something else, is not re-sealed.
        assert!(vault
            .resealed(tenant, elsewhere, &old, &new, &sealed)
            .is_err());
        assert!(vault.resealed(tenant, bound, &new, &old, &sealed).is_err());
    }
}
