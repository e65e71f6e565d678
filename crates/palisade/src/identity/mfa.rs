//! TOTP multi-factor authentication (claim ID-12, RFC 6238 with RFC 4226's truncation):
//! enrolment with a sealed secret, confirmation with a code, ten hashed single-use
//! recovery codes, refusal of a code replayed within its window, and the tenant setting
//! that requires a second factor of every member.

use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::service::{Identity, IdentityError, Origin};
use super::sessions::Principal;
use super::store::TotpRecord;
use super::throttle::Scopes;
use crate::crypto::{constant_time_eq, random_bytes, sha256};
use crate::ids::UserId;

/// RFC 6238's defaults, which every authenticator app supports.
const STEP_SECS: i64 = 30;
const DIGITS: u32 = 6;
/// Codes of the previous and next step are accepted too, for clock drift.
const DRIFT_STEPS: i64 = 1;
const RECOVERY_CODES: usize = 10;

/// HOTP (RFC 4226 §5.3): HMAC-SHA-1 of the counter, dynamically truncated to `digits`.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    binary % 10u32.pow(digits)
}

/// The TOTP time step of an instant (RFC 6238 §4, T0 = 0).
pub fn time_step(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(STEP_SECS)
}

/// The step whose code `code` is, within the drift window; compared in constant time.
fn matching_step(secret: &[u8], code: &str, now: OffsetDateTime) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = time_step(now);
    let mut found = None;
    for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
        let expected = format!(
            "{:0width$}",
            hotp(secret, step as u64, DIGITS),
            width = DIGITS as usize
        );
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding: the form authenticator apps take secrets in.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u64, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u64::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986) and `@`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A recovery code as typed: case, spaces and dashes do not matter.
fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn new_recovery_code() -> String {
    // 80 random bits: too many to guess, and to brute-force from a leaked SHA-256.
    let raw = base32(&random_bytes::<10>());
    raw.as_bytes()
        .chunks(4)
        .map(|chunk| std::str::from_utf8(chunk).expect("base32 is ASCII"))
        .collect::<Vec<_>>()
        .join("-")
}

pub(super) fn seal_purpose(user: UserId) -> Vec<u8> {
    format!("totp:{user}").into_bytes()
}

/// A started enrolment: the secret to show once, and the URI for a QR code.
pub struct Enrolment {
    pub secret: SecretString,
    pub otpauth_uri: SecretString,
}

impl Identity {
    /// Whether the person has a confirmed TOTP authenticator (their export says so).
    pub async fn totp_enrolled(&self, principal: &Principal) -> Result<bool, IdentityError> {
        let factor = self.store.totp_factor(principal.user).await?;
        Ok(factor.is_some_and(|f| f.confirmed))
    }

    /// Starts enrolment. The current password is asked again: a stolen access token alone
    /// must not be able to bind the attacker's authenticator to the account.
    pub async fn enrol_totp(
        &self,
        principal: &Principal,
        password: SecretString,
        origin: &Origin,
    ) -> Result<Enrolment, IdentityError> {
        let attempt = self.check_password(principal, password, origin).await?;
        let outcome = self.start_enrolment(principal, origin).await;
        self.settle(&attempt, &outcome, false).await;
        outcome
    }

    async fn start_enrolment(
        &self,
        principal: &Principal,
        origin: &Origin,
    ) -> Result<Enrolment, IdentityError> {
        let secret = zeroize::Zeroizing::new(random_bytes::<20>());
        let sealed = self.sealer.seal(&secret[..], &seal_purpose(principal.user));
        let now = self.now();
        let event = origin
            .event("mfa.totp_enrolment_started", "success", now)
            .in_tenant(principal.tenant)
            .by(principal)
            .on("user", principal.user);
        if !self
            .store
            .begin_totp(principal.user, &sealed, now, &event)
            .await?
        {
            return Err(IdentityError::Conflict(
                "two-factor authentication is already on; disable it first",
            ));
        }
        let encoded = base32(&secret[..]);
        let issuer = percent_encode(&self.settings.issuer);
        let uri = format!(
            "otpauth://totp/{issuer}:{}?secret={encoded}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            percent_encode(&principal.email),
        );
        Ok(Enrolment {
            secret: SecretString::from(encoded),
            otpauth_uri: SecretString::from(uri),
        })
    }

    /// Confirms an enrolment with a code; returns the recovery codes, shown once.
    pub async fn confirm_totp(
        &self,
        principal: &Principal,
        code: &SecretString,
        origin: &Origin,
    ) -> Result<Vec<SecretString>, IdentityError> {
        let factor = self
            .store
            .totp_factor(principal.user)
            .await?
            .filter(|f| !f.confirmed)
            .ok_or(IdentityError::Conflict(
                "no enrolment is waiting for confirmation",
            ))?;
        let now = self.now();
        let step = self.checked_code(principal, &factor, code, origin).await?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes: Vec<[u8; 32]> = codes
            .iter()
            .map(|c| sha256(normalise_recovery_code(c).as_bytes()))
            .collect();
        let event = origin
            .event("mfa.totp_enabled", "success", now)
            .in_tenant(principal.tenant)
            .by(principal)
            .on("user", principal.user);
        if !self
            .store
            .confirm_totp(principal.user, principal.session, step, &hashes, &event)
            .await?
        {
            return Err(IdentityError::InvalidCode);
        }
        self.principals.changed();
        Ok(codes.into_iter().map(SecretString::from).collect())
    }

