//! The hash chain (claim AUD-3): each event's hash covers the previous event's hash and
//! the event's canonical bytes, so an edited, missing, inserted or reordered event breaks
//! the chain at that event. The encoding is specified in docs/audit.md; it is the one thing
//! an offline verifier must reimplement, so it is deliberately plain: a domain label, the
//! previous hash, then every field as a 4-byte big-endian length and its UTF-8 bytes (an
//! absent value as the length 0xFFFFFFFF and no bytes), in a fixed order.

use base64::Engine as _;
use ring::digest;
use serde::{Deserialize, Serialize};

use super::redaction::{redaction_statement, Redaction};
use super::signing::PublicKey;

pub type Hash = [u8; 32];

/// The `prev_hash` of a chain's first event.
pub const GENESIS: Hash = [0; 32];

const DOMAIN: &[u8] = b"palisade.audit.v1\0";

/// One event with every field the chain covers, as stored and as exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainedEvent {
    /// `ten_…`, or `platform` for the platform stream.
    pub stream: String,
    pub seq: i64,
    pub id: String,
    pub occurred_at_us: i64,
    pub actor_type: String,
    pub actor_id: String,
    pub actor_role: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
    /// Before and after of the fields that changed, as JSON text exactly as hashed.
    pub changes: String,
    /// An app's event only (claim APP-4): the service that wrote it, every target and the
    /// metadata, as JSON text exactly as hashed. Absent on Palisade's own events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    /// Set when an erasure redacted the event's personal fields (claim OPS-5): the
    /// [`Redaction`] as JSON text. `hash` stays the original, so the chain still links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<String>,
}

/// The hashed fields of an event, borrowed: the appender and the verifier build the same
/// bytes from their own representations.
pub struct Fields<'a> {
    pub stream: &'a str,
    pub seq: i64,
    pub id: &'a str,
    pub occurred_at_us: i64,
    pub actor_type: &'a str,
    pub actor_id: &'a str,
    pub actor_role: &'a str,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub outcome: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
    pub changes: &'a str,
    /// Hashed after `changes` only when present, so Palisade's own events keep the bytes
    /// they always had; the length prefixes keep the two forms apart.
    pub app: Option<&'a str>,
}

impl Fields<'_> {
    /// `SHA-256(domain ‖ prev ‖ fields)`: the event's hash when it follows `prev`.
    pub fn link(&self, prev: &Hash) -> Hash {
        self.link_using(prev, &mut Vec::with_capacity(512))
    }

    /// [`Fields::link`], building the bytes in `buf` (cleared first): one digest call over
    /// one buffer costs far less than one call per field.
    pub fn link_using(&self, prev: &Hash, buf: &mut Vec<u8>) -> Hash {
        buf.clear();
        buf.extend_from_slice(DOMAIN);
        buf.extend_from_slice(prev);
        let mut put = |value: Option<&[u8]>| match value {
            Some(bytes) => {
                let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX - 1);
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(bytes);
            }
            None => buf.extend_from_slice(&u32::MAX.to_be_bytes()),
        };
        let mut numbers = [0u8; 20];
        put(Some(self.stream.as_bytes()));
        put(Some(decimal(self.seq, &mut numbers)));
        put(Some(self.id.as_bytes()));
        put(Some(decimal(self.occurred_at_us, &mut numbers)));
        for text in [
            self.actor_type,
            self.actor_id,
            self.actor_role,
            self.action,
            self.target_type,
            self.target_id,
            self.outcome,
        ] {
            put(Some(text.as_bytes()));
        }
        put(self.ip.map(str::as_bytes));
        put(self.user_agent.map(str::as_bytes));
        put(Some(self.request_id.as_bytes()));
        put(Some(self.changes.as_bytes()));
        if let Some(app) = self.app {
            put(Some(app.as_bytes()));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest::digest(&digest::SHA256, buf).as_ref());
        hash
    }
}

