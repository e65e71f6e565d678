//! Identity's input types, parsed at the edge: a value of these types is valid by construction.

use secrecy::{ExposeSecret, SecretString};

/// Input that breaks a rule; the message names the field and the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub &'static str);

/// A normalised email address of plausible shape: NFKC, lower-cased, an ASCII local part
/// and the domain in its ASCII (IDNA/UTS-46) form, so look-alikes — fullwidth letters, a
/// Unicode domain beside its `xn--` spelling — are one account, and a local part with a
/// Cyrillic `о` is refused rather than shown as a second `owner@…` (docs/decisions.md).
/// Surrounding spaces are refused rather than trimmed, so the API takes exactly what its
/// schema describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        use unicode_normalization::UnicodeNormalization;
        let invalid = || InvalidInput("email: not a valid email address");
        // Bounded before normalising, which may grow the text.
        if raw.len() > 254 * 4 {
            return Err(invalid());
        }
        let normalised = raw.nfkc().collect::<String>().to_lowercase();
        if normalised
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let (local, domain) = normalised.rsplit_once('@').ok_or_else(invalid)?;
        if !local.is_ascii() {
            return Err(InvalidInput(
                "email: the part before @ must be ASCII (look-alike letters are refused)",
            ));
        }
        let domain = idna::domain_to_ascii(domain).map_err(|_| invalid())?;
        let email = format!("{local}@{domain}");
        if email.len() > 254 {
            return Err(invalid());
        }
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.len() <= 253;
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        // Characters that make an address mean something else to a mail library (a display
        // name, a route, a list) are refused, and the result must be a plain RFC 5321 address.
        let special = |c: char| "<>()[]\\,;:\"".contains(c);
        if email.chars().any(special) || email.parse::<lettre::Address>().is_err() {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The shipped list of common passwords, compiled in (claim ID-2).
static COMMON_PASSWORDS: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| {
        include_str!("../../data/common-passwords.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .collect()
    });

/// How many passwords the shipped list holds; the posture report and tests read it.
pub fn common_password_count() -> usize {
    COMMON_PASSWORDS.len()
}

/// True for a password on the list, ignoring case, or a list entry (or one or two
/// characters) repeated to reach the minimum length, like `passwordpassword`.
fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    if COMMON_PASSWORDS.contains(lower.as_str()) {
        return true;
    }
    let chars: Vec<char> = lower.chars().collect();
    (1..=chars.len() / 2).any(|unit| {
        chars.len().is_multiple_of(unit)
            && chars.chunks(unit).all(|chunk| chunk == &chars[..unit])
            && (unit <= 2
                || COMMON_PASSWORDS.contains(chars[..unit].iter().collect::<String>().as_str()))
    })
}

/// A new password that meets the policy (claim ID-2: length bounds, not a common password,
/// no composition rules).
pub struct NewPassword(SecretString);

impl NewPassword {
    pub const MIN_CHARS: usize = 12;
    /// Bounded so nobody can make us hash megabytes.
    pub const MAX_CHARS: usize = 128;

    /// Judges the NFKC form, the one that is hashed (`identity::password`).
    pub fn parse(raw: SecretString) -> Result<Self, InvalidInput> {
        use unicode_normalization::UnicodeNormalization;
        if raw.expose_secret().len() > Self::MAX_CHARS * 4 {
            return Err(InvalidInput("password: must be at most 128 characters"));
        }
        let normalised = SecretString::from(raw.expose_secret().nfkc().collect::<String>());
        let length = normalised.expose_secret().chars().count();
        if length < Self::MIN_CHARS {
            return Err(InvalidInput("password: must be at least 12 characters"));
        }
        if length > Self::MAX_CHARS {
            return Err(InvalidInput("password: must be at most 128 characters"));
        }
        if is_common(normalised.expose_secret()) {
            return Err(InvalidInput(
                "password: too common; choose a longer or less predictable passphrase",
            ));
        }
        Ok(Self(raw))
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// A name people give something (a tenant, an application, a key, a custom role):
/// 1 to `max` characters, no control characters, no surrounding spaces (the pattern the
/// OpenAPI document gives these fields); `problem` names the field and the rule.
pub fn display_name<'a>(
    raw: &'a str,
    max: usize,
    problem: &'static str,
) -> Result<&'a str, InvalidInput> {
    let length = raw.chars().count();
    if length == 0 || length > max || raw.trim() != raw || raw.chars().any(char::is_control) {
        return Err(InvalidInput(problem));
    }
    Ok(raw)
}

/// An optional description for the people who manage something (a secret, a webhook
/// endpoint): absent or empty is none, else a display name of up to 500 characters.
pub fn description(raw: Option<&str>) -> Result<String, InvalidInput> {
    match raw {
        None | Some("") => Ok(String::new()),
        Some(text) => Ok(display_name(
            text,
            500,
            "description: up to 500 characters, no control characters or surrounding spaces",
        )?
        .to_owned()),
    }
}

