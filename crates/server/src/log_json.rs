//! The JSON log line (`LOG_FORMAT=json`): one object per event,
//!
//! ```text
//! {"timestamp":"2026-11-29T18:58:01.482917Z","level":"INFO","message":"request finished",
//!  "status":200,"latency_ms":0.42,"target":"switchyard_server::middleware",
//!  "span":{"request_id":"…","method":"POST","route":"/v1/chat/completions","key_id":"…","name":"request"}}
//! ```
//!
//! the event's own fields at the top level, and the fields of the span it
//! happened in under `span` (the fields recorded so far, in the order they
//! were first recorded, then the span's `name`). This is the shape of
//! tracing-subscriber's JSON formatter with flattened events and the
//! current span, written directly: a span's fields are kept as ready JSON
//! text when they are recorded, and a line is written into one reused
//! buffer, where the general formatter parses the span's fields back out of
//! JSON and re-validates every piece of output as UTF-8 for every line. At
//! one access log line per request that was a sixth of the instructions a
//! call costs the service (docs/performance.md).
//!
//! Events forwarded from the `log` crate carry their target in a
//! `log.target` field: it becomes the line's `target`, and the other
//! `log.*` fields are left out.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The layer that writes JSON lines to `W`.
pub struct JsonLayer<W> {
    writer: W,
}

impl<W> JsonLayer<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

/// A span's recorded fields: `(name, JSON value)` in first-recorded order.
#[derive(Default)]
struct SpanFields(Vec<(&'static str, String)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let mut json = String::with_capacity(value.len() + 2);
        push_string(&mut json, value);
        self.set(field.name(), json);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut json = String::new();
        push_debug(&mut json, value);
        self.set(field.name(), json);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let mut json = String::new();
        push_f64(&mut json, value);
        self.set(field.name(), json);
    }
}

/// Writes an event's fields as members of the line's object.
struct EventFields<'a> {
    line: &'a mut String,
    /// A `log.target` field (an event forwarded from the `log` crate).
    log_target: Option<String>,
}

impl EventFields<'_> {
    /// Starts a member named `name`, or returns false for a field the line
    /// leaves out.
    fn member(&mut self, name: &str) -> bool {
        if name.starts_with("log.") {
            return false;
        }
        self.line.push(',');
        push_string(self.line, name);
        self.line.push(':');
        true
    }
}

impl Visit for EventFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        } else if self.member(field.name()) {
            push_string(self.line, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.member(field.name()) {
            push_debug(self.line, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.member(field.name()) {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.member(field.name()) {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.member(field.name()) {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.member(field.name()) {
            push_f64(self.line, value);
        }
    }
}

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields(Vec::with_capacity(attrs.fields().len()));
        attrs.record(&mut fields);
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |line: &mut String| {
            line.clear();
            let meta = event.metadata();
            line.push_str("{\"timestamp\":\"");
            line.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            line.push_str("\",\"level\":\"");
            line.push_str(meta.level().as_str());
            line.push('"');
            let mut fields = EventFields {
                line,
                log_target: None,
            };
            event.record(&mut fields);
            let log_target = fields.log_target;
            line.push_str(",\"target\":");
            push_string(line, log_target.as_deref().unwrap_or(meta.target()));
            if let Some(span) = ctx.event_span(event) {
                line.push_str(",\"span\":{");
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (name, value) in &fields.0 {
                        push_string(line, name);
                        line.push(':');
                        line.push_str(value);
                        line.push(',');
                    }
                }
                line.push_str("\"name\":");
                push_string(line, span.name());
                line.push('}');
            }
            line.push_str("}\n");
            // Nothing to do about a failed write of a log line but go on.
            let _ = self.writer.make_writer_for(meta).write_all(line.as_bytes());
        };
        // An event raised while a line is being written (by the writer
        // itself) gets a buffer of its own.
        LINE.with(|buf| match buf.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut String::new()),
        });
    }
}

/// Appends `s` as a JSON string.
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string. Runs of eight
/// bytes with nothing to escape (most of a log line) are checked at once
/// and copied whole.
fn push_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes[i];
            let escape: &str = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.push_str(&s[start..i]);
            if escape.is_empty() {
                let _ = write!(out, "\\u{b:04x}");
            } else {
                out.push_str(escape);
            }
            i += 1;
            start = i;
        }
    }
    out.push_str(&s[start..]);
}

