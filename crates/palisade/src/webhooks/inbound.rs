//! Webhooks in (claim HOOK-5): the operator's configured sources — a Standard Webhooks
//! sender, or a Stripe-style `t=…,v1=…` one — verified against the raw body, inside a
//! five-minute tolerance, then handed on to the app as a message of Palisade's own, so the
//! app trusts one signer. The dedupe (one message per source and event id) is the store's.

use std::collections::BTreeMap;

use ring::hmac;
use secrecy::ExposeSecret;
use serde_json::Value;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::signing::{SigningKey, MAX_SIGNATURES};
use crate::config::{InboundScheme, InboundSource};
use crate::ids::TenantId;

/// How far a sender's timestamp may be from our clock, either way (the Standard Webhooks
/// and Stripe libraries' default).
pub const TOLERANCE_SECS: i64 = 300;
/// An inbound body, as received.
pub const MAX_BODY_BYTES: usize = super::MAX_PAYLOAD_BYTES;
/// An event id, as the sender gives it.
const MAX_EVENT_ID: usize = 255;
/// The event type an inbound source's events are handed on as: `inbound.<name>`.
pub const EVENT_TYPE_PREFIX: &str = "inbound.";

/// Why an inbound request was refused; the message names the rule, never the input.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the signature headers are missing or malformed")]
    Malformed,
    #[error("no signature matches the body under this source's secret")]
    NoMatch,
    #[error("the signature's timestamp is more than 5 minutes from the server's clock")]
    Stale,
    #[error("the body is not a JSON object with a string \"id\" of 1 to 255 visible characters")]
    NoEventId,
    #[error("the body is not JSON")]
    NotJson,
}

/// A verified event: the sender's id for it and its body, parsed.
#[derive(Debug)]
pub struct Verified {
    pub event_id: String,
    pub payload: Value,
}

enum Key {
    /// `whsec_` + base64: its bytes key the HMAC.
    Standard(SigningKey),
    /// Stripe's `whsec_…` keys the HMAC as the text itself.
    Stripe(Zeroizing<Vec<u8>>),
}

/// One configured source.
pub struct Source {
    /// Whose endpoints receive its events.
    pub tenant: TenantId,
    /// `inbound.<name>`.
    pub event_type: String,
    key: Key,
}

/// The configured sources, by name.
#[derive(Default)]
pub struct Sources(BTreeMap<String, Source>);

/// What a source's name may be: 1 to 32 of `a-z`, `0-9`, `_`, starting with a letter.
pub fn is_source_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Why a configured source cannot be used; `config::Settings::validate` reports it.
pub fn source_problem(source: &InboundSource) -> Option<&'static str> {
    key_and_tenant(source).err()
}

/// A configured source's key and tenant, or why it has none.
fn key_and_tenant(source: &InboundSource) -> Result<(Key, TenantId), &'static str> {
    let tenant = source
        .tenant
        .parse::<TenantId>()
        .map_err(|_| "tenant must be a tenant id")?;
    let secret = source.secret.expose_secret();
    let key =
        match source.scheme {
            InboundScheme::Standard => Key::Standard(SigningKey::from_text(secret).ok_or(
                "a standard source's secret must be whsec_ and the base64 of 24 to 64 bytes",
            )?),
            InboundScheme::Stripe if (16..=256).contains(&secret.len()) => {
                Key::Stripe(Zeroizing::new(secret.as_bytes().to_vec()))
            }
            InboundScheme::Stripe => {
                return Err("a stripe source's secret must be 16 to 256 characters")
            }
        };
    Ok((key, tenant))
}

impl Sources {
    /// The sources of validated settings; one that does not validate is left out.
    pub fn from_settings(settings: &BTreeMap<String, InboundSource>) -> Self {
        let sources = settings
            .iter()
            .filter(|(name, _)| is_source_name(name))
            .filter_map(|(name, source)| {
                let (key, tenant) = key_and_tenant(source).ok()?;
                let event_type = format!("{EVENT_TYPE_PREFIX}{name}");
                Some((
                    name.clone(),
                    Source {
                        tenant,
                        event_type,
                        key,
                    },
                ))
            })
            .collect();
        Self(sources)
    }

    pub fn get(&self, name: &str) -> Option<&Source> {
        self.0.get(name)
    }