/// A tenant's display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let name = display_name(
            raw,
            100,
            "tenant_name: 1 to 100 characters, no control characters or surrounding spaces",
        )?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_malformed_ones_refused() {
        assert_eq!(
            Email::parse("Ada@Example.COM").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            " ada@example.com",
            "ada@example.com\t",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@.com",
            "ada@example..com",
            "a da@example.com",
            "ada@exa\u{0}mple.com",
            "x<attacker@evil.com>@example.com",
            "\"a,b\"@example.com",
            "a;b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    // claim: ID-2
    #[test]
    fn passwords_are_bounded_in_length_without_composition_rules() {
        let parse = |s: &str| NewPassword::parse(SecretString::from(s.to_owned()));
        assert!(parse("short").is_err());
        assert!(parse("elevenchars").is_err());
        assert!(parse("twelve chars").is_ok());
        assert!(parse("alllowercaseletters").is_ok());
        let accented: String = (0..128u32)
            .map(|i| char::from_u32(0xe0 + i % 21).unwrap())
            .collect();
        assert!(parse(&accented).is_ok(), "128 characters, multi-byte");
        assert!(parse(&"x".repeat(129)).is_err());
    }

    // claim: ID-2
    #[test]
    fn common_passwords_and_repetitions_of_them_are_refused() {
        assert!(common_password_count() >= 10_000);
        let parse = |s: &str| NewPassword::parse(SecretString::from(s.to_owned()));
        for common in [
            "qwerty123456",
            "1qaz2wsx3edc",
            "QWERTY123456",
            "passwordpassword",
            "aaaaaaaaaaaaaaa",
            "abababababab",
            "dragondragondragon",
        ] {
            assert!(parse(common).is_err(), "{common}");
        }
        assert!(parse("correct horse battery staple").is_ok());
    }

    #[test]
    fn tenant_names_are_bounded_and_never_padded() {
        assert_eq!(TenantName::parse("Acme Inc").unwrap().as_str(), "Acme Inc");
        assert!(TenantName::parse(" Acme ").is_err());
        assert!(TenantName::parse("\u{3000}Acme").is_err());
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse(&"x".repeat(101)).is_err());
        assert!(TenantName::parse("a\nb").is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const ATEXT: &str =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~";

        fn from(
            alphabet: &'static str,
            size: std::ops::RangeInclusive<usize>,
        ) -> impl Strategy<Value = String> {
            let chars: Vec<char> = alphabet.chars().collect();
            proptest::collection::vec(proptest::sample::select(chars), size)
                .prop_map(|chars| chars.into_iter().collect())
        }

        fn label() -> impl Strategy<Value = String> {
            (
                from("abcdefghijklmnopqrstuvwxyz0123456789", 1..=1),
                from("abcdefghijklmnopqrstuvwxyz0123456789-", 0..=20),
            )
                .prop_map(|(first, rest)| format!("{first}{}", rest.trim_end_matches('-')))
        }

        proptest! {
            /// The addresses the OpenAPI document's `format: email` admits in practice (as
            /// schema-driven clients generate them: dot-atom local part of at most 64
            /// characters, host names of letters, digits and hyphens) are all accepted.
            #[test]
            fn every_plain_address_is_accepted(
                local in from(ATEXT, 1..=64),
                dots in proptest::collection::vec(0usize..64, 0..3),
                labels in proptest::collection::vec(label(), 2..4),
            ) {
                let mut local: Vec<char> = local.chars().collect();
                for at in dots {
                    if at > 0 && at + 1 < local.len() && local[at - 1] != '.' && local[at + 1] != '.' {
                        local[at] = '.';
                    }
                }
                let local: String = local.into_iter().collect();
                let address = format!("{local}@{}", labels.join("."));
                prop_assume!(address.len() <= 254);
                let parsed = Email::parse(&address);
                prop_assert!(parsed.is_ok(), "{:?} refused", address);
                let email = parsed.unwrap();
                prop_assert_eq!(email.as_str(), address.to_lowercase());
            }

            /// Arbitrary text never panics the parser, and what it accepts has no spaces,
            /// controls or the characters that give an address another meaning.
            #[test]
            fn whatever_is_accepted_is_plain(text in proptest::collection::vec(any::<char>(), 0..80)) {
                let text: String = text.into_iter().collect();
                if let Ok(email) = Email::parse(&text) {
                    prop_assert!(!email.as_str().chars().any(|c| c.is_whitespace() || c.is_control()));
                    prop_assert!(!email.as_str().chars().any(|c| "<>()[]\\,;:\"".contains(c)));
                }
            }
        }
    }
}
