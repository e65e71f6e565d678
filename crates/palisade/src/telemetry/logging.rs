//! Structured JSON logs, one object a line, with secrets redacted by field name (claim OPS-1).
//!
//! The layer is ours rather than a formatter's option because redaction must apply to every
//! field of every event and span, whoever wrote the call site. Lines are appended to a shared
//! buffer that a writer thread writes out every few milliseconds, so a request never waits
//! on the terminal or a pipe, and a burst of lines costs one write.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

tokio::task_local! {
    static REQUEST_FIELDS: RequestFields;
}

/// A request's identifying fields, pre-rendered as a JSON fragment. Every event logged while
/// serving the request carries them. A task-local rather than a `tracing` span: a span costs
/// a registry slot and enter/exit bookkeeping on every poll, which the access log measured
/// as the largest part of the frame's overhead.
pub struct RequestFields(Vec<u8>);

impl RequestFields {
    pub fn new(
        request_id: &str,
        method: &str,
        route: &str,
        client_ip: Option<std::net::IpAddr>,
    ) -> Self {
        let mut fragment = Vec::with_capacity(128);
        for (name, value) in [
            ("request_id", request_id),
            ("method", method),
            ("route", route),
        ] {
            fragment.push(b',');
            write_json_str(&mut fragment, name);
            fragment.push(b':');
            write_json_str(&mut fragment, value);
        }
        if let Some(ip) = client_ip {
            let _ = write!(fragment, ",\"client_ip\":\"{ip}\"");
        }
        Self(fragment)
    }
}

/// Where access lines go once logging is initialised (none in tests that never call `init`).
static ACCESS_SINK: std::sync::OnceLock<Arc<Pending>> = std::sync::OnceLock::new();

/// The target access lines carry; filters name it like any other (`palisade::http::access=warn`).
pub const ACCESS_TARGET: &str = "palisade::http::access";

/// Writes the access line of the current request: its fields, status and latency. One line a
/// request is the hottest logging there is, so it skips `tracing`'s event machinery and is
/// rendered straight into the shared buffer; the caller checks the filter with `enabled!`.
pub fn write_access_line(level: tracing::Level, status: u16, latency_us: u64) {
    let Some(pending) = ACCESS_SINK.get() else {
        return;
    };
    let mut line = Vec::with_capacity(320);
    line.extend_from_slice(b"{\"ts\":\"");
    write_timestamp(&mut line);
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(level.as_str().as_bytes());
    line.extend_from_slice(b"\",\"target\":\"");
    line.extend_from_slice(ACCESS_TARGET.as_bytes());
    line.push(b'"');
    let _ = REQUEST_FIELDS.try_with(|fields| line.extend_from_slice(&fields.0));
    let _ = writeln!(
        line,
        ",\"message\":\"request answered\",\"status\":{status},\"latency_us\":{latency_us}}}"
    );
    pending.push(&line);
}

/// Runs `work` with `fields` attached to every event it logs.
pub async fn in_request<F: std::future::Future>(fields: RequestFields, work: F) -> F::Output {
    REQUEST_FIELDS.scope(fields, work).await
}

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

/// How often the writer thread writes what has accumulated.
const WRITE_INTERVAL: Duration = Duration::from_millis(20);
/// Past this many buffered bytes the writer is woken at once.
const WAKE_AT: usize = 256 * 1024;
/// Past this many, logging threads wait for the writer: memory stays bounded under a storm.
const BLOCK_AT: usize = 16 * 1024 * 1024;

/// Lines waiting to be written, shared by every logging thread and the writer thread.
/// Appending is a short critical section; the write syscall happens off the request path,
/// once per interval rather than once per line.
struct Pending {
    buffer: Mutex<PendingBuffer>,
    writer_wake: Condvar,
    space_freed: Condvar,
}

#[derive(Default)]
struct PendingBuffer {
    bytes: Vec<u8>,
    stopping: bool,
}

impl Pending {
    fn push(&self, line: &[u8]) {
        let mut pending = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        while pending.bytes.len() > BLOCK_AT && !pending.stopping {
            pending = self
                .space_freed
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        pending.bytes.extend_from_slice(line);
        if pending.bytes.len() > WAKE_AT {
            self.writer_wake.notify_one();
        }
    }
}

/// Keeps the writer thread alive; dropping it writes every pending line.
pub struct LogGuard {
    pending: Arc<Pending>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.pending
            .buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopping = true;
        self.pending.writer_wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Installs the JSON layer as the global subscriber, writing to `out`.
pub fn init(filter: Targets, out: impl Write + Send + 'static) -> LogGuard {
    let (layer, guard) = json_layer(out);
    let _ = ACCESS_SINK.set(guard.pending.clone());
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    // A second init (tests that build several apps) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
    guard
}

/// The layer and the guard of its writer thread, for callers composing their own subscriber.
pub fn json_layer(out: impl Write + Send + 'static) -> (JsonLayer, LogGuard) {
    let pending = Arc::new(Pending {
        buffer: Mutex::new(PendingBuffer::default()),
        writer_wake: Condvar::new(),
        space_freed: Condvar::new(),
    });
    let writer = {
        let pending = pending.clone();
        std::thread::Builder::new()
            .name("palisade-log".into())
            .spawn(move || write_pending(&pending, out))
            .expect("spawning the log writer thread")
    };
    (
        JsonLayer {
            pending: pending.clone(),
        },
        LogGuard {
            pending,
            writer: Some(writer),
        },
    )
}

fn write_pending(pending: &Pending, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let stopping = {
            let mut buffer = pending.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.bytes.len() <= WAKE_AT && !buffer.stopping {
                buffer = pending
                    .writer_wake
                    .wait_timeout(buffer, WRITE_INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            // Swap rather than copy: both buffers keep their capacity across rounds.
            std::mem::swap(&mut batch, &mut buffer.bytes);
            buffer.stopping
        };
        pending.space_freed.notify_all();
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
        }
        if stopping {
            break;
        }
    }
}

pub struct JsonLayer {
    pending: Arc<Pending>,
}

/// A span's fields, pre-rendered as a JSON fragment (`,"k":v,…`) so each event inside the
/// span copies bytes instead of re-encoding values.
struct SpanFields(Vec<u8>);

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Vec::with_capacity(128);
        attrs.record(&mut JsonFieldWriter(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
                values.record(&mut JsonFieldWriter(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
        }
        LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                self.render(&mut line, event, &ctx);
                self.pending.push(&line);
            }
            // An event raised while rendering another (a Debug impl that logs) gets its own.
            Err(_) => {
                let mut line = Vec::new();
                self.render(&mut line, event, &ctx);
                self.pending.push(&line);
            }
        });
    }
}

