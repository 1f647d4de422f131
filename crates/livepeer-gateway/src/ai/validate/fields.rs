//! A JSON body's top-level object read straight into one slot per field the spec knows.
//!
//! Why not `serde_json::from_slice::<Value>` and then taking fields out of the map: that
//! builds a `BTreeMap` with a `String` per key, including keys the gateway then drops, and
//! on the LLM route (a three-field body) the map's inserts, removals and key allocations were
//! about a third of validation's instructions. Here each key is looked up among the spec's
//! names as it is read, a known field's value is parsed into its slot, and an unknown one is
//! skipped without being built. What the client sees is the same: the same parser reports the
//! same syntax errors, a repeated key keeps its last value (as the map did), and a body that
//! is valid JSON but not an object is told so by the caller. One difference: an unknown field
//! nested deeper than serde_json's 128 levels is now skipped, as any unknown field is, where
//! building it into the map was refused (a known field that deep still is). The body's size
//! limit bounds what skipping it costs; the values kept are built under a budget of values
//! ([`crate::bounded_json`]), which bounds what they cost.

use std::fmt;

use std::cell::Cell;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::bounded_json::{Budgeted, MAX_VALUES};

/// The top level of a JSON body.
#[derive(Debug, PartialEq)]
pub(super) enum Top {
    /// An object: `slots[i]` is the value of the `i`-th name asked for, if the body set it;
    /// the LLM's `messages`, when asked for by its index, is in the second member instead.
    Object(Vec<Option<Value>>, Option<super::messages::Read>),
    /// Valid JSON, but not an object.
    NotObject,
}

/// Reads `body` as JSON, keeping the values of the fields `names` and skipping any other. The
/// name at index `messages` is read as the LLM's messages (`super::messages`).
pub(super) fn read(
    body: &[u8],
    names: &[&'static str],
    messages: Option<usize>,
) -> Result<Top, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let left = Cell::new(MAX_VALUES);
    let budget = Budgeted::new(&left, MAX_VALUES);
    let top = Slots { names, messages, budget }.deserialize(&mut de)?;
    // Trailing characters other than white space are an error, as `from_slice` makes them.
    de.end()?;
    Ok(top)
}

/// The seed and visitor of the top level.
struct Slots<'n> {
    names: &'n [&'static str],
    messages: Option<usize>,
    /// What the values kept may hold, all together ([`crate::bounded_json`]).
    budget: Budgeted<'n>,
}

impl<'de> DeserializeSeed<'de> for Slots<'_> {
    type Value = Top;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Top, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Slots<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut slots: Vec<Option<Value>> = vec![None; self.names.len()];
        let mut messages = None;
        while let Some(key) = map.next_key_seed(Key { names: self.names })? {
            match key {
                Some(i) if Some(i) == self.messages => {
                    messages = Some(map.next_value_seed(super::messages::Seed(self.budget))?);
                }
                Some(i) => slots[i] = Some(map.next_value_seed(self.budget)?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Top::Object(slots, messages))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        // Read to its end so that a malformed list is still a syntax error.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::NotObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Top, E> {
        Ok(Top::NotObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Top, E> {
        Ok(Top::NotObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Top, E> {
        Ok(Top::NotObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Top, E> {
        Ok(Top::NotObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Top, E> {
        Ok(Top::NotObject)
    }

    fn visit_unit<E>(self) -> Result<Top, E> {
        Ok(Top::NotObject)
    }
}

/// A key, as the index of the name it is among `names` (`None`: not one of them). Read as a
/// borrowed or transient `&str`, so no key is allocated, escaped ones included.
struct Key<'n> {
    names: &'n [&'static str],
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Option<usize>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.names.iter().position(|name| *name == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 3] = ["messages", "model", "max_tokens"];

    /// What the map-based reading gave: the same slots, or the same error text.
    fn by_map(body: &[u8]) -> Result<Top, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let Value::Object(mut obj) = value else { return Ok(Top::NotObject) };
        Ok(Top::Object(NAMES.iter().map(|name| obj.remove(*name)).collect(), None))
    }

    fn by_slots(body: &[u8]) -> Result<Top, String> {
        read(body, &NAMES, None).map_err(|e| e.to_string())
    }

    #[test]
    fn known_fields_fill_their_slots_and_others_are_skipped() {
        let body =
            br#"{"model":"m","extra":{"deep":[1,2,{"x":null}]},"max_tokens":16,"messages":[]}"#;
        let Ok(Top::Object(slots, _)) = read(body, &NAMES, None) else { panic!("not read") };
        assert_eq!(slots, vec![Some(Value::Array(vec![])), Some("m".into()), Some(16.into())]);
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_and_escaped_keys_are_found() {
        let body = br#"{"model":"a","mod\u0065l":"b"}"#;
        assert_eq!(by_slots(body), by_map(body));
        let Ok(Top::Object(slots, _)) = read(body, &NAMES, None) else { panic!("not read") };
        assert_eq!(slots[1], Some("b".into()));
    }

    #[test]
    fn what_is_not_an_object_or_not_json_reads_as_the_map_did() {
        for body in [
            &b"[1,2]"[..],
            b"\"text\"",
            b"3",
            b"-3",
            b"1.5",
            b"true",
            b"null",
            b"[1,2",
            b"{\"model\":}",
            b"{\"model\":\"m\"} x",
            b"{\"model\":\"m\"}  \n",
            b"{\"model\" \"m\"}",
            b"{1:2}",
            b"1e999",
            b"{\"model\":\"\\ud800\"}",
        ] {
            assert_eq!(by_slots(body), by_map(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn only_a_known_field_is_held_to_the_nesting_limit() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let unknown = format!(r#"{{"other":{deep},"model":"m"}}"#);
        let Ok(Top::Object(slots, _)) = read(unknown.as_bytes(), &NAMES, None) else {
            panic!("refused")
        };
        assert_eq!(slots[1], Some("m".into()));
        let known = format!(r#"{{"model":{deep}}}"#);
        let refused = read(known.as_bytes(), &NAMES, None).unwrap_err().to_string();
        assert!(refused.contains("recursion limit exceeded"), "{refused}");
    }

    proptest! {
        /// Any object of these keys and JSON values, malformed or not, reads as the map read it.
        #[test]
        fn slots_agree_with_the_map(
            pairs in proptest::collection::vec(
                (prop_oneof![Just("model".to_owned()), Just("max_tokens".to_owned()), Just("messages".to_owned()),
                             Just("other".to_owned()), "[a-z]{0,3}"],
                 prop_oneof![Just("1".to_owned()), Just("\"s\"".to_owned()), Just("null".to_owned()),
                             Just("[1,{\"a\":[]}]".to_owned()), Just("{}".to_owned()), "[ -~]{0,6}"]),
                0..6),
        ) {
            let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let body = format!("{{{}}}", inner.join(","));
            prop_assert_eq!(by_slots(body.as_bytes()), by_map(body.as_bytes()));
        }
    }
}