/// An integer's decimal text, on the stack.
fn decimal(value: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let negative = value < 0;
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

impl ChainedEvent {
    pub fn fields(&self) -> Fields<'_> {
        self.fields_at(self.seq)
    }

    fn fields_at(&self, seq: i64) -> Fields<'_> {
        Fields {
            stream: &self.stream,
            seq,
            id: &self.id,
            occurred_at_us: self.occurred_at_us,
            actor_type: &self.actor_type,
            actor_id: &self.actor_id,
            actor_role: &self.actor_role,
            action: &self.action,
            target_type: &self.target_type,
            target_id: &self.target_id,
            outcome: &self.outcome,
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            request_id: &self.request_id,
            changes: &self.changes,
            app: self.app.as_deref(),
        }
    }

    /// Whether the stored hash is this event's own, given its stored `prev_hash`.
    fn consistent_at(&self, seq: i64) -> bool {
        self.fields_at(seq).link(&self.prev_hash) == self.hash
    }

    /// Whether the event's content is a redaction of the content `hash` was made from,
    /// signed by `key` for this very place in this chain.
    fn redaction_holds(&self, key: &PublicKey) -> bool {
        let Some(redaction) = self
            .redaction
            .as_deref()
            .and_then(|text| serde_json::from_str::<Redaction>(text).ok())
        else {
            return false;
        };
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(&redaction.signature)
        else {
            return false;
        };
        let redacted = self.fields().link(&self.prev_hash);
        let statement = redaction_statement(&self.stream, self.seq, &self.hash, &redacted);
        key.verifies(&statement, &redaction.key_id, &signature)
    }
}

/// Why a chain does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The event's content no longer matches its hash, or it was rewritten and re-hashed.
    Edited,
    /// An event the chain or a checkpoint says exists is not there.
    Missing,
    /// An event that the chain does not link is there.
    Inserted,
    /// The event carries another position's hash: events were swapped.
    Reordered,
    /// A checkpoint's signature does not verify with the published key.
    CheckpointSignature,
    /// The chain verifies on its own but disagrees with a signed checkpoint: rewritten.
    CheckpointMismatch,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Edited => "edited",
            Problem::Missing => "missing",
            Problem::Inserted => "inserted",
            Problem::Reordered => "reordered",
            Problem::CheckpointSignature => "checkpoint_signature",
            Problem::CheckpointMismatch => "checkpoint_mismatch",
        }
    }
}

/// The first thing wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub seq: i64,
    pub problem: Problem,
    pub detail: String,
}

/// A signed statement that a chain's event `seq` has `hash`, already checked against the
/// verifying key by the caller (`valid`).
#[derive(Clone, Debug)]
pub struct SignedPoint {
    pub seq: i64,
    pub hash: Hash,
    pub valid: bool,
}

/// What a walk over a chain established.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub events: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    #[serde(serialize_with = "hex_hash::serialize_option")]
    pub last_hash: Option<Hash>,
    pub checkpoints: u64,
    /// Events whose personal fields an erasure redacted, each with a verified signature.
    pub redacted: u64,
}

/// Walks one chain in sequence order, holding one event of look-ahead (constant memory).
/// Feed every event, then [`ChainWalk::finish`].
pub struct ChainWalk {
    expected: i64,
    prev: Hash,
    /// The hash before `prev`: an event that links to it skips the one accepted last.
    before_prev: Option<Hash>,
    held: Option<ChainedEvent>,
    points: std::vec::IntoIter<SignedPoint>,
    next_point: Option<SignedPoint>,
    summary: Summary,
    finding: Option<Finding>,
    /// Checks redacted events' signatures; without it a redacted event is `edited`.
    redaction_key: Option<PublicKey>,
}

impl ChainWalk {
    /// A walk from the chain's start: after `anchor` (a signed point where a pruned chain
    /// restarts) or from the genesis. `points` are the chain's checkpoints after the anchor.
    pub fn new(anchor: Option<&SignedPoint>, mut points: Vec<SignedPoint>) -> Self {
        points.sort_by_key(|p| p.seq);
        let mut walk = Self {
            expected: anchor.map_or(1, |a| a.seq + 1),
            prev: anchor.map_or(GENESIS, |a| a.hash),
            before_prev: None,
            held: None,
            points: points.into_iter(),
            next_point: None,
            summary: Summary {
                events: 0,
                first_seq: None,
                last_seq: None,
                last_hash: None,
                checkpoints: 0,
                redacted: 0,
            },
            finding: None,
            redaction_key: None,
        };
        if let Some(anchor) = anchor.filter(|a| !a.valid) {
            walk.fail(
                anchor.seq,
                Problem::CheckpointSignature,
                "the retention anchor's signature does not verify",
            );
        }
        walk.next_point = walk.points.next();
        walk
    }

