//! The export (claim AUD-4): a chain's events as CSV or NDJSON, streamed in chunks, the
//! signed checkpoints of the range first, and a trailer line last — event count, first and
//! last sequence numbers, last hash, signed with the checkpoint key — so a consumer detects
//! truncation. [`verify_export`] is the offline verifier behind
//! `palisade audit verify-export FILE`.

use std::io::BufRead;
use std::str::FromStr;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::chain::{hex_hash, ChainWalk, ChainedEvent, Finding, Hash, SignedPoint};
use super::signing::{CheckpointKey, PublicKey, Statement};
use super::store::StoredPoint;

/// Bytes buffered before a chunk goes to the client.
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl FromStr for Format {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "csv" => Ok(Format::Csv),
            "ndjson" => Ok(Format::Ndjson),
            _ => Err(()),
        }
    }
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }
}

/// A signed checkpoint, as exported.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPoint {
    pub seq: i64,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    pub signed_at_us: i64,
    pub key_id: String,
    /// base64url, unpadded.
    pub signature: String,
}

/// The last line: what the export holds, signed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    pub stream: String,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub count: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub last_hash: Option<String>,
    pub key_id: String,
    pub signature: String,
}

impl Trailer {
    fn statement(&self) -> Statement {
        let optional = |n: Option<i64>| n.map_or_else(String::new, |n| n.to_string());
        let mut statement = Statement::new("palisade.audit.export.v1");
        statement
            .text(&self.stream)
            .text(&optional(self.from_us))
            .text(&optional(self.to_us))
            .text(&self.count.to_string())
            .text(&optional(self.first_seq))
            .text(&optional(self.last_seq))
            .text(self.last_hash.as_deref().unwrap_or(""));
        statement
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Line {
    Event(Box<ChainedEvent>),
    Checkpoint(ExportPoint),
    Trailer(Trailer),
}

const CSV_HEADER: &str = "record,stream,seq,id,occurred_at_us,actor_type,actor_id,actor_role,\
action,target_type,target_id,outcome,ip,user_agent,request_id,changes,app,prev_hash,hash,\
redaction\n";
const CSV_COLUMNS: usize = 20;
/// Exports written before erasure's redactions had their column.
const CSV_COLUMNS_BEFORE_REDACTION: usize = 19;
/// Exports written before the app's events had their column.
const CSV_COLUMNS_BEFORE_APP: usize = 18;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signature's bytes; text that is not base64url gives none, which verifies nothing.
fn from_b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_default()
}

/// Formats an export into chunks for `sink`.
pub struct ExportWriter {
    format: Format,
    buf: Vec<u8>,
    sink: mpsc::Sender<Bytes>,
    gone: bool,
    trailer: Trailer,
    last_hash: Option<Hash>,
}

impl ExportWriter {
    pub fn new(
        format: Format,
        stream: &str,
        (from_us, to_us): (Option<i64>, Option<i64>),
        sink: mpsc::Sender<Bytes>,
    ) -> Self {
        let mut buf = Vec::with_capacity(CHUNK + 4096);
        if format == Format::Csv {
            buf.extend_from_slice(CSV_HEADER.as_bytes());
        }
        Self {
            format,
            buf,
            sink,
            gone: false,
            trailer: Trailer {
                stream: stream.to_owned(),
                from_us,
                to_us,
                count: 0,
                first_seq: None,
                last_seq: None,
                last_hash: None,
                key_id: String::new(),
                signature: String::new(),
            },
            last_hash: None,
        }
    }

    pub async fn point(&mut self, point: &StoredPoint) {
        let line = Line::Checkpoint(ExportPoint {
            seq: point.seq,
            hash: point.hash,
            signed_at_us: point.signed_at_us,
            key_id: point.key_id.clone(),
            signature: b64(&point.signature),
        });
        self.line(&line).await;
    }

    /// Adds an event; false once the client has gone.
    pub async fn event(&mut self, event: &ChainedEvent) -> bool {
        self.trailer.count += 1;
        self.trailer.first_seq.get_or_insert(event.seq);
        self.trailer.last_seq = Some(event.seq);
        self.last_hash = Some(event.hash);
        match self.format {
            Format::Ndjson => write_json_line(&mut self.buf, &EventLine(event)),
            Format::Csv => write_csv_event(&mut self.buf, event),
        }
        if self.buf.len() >= CHUNK {
            self.flush().await;
        }
        !self.gone
    }

