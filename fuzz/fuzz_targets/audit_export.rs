//! The offline export verifier (claim AUD-4) reads files from anywhere: arbitrary bytes
//! are refused without a panic, and never verify against a key nobody holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::audit::export::verify_export;
use palisade::audit::signing::PublicKey;

fuzz_target!(|data: &[u8]| {
    let key = PublicKey::from_bytes(&[7u8; 32]).expect("32 bytes make a public key");
    if let Ok(report) = verify_export(data, &key) {
        // Only an export with no signed record at all could pass without the key.
        panic!("arbitrary input verified: {report:?}");
    }
});
