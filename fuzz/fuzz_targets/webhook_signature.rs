//! The `webhook-signature` header (claim HOOK-1): whatever a receiver or an inbound sender
//! presents, parsing answers without a panic, never more than its bound of signatures, and
//! a signature the parser accepts checks in constant time against a key without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::webhooks::signing::{parse_header, SigningKey, MAX_SIGNATURES};

fuzz_target!(|text: &str| {
    if let Some(signatures) = parse_header(text) {
        assert!(signatures.len() <= MAX_SIGNATURES);
    }
    let key = SigningKey::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let _ = key.verifies(text, "msg_1", 1, b"{}");
    let _ = SigningKey::from_text(text);
});
