//! The text log's field and time formatters, used when the log does not go to a terminal: the
//! same lines as tracing-subscriber's defaults without colours, for a fraction of their work.
//!
//! Why: every AI request writes a line, and with the defaults that line was 14% of the
//! gateway's instructions per LLM request (callgrind, `bench`'s LLM request). Two parts of it
//! did nothing for a log file: each field name and `=` went through `nu_ansi_term` even with
//! colours off (about 6,000 instructions a line), and the date was worked out from the epoch
//! on every line (about 2,400). Here field names are written as they are, and the date part
//! of the timestamp is made once a second per thread.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;

/// The fields of an event: `name=value` separated by spaces, the message bare, as the
/// default formatter writes them without colours. Strings are written as `Debug`, quoted and
/// escaped, so a client's text cannot break a line; `%` values are written as they are. The
/// `log.*` fields of records bridged from the `log` crate are left out, as the default does.
pub fn fields() -> PlainFields {
    PlainFields
}

/// See [`fields`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor { w: writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    w: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    /// The separator, then `name=` (nothing for the message).
    fn name(&mut self, name: &str) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.w.write_char(' ')?;
        }
        if name != "message" {
            self.w.write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.w.write_char('=')?;
        }
        Ok(())
    }

    fn write(&mut self, name: &str, value: &dyn fmt::Debug) -> fmt::Result {
        self.name(name)?;
        write!(self.w, "{value:?}")
    }

    /// A field whose `Debug` text is `text` as it is (a number or a boolean), or in quotes
    /// with `quoted` (a string with nothing to escape).
    fn record_plain(&mut self, field: &Field, text: &str, quoted: bool) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let quote = if quoted { "\"" } else { "" };
        self.result = (|| {
            self.name(name)?;
            self.w.write_str(quote)?;
            self.w.write_str(text)?;
            self.w.write_str(quote)
        })();
    }
}

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_ok() && !name.starts_with("log.") {
            self.result = self.write(name, value);
        }
    }

    // Numbers and booleans skip `core::fmt`: the request line has three of them, and each
    // `write!` of one cost a few hundred instructions. The text is what `Debug` writes.
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_plain(field, itoa::Buffer::new().format(value), false);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_plain(field, itoa::Buffer::new().format(value), false);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record_plain(field, if value { "true" } else { "false" }, false);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.record_debug(field, &format_args!("{value}")),
            // Printable ASCII without quotes or backslashes is its own `Debug` text, so it is
            // written quoted as it is, without `Debug`'s walk over each character.
            _ if is_plain(value) => self.record_plain(field, value, true),
            _ => self.record_debug(field, &value),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let Some(source) = value.source() else {
            return self.record_debug(field, &format_args!("{value}"));
        };
        let sources = Sources(source);
        let name = field.name();
        self.record_debug(field, &format_args!("{value} {name}.sources={sources}"));
    }
}

/// Whether `value` is its own `Debug` text between quotes: printable ASCII without quotes or
/// backslashes.
pub(crate) fn is_plain(value: &str) -> bool {
    value.bytes().all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
}

/// Set once the plain text format (this module's) is the log's: see [`one_message`].
static ONE_MESSAGE: AtomicBool = AtomicBool::new(false);

/// Says that the log is written with this module's [`fields`], so that a line written for
/// every request may come as one message its caller put together, whose text is what the
/// fields would have written (`ai::request_log`). Other formats (JSON) keep the fields.
pub fn use_one_message_lines() {
    ONE_MESSAGE.store(true, Ordering::Relaxed);
}

/// Whether [`use_one_message_lines`] was called.
pub(crate) fn one_message() -> bool {
    ONE_MESSAGE.load(Ordering::Relaxed)
}

/// An error's sources as `[first, second]`, as the default formatter lists them.
struct Sources<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(e) = next {
            list.entry(&format_args!("{e}"));
            next = e.source();
        }
        list.finish()
    }
}

