//! The text form of API keys (claim KEY-1) and of the app's service credentials (APP-2):
//!
//! `pal_live_<public id: 32 hex>_<secret: 43 base64url = 256 bits><check: 8 hex>`
//! (`pal_svc_…` for a service credential, `pal_tt_…` for a tenant token)
//!
//! The fixed prefix lets secret scanners match a leaked key; the public id finds the key
//! without revealing anything; the check (the first 32 bits of SHA-256 over everything
//! before it) catches a mistyped or truncated key before any lookup. Only SHA-256 of the
//! whole key is stored: the secret has 256 bits of entropy, so a fast hash is enough and a
//! password hash would only slow every request.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::crypto;
use crate::ids::ApiKeyId;

const ID_LEN: usize = 32;
const SECRET_LEN: usize = 43;
const CHECK_LEN: usize = 8;

/// One family of credentials in this text form, told apart by its prefix.
pub struct Format {
    pub prefix: &'static str,
}

/// Customers' API keys.
pub const API_KEY: Format = Format {
    prefix: "pal_live_",
};
/// The app's service credentials, for the integration endpoints only.
pub const SERVICE: Format = Format { prefix: "pal_svc_" };
/// The five-minute tenant tokens a service credential obtains (claim APP-8).
pub const TENANT_TOKEN: Format = Format { prefix: "pal_tt_" };

pub const PREFIX: &str = API_KEY.prefix;
/// Every key has exactly this many characters.
pub const KEY_LEN: usize = API_KEY.text_len();

impl Format {
    /// Every credential of the family has exactly this many characters.
    pub const fn text_len(&self) -> usize {
        self.prefix.len() + ID_LEN + 1 + SECRET_LEN + CHECK_LEN
    }

    /// Whether `text` claims to be of this family.
    pub fn looks_like(&self, text: &str) -> bool {
        text.starts_with(self.prefix)
    }

    /// A new credential for `id`: its text, shown once, and the hash to store.
    pub fn issue(&self, id: uuid::Uuid) -> (SecretString, [u8; 32]) {
        let secret = crypto::base64url(&crypto::random_bytes::<32>());
        let mut text = format!("{}{}_{secret}", self.prefix, id.simple());
        let check = checksum(&text);
        text.push_str(&check);
        let hash = crypto::sha256(text.as_bytes());
        (SecretString::from(text), hash)
    }

    /// Checks the shape and the checksum; hashes the text for the lookup.
    pub fn parse(&self, text: &str) -> Result<(uuid::Uuid, [u8; 32]), MalformedKey> {
        let parsed = self.parse_shape(text)?;
        if !checksum_matches(text) {
            return Err(MalformedKey);
        }
        Ok(parsed)
    }

    /// Checks the shape only and hashes the text (see [`parse_shape`]).
    pub fn parse_shape(&self, text: &str) -> Result<(uuid::Uuid, [u8; 32]), MalformedKey> {
        let bytes = text.as_bytes();
        if bytes.len() != self.text_len() || !text.is_ascii() || !text.starts_with(self.prefix) {
            return Err(MalformedKey);
        }
        let id_end = self.prefix.len() + ID_LEN;
        let secret_end = id_end + 1 + SECRET_LEN;
        let id_hex = &text[self.prefix.len()..id_end];
        let secret = &text[id_end + 1..secret_end];
        let check = &text[secret_end..];
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let base64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if bytes[id_end] != b'_' || !lower_hex(id_hex) || !base64url(secret) || !lower_hex(check) {
            return Err(MalformedKey);
        }
        let id = uuid::Uuid::try_parse(id_hex).map_err(|_| MalformedKey)?;
        Ok((id, crypto::sha256(bytes)))
    }
}

