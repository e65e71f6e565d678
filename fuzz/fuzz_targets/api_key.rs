//! API key text (claim KEY-1): whatever is presented, parsing answers without a panic, and
//! an accepted key's shape check agrees with the full parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::keys::secret;

fuzz_target!(|text: &str| {
    let parsed = secret::parse(text);
    if parsed.is_ok() {
        assert!(secret::parse_shape(text).is_ok());
    }
});
