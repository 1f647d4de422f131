//! Mutations of valid seeds: byte-level (bit flips, interesting bytes, truncation, insertion,
//! deletion, duplication, splicing with another seed, random bytes) and JSON-aware (a random
//! node replaced by a random value of any type, huge numbers, bounded deep nesting, keys
//! removed or added).

use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Map, Value, json};

/// Tokens spliced into text: numbers no type holds, nesting, escapes, separators.
const TOKENS: &[&str] = &[
    "1e999",
    "-1e999",
    "123456789012345678901234567890",
    "-9223372036854775809",
    "18446744073709551616",
    "-0",
    "0.0000000000000000000001",
    "NaN",
    "null",
    "true",
    "{}",
    "[]",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\\",
    "\"",
    ",",
    ":",
    "\r\n",
    "\r\n\r\n",
    "--",
    "%00",
    "/../",
    "..",
    "\u{feff}",
    "é",
    "𝄞",
];

/// Bytes that sit at boundaries of common parsers.
const BYTES: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'[', b'\n', b'\r', b'-', b'0'];

/// Interesting integers.
const INTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    7,
    64,
    255,
    256,
    4096,
    4097,
    65_535,
    65_536,
    i32::MAX as i64,
    i64::MAX,
    i64::MIN,
];

/// One to four stacked byte-level mutations of `seed`; `others` feed splicing.
pub fn bytes(rng: &mut SmallRng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        byte_op(rng, &mut out, others);
    }
    out
}

fn byte_op(rng: &mut SmallRng, out: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = out.len();
    let at = |rng: &mut SmallRng| if len == 0 { 0 } else { rng.random_range(0..len) };
    match rng.random_range(0..11) {
        0 if len > 0 => {
            let i = at(rng);
            out[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            out[i] = BYTES[rng.random_range(0..BYTES.len())];
        }
        2 => out.truncate(at(rng)),
        3 => {
            let n = rng.random_range(1..=16);
            let i = at(rng);
            let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            out.splice(i..i, junk);
        }
        4 if len > 0 => {
            let i = at(rng);
            let j = (i + rng.random_range(1..=32)).min(len);
            out.drain(i..j);
        }
        5 if len > 0 => {
            let i = at(rng);
            let j = (i + rng.random_range(1..=64)).min(len);
            let copy = out[i..j].to_vec();
            let k = at(rng);
            out.splice(k..k, copy);
        }
        6 if !others.is_empty() => {
            let other = &others[rng.random_range(0..others.len())];
            let cut = at(rng);
            let from = if other.is_empty() { 0 } else { rng.random_range(0..other.len()) };
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        7 => {
            let token = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
            let i = at(rng);
            out.splice(i..i, token.iter().copied());
        }
        8 if len >= 8 => {
            // Overwrite a run with an interesting integer, either endianness.
            let i = rng.random_range(0..len - 7);
            let v = INTS[rng.random_range(0..INTS.len())];
            let b = if rng.random() { v.to_le_bytes() } else { v.to_be_bytes() };
            let w = [1, 2, 4, 8][rng.random_range(0..4)];
            out[i..i + w].copy_from_slice(&b[..w]);
        }
        9 if rng.random_range(0..8) == 0 => {
            let n = rng.random_range(0..256);
            *out = (0..n).map(|_| rng.random()).collect();
        }
        _ if len > 0 => {
            let i = at(rng);
            out[i] = out[i].wrapping_add(rng.random_range(1..=3));
        }
        _ => out.push(rng.random()),
    }
}

/// A mutated copy of `s` (its bytes mutated, made text again).
pub fn text(rng: &mut SmallRng, s: &str) -> String {
    if rng.random_range(0..6) == 0 {
        return TOKENS[rng.random_range(0..TOKENS.len())].to_owned();
    }
    String::from_utf8_lossy(&bytes(rng, s.as_bytes(), &[])).into_owned()
}

/// A random JSON value of any type, nested at most `depth` deep.
pub fn value(rng: &mut SmallRng, depth: u32) -> Value {
    let pick = rng.random_range(0..if depth == 0 { 8 } else { 11 });
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(INTS[rng.random_range(0..INTS.len())]),
        3 => json!(u64::MAX - rng.random_range(0..2)),
        4 => json!([1e308, -1e308, 0.5, -0.0, 1e-300, 3.4e38][rng.random_range(0..6)]),
        5 => Value::String(String::new()),
        6 => Value::String(TOKENS[rng.random_range(0..TOKENS.len())].into()),
        7 => {
            let n = [1, 10, 1000, 200_000][rng.random_range(0..4)];
            Value::String("x".repeat(n))
        }
        8 => nested(rng, depth),
        9 => Value::Array((0..rng.random_range(0..4)).map(|_| value(rng, depth - 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.random_range(0..4) {
                m.insert(text(rng, "key"), value(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// Arrays or objects nested up to 100 deep (below serde_json's recursion limit of 128).
fn nested(rng: &mut SmallRng, depth: u32) -> Value {
    let levels = rng.random_range(1..=100u32.min(depth * 25));
    let mut v = Value::Null;
    for _ in 0..levels {
        v = if rng.random() { Value::Array(vec![v]) } else { json!({ "a": v }) };
    }
    v
}

/// `v` with one to three JSON-aware mutations.
pub fn json(rng: &mut SmallRng, v: &Value) -> Value {
    let mut out = v.clone();
    for _ in 0..rng.random_range(1..=3) {
        json_op(rng, &mut out);
    }
    out
}

fn json_op(rng: &mut SmallRng, v: &mut Value) {
    let node = random_node(rng, v);
    match rng.random_range(0..6) {
        0 | 1 => *node = value(rng, 3),
        2 => {
            if let Value::Object(m) = node
                && !m.is_empty()
            {
                let k = m.keys().nth(rng.random_range(0..m.len())).cloned().unwrap_or_default();
                m.remove(&k);
            }
        }
        3 => {
            if let Value::Object(m) = node {
                m.insert(text(rng, "extra"), value(rng, 2));
            }
        }
        4 => {
            if let Value::String(s) = node {
                *s = text(rng, s);
            }
        }
        _ => {
            if let Value::Array(a) = node {
                match a.pop() {
                    Some(last) if rng.random() => {
                        a.extend(std::iter::repeat_n(last, rng.random_range(1..40)));
                    }
                    _ => a.push(value(rng, 2)),
                }
            }
        }
    }
}

/// A uniformly chosen node of `v` (itself, or any nested value).
fn random_node<'a>(rng: &mut SmallRng, v: &'a mut Value) -> &'a mut Value {
    let mut node = v;
    loop {
        let children = match &*node {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if children == 0 || rng.random_range(0..3) == 0 {
            return node;
        }
        let i = rng.random_range(0..children);
        node = match node {
            Value::Object(m) => match m.values_mut().nth(i) {
                Some(child) => child,
                None => return_unreachable(),
            },
            Value::Array(a) => &mut a[i],
            _ => return_unreachable(),
        };
    }
}

/// `random_node` only descends into containers it counted children of.
fn return_unreachable() -> ! {
    unreachable!("a counted child is there")
}