    /// Whether `event_type` is the type a source's events are handed on as.
    pub fn is_event_type(&self, event_type: &str) -> bool {
        event_type
            .strip_prefix(EVENT_TYPE_PREFIX)
            .is_some_and(|name| self.0.contains_key(name))
    }

    /// `inbound.<name>` of every source.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(|source| source.event_type.as_str())
    }
}

impl Source {
    /// The headers this source's scheme signs with, lower case.
    pub fn headers(&self) -> &'static [&'static str] {
        match self.key {
            Key::Standard(_) => &["webhook-id", "webhook-timestamp", "webhook-signature"],
            Key::Stripe(_) => &["stripe-signature"],
        }
    }

    /// Verifies a request: `headers` holds the values of [`Source::headers`], in order
    /// (None where absent).
    pub fn verify(
        &self,
        headers: &[Option<&str>],
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Verified, Refused> {
        let timestamp = match &self.key {
            Key::Standard(key) => {
                let [Some(id), Some(timestamp), Some(signature)] = headers else {
                    return Err(Refused::Malformed);
                };
                if !is_event_id(id) {
                    return Err(Refused::Malformed);
                }
                let timestamp = parse_timestamp(timestamp).ok_or(Refused::Malformed)?;
                if !key.verifies(signature, id, timestamp, body) {
                    return Err(Refused::NoMatch);
                }
                timestamp
            }
            Key::Stripe(secret) => {
                let [Some(header)] = headers else {
                    return Err(Refused::Malformed);
                };
                let header = parse_stripe_header(header).ok_or(Refused::Malformed)?;
                let expected = stripe_signature(secret, header.timestamp, body);
                if !header
                    .signatures
                    .iter()
                    .any(|s| crate::crypto::constant_time_eq(s, expected.as_ref()))
                {
                    return Err(Refused::NoMatch);
                }
                header.timestamp
            }
        };
        if (now.unix_timestamp() - timestamp).abs() > TOLERANCE_SECS {
            return Err(Refused::Stale);
        }
        let payload: Value = serde_json::from_slice(body).map_err(|_| Refused::NotJson)?;
        let event_id = match &self.key {
            Key::Standard(_) => headers[0].unwrap_or_default().to_owned(),
            // Stripe's id is the event's own (`evt_…`), the same on every retry.
            Key::Stripe(_) => match payload.get("id") {
                Some(Value::String(id)) if is_event_id(id) => id.clone(),
                _ => return Err(Refused::NoEventId),
            },
        };
        Ok(Verified { event_id, payload })
    }
}