    pub async fn finish(mut self, key: &CheckpointKey) {
        self.trailer.last_hash = self.last_hash.map(hex::encode);
        self.trailer.key_id = key.public().key_id().to_owned();
        self.trailer.signature = b64(&key.sign(&self.trailer.statement()));
        let line = Line::Trailer(self.trailer.clone());
        self.line(&line).await;
        self.flush().await;
    }

    async fn line(&mut self, line: &Line) {
        match self.format {
            Format::Ndjson => write_json_line(&mut self.buf, line),
            Format::Csv => {
                let (record, json) = match line {
                    Line::Checkpoint(point) => ("checkpoint", serde_json::to_string(point)),
                    Line::Trailer(trailer) => ("trailer", serde_json::to_string(trailer)),
                    Line::Event(event) => return write_csv_event(&mut self.buf, event),
                };
                let json = json.expect("export records serialise");
                self.buf.extend_from_slice(record.as_bytes());
                self.buf.push(b',');
                write_csv_field(&mut self.buf, Some(&json));
                self.buf
                    .extend_from_slice(",".repeat(CSV_COLUMNS - 2).as_bytes());
                self.buf.push(b'\n');
            }
        }
        if self.buf.len() >= CHUNK {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.buf.is_empty() || self.gone {
            return;
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK + 4096),
        ));
        self.gone = self.sink.send(chunk).await.is_err();
    }
}

/// An event line of NDJSON without copying the event into a [`Line`].
struct EventLine<'a>(&'a ChainedEvent);

impl Serialize for EventLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            record: &'static str,
            #[serde(flatten)]
            event: &'a ChainedEvent,
        }
        Tagged {
            record: "event",
            event: self.0,
        }
        .serialize(s)
    }
}

fn write_json_line(buf: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *buf, value).expect("export records serialise");
    buf.push(b'\n');
}

fn write_csv_event(buf: &mut Vec<u8>, event: &ChainedEvent) {
    let seq = event.seq.to_string();
    let at = event.occurred_at_us.to_string();
    let prev = hex::encode(event.prev_hash);
    let hash = hex::encode(event.hash);
    let fields: [Option<&str>; CSV_COLUMNS] = [
        Some("event"),
        Some(&event.stream),
        Some(&seq),
        Some(&event.id),
        Some(&at),
        Some(&event.actor_type),
        Some(&event.actor_id),
        Some(&event.actor_role),
        Some(&event.action),
        Some(&event.target_type),
        Some(&event.target_id),
        Some(&event.outcome),
        event.ip.as_deref(),
        event.user_agent.as_deref(),
        Some(&event.request_id),
        Some(&event.changes),
        event.app.as_deref(),
        Some(&prev),
        Some(&hash),
        event.redaction.as_deref(),
    ];
    for (n, field) in fields.iter().enumerate() {
        if n > 0 {
            buf.push(b',');
        }
        write_csv_field(buf, *field);
    }
    buf.push(b'\n');
}

/// Whether a spreadsheet could take a cell starting so for a formula (OWASP's CSV
/// injection list), or it starts with the quote that neutralises one.
fn needs_neutralising(text: &str) -> bool {
    matches!(
        text.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'')
    )
}

/// RFC 4180 quoting; an absent value is an empty field and an empty text `""`, so the two
/// stay apart (the chain hashes them differently). A value a spreadsheet would run as a
/// formula (`=cmd|…`, from a user agent, say) is quoted behind a `'`, as OWASP advises;
/// so is one that starts with `'`, so reading strips exactly one and gets every value
/// back exactly (the offline verifier hashes what it reads).
fn write_csv_field(buf: &mut Vec<u8>, field: Option<&str>) {
    let Some(text) = field else { return };
    let neutralised = needs_neutralising(text);
    let plain = !text.is_empty()
        && !neutralised
        && !text
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if plain {
        buf.extend_from_slice(text.as_bytes());
        return;
    }
    buf.push(b'"');
    if neutralised {
        buf.push(b'\'');
    }
    for byte in text.bytes() {
        if byte == b'"' {
            buf.push(b'"');
        }
        buf.push(byte);
    }
    buf.push(b'"');
}