impl JsonLayer {
    fn render<S>(&self, line: &mut Vec<u8>, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        line.extend_from_slice(b"{\"ts\":\"");
        write_timestamp(line);
        let meta = event.metadata();
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(meta.level().as_str().as_bytes());
        line.extend_from_slice(b"\",\"target\":");
        write_json_str(line, meta.target());
        let _ = REQUEST_FIELDS.try_with(|fields| line.extend_from_slice(&fields.0));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    line.extend_from_slice(fields);
                }
            }
        }
        event.record(&mut JsonFieldWriter(line));
        line.extend_from_slice(b"}\n");
    }
}

/// Writes the current UTC time as RFC 3339 with nanoseconds. The date and time of day are
/// formatted once per second per thread; each line adds only the fraction.
fn write_timestamp(out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, Vec<u8>)> = const { std::cell::RefCell::new((i64::MIN, Vec::new())) };
    }
    let now = time::OffsetDateTime::now_utc();
    let second = now.unix_timestamp();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            cached.1.clear();
            let whole = now.replace_nanosecond(0).unwrap_or(now);
            let _ = whole.format_into(
                &mut cached.1,
                &time::format_description::well_known::Rfc3339,
            );
            // "…:SSZ" → "…:SS": the fraction and the zone are appended per line.
            cached.1.pop();
            cached.0 = second;
        }
        out.extend_from_slice(&cached.1);
    });
    let _ = write!(out, ".{:09}Z", now.nanosecond());
}

fn write_json_str(out: &mut Vec<u8>, value: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Writes formatted text into a JSON string body, escaping as it goes.
struct JsonEscaped<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let mut plain_from = 0;
        for (i, byte) in text.bytes().enumerate() {
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f => b"",
                _ => continue,
            };
            self.0.extend_from_slice(&text.as_bytes()[plain_from..i]);
            if escape.is_empty() {
                let _ = write!(self.0, "\\u{byte:04x}");
            } else {
                self.0.extend_from_slice(escape);
            }
            plain_from = i + 1;
        }
        self.0.extend_from_slice(&text.as_bytes()[plain_from..]);
        Ok(())
    }
}

/// Appends `,"name":value` for each field, replacing sensitive values with [`REDACTED`].
struct JsonFieldWriter<'a>(&'a mut Vec<u8>);

impl JsonFieldWriter<'_> {
    /// Writes the key; returns false when the value must be redacted (already written).
    fn key(&mut self, field: &Field) -> bool {
        self.0.push(b',');
        write_json_str(self.0, field.name());
        self.0.push(b':');
        if is_sensitive_name(field.name()) {
            write_json_str(self.0, REDACTED);
            false
        } else {
            true
        }
    }

    fn number(&mut self, field: &Field, value: impl std::fmt::Display) {
        if self.key(field) {
            let _ = write!(self.0, "{value}");
        }
    }
}

impl Visit for JsonFieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.key(field) {
            write_json_str(self.0, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.number(field, value);
        } else if self.key(field) {
            self.0.extend_from_slice(b"null");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field) {
            write_json_str(self.0, &value.to_string());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.key(field) {
            // Escape while formatting: no intermediate String per field.
            self.0.push(b'"');
            let _ = std::fmt::Write::write_fmt(&mut JsonEscaped(self.0), format_args!("{value:?}"));
            self.0.push(b'"');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
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
    fn every_line_is_valid_json_whatever_the_values_contain() {
        let nasty = "quote\" backslash\\ newline\n tab\t bell\u{7} nul\u{0} é 😀";
        let out = capture(|| {
            tracing::info!(text = nasty, debug = ?nasty, number = 1.5, nan = f64::NAN, "msg {}", nasty);
        });
        let line: Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(line["text"], nasty);
        assert_eq!(line["debug"], format!("{nasty:?}"));
        assert_eq!(line["message"], format!("msg {nasty}"));
        assert_eq!(line["number"], 1.5);
        assert!(line["nan"].is_null());
        let ts = line["ts"].as_str().unwrap();
        let parsed =
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert!(
            (time::OffsetDateTime::now_utc() - parsed)
                .whole_seconds()
                .abs()
                < 60,
            "{ts}"
        );
        assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
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