    /// A walk over part of a chain, from the first event's own `prev_hash` (an export of a
    /// time range).
    pub fn from_first(points: Vec<SignedPoint>) -> Self {
        let mut walk = Self::new(None, points);
        walk.expected = 0;
        walk
    }

    /// Accepts events an erasure redacted when `key` signed their redaction.
    pub fn accepting_redactions_by(mut self, key: &PublicKey) -> Self {
        self.redaction_key = Some(key.clone());
        self
    }

    pub fn is_bad(&self) -> bool {
        self.finding.is_some()
    }

    pub fn feed(&mut self, event: ChainedEvent) {
        if self.finding.is_some() {
            return;
        }
        if let Some(held) = self.held.take() {
            self.judge(held, Some(&event));
        }
        self.held = Some(event);
    }

    /// Ends the walk. `head` is the chain's recorded last (seq, hash), when the store keeps
    /// one; an export has none.
    pub fn finish(mut self, head: Option<(i64, Hash)>) -> (Summary, Option<Finding>) {
        if let Some(held) = self.held.take() {
            if self.finding.is_none() {
                self.judge(held, None);
            }
        }
        if self.finding.is_none() {
            self.check_end(head);
        }
        (self.summary, self.finding)
    }

    fn fail(&mut self, seq: i64, problem: Problem, detail: impl Into<String>) {
        if self.finding.is_none() {
            self.finding = Some(Finding {
                seq,
                problem,
                detail: detail.into(),
            });
        }
    }

    fn judge(&mut self, event: ChainedEvent, next: Option<&ChainedEvent>) {
        if self.expected == 0 {
            // A range export starts wherever its first event is.
            self.expected = event.seq;
            self.prev = event.prev_hash;
        }
        let expected = self.expected;
        if event.seq < expected {
            return self.fail(
                event.seq,
                Problem::Inserted,
                format!("a second event numbered {}", event.seq),
            );
        }
        if event.seq > expected {
            return self.fail(
                expected,
                Problem::Missing,
                format!("the chain jumps from {} to {}", expected - 1, event.seq),
            );
        }
        let links = event.prev_hash == self.prev;
        // The event before was accepted, but this one, renumbered, links around it.
        if !links && self.before_prev == Some(event.prev_hash) && event.consistent_at(event.seq - 1)
        {
            return self.fail(
                event.seq - 1,
                Problem::Inserted,
                "the chain links around it",
            );
        }
        let redacted = event.redaction.is_some()
            && self
                .redaction_key
                .as_ref()
                .is_some_and(|key| event.redaction_holds(key));
        let consistent = redacted || event.consistent_at(event.seq);
        let next_links_past = next.is_some_and(|n| n.prev_hash == self.prev);
        if !consistent {
            if event.consistent_at(event.seq + 1) || event.consistent_at(event.seq - 1) {
                return self.fail(
                    event.seq,
                    Problem::Reordered,
                    "the event carries a neighbouring position's hash",
                );
            }
            if !links && next_links_past {
                return self.fail(event.seq, Problem::Inserted, "the chain links around it");
            }
            let why = if event.redaction.is_some() {
                "its content matches neither its hash nor a signed redaction"
            } else {
                "its content does not match its hash"
            };
            return self.fail(event.seq, Problem::Edited, why);
        }
        if !links {
            if next_links_past {
                return self.fail(event.seq, Problem::Inserted, "the chain links around it");
            }
            return self.fail(
                event.seq - 1,
                Problem::Edited,
                "rewritten and re-hashed: the next event no longer links to it",
            );
        }
        self.before_prev = Some(self.prev);
        self.prev = event.hash;
        self.expected += 1;
        self.summary.events += 1;
        self.summary.redacted += u64::from(redacted);
        self.summary.first_seq.get_or_insert(event.seq);
        self.summary.last_seq = Some(event.seq);
        self.summary.last_hash = Some(event.hash);
        self.check_points_up_to(event.seq, &event.hash);
    }

