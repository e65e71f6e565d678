//! The checkpoint key (claim AUD-3): an Ed25519 key held outside the database — a PKCS#8
//! PEM file, by default in the data directory — that signs checkpoints, retention anchors
//! and export trailers. Someone who can rewrite the database cannot forge its signatures;
//! the public half is published so a customer verifies an export offline.

use std::path::Path;

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use zeroize::Zeroizing;

use super::chain::Hash;

/// What a signature says, as the bytes that are signed: a domain label, then each part as
/// a 4-byte big-endian length and its bytes (docs/audit.md).
pub struct Statement(Vec<u8>);

impl Statement {
    pub fn new(domain: &str) -> Self {
        let mut statement = Self(Vec::with_capacity(160));
        statement.part(domain.as_bytes());
        statement
    }

    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).expect("statement parts are small");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    pub fn text(&mut self, text: &str) -> &mut Self {
        self.part(text.as_bytes())
    }

    pub fn number(&mut self, value: i64) -> &mut Self {
        self.part(value.to_string().as_bytes())
    }

    /// A checkpoint or anchor: chain `stream`'s event `seq` has `hash`.
    pub fn point(kind: &str, stream: &str, seq: i64, hash: &Hash, signed_at_us: i64) -> Self {
        let mut statement = Self::new("palisade.audit.checkpoint.v1");
        statement
            .text(kind)
            .text(stream)
            .number(seq)
            .part(hash)
            .number(signed_at_us);
        statement
    }
}

pub struct CheckpointKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

#[derive(Debug, thiserror::Error)]
#[error("audit checkpoint key {path}: {reason}")]
pub struct KeyError {
    path: String,
    reason: String,
}

impl CheckpointKey {
    /// Loads the key at `path`, creating it (owner-only) when there is none yet.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let fail = |reason: String| KeyError {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| fail("cannot generate a key".into()))?;
            let body =
                Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(document.as_ref()));
            let pem = Zeroizing::new(format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                body.as_str()
            ));
            write_owner_only(path, pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
        }
        let pem = Zeroizing::new(std::fs::read(path).map_err(|e| fail(e.to_string()))?);
        Self::from_pem(&pem).map_err(|reason| fail(reason.into()))
    }

    /// The key from its PKCS#8 PEM text (as the key file holds it).
    pub fn from_pem(pem: &[u8]) -> Result<Self, &'static str> {
        let der = match rustls_pemfile::private_key(&mut &pem[..]) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(der))) => {
                Zeroizing::new(der.secret_pkcs8_der().to_vec())
            }
            _ => return Err("expected a PKCS#8 PEM private key"),
        };
        // `maybe_unchecked` also reads PKCS#8 v1, which `openssl genpkey` writes.
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| "not an Ed25519 key")?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref())
            .ok_or("unexpected public key length")?;
        Ok(Self { pair, public })
    }

    pub fn sign(&self, statement: &Statement) -> Vec<u8> {
        self.pair.sign(&statement.0).as_ref().to_vec()
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = crate::crypto::create_owner_only(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The published half: verifies signatures; `key_id` names it in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    key_id: String,
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        let digest = crate::crypto::sha256(&bytes);
        Some(Self {
            bytes,
            key_id: hex::encode(&digest[..8]),
        })
    }

    /// The base64url (unpadded) text of the 32 key bytes, as published.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()?;
        Self::from_bytes(&bytes)
    }

    pub fn encoded(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.bytes)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifies(&self, statement: &Statement, key_id: &str, signature: &[u8]) -> bool {
        key_id == self.key_id
            && UnparsedPublicKey::new(&ED25519, &self.bytes)
                .verify(&statement.0, signature)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_owner_only_reloads_and_verifies_only_its_own_statements() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let key = CheckpointKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = CheckpointKey::load_or_create(&path).unwrap();
        assert_eq!(key.public(), again.public());
        let statement = Statement::point("checkpoint", "ten_1", 7, &[1; 32], 99);
        let signature = key.sign(&statement);
        let public = PublicKey::parse(&key.public().encoded()).unwrap();
        assert!(public.verifies(&statement, key.public().key_id(), &signature));
        let other = Statement::point("checkpoint", "ten_1", 8, &[1; 32], 99);
        assert!(!public.verifies(&other, key.public().key_id(), &signature));
        assert!(!public.verifies(&statement, "someone-else", &signature));
    }
}

/// The checkpoint key, lent to work done inside another store's transaction (an erasure
/// signs redactions and anchors as it writes): it signs, and never leaves the process.
#[derive(Clone)]
pub struct LogSigner(pub(super) std::sync::Arc<CheckpointKey>);

impl LogSigner {
    pub fn key_id(&self) -> &str {
        self.0.public().key_id()
    }

    pub(super) fn sign(&self, statement: &Statement) -> Vec<u8> {
        self.0.sign(statement)
    }

    /// A signed checkpoint or anchor: chain `stream`'s event `seq` has `hash`.
    pub fn point(
        &self,
        kind: &str,
        stream: uuid::Uuid,
        seq: i64,
        hash: Hash,
        signed_at_us: i64,
    ) -> super::store::StoredPoint {
        let statement =
            Statement::point(kind, &super::stream_name(stream), seq, &hash, signed_at_us);
        super::store::StoredPoint {
            kind: kind.to_owned(),
            seq,
            hash,
            signed_at_us,
            key_id: self.key_id().to_owned(),
            signature: self.sign(&statement),
        }
    }
}