/// Whether any of the eight bytes of `word` is a control character, `"`
/// or `\` (the classic has-zero-byte and has-less-than tests, exact for
/// "some byte" when the bound is at most 128).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
    control
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

/// Formats into a JSON string's inside, escaping as it goes.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

/// Appends a value's `Debug` form (a message's text, a `%`-recorded
/// value's `Display` form) as a JSON string.
fn push_debug(out: &mut String, value: &dyn fmt::Debug) {
    out.push('"');
    let _ = write!(Escaping(out), "{value:?}");
    out.push('"');
}

/// Appends a JSON number, or `null` for a value JSON has no number for.
fn push_f64(out: &mut String, value: f64) {
    if value.is_finite() {
        // The shortest form that reads back as the same number, as `{:?}`
        // writes it, in a fifth of the instructions.
        out.push_str(ryu::Buffer::new().format_finite(value));
    } else {
        out.push_str("null");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    fn lines(seen: &Lines) -> Vec<serde_json::Value> {
        let text = String::from_utf8(seen.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn lines_carry_the_event_and_its_span() {
        let seen = Lines::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(answer = 42_u64, "outside");
            let span = tracing::info_span!(
                "request",
                request_id = %"r-1",
                route = "/v1/\"chat\"",
                key_id = tracing::field::Empty,
            );
            span.in_scope(|| {
                tracing::warn!(latency_ms = 0.5, ok = true, delta = -3_i64, "first\nline");
            });
            span.record("key_id", "k-9");
            span.record("route", "/v2");
            span.in_scope(|| tracing::info!(note = ?Some("x"), "second"));
        });
        let lines = lines(&seen);
        assert_eq!(lines.len(), 3);
        let outside = &lines[0];
        assert_eq!(outside["message"], "outside");
        assert_eq!(outside["answer"], 42);
        assert_eq!(outside["level"], "INFO");
        assert_eq!(outside["target"], module_path!());
        assert!(outside.get("span").is_none());
        let ts = outside["timestamp"].as_str().unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
        assert!(
            (chrono::Utc::now() - parsed.to_utc()).num_seconds().abs() < 60,
            "{ts}"
        );
        assert_eq!(ts.len(), "2026-11-29T18:58:01.482917Z".len(), "{ts}");

        let first = &lines[1];
        assert_eq!(first["message"], "first\nline");
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["latency_ms"], 0.5);
        assert_eq!(first["ok"], true);
        assert_eq!(first["delta"], -3);
        assert_eq!(
            first["span"],
            serde_json::json!({"request_id": "r-1", "route": "/v1/\"chat\"", "name": "request"})
        );
        let second = &lines[2];
        assert_eq!(second["note"], "Some(\"x\")");
        assert_eq!(
            second["span"],
            serde_json::json!({"request_id": "r-1", "route": "/v2", "key_id": "k-9", "name": "request"})
        );
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        let nasty = "quote \" back \\ nl \n cr \r tab \t bell \u{7} nul \0 é ✓";
        push_string(&mut out, nasty);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, nasty);
        // Every byte that needs escaping, at every offset of an eight-byte
        // run, among plain text and multi-byte characters.
        for special in ['"', '\\', '\n', '\u{1f}', '\0', '\u{7f}', 'é'] {
            for at in 0..20 {
                let text: String = (0..20)
                    .map(|i| if i == at { special } else { 'a' })
                    .collect();
                let mut out = String::new();
                push_string(&mut out, &text);
                assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text, "{out}");
                assert_eq!(out, serde_json::to_string(&text).unwrap());
            }
        }
        for v in [0.5, 0.123_456_789, 100.0, 1e-7, 1e21, -3.25] {
            let mut f = String::new();
            push_f64(&mut f, v);
            assert_eq!(f, format!("{v:?}"));
        }
        assert!(out.contains("\\u0007") && out.contains("\\u0000"), "{out}");
        let mut f = String::new();
        push_f64(&mut f, f64::NAN);
        assert_eq!(f, "null");
    }
}