/// Splits one CSV record; `None` for an unquoted empty field. The `'` that neutralised a
/// formula is taken off.
fn parse_csv_record(line: &str) -> Option<Vec<Option<String>>> {
    let mut fields = split_csv_record(line)?;
    for text in fields.iter_mut().flatten() {
        if text.starts_with('\'') {
            text.remove(0);
        }
    }
    Some(fields)
}

fn split_csv_record(line: &str) -> Option<Vec<Option<String>>> {
    let mut fields = Vec::with_capacity(CSV_COLUMNS);
    let mut chars = line.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        text.push('"');
                    }
                    '"' => break,
                    c => text.push(c),
                }
            }
            fields.push(Some(text));
            match chars.next() {
                Some(',') => continue,
                None => return Some(fields),
                Some(_) => return None,
            }
        }
        let mut text = String::new();
        loop {
            match chars.next() {
                Some(',') => break,
                None => {
                    fields.push((!text.is_empty()).then_some(text));
                    return Some(fields);
                }
                Some(c) => text.push(c),
            }
        }
        fields.push((!text.is_empty()).then_some(text));
    }
}

fn csv_line(line: &str) -> Option<Line> {
    let fields = parse_csv_record(line)?;
    let (has_app, has_redaction) = match fields.len() {
        CSV_COLUMNS => (true, true),
        CSV_COLUMNS_BEFORE_REDACTION => (true, false),
        CSV_COLUMNS_BEFORE_APP => (false, false),
        _ => return None,
    };
    let text = |n: usize| fields[n].clone().unwrap_or_default();
    let hashes = if has_app { 17 } else { 16 };
    match fields[0].as_deref()? {
        "checkpoint" => serde_json::from_str(fields[1].as_deref()?)
            .ok()
            .map(Line::Checkpoint),
        "trailer" => serde_json::from_str(fields[1].as_deref()?)
            .ok()
            .map(Line::Trailer),
        "event" => Some(Line::Event(Box::new(ChainedEvent {
            stream: text(1),
            seq: text(2).parse().ok()?,
            id: text(3),
            occurred_at_us: text(4).parse().ok()?,
            actor_type: text(5),
            actor_id: text(6),
            actor_role: text(7),
            action: text(8),
            target_type: text(9),
            target_id: text(10),
            outcome: text(11),
            ip: fields[12].clone(),
            user_agent: fields[13].clone(),
            request_id: text(14),
            changes: text(15),
            app: if has_app { fields[16].clone() } else { None },
            prev_hash: hex_hash::parse(&text(hashes))?,
            hash: hex_hash::parse(&text(hashes + 1))?,
            redaction: if has_redaction {
                fields[hashes + 2].clone()
            } else {
                None
            },
        }))),
        _ => None,
    }
}

/// What an export holds, once verified.
#[derive(Debug)]
pub struct ExportReport {
    pub stream: String,
    pub events: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub checkpoints: u64,
    /// Events an erasure redacted, each with a verified signature.
    pub redacted: u64,
}

/// Why an export does not verify.
#[derive(Debug, PartialEq, Eq)]
pub enum ExportProblem {
    /// No trailer, or a line cut short: the file is not all of the export.
    Truncated(String),
    /// A line that is not part of an export.
    Malformed { line: u64, reason: String },
    /// The chain breaks inside the export.
    Chain(Finding),
    /// The trailer disagrees with the events, or its signature does not verify.
    Trailer(String),
}

impl std::fmt::Display for ExportProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportProblem::Truncated(why) => write!(f, "truncated: {why}"),
            ExportProblem::Malformed { line, reason } => write!(f, "line {line}: {reason}"),
            ExportProblem::Chain(finding) => write!(
                f,
                "event {}: {}: {}",
                finding.seq,
                finding.problem.as_str(),
                finding.detail
            ),
            ExportProblem::Trailer(why) => write!(f, "trailer: {why}"),
        }
    }
}