    /// Turns TOTP off; needs a fresh code (not one already used).
    pub async fn disable_totp(
        &self,
        principal: &Principal,
        code: &SecretString,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        let factor = self
            .store
            .totp_factor(principal.user)
            .await?
            .filter(|f| f.confirmed)
            .ok_or(IdentityError::Conflict(
                "two-factor authentication is not on",
            ))?;
        let now = self.now();
        let step = self.checked_code(principal, &factor, code, origin).await?;
        if !self.store.spend_totp_step(principal.user, step).await? {
            return Err(IdentityError::InvalidCode);
        }
        let event = origin
            .event("mfa.totp_disabled", "success", now)
            .in_tenant(principal.tenant)
            .by(principal)
            .on("user", principal.user);
        self.store.remove_totp(principal.user, &event).await?;
        self.principals.changed();
        Ok(())
    }

    /// A code typed by a signed-in user (confirming or removing TOTP), limited per user like
    /// sign-in codes; returns its time step.
    async fn checked_code(
        &self,
        principal: &Principal,
        factor: &TotpRecord,
        code: &SecretString,
        origin: &Origin,
    ) -> Result<i64, IdentityError> {
        let attempt = self
            .admit(&Scopes::second_factor(principal.user, origin.ip))
            .await?;
        let outcome = match self.code_step(principal.user, factor, code, self.now())? {
            Some(step) => Ok(step),
            None => {
                let event = origin
                    .event("mfa.code_rejected", "failure", self.now())
                    .in_tenant(principal.tenant)
                    .by(principal)
                    .on("user", principal.user);
                self.failed(&attempt, event).await;
                Err(IdentityError::InvalidCode)
            }
        };
        self.settle(&attempt, &outcome, false).await;
        outcome
    }

    /// Checks a sign-in's second factor: a TOTP code not used before, or an unused
    /// recovery code, which is spent.
    pub(super) async fn second_factor(
        &self,
        user: UserId,
        factor: &TotpRecord,
        totp: Option<SecretString>,
        recovery_code: Option<SecretString>,
    ) -> Result<bool, IdentityError> {
        let now = self.now();
        if let Some(code) = totp {
            return Ok(match self.code_step(user, factor, &code, now)? {
                Some(step) => self.store.spend_totp_step(user, step).await?,
                None => false,
            });
        }
        if let Some(code) = recovery_code {
            let normalised = normalise_recovery_code(code.expose_secret());
            if normalised.len() != 16 {
                return Ok(false);
            }
            let hash = sha256(normalised.as_bytes());
            return Ok(self.store.spend_recovery_code(user, &hash, now).await?);
        }
        Ok(false)
    }

    fn code_step(
        &self,
        user: UserId,
        factor: &TotpRecord,
        code: &SecretString,
        now: OffsetDateTime,
    ) -> Result<Option<i64>, IdentityError> {
        let secret = self
            .sealer
            .open(&factor.sealed_secret, &seal_purpose(user))
            .map_err(|e| IdentityError::Store(crate::store::StoreError::Other(Box::new(e))))?;
        Ok(matching_step(&secret, code.expose_secret(), now)
            .filter(|step| *step > factor.last_used_step))
    }

    /// Sets whether the tenant requires MFA of every member. Owners and Admins only, and
    /// only from a session that itself used a second factor, so nobody locks themselves out.
    pub async fn set_tenant_mfa(
        &self,
        principal: &Principal,
        required: bool,
        origin: &Origin,
    ) -> Result<(), IdentityError> {
        if !principal.may(crate::access::actions::Action::TenantUpdateSecurity) {
            return Err(IdentityError::Forbidden(
                "only an Owner or Admin may change the tenant's MFA policy",
            ));
        }
        if required && !principal.mfa {
            return Err(IdentityError::Conflict(
                "sign in with two-factor authentication before requiring it of everyone",
            ));
        }
        let event = origin
            .event(
                "tenant.mfa_policy_changed",
                if required { "required" } else { "optional" },
                self.now(),
            )
            .in_tenant(principal.tenant)
            .by(principal)
            .on("tenant", principal.tenant);
        self.store
            .set_require_mfa(principal.scope(), required, &event)
            .await?;
        self.principals.changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows: the independent reference for our implementation.
    // claim: ID-12
    #[test]
    fn totp_matches_the_rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (unix, expected) in [
            (59i64, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            let at = OffsetDateTime::from_unix_timestamp(unix).unwrap();
            assert_eq!(
                hotp(secret, time_step(at) as u64, 8),
                expected,
                "T = {unix}"
            );
        }
    }

    /// RFC 4226 Appendix D: HOTP values for counters 0..9.
    #[test]
    fn hotp_matches_the_rfc_4226_test_vectors() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, value) in expected.iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), *value);
        }
    }

    #[test]
    fn codes_match_within_one_step_of_drift_only() {
        let secret = b"12345678901234567890";
        let now = OffsetDateTime::from_unix_timestamp(1_111_111_109).unwrap();
        let code = |step: i64| format!("{:06}", hotp(secret, step as u64, 6));
        let current = time_step(now);
        assert_eq!(matching_step(secret, &code(current), now), Some(current));
        assert_eq!(
            matching_step(secret, &code(current - 1), now),
            Some(current - 1)
        );
        assert_eq!(
            matching_step(secret, &code(current + 1), now),
            Some(current + 1)
        );
        assert_eq!(matching_step(secret, &code(current - 2), now), None);
        assert_eq!(matching_step(secret, "12345", now), None);
        assert_eq!(matching_step(secret, "abcdef", now), None);
    }

    #[test]
    fn base32_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), expected);
        }
    }

    #[test]
    fn recovery_codes_carry_80_bits_and_normalise() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(normalise_recovery_code(&code.to_lowercase()).len(), 16);
        assert_ne!(new_recovery_code(), new_recovery_code());
    }
}
