//! JSON built into a `serde_json::Value` under a budget of values.
//!
//! Why not `serde_json::from_slice::<Value>` on what a client or an orchestrator sent: a
//! `Value` takes 32 bytes and an array or map slot for every value, where `0,` takes two bytes
//! of input. A 50 MiB body of zeros became 1.3–2.1 GiB and seconds of a serving thread, outside
//! every byte limit. Counting values as they are built stops such a body at the first value
//! over the budget, having built no more than the budget's worth; strings cost their length, as
//! the input already did. The parser, its syntax errors and its handling of a repeated key
//! (the last one kept) are serde_json's own.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Values one document may hold when nothing else is said: ten times what the largest
/// answers and requests of the AI API carry (an LLM conversation of thousands of messages),
/// about 3 MiB of `Value`s at most.
pub const MAX_VALUES: usize = 100_000;

/// Values a document that a stream holds for its whole life and relays may have (an event,
/// a stream's params): ten times what ai-runner's events carry.
pub const STREAM_VALUES: usize = 10_000;
/// Past this many bytes or [`KEPT_VALUES`] values, a document a stream keeps only to show it
/// (its last event) is kept trimmed ([`kept`]): a thousand streams keep two each.
pub const KEPT_BYTES: usize = 16 << 10;
/// See [`KEPT_BYTES`].
pub const KEPT_VALUES: usize = 1_000;

/// What a stream keeps to show of `value`, which took `raw_len` bytes: the value itself when
/// small ([`KEPT_BYTES`], [`KEPT_VALUES`]); else its members, object members trimmed in turn
/// two levels down, as long as they fit those bounds, and a note of the size of each member
/// left out. An ai-runner status event whose `last_params` run long keeps its fps, errors and
/// input status that way.
pub fn kept(value: &Value, raw_len: usize) -> Value {
    let size = Size::of(value, KEPT_VALUES + 1);
    if raw_len <= KEPT_BYTES && size.values <= KEPT_VALUES && size.bytes <= KEPT_BYTES {
        return value.clone();
    }
    let mut room = Size { values: KEPT_VALUES, bytes: KEPT_BYTES };
    trimmed(value, 2, &mut room)
}

/// `value` within `room`, which it uses up: whole when it fits, an object's members each
/// trimmed `depth` levels down, anything else as a note of its size.
fn trimmed(value: &Value, depth: usize, room: &mut Size) -> Value {
    let size = Size::of(value, room.values + 1);
    if size.values <= room.values && size.bytes <= room.bytes {
        room.values -= size.values;
        room.bytes -= size.bytes;
        return value.clone();
    }
    match value {
        Value::Object(map) if depth > 0 && room.values > 0 => {
            room.values -= 1;
            let mut out = Map::new();
            for (key, member) in map {
                if room.values == 0 || room.bytes < key.len() {
                    break;
                }
                room.bytes -= key.len();
                out.insert(key.clone(), trimmed(member, depth - 1, room));
            }
            Value::Object(out)
        }
        _ => {
            let mut note = Map::new();
            note.insert("omitted_values".into(), Value::from(Size::of(value, usize::MAX).values));
            room.values = room.values.saturating_sub(2);
            Value::Object(note)
        }
    }
}

/// How many values a document holds, and the bytes of its strings and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Size {
    values: usize,
    bytes: usize,
}

impl Size {
    /// The size of `value`, counting no further than `most` values.
    fn of(value: &Value, most: usize) -> Self {
        let mut size = Size { values: 0, bytes: 0 };
        let mut todo = vec![value];
        while let Some(v) = todo.pop() {
            size.values += 1;
            if size.values >= most {
                size.values = most;
                return size;
            }
            match v {
                Value::Array(items) => todo.extend(items),
                Value::Object(map) => {
                    size.bytes += map.keys().map(String::len).sum::<usize>();
                    todo.extend(map.values());
                }
                Value::String(text) => size.bytes += text.len(),
                _ => {}
            }
        }
        size
    }
}

/// `bytes` as one JSON document of at most `budget` values (objects, arrays and scalars each
/// count one), with nothing but white space after it.
pub fn from_slice(bytes: &[u8], budget: usize) -> Result<Value, serde_json::Error> {
    let left = Cell::new(budget);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Budgeted::new(&left, budget).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A seed that builds one value, drawing on a budget shared by every value of a document.
#[derive(Debug, Clone, Copy)]
pub struct Budgeted<'b> {
    left: &'b Cell<usize>,
    budget: usize,
}

