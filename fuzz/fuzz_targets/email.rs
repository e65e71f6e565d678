//! Email addresses: never a panic, and an accepted address is plain (no spaces, controls
//! or characters that would give it another meaning to a mail library).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::identity::domain::Email;

fuzz_target!(|text: &str| {
    if let Ok(email) = Email::parse(text) {
        let email = email.as_str();
        assert!(email.len() <= 254);
        assert!(!email.chars().any(|c| c.is_whitespace() || c.is_control()));
        assert!(!email.chars().any(|c| "<>()[]\\,;:\"".contains(c)));
    }
});
