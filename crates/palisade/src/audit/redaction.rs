//! Erasure in a log that is never rewritten (claim OPS-5). An erased person's address,
//! user agent and email leave the events that hold them, but each such row keeps the hash
//! it was appended with, so the chain still links, and gains a [`Redaction`]: the checkpoint
//! key's signature over the chain, the position, that original hash and the hash its
//! redacted content would have had in the same place. A verifier accepts a row whose
//! content matches neither hash only with such a signature (`chain::ChainWalk`); the key
//! lives outside the database, so whoever can write rows cannot redact one.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::chain::{ChainedEvent, Hash};
use super::signing::{LogSigner, Statement};

/// What replaces an erased person's email where an event names it as its target.
pub const REDACTED: &str = "[erased]";

/// A redacted event's proof, stored as JSON text in its `redaction` column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    pub key_id: String,
    /// Base64 (standard, padded).
    pub signature: String,
}

/// The statement a [`Redaction`] signs.
pub fn redaction_statement(stream: &str, seq: i64, original: &Hash, redacted: &Hash) -> Statement {
    let mut statement = Statement::new("palisade.audit.redaction.v1");
    statement
        .text(stream)
        .number(seq)
        .part(original)
        .part(redacted);
    statement
}

/// The person being erased, as events name them: their actor id (`usr_…`) and their email
/// (stored lower-cased, as events' `email` targets hold it).
pub struct ErasedPerson<'a> {
    pub actor_id: &'a str,
    pub email: &'a str,
}

impl ErasedPerson<'_> {
    /// Whether the event's address and user agent are the person's: what they did, and
    /// the anonymous attempts on their account (a wrong password for it, likeliest theirs).
    /// What another member did to them is that member's.
    fn origin_is_theirs(&self, event: &ChainedEvent) -> bool {
        event.actor_id == self.actor_id
            || (event.actor_type == "anonymous"
                && event.target_type == "user"
                && event.target_id == self.actor_id)
    }

    /// Removes the person's data from `event`; whether there was any.
    fn erase_from(&self, event: &mut ChainedEvent) -> bool {
        let mut changed = false;
        if self.origin_is_theirs(event) && (event.ip.is_some() || event.user_agent.is_some()) {
            event.ip = None;
            event.user_agent = None;
            changed = true;
        }
        if event.target_type == "email" && event.target_id == self.email {
            event.target_id = REDACTED.to_owned();
            changed = true;
        }
        changed
    }
}

impl LogSigner {
    /// Erases `person` from `event` and signs the result; false (nothing changed) when the
    /// event held none of their data.
    pub fn redact(&self, event: &mut ChainedEvent, person: &ErasedPerson<'_>) -> bool {
        if !person.erase_from(event) {
            return false;
        }
        let redacted = event.fields().link(&event.prev_hash);
        let statement = redaction_statement(&event.stream, event.seq, &event.hash, &redacted);
        let proof = Redaction {
            key_id: self.key_id().to_owned(),
            signature: base64::engine::general_purpose::STANDARD.encode(self.sign(&statement)),
        };
        event.redaction = Some(serde_json::to_string(&proof).expect("a redaction serialises"));
        true
    }
}