fn is_event_id(id: &str) -> bool {
    (1..=MAX_EVENT_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Unix seconds as the headers carry them: digits only, at most 12.
fn parse_timestamp(text: &str) -> Option<i64> {
    ((1..=12).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `HMAC-SHA256(secret, "timestamp.body")`, the Stripe scheme's `v1`.
fn stripe_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// A `Stripe-Signature` header, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct StripeHeader {
    pub timestamp: i64,
    /// The `v1` signatures, decoded from hex.
    pub signatures: Vec<Vec<u8>>,
}

/// `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`: comma-separated `key=value` pairs, one `t`,
/// at least one and at most [`MAX_SIGNATURES`] `v1`, other keys (`v0`) skipped. None for
/// anything else.
pub fn parse_stripe_header(header: &str) -> Option<StripeHeader> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for (n, pair) in header.split(',').enumerate() {
        if n >= 2 * MAX_SIGNATURES {
            return None;
        }
        let (key, value) = pair.trim().split_once('=')?;
        match key {
            "t" if timestamp.is_none() => timestamp = Some(parse_timestamp(value)?),
            "t" => return None,
            "v1" if signatures.len() < MAX_SIGNATURES => signatures.push(decode_hex(value)?),
            "v1" => return None,
            other if !other.is_empty() && other.bytes().all(|b| b.is_ascii_alphanumeric()) => {}
            _ => return None,
        }
    }
    (!signatures.is_empty()).then_some(StripeHeader {
        timestamp: timestamp?,
        signatures,
    })
}

/// Lower- or upper-case hex of up to 64 bytes.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::SecretString;

    const NOW: i64 = 1_700_000_000;

    fn source(scheme: InboundScheme, secret: &str) -> Source {
        let mut settings = BTreeMap::new();
        settings.insert(
            "billing".to_owned(),
            InboundSource {
                scheme,
                secret: SecretString::from(secret.to_owned()),
                tenant: TenantId::generate().to_string(),
            },
        );
        Sources::from_settings(&settings)
            .0
            .remove("billing")
            .expect("a valid source")
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    const STRIPE_SECRET: &str = "whsec_test_secret_of_the_billing_source";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

    fn stripe_header(at: i64, body: &[u8]) -> String {
        let tag = stripe_signature(STRIPE_SECRET.as_bytes(), at, body);
        format!("t={at},v1={},v0=deadbeef", hex(tag.as_ref()))
    }

    // claim: HOOK-5
    #[test]
    fn a_stripe_signature_verifies_within_the_tolerance_only() {
        let source = source(InboundScheme::Stripe, STRIPE_SECRET);
        let header = stripe_header(NOW - 299, BODY);
        let verified = source.verify(&[Some(&header)], BODY, now()).unwrap();
        assert_eq!(verified.event_id, "evt_1");
        let stale = stripe_header(NOW - 301, BODY);
        assert_eq!(
            source.verify(&[Some(&stale)], BODY, now()).unwrap_err(),
            Refused::Stale
        );
        let tampered = br#"{"id":"evt_1","type":"invoice.void"}"#;
        assert_eq!(
            source
                .verify(&[Some(&header)], tampered, now())
                .unwrap_err(),
            Refused::NoMatch
        );
        assert_eq!(
            source.verify(&[None], BODY, now()).unwrap_err(),
            Refused::Malformed
        );
        let no_id = br#"{"type":"invoice.paid"}"#;
        let header = stripe_header(NOW, no_id);
        assert_eq!(
            source.verify(&[Some(&header)], no_id, now()).unwrap_err(),
            Refused::NoEventId
        );
    }

    // claim: HOOK-5
    #[test]
    fn a_standard_signature_verifies_within_the_tolerance_only() {
        let key = SigningKey::generate();
        let source = source(InboundScheme::Standard, &key.to_text());
        let signature = key.sign("msg_1", NOW + 200, BODY);
        let at = (NOW + 200).to_string();
        let verified = source
            .verify(&[Some("msg_1"), Some(&at), Some(&signature)], BODY, now())
            .unwrap();
        assert_eq!(verified.event_id, "msg_1");
        assert_eq!(
            source
                .verify(&[Some("msg_2"), Some(&at), Some(&signature)], BODY, now())
                .unwrap_err(),
            Refused::NoMatch
        );
        let late = (NOW + 400).to_string();
        let signature = key.sign("msg_1", NOW + 400, BODY);
        assert_eq!(
            source
                .verify(&[Some("msg_1"), Some(&late), Some(&signature)], BODY, now())
                .unwrap_err(),
            Refused::Stale
        );
        assert_eq!(
            source
                .verify(&[Some("msg_1"), Some("-5"), Some(&signature)], BODY, now())
                .unwrap_err(),
            Refused::Malformed
        );
    }

    #[test]
    fn the_stripe_header_parser_refuses_what_is_not_one() {
        for header in [
            "",
            "t=1",
            "v1=00",
            "t=1,t=2,v1=00",
            "t=1,v1=0",
            "t=1,v1=zz",
            "t=x,v1=00",
            "t=1,=00,v1=00",
            "t=1,v1",
        ] {
            assert_eq!(parse_stripe_header(header), None, "{header:?}");
        }
        assert_eq!(
            parse_stripe_header("t=12, v1=0aFF,v0=aa,v1=00"),
            Some(StripeHeader {
                timestamp: 12,
                signatures: vec![vec![0x0a, 0xff], vec![0]],
            })
        );
        let many = format!("t=1{}", ",v1=00".repeat(MAX_SIGNATURES + 1));
        assert_eq!(parse_stripe_header(&many), None);
    }

    proptest! {
        // claim: HOOK-5
        #[test]
        fn the_stripe_header_parser_never_panics_and_reads_back_what_it_is_given(
            header in "\\PC{0,300}",
            at in 0i64..100_000_000_000,
            signatures in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 1..=MAX_SIGNATURES),
        ) {
            let _ = parse_stripe_header(&header);
            let written = std::iter::once(format!("t={at}"))
                .chain(signatures.iter().map(|s| format!("v1={}", hex(s))))
                .collect::<Vec<_>>()
                .join(",");
            prop_assert_eq!(
                parse_stripe_header(&written),
                Some(StripeHeader { timestamp: at, signatures })
            );
        }
    }
}
