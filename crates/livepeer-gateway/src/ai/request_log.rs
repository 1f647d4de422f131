//! The log line every AI request writes, `ai request request_id=… pipeline=… …`.
//!
//! Why it has two ways of being written: with the plain text log (`log_format`, what the
//! gateway writes to a file or a log collector), the line is put together here in one pass and
//! handed to `tracing` as the event's message. Recorded as twelve fields, each went through
//! `tracing`'s visitor, a `dyn` writer and `core::fmt` on its own: about 5,500 of the 6,800
//! instructions the line cost, a tenth of all the gateway did for an LLM request (callgrind,
//! `scripts/callgrind/run.sh`). The text is the same byte for byte (the test below writes both
//! and compares them). The JSON log keeps the fields as fields, which is what it is for.

use std::fmt::{self, Write as _};

use crate::orchestrator::JobKey;
use crate::orchestrator::price::Price;

/// Whether the line would be written (`info` on for its target): the caller's work for it
/// is skipped otherwise.
pub(super) fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// The line's target, the module it was written from before it had one of its own: operators
/// filter the log by it (`--log-level livepeer_gateway::ai::job=warn`).
const TARGET: &str = "livepeer_gateway::ai::job";

/// What the line says.
#[derive(Clone, Copy)]
pub(super) struct Line<'a> {
    /// The request's id.
    pub(super) id: &'a str,
    /// Its job.
    pub(super) key: &'a JobKey,
    /// Its pricing units.
    pub(super) units: u64,
    /// The orchestrator that answered or failed last (empty when none was selected).
    pub(super) orch: &'a str,
    /// The price agreed with it, if any.
    pub(super) price: Option<Price>,
    /// Whether the client asked for a stream.
    pub(super) stream: bool,
    /// How the request ended.
    pub(super) outcome: &'a str,
    /// Milliseconds from the request's start.
    pub(super) latency_ms: u64,
    /// Its attempts as JSON, when there was more than one or an error.
    pub(super) attempts: Option<&'a str>,
    /// What its payments spent as JSON, when anything.
    pub(super) spend: Option<&'a str>,
}

impl Line<'_> {
    /// Writes the line: one message with the plain text log, fields otherwise.
    pub(super) fn write(&self) {
        if crate::log_format::one_message() {
            self.one_message();
        } else {
            self.structured();
        }
    }

    /// The line as one message (see the module's doc).
    fn one_message(&self) {
        tracing::info!(target: TARGET, "{self}");
    }

    /// The line as fields of their own, for the JSON log (and any other format but the
    /// plain text one).
    fn structured(&self) {
        let Line { id, key, units, orch, price, stream, outcome, latency_ms, attempts, spend } =
            *self;
        // Values go in as `Display`: a `&str` recorded as `Debug` is escaped character by
        // character, and a price or fee made into a `String` first is an allocation more. None
        // of these values holds a space or a quote (JSON logs quote them all the same), except
        // the model: the client's text, recorded as a `&str` so that the text format escapes
        // its control characters (a newline would forge a line).
        tracing::info!(
            target: TARGET,
            request_id = %id,
            pipeline = %key.pipeline(),
            model = key.model.as_str(),
            orchestrator = %orch,
            outcome = %outcome,
            units,
            price = price.map(tracing::field::display),
            fee_wei = price.map(|p| tracing::field::display(fee(units, p))),
            latency_ms,
            attempts = attempts.map(tracing::field::display),
            spend = spend.map(tracing::field::display),
            stream,
            "ai request"
        );
    }
}

/// The message and the fields as the plain text format writes them (`log_format::Visitor`):
/// `name=value` after a space, strings that need no escaping in quotes as they are, others as
/// `Debug` writes them, absent options left out.
impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = itoa::Buffer::new();
        let mut s = String::with_capacity(256);
        s.push_str("ai request request_id=");
        s.push_str(self.id);
        s.push_str(" pipeline=");
        s.push_str(self.key.pipeline());
        s.push_str(" model=");
        let model = self.key.model.as_str();
        if crate::log_format::is_plain(model) {
            s.push('"');
            s.push_str(model);
            s.push('"');
        } else {
            write!(s, "{model:?}")?;
        }
        s.push_str(" orchestrator=");
        s.push_str(self.orch);
        s.push_str(" outcome=");
        s.push_str(self.outcome);
        s.push_str(" units=");
        s.push_str(n.format(self.units));
        if let Some(price) = self.price {
            s.push_str(" price=");
            s.push_str(n.format(price.per_unit));
            s.push('/');
            s.push_str(n.format(price.pixels_per_unit));
            let fee = fee(self.units, price);
            s.push_str(" fee_wei=");
            s.push_str(n.format(fee.num));
            if fee.den != 1 {
                s.push('/');
                s.push_str(n.format(fee.den));
            }
        }
        s.push_str(" latency_ms=");
        s.push_str(n.format(self.latency_ms));
        for (name, value) in [(" attempts=", self.attempts), (" spend=", self.spend)] {
            if let Some(value) = value {
                s.push_str(name);
                s.push_str(value);
            }
        }
        s.push_str(if self.stream { " stream=true" } else { " stream=false" });
        f.write_str(&s)
    }
}