/// Checks an export's chain, its checkpoints and its trailer against `key`.
pub fn verify_export(input: impl BufRead, key: &PublicKey) -> Result<ExportReport, ExportProblem> {
    let mut points = Vec::new();
    let mut walk: Option<ChainWalk> = None;
    let mut stream: Option<String> = None;
    let mut trailer: Option<Trailer> = None;
    let mut csv = None;
    // A CSV record spans lines while a quoted field holds a line break.
    let mut record = String::new();
    // Split on line feeds only: a carriage return inside a value is data.
    for (n, line) in input.split(b'\n').enumerate() {
        let number = n as u64 + 1;
        let line = line.map_err(|e| ExportProblem::Truncated(e.to_string()))?;
        let line = String::from_utf8(line).map_err(|_| ExportProblem::Malformed {
            line: number,
            reason: "not UTF-8".into(),
        })?;
        let line = if csv == Some(true) {
            if !record.is_empty() {
                record.push('\n');
            }
            record.push_str(&line);
            if record.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
                continue;
            }
            std::mem::take(&mut record)
        } else {
            line
        };
        let malformed = |reason: &str| ExportProblem::Malformed {
            line: number,
            reason: reason.to_owned(),
        };
        if trailer.is_some() {
            return Err(malformed("content after the trailer"));
        }
        let is_csv = *csv.get_or_insert_with(|| line.starts_with("record,"));
        if is_csv && n == 0 {
            continue;
        }
        let parsed = if is_csv {
            csv_line(&line)
        } else {
            serde_json::from_str::<Line>(&line).ok()
        };
        let Some(parsed) = parsed else {
            return Err(ExportProblem::Truncated(format!(
                "line {number} is not a complete export record"
            )));
        };
        match parsed {
            Line::Checkpoint(point) => {
                if walk.is_some() {
                    return Err(malformed("a checkpoint after the events began"));
                }
                points.push(point);
            }
            Line::Event(event) => {
                if *stream.get_or_insert_with(|| event.stream.clone()) != event.stream {
                    return Err(malformed("events of two chains"));
                }
                let walk = walk.get_or_insert_with(|| {
                    let signed = points
                        .iter()
                        .map(|p| signed_point(key, &event.stream, p))
                        .collect();
                    ChainWalk::from_first(signed).accepting_redactions_by(key)
                });
                walk.feed(*event);
            }
            Line::Trailer(t) => trailer = Some(t),
        }
    }
    if !record.is_empty() {
        return Err(ExportProblem::Truncated("a quoted field never ends".into()));
    }
    let Some(trailer) = trailer else {
        return Err(ExportProblem::Truncated("no trailer line".into()));
    };
    let (summary, finding) = match walk {
        Some(walk) => walk.finish(None),
        None => ChainWalk::from_first(Vec::new()).finish(None),
    };
    if let Some(finding) = finding {
        return Err(ExportProblem::Chain(finding));
    }
    let signature = from_b64(&trailer.signature);
    if !key.verifies(&trailer.statement(), &trailer.key_id, &signature) {
        return Err(ExportProblem::Trailer(
            "its signature does not verify with the checkpoint key".into(),
        ));
    }
    if stream.as_ref().is_some_and(|s| *s != trailer.stream) {
        return Err(ExportProblem::Trailer("it names another chain".into()));
    }
    let last_hash = summary.last_hash.map(hex::encode);
    if trailer.count != summary.events
        || trailer.first_seq != summary.first_seq
        || trailer.last_seq != summary.last_seq
        || trailer.last_hash != last_hash
    {
        return Err(ExportProblem::Truncated(format!(
            "the trailer says {} events ending at {:?}, the file holds {} ending at {:?}",
            trailer.count, trailer.last_seq, summary.events, summary.last_seq
        )));
    }
    Ok(ExportReport {
        stream: trailer.stream,
        events: summary.events,
        first_seq: summary.first_seq,
        last_seq: summary.last_seq,
        checkpoints: summary.checkpoints,
        redacted: summary.redacted,
    })
}