impl<'b> Budgeted<'b> {
    /// A seed drawing on `left`, which started at `budget` (named in the error).
    pub fn new(left: &'b Cell<usize>, budget: usize) -> Self {
        Self { left, budget }
    }

    /// Counts one value (or anything else a caller builds per value), or fails once the
    /// budget is spent.
    pub fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(rest) => {
                self.left.set(rest);
                Ok(())
            }
            None => Err(E::custom(format!("more than {} JSON values", self.budget))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.take()?;
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        self.deserialize(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.take()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_within_the_budget_read_as_serde_json_reads_them() {
        for text in [
            r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"a2":"é\u00e9","n":18446744073709551615}"#,
            r#"[]"#,
            r#""s""#,
            r#"{"k":1,"k":2}"#,
            "  7  ",
        ] {
            let ours = from_slice(text.as_bytes(), MAX_VALUES).unwrap();
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
        }
        // Ten values exactly: the object, its array, the array's eight members.
        let ten = br#"{"a":[1,2,3,4,5,6,7,8]}"#;
        assert!(from_slice(ten, 10).is_ok());
        assert!(from_slice(ten, 9).unwrap_err().to_string().contains("more than 9 JSON values"));
    }

    #[test]
    fn small_documents_are_kept_whole_and_large_ones_trimmed_to_what_fits() {
        let small = serde_json::json!({"type": "status", "fps": 30});
        assert_eq!(kept(&small, 40), small);
        // An ai-runner status event whose params run long: its other fields stay.
        let params: serde_json::Map<String, Value> =
            (0..2_000).map(|i| (format!("node{i}"), Value::from(i))).collect();
        let status = serde_json::json!({
            "type": "status",
            "inference_status": {"fps": 24.5, "last_error": null, "last_params": params},
            "input_status": {"fps": 30},
        });
        let raw = status.to_string().len();
        let kept = kept(&status, raw);
        assert_eq!(kept["type"], "status");
        assert_eq!(kept["input_status"]["fps"], 30);
        assert_eq!(kept["inference_status"]["fps"], 24.5);
        assert_eq!(kept["inference_status"]["last_params"]["omitted_values"], 2_001);
        let size = Size::of(&kept, usize::MAX);
        assert!(size.values <= KEPT_VALUES && size.bytes <= KEPT_BYTES, "{size:?}");
        // A long string and a long list are notes; what comes after them still fits.
        let long =
            serde_json::json!({"a": "x".repeat(KEPT_BYTES * 2), "b": vec![0; 5_000], "c": 1});
        let kept = super::kept(&long, 50_000);
        assert_eq!(kept["a"]["omitted_values"], 1);
        assert_eq!(kept["b"]["omitted_values"], 5_001);
        assert_eq!(kept["c"], 1);
        // Ten thousand members: as many kept as fit.
        let wide: serde_json::Map<String, Value> =
            (0..10_000).map(|i| (format!("k{i}"), Value::from(i))).collect();
        let kept = super::kept(&Value::Object(wide), 200_000);
        let size = Size::of(&kept, usize::MAX);
        assert!(size.values <= KEPT_VALUES && size.bytes <= KEPT_BYTES, "{size:?}");
        assert!(kept.as_object().unwrap().len() > 400, "{size:?}");
    }

    #[test]
    fn syntax_errors_stay_serde_jsons() {
        for text in ["{", "[1,]", "{} x", "", "nul"] {
            let ours = from_slice(text.as_bytes(), MAX_VALUES).unwrap_err().to_string();
            let theirs = serde_json::from_str::<Value>(text).unwrap_err().to_string();
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn a_body_of_many_small_values_stops_at_the_budget() {
        // A million zeros: two megabytes of input, 32 MB and more as `Value`s.
        let zeros = format!("[{}0]", "0,".repeat(1_000_000));
        let e = from_slice(zeros.as_bytes(), MAX_VALUES).unwrap_err();
        assert!(e.to_string().contains("more than 100000 JSON values"), "{e}");
        // A budget shared by the values of one document, nested or not.
        let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(from_slice(nested.as_bytes(), 100).is_ok());
        assert!(from_slice(nested.as_bytes(), 99).is_err());
    }
}