    fn check_points_up_to(&mut self, seq: i64, hash: &Hash) {
        while let Some(point) = self.next_point.take() {
            if point.seq > seq {
                self.next_point = Some(point);
                return;
            }
            if point.seq == seq {
                if !point.valid {
                    return self.fail(
                        seq,
                        Problem::CheckpointSignature,
                        "the checkpoint's signature does not verify",
                    );
                }
                if point.hash != *hash {
                    return self.fail(
                        seq,
                        Problem::CheckpointMismatch,
                        "the chain was rewritten up to here: it disagrees with a signed checkpoint",
                    );
                }
                self.summary.checkpoints += 1;
            }
            // A checkpoint before the walk's first event (an export's range) is skipped.
            self.next_point = self.points.next();
        }
    }

    fn check_end(&mut self, head: Option<(i64, Hash)>) {
        let last = self.expected - 1;
        if let Some(point) = self.next_point.take() {
            return self.fail(
                last + 1,
                Problem::Missing,
                format!(
                    "a signed checkpoint covers event {} but the chain ends at {last}",
                    point.seq
                ),
            );
        }
        match head {
            Some((seq, _)) if seq > last => self.fail(
                last + 1,
                Problem::Missing,
                format!("the chain's head is {seq} but its events end at {last}"),
            ),
            Some((seq, _)) if seq < last => self.fail(
                seq + 1,
                Problem::Inserted,
                format!("events beyond the chain's head {seq}"),
            ),
            Some((_, hash)) if last > 0 && hash != self.prev => self.fail(
                last,
                Problem::Edited,
                "the last event does not match the chain's head",
            ),
            _ => {}
        }
    }
}

