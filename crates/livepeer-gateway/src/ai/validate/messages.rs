//! The LLM's `messages`, read from the body straight into what is checked and forwarded.
//!
//! Why not a `serde_json::Value`: each message became a map with a `String` per key, looked
//! up, cut down to `role` and `content` and serialised back, about 4,000 instructions of an
//! LLM request (callgrind, `bench`'s one-message body). Here each message's keys are matched
//! as they are read and only its two strings are kept. What the client and the orchestrator
//! see is the same: every value is still parsed as a `Value` would parse it (the same syntax,
//! nesting and number errors), a repeated key keeps its last value, the same field errors are
//! found in the same order, and a [`Message`] serialises as the map did
//! (`{"content":…,"role":…}`, keys in the map's order).

use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::bounded_json::Budgeted;
use serde_json::Value;

use super::{FieldError, Limits, error, missing};

/// One chat message forwarded to the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Message {
    /// Its text.
    pub content: String,
    /// Who speaks it (`system`, `user`, `assistant`…).
    pub role: String,
}

/// `messages` as the body set it, before it is checked.
#[derive(Debug, PartialEq)]
pub(super) enum Read {
    Null,
    NotList,
    List(Vec<Item>),
}

/// One element of the list.
#[derive(Debug, PartialEq)]
pub(super) enum Item {
    Object { role: Part, content: Part },
    NotObject,
}

/// `role` or `content` of one message.
#[derive(Debug, PartialEq)]
pub(super) enum Part {
    Missing,
    Null,
    Str(String),
    Other,
}

impl From<Value> for Part {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Part::Null,
            Value::String(s) => Part::Str(s),
            _ => Part::Other,
        }
    }
}

