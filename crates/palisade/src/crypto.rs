//! The primitives Palisade composes, all from vetted crates (`ring`, RustCrypto): random
//! tokens, SHA-256 digests, constant-time comparison, and the master key that seals
//! secrets at rest (AES-256-GCM with the secret's purpose as associated data).

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source is available");
    bytes
}

/// A bearer secret: 32 random bytes (256 bits), base64url without padding (43 characters).
pub fn random_token() -> SecretString {
    SecretString::from(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// SHA-256 by ring, whose assembly uses the CPU's SHA extensions: it runs on every API-key
/// request (twice), where the portable implementation cost a tenth of the request.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest
        .as_ref()
        .try_into()
        .expect("SHA-256 digests are 32 bytes")
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Creates a new file only its owner may read or write (0600); fails if it exists.
pub fn create_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A key file others may read or write is refused: what it protects is only as safe as it.
pub fn refuse_loose_permissions(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "permissions are {:o}; it must be owner-only (chmod 600)",
                mode & 0o777
            ));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret failed to open: wrong master key, or the stored bytes were altered")]
pub struct Unsealable;

/// An AES-256-GCM key that seals what is stored in the database: the master key of
/// Palisade's own signing keys and TOTP secrets (a file outside the database, so a copy of
/// the database alone reveals nothing), and the vault's KEKs and tenants' data keys.
pub struct SealingKey(LessSafeKey);

impl SealingKey {
    /// Reads the key file, or creates it (0600, 32 random bytes) when it does not exist.
    /// A file others can read is refused, as the data directory is.
    pub fn load_or_create(path: &Path) -> Result<Self, MasterKeyError> {
        let fail = |reason: String| MasterKeyError::File {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            let key = Zeroizing::new(STANDARD.encode(random_bytes::<32>()));
            match create_owner_only(path) {
                Ok(mut file) => {
                    file.write_all(key.as_bytes())
                        .and_then(|_| file.sync_all())
                        .map_err(|e| fail(e.to_string()))?;
                }
                // Another process created it first: read theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        refuse_loose_permissions(path).map_err(fail)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| fail("not base64".into()))?,
        );
        Self::from_bytes(&bytes).ok_or_else(|| fail("must hold exactly 32 bytes, base64".into()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 32 {
            return None;
        }
        UnboundKey::new(&AES_256_GCM, bytes)
            .ok()
            .map(|key| Self(LessSafeKey::new(key)))
    }

    /// `nonce || ciphertext || tag`. `purpose` (say `b"totp:usr_…"`) binds the ciphertext to
    /// its place: a sealed value copied to another row does not open there.
    pub fn seal(&self, plaintext: &[u8], purpose: &[u8]) -> Vec<u8> {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut buffer = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(purpose),
                &mut buffer,
            )
            .expect("AES-GCM sealing of a small buffer cannot fail");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&buffer);
        buffer.fill(0);
        sealed
    }

    pub fn open(&self, sealed: &[u8], purpose: &[u8]) -> Result<Zeroizing<Vec<u8>>, Unsealable> {
        if sealed.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plaintext_len = self
            .0
            .open_in_place(nonce, Aad::from(purpose), &mut buffer)
            .map_err(|_| Unsealable)?
            .len();
        buffer.truncate(plaintext_len);
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_purpose() {
        let key = SealingKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal(b"signing key", b"purpose-a");
        assert!(!sealed.windows(11).any(|w| w == b"signing key"));
        assert_eq!(
            &key.open(&sealed, b"purpose-a").unwrap()[..],
            b"signing key"
        );
        assert!(key.open(&sealed, b"purpose-b").is_err());
        let other = SealingKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open(&sealed, b"purpose-a").is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(&tampered, b"purpose-a").is_err());
    }

    #[test]
    fn the_key_file_is_created_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = SealingKey::load_or_create(&path).unwrap();
        let sealed = first.seal(b"x", b"p");
        let second = SealingKey::load_or_create(&path).unwrap();
        assert_eq!(&second.open(&sealed, b"p").unwrap()[..], b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(SealingKey::load_or_create(&path).is_err());
        }
    }

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        use secrecy::ExposeSecret;
        let a = random_token();
        let b = random_token();
        assert_eq!(a.expose_secret().len(), 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