/// UTC time in RFC 3339 with microseconds, `2026-12-04T16:18:28.833542Z`, the default
/// formatter's shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock;

thread_local! {
    /// The second last formatted on this thread, and its text up to the fraction's dot.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        stamp(w, since.as_secs(), since.subsec_micros())
    }
}

/// Writes the time `secs` seconds and `micros` microseconds after the epoch.
fn stamp(w: &mut impl fmt::Write, secs: u64, micros: u32) -> fmt::Result {
    SECOND.with(|cell| {
        let mut second = cell.borrow_mut();
        if second.0 != secs {
            let text = &mut second.1;
            text.clear();
            let at = i64::try_from(secs).ok().and_then(|s| chrono::DateTime::from_timestamp(s, 0));
            match at {
                Some(at) => write!(text, "{}.", at.format("%Y-%m-%dT%H:%M:%S"))?,
                // Beyond chrono's range (year 262 143): the raw count, still one token.
                None => write!(text, "{secs}.")?,
            }
            second.0 = secs;
        }
        w.write_str(&second.1)
    })?;
    // Six digits, zero-padded, without the formatting machinery.
    let mut digits = *b"000000Z";
    let mut n = micros.min(999_999);
    for d in digits[..6].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    w.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// What a test's log subscriber wrote: an in-memory writer whose clones share the bytes.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    /// The bytes written so far, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[cfg(test)]
impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_is_rfc3339_with_microseconds_and_the_date_follows_the_second() {
        let mut out = String::new();
        stamp(&mut out, 1_796_400_000, 7).unwrap();
        assert_eq!(out, "2026-12-04T16:00:00.000007Z");
        out.clear();
        // The same second again comes from the thread's cached date.
        stamp(&mut out, 1_796_400_000, 80).unwrap();
        assert_eq!(out, "2026-12-04T16:00:00.000080Z");
        out.clear();
        // The next second on the same thread is not the cached one.
        stamp(&mut out, 1_796_400_001, 999_999).unwrap();
        assert_eq!(out, "2026-12-04T16:00:01.999999Z");
        out.clear();
        stamp(&mut out, 0, 123_456).unwrap();
        assert_eq!(out, "1970-01-01T00:00:00.123456Z");
    }

    #[test]
    fn lines_match_the_default_formatter_without_colours() {
        let line = |ours: bool| {
            let buf = Captured::default();
            let sink = buf.clone();
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .without_time();
            let emit = || {
                tracing::info!(id = %"abc", model = "a\nb", n = 3u64, ok = true, "ai request");
                tracing::info!(r#type = -7i64, big = u64::MAX, no = false, "numbers");
                for text in
                    ["plain /text-1.0~", "", "quote\"", "back\\slash", "tab\t", "é", "\u{7f}"]
                {
                    tracing::info!(text, "strings");
                }
                let inner = std::io::Error::other("refused");
                let outer = std::io::Error::other(Wrapped(inner));
                let e: &(dyn std::error::Error + 'static) = &outer;
                tracing::warn!(error = e, r#type = "x", "call failed");
            };
            match ours {
                true => {
                    tracing::subscriber::with_default(builder.fmt_fields(fields()).finish(), emit)
                }
                false => tracing::subscriber::with_default(builder.finish(), emit),
            }
            buf.text()
        };
        let ours = line(true);
        assert_eq!(ours, line(false));
        assert!(ours.contains(r#"ai request id=abc model="a\nb" n=3 ok=true"#), "{ours}");
        assert!(ours.contains("numbers type=-7 big=18446744073709551615 no=false"), "{ours}");
        assert!(ours.contains(r#"strings text="plain /text-1.0~""#), "{ours}");
        assert!(ours.contains(r#"strings text="quote\"""#), "{ours}");
        let sources = r#"error=wrapped: refused error.sources=[refused] type="x""#;
        assert!(ours.contains(&format!("call failed {sources}")), "{ours}");
    }

    /// An error with a source, to check how sources are listed.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
