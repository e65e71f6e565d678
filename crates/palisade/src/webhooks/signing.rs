//! The Standard Webhooks signature (claim HOOK-1): `webhook-signature` is one or more
//! space-separated `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the
//! endpoint's secret (`whsec_` + base64 of its bytes). A receiver verifies with any
//! Standard Webhooks library; while a rotation overlaps, every live secret signs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::hmac;
use zeroize::Zeroizing;

/// The text before a secret's base64.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a new secret (the Standard Webhooks guidance: 24 to 64).
const SECRET_BYTES: usize = 32;
/// A `webhook-signature` header names at most this many signatures; more is refused.
pub const MAX_SIGNATURES: usize = 8;

/// An endpoint's signing secret: its bytes, zeroed when dropped.
pub struct SigningKey(Zeroizing<Vec<u8>>);

impl SigningKey {
    pub fn generate() -> Self {
        Self(Zeroizing::new(
            crate::crypto::random_bytes::<SECRET_BYTES>().to_vec(),
        ))
    }

    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_…`: the text a receiver configures, shown once when made.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0[..])))
    }

    /// A secret as a receiver holds it; None unless `whsec_` and base64 of 24 to 64 bytes.
    pub fn from_text(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text.strip_prefix(SECRET_PREFIX)?).ok()?;
        (24..=64)
            .contains(&bytes.len())
            .then(|| Self(Zeroizing::new(bytes)))
    }

    /// The raw signature of one message.
    fn sign_raw(&self, id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut context = hmac::Context::with_key(&key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        context.sign()
    }

    /// `v1,<base64>`: this secret's entry of the header.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            STANDARD.encode(self.sign_raw(id, timestamp, body).as_ref())
        )
    }

    /// Whether a `webhook-signature` header holds a valid `v1` signature by this secret
    /// (compared in constant time). A malformed header holds none.
    pub fn verifies(&self, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
        let expected = self.sign_raw(id, timestamp, body);
        parse_header(header).is_some_and(|signatures| {
            signatures
                .iter()
                .any(|signature| crate::crypto::constant_time_eq(signature, expected.as_ref()))
        })
    }
}

/// The header of a message signed by every live secret.
pub fn header(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| key.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `v1` signatures of a `webhook-signature` header, decoded; entries of other versions
/// are skipped (a receiver ignores what it does not know). None for a header that is not
/// space-separated `version,base64` entries, or that has more than [`MAX_SIGNATURES`].
pub fn parse_header(header: &str) -> Option<Vec<Vec<u8>>> {
    let mut signatures = Vec::new();
    for (n, entry) in header.split(' ').filter(|e| !e.is_empty()).enumerate() {
        if n >= MAX_SIGNATURES {
            return None;
        }
        let (version, signature) = entry.split_once(',')?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let decoded = STANDARD.decode(signature).ok()?;
        if version == "v1" {
            signatures.push(decoded);
        }
    }
    Some(signatures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // claim: HOOK-1
    #[test]
    fn the_standard_webhooks_test_vector_signs_as_published() {
        // The specification's example: secret, id, timestamp and body, and its signature.
        let key = SigningKey::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signed = key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(key.verifies(&signed, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body));
        assert!(!key.verifies(&signed, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body));
        assert!(!key.verifies(&signed, "msg_other", 1614265330, body));
    }

    // claim: HOOK-1
    #[test]
    fn during_a_rotation_both_secrets_sign_in_one_header() {
        let (old, new) = (SigningKey::generate(), SigningKey::generate());
        let keys = [new, old];
        let signed = header(&keys, "msg_1", 1, b"{}");
        assert_eq!(signed.split(' ').count(), 2);
        assert!(keys
            .iter()
            .all(|key| key.verifies(&signed, "msg_1", 1, b"{}")));
        assert!(!SigningKey::generate().verifies(&signed, "msg_1", 1, b"{}"));
    }

    #[test]
    fn secrets_are_whsec_and_base64_of_24_to_64_bytes() {
        let key = SigningKey::generate();
        let text = key.to_text();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningKey::from_text(&text).unwrap().bytes(), key.bytes());
        for bad in [
            "whsec_",
            "whsec_AAAA",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!",
        ] {
            assert!(SigningKey::from_text(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn malformed_headers_hold_no_signature() {
        for bad in ["v1", "v1,!!!", ",abc=", "v 1,AAAA", &"v1,AAAA ".repeat(9)] {
            assert!(parse_header(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            parse_header("v2,AAAA v1,AAAA").unwrap(),
            vec![vec![0, 0, 0]]
        );
    }

    proptest! {
        // claim: HOOK-1
        #[test]
        fn the_header_parser_never_panics_and_round_trips(
            header_text in ".{0,300}",
            signatures in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..8),
        ) {
            let _ = parse_header(&header_text);
            let built = signatures
                .iter()
                .map(|s| format!("v1,{}", STANDARD.encode(s)))
                .collect::<Vec<_>>()
                .join(" ");
            prop_assert_eq!(parse_header(&built).unwrap(), signatures);
        }
    }
}
