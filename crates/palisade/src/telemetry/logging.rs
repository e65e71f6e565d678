//! Structured JSON logs, one object a line, with secrets redacted by field name (claim OPS-1).
//!
//! The layer is ours rather than a formatter's option because redaction must apply to every
//! field of every event and span, whoever wrote the call site. Lines are handed to a writer
//! thread so a request never waits on the terminal or a pipe.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Field-name fragments whose values never reach a log line.
const SENSITIVE_NAME_PARTS: &[&str] = &[
    "password",
    "passwd",
    "token",
    "secret",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "x-api-key",
    "credential",
    "private_key",
    "recovery_code",
    "totp",
];

/// True when a field or header of this name may carry a secret.
pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_NAME_PARTS.iter().any(|part| lower.contains(part))
}

/// Keeps the writer thread alive; dropping it flushes every queued line.
pub struct LogGuard {
    sender: Option<SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The global subscriber keeps its own sender, so the channel never closes by itself:
        // an empty line (events always end in '\n') tells the writer to drain and stop.
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Vec::new());
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Installs the JSON layer as the global subscriber, writing to `out`.
pub fn init(filter: Targets, out: impl Write + Send + 'static) -> LogGuard {
    let (layer, guard) = json_layer(out);
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    // A second init (tests that build several apps) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    guard
}

/// The layer and the guard of its writer thread, for callers composing their own subscriber.
pub fn json_layer(out: impl Write + Send + 'static) -> (JsonLayer, LogGuard) {
    // Bounded: under a log storm requests slow down rather than memory growing without end.
    let (sender, receiver) = mpsc::sync_channel::<Vec<u8>>(16_384);
    let writer = std::thread::Builder::new()
        .name("palisade-log".into())
        .spawn(move || write_lines(receiver, out))
        .expect("spawning the log writer thread");
    (
        JsonLayer {
            sender: sender.clone(),
        },
        LogGuard {
            sender: Some(sender),
            writer: Some(writer),
        },
    )
}

fn write_lines(receiver: Receiver<Vec<u8>>, out: impl Write) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        let line = match receiver.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Empty) => {
                // Flush only when the queue is empty: bursts share one write.
                let _ = out.flush();
                match receiver.recv() {
                    Ok(line) => line,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if line.is_empty() {
            break;
        }
        let _ = out.write_all(&line);
    }
    let _ = out.flush();
}

pub struct JsonLayer {
    sender: SyncSender<Vec<u8>>,
}

/// Fields recorded on a span, kept in its extensions for the events inside it.
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut RedactingVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
                values.record(&mut RedactingVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc();
        line.insert(
            "ts".into(),
            now.format(&time::format_description::well_known::Rfc3339)
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        let meta = event.metadata();
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in fields {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut RedactingVisitor(&mut line));
        let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        bytes.push(b'\n');
        let _ = self.sender.send(bytes);
    }
}

/// Records fields as JSON values, replacing sensitive ones with [`REDACTED`].
struct RedactingVisitor<'a>(&'a mut Map<String, Value>);

impl RedactingVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let value = if is_sensitive_name(field.name()) {
            Value::String(REDACTED.into())
        } else {
            value
        };
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for RedactingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let (layer, guard) = json_layer(buffer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, emit);
        drop(guard);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    // claim: OPS-1
    #[test]
    fn fields_named_like_secrets_are_redacted_in_events_and_spans() {
        let out = capture(|| {
            let span = tracing::info_span!("request", session_token = "span-secret-1");
            let _entered = span.enter();
            tracing::info!(
                password = "hunter2hunter2",
                api_key = "pal_live_x",
                client_secret = %"s3cr3t-value",
                authorization = ?"Bearer abc.def",
                user_agent = "curl/8",
                "signed in"
            );
        });
        for secret in [
            "span-secret-1",
            "hunter2hunter2",
            "pal_live_x",
            "s3cr3t-value",
            "abc.def",
        ] {
            assert!(!out.contains(secret), "{secret} leaked into: {out}");
        }
        let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(line["password"], REDACTED);
        assert_eq!(line["session_token"], REDACTED);
        assert_eq!(line["user_agent"], "curl/8");
        assert_eq!(line["message"], "signed in");
        assert_eq!(line["level"], "INFO");
    }

    #[test]
    fn sensitive_names_match_headers_and_fields_case_insensitively() {
        for name in [
            "Authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "refresh_token",
            "new_password",
            "webhook_secret",
        ] {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in ["user_agent", "request_id", "email", "status"] {
            assert!(!is_sensitive_name(name), "{name}");
        }
    }
}
