//! The inbound `Stripe-Signature` header (claim HOOK-5): whatever a sender presents,
//! parsing answers without a panic, with at least one and never more than its bound of
//! signatures.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::webhooks::inbound::parse_stripe_header;
use palisade::webhooks::signing::MAX_SIGNATURES;

fuzz_target!(|text: &str| {
    if let Some(header) = parse_stripe_header(text) {
        assert!(!header.signatures.is_empty() && header.signatures.len() <= MAX_SIGNATURES);
    }
});