/// Checks the messages read: a non-empty list of objects whose `role` and `content` are
/// strings (`content` within the prompt limit). Errors go to `errors`, in the order the
/// map-based check found them; the messages are whole only when it found none.
pub(super) fn check(
    read: Option<Read>,
    limits: &Limits,
    errors: &mut Vec<FieldError>,
) -> Vec<Message> {
    let loc = ["body", "messages"];
    let items = match read {
        Some(Read::List(items)) if !items.is_empty() => items,
        other => {
            errors.push(match other {
                None | Some(Read::Null) => missing(&loc),
                Some(Read::List(_)) => error(
                    &loc,
                    "List should have at least 1 item after validation, not 0",
                    "too_short",
                ),
                Some(Read::NotList) => error(&loc, "Input should be a valid list", "list_type"),
            });
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        // Past what an answer lists, more errors would only cost memory: one bad item per
        // three bytes of body made a 2 MB body's answer 172 MB.
        if errors.len() > crate::error::MAX_FIELD_ERRORS {
            break;
        }
        let Item::Object { role, content } = item else {
            let idx = i.to_string();
            let msg = "Input should be a valid dictionary or object";
            errors.push(error(&["body", "messages", &idx], msg, "model_type"));
            continue;
        };
        let role = part(role, "role", i, limits, errors);
        let content = part(content, "content", i, limits, errors);
        if let (Some(role), Some(content)) = (role, content) {
            out.push(Message { content, role });
        }
    }
    out
}

/// `role` or `content` of message `i`, if it is a string within the prompt limit.
fn part(
    part: Part,
    key: &str,
    i: usize,
    limits: &Limits,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    // Located only for an error: the index as text is an allocation per message.
    let fail = |msg: String, kind: &str| {
        error(&["body", "messages", i.to_string().as_str(), key], msg, kind)
    };
    match part {
        Part::Missing | Part::Null => errors.push(fail("Field required".into(), "missing")),
        Part::Str(s) if s.chars().count() > limits.max_prompt_chars => {
            let msg = format!("String should have at most {} characters", limits.max_prompt_chars);
            errors.push(fail(msg, "string_too_long"));
        }
        Part::Str(s) => return Some(s),
        Part::Other => errors.push(fail("Input should be a valid string".into(), "string_type")),
    }
    None
}

/// Reads the value of `messages`, each message and value drawing on a document's budget.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seed<'b>(pub(super) Budgeted<'b>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Read;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Read, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Read;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Read, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed(self.0))? {
            self.0.take()?;
            items.push(item);
        }
        Ok(Read::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Read, A::Error> {
        consume_map(map, self.0)?;
        Ok(Read::NotList)
    }

    fn visit_unit<E>(self) -> Result<Read, E> {
        Ok(Read::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Read, E> {
        Ok(Read::NotList)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Read, E> {
        Ok(Read::NotList)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Read, E> {
        Ok(Read::NotList)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Read, E> {
        Ok(Read::NotList)
    }

    fn visit_str<E>(self, _: &str) -> Result<Read, E> {
        Ok(Read::NotList)
    }
}

/// Reads one element of the list.
struct ItemSeed<'b>(Budgeted<'b>);

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Item, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let (mut role, mut content) = (Part::Missing, Part::Missing);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            // Every value is parsed as the map parsed it; a repeated key keeps its last one.
            let value: Value = map.next_value_seed(self.0)?;
            match key {
                Key::Role => role = value.into(),
                Key::Content => content = value.into(),
                Key::Other => {}
            }
        }
        Ok(Item::Object { role, content })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        while seq.next_element_seed(self.0)?.is_some() {}
        Ok(Item::NotObject)
    }

    fn visit_unit<E>(self) -> Result<Item, E> {
        Ok(Item::NotObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
        Ok(Item::NotObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Item, E> {
        Ok(Item::NotObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Item, E> {
        Ok(Item::NotObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Item, E> {
        Ok(Item::NotObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Item, E> {
        Ok(Item::NotObject)
    }
}

/// A message's key, read as a borrowed or transient `&str` (no key is allocated).
enum Key {
    Role,
    Content,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Key, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "role" => Key::Role,
            "content" => Key::Content,
            _ => Key::Other,
        })
    }
}

/// Reads a map that is not kept, as a `Value` would read it.
fn consume_map<'de, A: MapAccess<'de>>(mut map: A, budget: Budgeted<'_>) -> Result<(), A::Error> {
    while map.next_key::<String>()?.is_some() {
        map.next_value_seed(budget)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded_json::MAX_VALUES;
    use proptest::prelude::*;

    /// What the map-based check gave: the forwarded messages as JSON, or the errors.
    fn by_map(v: Option<Value>, limits: &Limits) -> Result<Value, Vec<FieldError>> {
        let mut errors = Vec::new();
        let loc = ["body", "messages"];
        let items = match v {
            Some(Value::Array(items)) if !items.is_empty() => items,
            other => {
                errors.push(match other {
                    None | Some(Value::Null) => missing(&loc),
                    Some(Value::Array(_)) => error(
                        &loc,
                        "List should have at least 1 item after validation, not 0",
                        "too_short",
                    ),
                    Some(_) => error(&loc, "Input should be a valid list", "list_type"),
                });
                return Err(errors);
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            if errors.len() > crate::error::MAX_FIELD_ERRORS {
                break;
            }
            let Value::Object(mut obj) = item else {
                let idx = i.to_string();
                let msg = "Input should be a valid dictionary or object";
                errors.push(error(&["body", "messages", &idx], msg, "model_type"));
                continue;
            };
            for key in ["role", "content"] {
                let fail = |msg: String, kind: &str| {
                    error(&["body", "messages", i.to_string().as_str(), key], msg, kind)
                };
                match obj.get(key) {
                    None | Some(Value::Null) => {
                        errors.push(fail("Field required".into(), "missing"))
                    }
                    Some(Value::String(s)) if s.chars().count() > limits.max_prompt_chars => {
                        let msg = format!(
                            "String should have at most {} characters",
                            limits.max_prompt_chars
                        );
                        errors.push(fail(msg, "string_too_long"));
                    }
                    Some(Value::String(_)) => {}
                    Some(_) => {
                        errors.push(fail("Input should be a valid string".into(), "string_type"))
                    }
                }
            }
            obj.retain(|k, _| k == "role" || k == "content");
            out.push(Value::Object(obj));
        }
        if errors.is_empty() { Ok(Value::Array(out)) } else { Err(errors) }
    }

    /// The same through [`Seed`] and [`check`], the messages serialised.
    fn by_seed(text: &str, limits: &Limits) -> Result<Value, Vec<FieldError>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let left = std::cell::Cell::new(MAX_VALUES);
        let read = Seed(Budgeted::new(&left, MAX_VALUES)).deserialize(&mut de).expect("parsed");
        let mut errors = Vec::new();
        let out = check(Some(read), limits, &mut errors);
        if errors.is_empty() { Ok(serde_json::to_value(out).expect("json")) } else { Err(errors) }
    }

    fn limits() -> Limits {
        Limits { max_prompt_chars: 5, ..Limits::default() }
    }

    #[test]
    fn messages_serialise_as_the_map_did() {
        let m = Message { content: "a\"\n\u{1}é".into(), role: "user".into() };
        let map = serde_json::json!({"role": "user", "content": "a\"\n\u{1}é"});
        assert_eq!(serde_json::to_string(&[m]).unwrap(), format!("[{map}]"));
    }

    #[test]
    fn a_table_checks_as_the_map_did() {
        let cases = [
            r#"null"#,
            r#"[]"#,
            r#""hi""#,
            r#"{"role":"user"}"#,
            r#"3"#,
            r#"[{"role":"user","content":"hi"}]"#,
            r#"[{"role":"user","content":"hi","name":"x","extra":{"a":[1,null]}}]"#,
            r#"[{"role":1},5,[1],null,"s",{"content":null,"role":"u"}]"#,
            r#"[{"role":"a","role":"b","content":"x","content":7}]"#,
            r#"[{"ro\u006ce":"a","content":"toolong"}]"#,
            r#"[{"role":"a","content":"héllo"}, {"role":"a","content":"héllo!"}]"#,
        ];
        for text in cases {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(by_seed(text, &limits()), by_map(Some(value), &limits()), "{text}");
        }
        assert_eq!(check(None, &limits(), &mut Vec::new()), vec![]);
    }

    #[test]
    fn values_are_held_to_what_a_value_accepts() {
        // A number out of range and nesting past the limit are refused, as the map refused
        // them, in a key that is not kept too.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for text in [
            r#"[{"role":"a","content":"b","x":1e999}]"#.to_owned(),
            format!(r#"[{{"role":"a","content":"b","x":{deep}}}]"#),
            format!(r#"[{deep}]"#),
            r#"{"a":1e999}"#.to_owned(),
        ] {
            let map = serde_json::from_str::<Value>(&text).map_err(|e| e.to_string());
            let mut de = serde_json::Deserializer::from_str(&text);
            let left = std::cell::Cell::new(MAX_VALUES);
            let seed = Seed(Budgeted::new(&left, MAX_VALUES)).deserialize(&mut de);
            let seed = seed.map_err(|e| e.to_string());
            assert_eq!(seed.unwrap_err(), map.unwrap_err(), "{text}");
        }
    }

    proptest! {
        /// Lists of objects of these keys and values, and other values, check as the map did.
        #[test]
        fn seeds_agree_with_the_map(
            items in proptest::collection::vec(
                proptest::collection::vec(
                    (prop_oneof![Just("role"), Just("content"), Just("name"), Just("")],
                     prop_oneof![Just("\"user\""), Just("\"hello world\""), Just("\"\""),
                                 Just("null"), Just("1"), Just("[]"), Just("{\"a\":1}")]),
                    0..4),
                0..4),
            other in prop_oneof![Just(None), Just(Some("5")), Just(Some("\"x\"")),
                                 Just(Some("null")), Just(Some("[1]"))],
        ) {
            let mut elems: Vec<String> = items.iter().map(|pairs| {
                let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", inner.join(","))
            }).collect();
            elems.extend(other.map(str::to_owned));
            let text = format!("[{}]", elems.join(","));
            let value: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(by_seed(&text, &limits()), by_map(Some(value), &limits()));
        }
    }
}