/// A key as a client presented it: well-formed, its check correct, its secret not yet
/// verified. Holds the hash only.
pub struct PresentedKey {
    pub id: ApiKeyId,
    pub hash: [u8; 32],
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a well-formed API key")]
pub struct MalformedKey;

/// Whether `text` claims to be an API key (so `Authorization: Bearer pal_…` is one).
pub fn looks_like_key(text: &str) -> bool {
    API_KEY.looks_like(text)
}

/// A new key for `id`: its text, shown once, and the hash to store.
pub fn issue(id: ApiKeyId) -> (SecretString, [u8; 32]) {
    API_KEY.issue(id.as_uuid())
}

/// Checks the shape and the checksum; hashes the key for the lookup.
pub fn parse(text: &str) -> Result<PresentedKey, MalformedKey> {
    API_KEY.parse(text).map(presented)
}

/// Checks the shape only and hashes the key. A caller that finds the hash among issued keys
/// knows the checksum is right (it was right when issued); any other must still call
/// [`checksum_matches`] before looking the key up.
pub fn parse_shape(text: &str) -> Result<PresentedKey, MalformedKey> {
    API_KEY.parse_shape(text).map(presented)
}

fn presented((id, hash): (uuid::Uuid, [u8; 32])) -> PresentedKey {
    PresentedKey {
        id: ApiKeyId::from_uuid(id),
        hash,
    }
}

/// Whether a well-shaped key's last 8 characters are the check of the rest.
pub fn checksum_matches(text: &str) -> bool {
    let Some(split) = text.len().checked_sub(CHECK_LEN) else {
        return false;
    };
    let (Some(body), Some(check)) = (text.get(..split), text.get(split..)) else {
        return false;
    };
    let digest = crypto::sha256(body.as_bytes());
    let mut expected = [0u8; CHECK_LEN];
    for (pair, byte) in expected.chunks_exact_mut(2).zip(&digest) {
        pair.copy_from_slice(&HEX[usize::from(*byte)]);
    }
    crypto::constant_time_eq(&expected, check.as_bytes())
}

/// The stored hash of a key text the server issued (for tests and rotation).
pub fn hash_of(key: &SecretString) -> [u8; 32] {
    crypto::sha256(key.expose_secret().as_bytes())
}

fn checksum(body: &str) -> String {
    let digest = crypto::sha256(body.as_bytes());
    digest[..CHECK_LEN / 2]
        .iter()
        .flat_map(|b| HEX[usize::from(*b)])
        .map(char::from)
        .collect()
}

/// Lowercase hex of every byte, so parsing a key allocates nothing.
const HEX: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    proptest! {
        // claim: KEY-1
        #[test]
        fn any_one_character_typo_is_refused_before_a_lookup(
            position in 0..KEY_LEN,
            replacement in proptest::char::range('!', '~'),
        ) {
            let (key, _) = issue(ApiKeyId::generate());
            let text = key.expose_secret();
            prop_assume!(text.as_bytes()[position] != replacement as u8);
            let mut typo = text.to_owned();
            typo.replace_range(position..position + 1, &replacement.to_string());
            prop_assert!(parse(&typo).is_err(), "{typo} was accepted");
        }

        #[test]
        fn arbitrary_text_is_refused_without_panicking(
            text in proptest::collection::vec(any::<char>(), 0..120),
        ) {
            let text: String = text.into_iter().collect();
            prop_assert!(parse(&text).is_err());
            let _ = looks_like_key(&text);
        }
    }

    // claim: KEY-1
    #[test]
    fn an_issued_key_parses_back_to_its_id_and_hash() {
        let id = ApiKeyId::generate();
        let (key, hash) = issue(id);
        let text = key.expose_secret();
        assert_eq!(text.len(), KEY_LEN);
        assert!(text.starts_with("pal_live_"));
        let presented = parse(text).unwrap();
        assert_eq!(presented.id, id);
        assert_eq!(presented.hash, hash);
        assert_eq!(hash_of(&key), hash);
    }

    // claim: KEY-1
    #[test]
    fn a_mistyped_truncated_or_foreign_key_is_refused_before_any_lookup() {
        let (key, _) = issue(ApiKeyId::generate());
        let text = key.expose_secret();
        for position in [PREFIX.len(), PREFIX.len() + ID_LEN + 5, KEY_LEN - 1] {
            let mut typo = text.as_bytes().to_vec();
            typo[position] = if typo[position] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(typo).unwrap();
            assert_eq!(
                parse(&typo).unwrap_err(),
                MalformedKey,
                "typo at {position}"
            );
        }
        assert!(parse(&text[..KEY_LEN - 1]).is_err());
        assert!(parse(&format!("{text}x")).is_err());
        assert!(parse(&text.replace("pal_live_", "pal_test_")).is_err());
        assert!(parse("").is_err());
        // Multi-byte text of the right length must not panic on a char boundary.
        assert!(parse(&format!(
            "{PREFIX}{}",
            "é".repeat((KEY_LEN - PREFIX.len()) / 2)
        ))
        .is_err());
    }

    #[test]
    fn the_debug_form_never_shows_the_hash() {
        let (key, _) = issue(ApiKeyId::generate());
        let presented = parse(key.expose_secret()).unwrap();
        let shown = format!("{presented:?}");
        assert!(!shown.contains("hash"), "{shown}");
    }
}