/// Hashes as lower-case hex in JSON.
pub mod hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn serialize_option<S: Serializer>(hash: &Option<Hash>, s: S) -> Result<S::Ok, S::Error> {
        match hash {
            Some(hash) => serialize(hash, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }

    pub fn parse(text: &str) -> Option<Hash> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text, &mut hash).ok()?;
        Some(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainedEvent> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let mut event = ChainedEvent {
                    stream: "ten_0".into(),
                    seq,
                    id: format!("evt_{seq}"),
                    occurred_at_us: 1_000 + seq,
                    actor_type: "user".into(),
                    actor_id: "usr_1".into(),
                    actor_role: "owner".into(),
                    action: "members.invited".into(),
                    target_type: "invitation".into(),
                    target_id: seq.to_string(),
                    outcome: "success".into(),
                    ip: Some("127.0.0.1".into()),
                    user_agent: None,
                    request_id: "req".into(),
                    changes: "{}".into(),
                    // Every other event is an app's, so edits of both forms are tried.
                    app: (seq % 2 == 0).then(|| r#"{"service":"svc_1"}"#.into()),
                    prev_hash: prev,
                    hash: GENESIS,
                    redaction: None,
                };
                event.hash = event.fields().link(&prev);
                prev = event.hash;
                event
            })
            .collect()
    }

    fn walk(events: Vec<ChainedEvent>, head: Option<(i64, Hash)>) -> Option<Finding> {
        let mut walk = ChainWalk::new(None, Vec::new());
        for event in events {
            walk.feed(event);
        }
        walk.finish(head).1
    }

    fn head(events: &[ChainedEvent]) -> Option<(i64, Hash)> {
        events.last().map(|e| (e.seq, e.hash))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let events = chain(5);
        let h = head(&events);
        assert_eq!(walk(events, h), None);
    }

    // claim: AUD-3
    #[test]
    fn each_kind_of_tampering_is_named_at_its_event() {
        let events = chain(6);
        let h = head(&events);

        let mut edited = events.clone();
        edited[2].action = "members.removed".into();
        let found = walk(edited, h).unwrap();
        assert_eq!((found.seq, found.problem), (3, Problem::Edited));

        let mut missing = events.clone();
        missing.remove(3);
        let found = walk(missing, h).unwrap();
        assert_eq!((found.seq, found.problem), (4, Problem::Missing));

        let mut swapped = events.clone();
        swapped.swap(1, 2);
        (swapped[1].seq, swapped[2].seq) = (2, 3);
        let found = walk(swapped, h).unwrap();
        assert_eq!((found.seq, found.problem), (2, Problem::Reordered));

        let mut rehashed = events.clone();
        rehashed[1].target_id = "forged".into();
        rehashed[1].hash = rehashed[1].fields().link(&rehashed[1].prev_hash);
        let found = walk(rehashed, h).unwrap();
        assert_eq!((found.seq, found.problem), (2, Problem::Edited));

        let mut tail_cut = events.clone();
        tail_cut.pop();
        let found = walk(tail_cut, h).unwrap();
        assert_eq!((found.seq, found.problem), (6, Problem::Missing));
    }

    // claim: AUD-3
    #[test]
    fn an_event_inserted_mid_chain_is_named_even_when_the_rest_is_renumbered() {
        let events = chain(5);
        let h = head(&events);
        let mut forged = events[1].clone();
        forged.id = "evt_forged".into();
        forged.prev_hash = events[1].hash;
        forged.seq = 3;
        forged.hash = forged.fields().link(&forged.prev_hash);
        let mut inserted = events[..2].to_vec();
        inserted.push(forged);
        for mut later in events[2..].iter().cloned() {
            later.seq += 1;
            inserted.push(later);
        }
        let found = walk(inserted, h).unwrap();
        assert_eq!(found.seq, 3);
        assert!(matches!(found.problem, Problem::Inserted), "{found:?}");
    }

    // claim: AUD-3
    #[test]
    fn a_chain_rewritten_whole_disagrees_with_its_signed_checkpoint() {
        let events = chain(4);
        let point = SignedPoint {
            seq: 2,
            hash: events[1].hash,
            valid: true,
        };
        let mut rewritten = chain(4);
        rewritten[0].target_id = "other".into();
        let mut prev = GENESIS;
        for event in &mut rewritten {
            event.prev_hash = prev;
            event.hash = event.fields().link(&prev);
            prev = event.hash;
        }
        let h = head(&rewritten);
        let mut walk = ChainWalk::new(None, vec![point.clone()]);
        for event in rewritten {
            walk.feed(event);
        }
        let found = walk.finish(h).1.unwrap();
        assert_eq!((found.seq, found.problem), (2, Problem::CheckpointMismatch));

        let mut walk = ChainWalk::new(
            None,
            vec![SignedPoint {
                valid: false,
                ..point
            }],
        );
        for event in events {
            walk.feed(event);
        }
        let found = walk.finish(None).1.unwrap();
        assert_eq!(
            (found.seq, found.problem),
            (2, Problem::CheckpointSignature)
        );
    }

    use proptest::prelude::*;

    proptest! {
        // claim: AUD-3
        #[test]
        fn an_edit_to_any_field_of_any_event_is_named_at_that_event(
            len in 2i64..10,
            at in 0usize..10,
            field in 0usize..12,
            junk in proptest::collection::vec(proptest::char::range('a', 'z'), 1..8),
        ) {
            let mut events = chain(len);
            let at = at % events.len();
            let junk: String = junk.into_iter().collect();
            let event = &mut events[at];
            match field {
                0 => event.actor_type.push_str(&junk),
                1 => event.actor_id.push_str(&junk),
                2 => event.actor_role.push_str(&junk),
                3 => event.action.push_str(&junk),
                4 => event.target_type.push_str(&junk),
                5 => event.target_id.push_str(&junk),
                6 => event.outcome.push_str(&junk),
                7 => event.request_id.push_str(&junk),
                8 => event.changes.push_str(&junk),
                9 => event.occurred_at_us += 1,
                // Adding, editing or taking away the app's part.
                10 => event.app = match event.app.take() {
                    Some(app) => Some(app + &junk),
                    None => Some(junk),
                },
                _ => event.app = event.app.take().map_or(Some(String::new()), |_| None),
            }
            let head = events.last().map(|e| (e.seq, e.hash));
            let found = walk(events, head).expect("the edit is found");
            prop_assert_eq!((found.seq, found.problem), (at as i64 + 1, Problem::Edited));
        }

        #[test]
        fn decimal_text_matches_the_standard_formatting(value in any::<i64>()) {
            let mut buf = [0u8; 20];
            let expected = value.to_string();
            prop_assert_eq!(decimal(value, &mut buf), expected.as_bytes());
        }
    }
}