fn signed_point(key: &PublicKey, stream: &str, point: &ExportPoint) -> SignedPoint {
    StoredPoint {
        kind: "checkpoint".to_owned(),
        seq: point.seq,
        hash: point.hash,
        signed_at_us: point.signed_at_us,
        key_id: point.key_id.clone(),
        signature: from_b64(&point.signature),
    }
    .checked(stream, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..24).prop_map(|c| c.into_iter().collect())
    }

    fn event_from(texts: Vec<String>, ip: Option<String>, agent: Option<String>) -> ChainedEvent {
        // An app's part when the agent is absent, so both forms round-trip.
        let app = agent
            .is_none()
            .then(|| r#"{"service":"svc_1","targets":[]}"#.to_owned());
        let mut t = texts.into_iter();
        let mut next = || t.next().unwrap_or_default();
        ChainedEvent {
            stream: next(),
            seq: 7,
            id: next(),
            occurred_at_us: -42,
            actor_type: next(),
            actor_id: next(),
            actor_role: next(),
            action: next(),
            target_type: next(),
            target_id: next(),
            outcome: next(),
            ip,
            user_agent: agent,
            request_id: next(),
            changes: next(),
            redaction: app
                .as_ref()
                .map(|_| r#"{"key_id":"k1","signature":"c2lnbmVk"}"#.to_owned()),
            app,
            prev_hash: [1; 32],
            hash: [2; 32],
        }
    }

    proptest! {
        // claim: AUD-4
        #[test]
        fn any_event_reads_back_equal_from_csv_and_ndjson(
            texts in proptest::collection::vec(text(), 11),
            ip in proptest::option::of(text()),
            agent in proptest::option::of(text()),
        ) {
            let event = event_from(texts, ip, agent);
            let mut csv = Vec::new();
            write_csv_event(&mut csv, &event);
            let csv = String::from_utf8(csv).unwrap();
            let record = csv.strip_suffix('\n').unwrap();
            match csv_line(record) {
                Some(Line::Event(back)) => prop_assert_eq!(*back, event.clone()),
                _ => prop_assert!(false, "CSV record not read back: {record:?}"),
            }
            let mut ndjson = Vec::new();
            write_json_line(&mut ndjson, &EventLine(&event));
            let line = std::str::from_utf8(&ndjson).unwrap().trim_end_matches('\n');
            match serde_json::from_str::<Line>(line) {
                Ok(Line::Event(back)) => prop_assert_eq!(*back, event),
                _ => prop_assert!(false, "NDJSON line not read back: {line:?}"),
            }
        }

        #[test]
        fn arbitrary_input_never_panics_the_export_verifier(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let key = PublicKey::from_bytes(&[3; 32]).unwrap();
            let mut csv = b"record,".to_vec();
            csv.extend_from_slice(&bytes);
            for input in [bytes.as_slice(), csv.as_slice()] {
                prop_assert!(verify_export(input, &key).is_err());
            }
        }
    }

    // claim: AUD-4
    #[test]
    fn csv_fields_round_trip_keeping_absent_and_empty_apart() {
        for value in [
            None,
            Some(""),
            Some("plain"),
            Some("a,b"),
            Some("say \"hi\""),
            Some("=cmd()"),
            Some("=cmd|' /C calc'!A0"),
            Some("+1"),
            Some("-1"),
            Some("@SUM(A1)"),
            Some("\tx"),
            Some("\rx"),
            Some("'"),
            Some("'=x"),
            Some("''"),
        ] {
            let mut buf = Vec::new();
            write_csv_field(&mut buf, Some("x"));
            buf.push(b',');
            write_csv_field(&mut buf, value);
            let written = std::str::from_utf8(&buf).unwrap();
            let parsed = parse_csv_record(written).unwrap();
            assert_eq!(parsed[1].as_deref(), value, "{value:?}");
            // What a spreadsheet sees as the cell never starts a formula.
            let cell = split_csv_record(written).unwrap()[1]
                .clone()
                .unwrap_or_default();
            assert!(!matches!(
                cell.chars().next(),
                Some('=' | '+' | '-' | '@' | '\t' | '\r')
            ));
        }
    }
}