/// `units × price` as an exact decimal when whole, else `num/den` (never rounded).
fn fee(units: u64, price: Price) -> Fee {
    let num = u128::from(units) * price.per_unit as u128;
    let den = price.pixels_per_unit as u128;
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let g = a.max(1);
    Fee { num: num / g, den: den / g }
}

/// A fee in wei, reduced; written straight into the log line, without a `String` of its own.
struct Fee {
    num: u128,
    den: u128,
}

impl fmt::Display for Fee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.den {
            1 => write!(f, "{}", self.num),
            den => write!(f, "{}/{den}", self.num),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the gateway's plain text log (as `main` sets it up for files) writes for `f`,
    /// without the time.
    fn text(f: impl FnOnce()) -> String {
        let buf = crate::log_format::Captured::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || buf.clone())
            .fmt_fields(crate::log_format::fields())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        out.text()
    }

    #[test]
    fn the_one_message_line_is_the_fields_line_byte_for_byte() {
        let models = ["m", "", "stabilityai/sd-turbo", "a \"b\"", "back\\slash", "x\ny", "é"];
        let prices = [None, Price::new(3, 1000).ok(), Price::new(6, 1).ok(), Price::new(0, 7).ok()];
        let attempts = r#"[{"orchestrator":"https://a:1/","latency_ms":1500,"error":"no \"answer\"\nwithin 1.5s"}]"#;
        let spend = r#"[{"tickets":2,"ev_wei":"10","fee_wei":"48/1000"}]"#;
        let mut compared = 0;
        for (i, model) in models.into_iter().enumerate() {
            for (j, price) in prices.into_iter().enumerate() {
                let key = JobKey { capability: [27, 33, 35][j % 3], model: model.into() };
                let id = format!("id{i}{j}");
                let line = Line {
                    id: &id,
                    key: &key,
                    units: [0, 16, u64::MAX][i % 3],
                    orch: ["http://127.0.0.1:8935", ""][i % 2],
                    price,
                    stream: j % 2 == 1,
                    outcome: ["ok", "stream", "failed"][i % 3],
                    latency_ms: 7 * i as u64,
                    attempts: ((i + j) % 3 == 1).then_some(attempts),
                    spend: (j % 2 == 1).then_some(spend),
                };
                let fields = text(|| line.structured());
                let one = text(|| line.one_message());
                assert_eq!(one, fields);
                assert_eq!(one.lines().count(), 1, "{one}");
                assert!(one.starts_with(" INFO livepeer_gateway::ai::job: ai request "), "{one}");
                compared += 1;
            }
        }
        assert_eq!(compared, 28);
    }

    #[test]
    fn the_line_reads_as_the_fields_say() {
        let key = JobKey { capability: 33, model: "m".into() };
        let line = Line {
            id: "abc",
            key: &key,
            units: 256,
            orch: "https://o:1",
            price: Price::new(3, 1000).ok(),
            stream: true,
            outcome: "ok",
            latency_ms: 12,
            attempts: None,
            spend: None,
        };
        assert_eq!(
            line.to_string(),
            "ai request request_id=abc pipeline=llm model=\"m\" orchestrator=https://o:1 \
             outcome=ok units=256 price=3/1000 fee_wei=96/125 latency_ms=12 stream=true"
        );
    }

    #[test]
    fn fees_are_exact_and_reduced() {
        assert_eq!(fee(256, Price::new(3, 1000).unwrap()).to_string(), "96/125");
        assert_eq!(fee(589_824, Price::new(6, 1).unwrap()).to_string(), "3538944");
        assert_eq!(
            fee(u64::MAX, Price::new(i64::MAX, 1).unwrap()).to_string(),
            (u128::from(u64::MAX) * i64::MAX as u128).to_string()
        );
        assert_eq!(fee(0, Price::new(5, 7).unwrap()).to_string(), "0");
    }
}
