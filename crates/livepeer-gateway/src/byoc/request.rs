//! The client's `Livepeer` header of a BYOC job (PROTOCOL.md §10.2, GATEWAY.md §6.7): base64
//! JSON of an unsigned `JobRequest`, checked field by field, and signed for the orchestrator.
//!
//! Every refusal is a 400 naming the field, as go-livepeer answers a bad header with 400 (its
//! texts where it has one: the missing timeout).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

use livepeer_pm::LocalSigner;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind};

/// The header carrying the job request, both from the client and to the orchestrator.
pub const JOB_HEADER: &str = "Livepeer";

/// go-livepeer's text for a missing or zero timeout.
const NO_TIMEOUT: &str = "no timeout_seconds set with request, timeout_seconds is required";

/// A checked job request.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// The job id: the client's, else the gateway's request id.
    pub id: String,
    /// The `request` string (a JSON document).
    pub request: String,
    /// The `parameters` string (a JSON document).
    pub parameters: String,
    /// The capability name.
    pub capability: String,
    /// Seconds the worker may take.
    pub timeout_seconds: u64,
    /// `parameters.orchestrators.include`: only these orchestrator URLs (exact strings).
    pub include: Vec<String>,
    /// `parameters.orchestrators.exclude`: never these orchestrator URLs (exact strings).
    pub exclude: Vec<String>,
}

/// The header as the client sends it; every field optional so that each is refused by name.
#[derive(Debug, Deserialize)]
struct Wire {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    request: Option<String>,
    #[serde(default)]
    parameters: Option<String>,
    #[serde(default)]
    capability: Option<String>,
    #[serde(default)]
    timeout_seconds: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Parameters {
    #[serde(default)]
    orchestrators: Option<Filter>,
}

#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    exclude: Option<Vec<String>>,
}

/// The signed request sent to the orchestrator.
#[derive(Serialize)]
struct Signed<'a> {
    id: &'a str,
    request: &'a str,
    parameters: &'a str,
    capability: &'a str,
    sender: &'a str,
    sig: &'a str,
    timeout_seconds: u64,
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::new(Kind::InvalidRequest, message).field(field)
}

// === impl JobRequest ===

impl JobRequest {
    /// Checks the client's header (`None`: absent). `request_id` names the job when the client
    /// gave no id; `max_timeout` bounds `timeout_seconds`.
    pub fn parse(header: Option<&[u8]>, request_id: &str, max_timeout: u64) -> Result<Self, Error> {
        let header = header.ok_or_else(|| {
            bad(JOB_HEADER, "missing Livepeer header: base64 JSON of the job request")
        })?;
        let json = STANDARD
            .decode(header.trim_ascii())
            .map_err(|e| bad(JOB_HEADER, format!("Livepeer header is not base64: {e}")))?;
        let wire: Wire = serde_json::from_slice(&json).map_err(|e| {
            bad(JOB_HEADER, format!("Livepeer header is not a JSON job request: {e}"))
        })?;
        let capability = wire.capability.unwrap_or_default();
        if capability.trim().is_empty() {
            return Err(bad("capability", "capability is required"));
        }
        let timeout_seconds = timeout(wire.timeout_seconds, max_timeout)?;
        let request = wire.request.unwrap_or_default();
        details(&request)?;
        let parameters = wire.parameters.unwrap_or_default();
        let params: Parameters = serde_json::from_str(&parameters).map_err(|e| {
            bad("parameters", format!("parameters must be a JSON object in a string: {e}"))
        })?;
        let filter = params.orchestrators.unwrap_or_default();
        // The client's id goes to the orchestrator and into log lines: kept only when short
        // and printable.
        let printable = |id: &String| {
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
        };
        let id = wire.id.filter(printable).unwrap_or_else(|| request_id.to_owned());
        Ok(Self {
            id,
            request,
            parameters,
            capability,
            timeout_seconds,
            include: filter.include.unwrap_or_default(),
            exclude: filter.exclude.unwrap_or_default(),
        })
    }

    /// Whether `parameters.orchestrators` lets the job go to `url`, compared as exact strings
    /// as go-livepeer compares them.
    pub fn allows(&self, url: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|u| u == url))
            && !self.exclude.iter().any(|u| u == url)
    }

    /// The signed `Livepeer` header for the orchestrator: `sender` and
    /// `sig = eth_sign(utf8(request ‖ parameters))` as `0x` hex.
    pub fn signed_header(&self, signer: &LocalSigner) -> Result<String, String> {
        let message = [self.request.as_bytes(), self.parameters.as_bytes()].concat();
        let sig = signer.eth_sign(&message).map_err(|e| e.to_string())?;
        let sender = signer.address().to_checksum(None);
        let sig = format!("0x{}", hex::encode(sig.0));
        self.encode(&sender, &sig)
    }

    /// [`Self::signed_header`], with the signature taken from `cache` when this key already
    /// signed the same `request ‖ parameters`.
    pub fn signed_header_cached(
        &self,
        signer: &LocalSigner,
        cache: &SigCache,
    ) -> Result<String, String> {
        let message = [self.request.as_bytes(), self.parameters.as_bytes()].concat();
        let digest = livepeer_pm::keccak256(&message).0;
        let sig = match cache.get(&digest) {
            Some(sig) => sig,
            None => {
                let sig = signer.eth_sign(&message).map_err(|e| e.to_string())?;
                let sig: Arc<str> = format!("0x{}", hex::encode(sig.0)).into();
                cache.put(digest, sig.clone());
                sig
            }
        };
        self.encode(&signer.address().to_checksum(None), &sig)
    }

    /// The header with `sender` and `sig` as given (a remote signer's).
    pub fn encode(&self, sender: &str, sig: &str) -> Result<String, String> {
        let signed = Signed {
            id: &self.id,
            request: &self.request,
            parameters: &self.parameters,
            capability: &self.capability,
            sender,
            sig,
            timeout_seconds: self.timeout_seconds,
        };
        let json = serde_json::to_vec(&signed).map_err(|e| e.to_string())?;
        Ok(STANDARD.encode(json))
    }
}

/// `request` as go-livepeer reads it into `JobRequestDetails` (byoc/types.go): its gateway
/// (`setupGatewayJob`) and orchestrator (`setupOrchJob`) both refuse, with 400, a `request` that
/// is not a JSON object (or null) or whose `stream_id` (a key Go matches without regard to
/// case) is not a string. Refused here, before an orchestrator has been paid for nothing.
fn details(request: &str) -> Result<(), Error> {
    let value = serde_json::from_str::<serde_json::Value>(request)
        .map_err(|e| bad("request", format!("request must be a JSON document in a string: {e}")))?;
    let fields = match value {
        serde_json::Value::Null => return Ok(()),
        serde_json::Value::Object(fields) => fields,
        _ => return Err(bad("request", "request must be a JSON object in a string")),
    };
    let bad_id = |(k, v): (&String, &serde_json::Value)| {
        k.eq_ignore_ascii_case("stream_id") && !(v.is_string() || v.is_null())
    };
    if fields.iter().any(bad_id) {
        return Err(bad("request", "request.stream_id must be a string"));
    }
    Ok(())
}

/// `timeout_seconds`: a whole number from 1 to `max`.
fn timeout(value: Option<serde_json::Value>, max: u64) -> Result<u64, Error> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Err(bad("timeout_seconds", NO_TIMEOUT));
    };
    match value.as_u64() {
        Some(0) => Err(bad("timeout_seconds", NO_TIMEOUT)),
        Some(n) if n <= max => Ok(n),
        Some(n) => Err(bad("timeout_seconds", format!("timeout_seconds {n} is over {max}"))),
        None => Err(bad(
            "timeout_seconds",
            format!("timeout_seconds must be a positive integer, not {value}"),
        )),
    }
}

/// The `Livepeer-Eth-Address` value naming `signer` to `/process/token`: base64 JSON
/// `{addr, sig}` with `sig = eth_sign(utf8(addr))`, the same value as
/// `OrchestratorRequest.sig`.
pub fn sender_header(addr: &str, sig: &[u8]) -> String {
    let json = serde_json::json!({ "addr": addr, "sig": format!("0x{}", hex::encode(sig)) });
    STANDARD.encode(json.to_string())
}

/// Job signatures already made, by the digest of what they sign.
///
/// Why: the signature covers only `request ‖ parameters` (not the job id), and eth_sign is
/// deterministic (RFC 6979), so a job that repeats them gets the very same signature. The
/// secp256k1 signing was about 40% of the gateway's CPU per job in the BYOC bench, where
/// most clients send the same few requests. Bounded: at [`SigCache::MAX`] entries the cache
/// starts over, which costs a few signatures and never grows memory.
#[derive(Debug, Default)]
pub struct SigCache(std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<str>>>);

impl SigCache {
    /// Signatures kept at most (each ~200 bytes with its key).
    pub const MAX: usize = 4096;

    fn get(&self, digest: &[u8; 32]) -> Option<Arc<str>> {
        self.0.lock().ok()?.get(digest).cloned()
    }

    fn put(&self, digest: [u8; 32], sig: Arc<str>) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= Self::MAX {
                map.clear();
            }
            map.insert(digest, sig);
        }
    }

    /// Signatures held.
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod details_tests {
    use super::*;

    /// What go-livepeer cannot read into `JobRequestDetails` is refused; what it can passes.
    #[test]
    fn request_must_be_what_go_livepeer_reads_as_job_details() {
        for ok in ["{}", "null", r#"{"stream_id":"s","x":[1]}"#, r#"{"Stream_Id":null}"#] {
            assert!(details(ok).is_ok(), "{ok}");
        }
        for refused in ["[1]", "5", r#""s""#, r#"{"stream_id":5}"#, r#"{"STREAM_ID":{}}"#, ""] {
            let e = details(refused).expect_err(refused);
            assert_eq!(e.field_name(), Some("request"), "{refused}");
        }
        // Through the header: a JSON array is valid JSON, and still refused.
        let h = serde_json::json!({"request": "[1]", "parameters": "{}", "capability": "c", "timeout_seconds": 5});
        let h = STANDARD.encode(h.to_string());
        let e = JobRequest::parse(Some(h.as_bytes()), "r", 60).expect_err("an array");
        assert_eq!(e.field_name(), Some("request"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: serde_json::Value) -> Vec<u8> {
        STANDARD.encode(v.to_string()).into_bytes()
    }

    fn field_of(r: Result<JobRequest, Error>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidRequest);
        e.field_name().unwrap().to_owned()
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = serde_json::json!({"request": "{}", "parameters": "{}", "capability": "c", "timeout_seconds": 5});
        let parse = |v: serde_json::Value| JobRequest::parse(Some(&header(v)), "rid", 60);
        let with = |k: &str, v: serde_json::Value| {
            let mut h = ok.clone();
            h[k] = v;
            h
        };
        assert_eq!(parse(ok.clone()).unwrap().id, "rid");
        assert_eq!(field_of(JobRequest::parse(None, "r", 60)), "Livepeer");
        assert_eq!(field_of(JobRequest::parse(Some(b"%%%"), "r", 60)), "Livepeer");
        assert_eq!(
            field_of(JobRequest::parse(Some(&STANDARD.encode("[1]").into_bytes()), "r", 60)),
            "Livepeer"
        );
        assert_eq!(field_of(parse(with("timeout_seconds", 0.into()))), "timeout_seconds");
        assert_eq!(field_of(parse(with("timeout_seconds", 61.into()))), "timeout_seconds");
        assert_eq!(field_of(parse(with("timeout_seconds", "5".into()))), "timeout_seconds");
        let mut no_timeout = ok.clone();
        no_timeout.as_object_mut().unwrap().remove("timeout_seconds");
        let e = parse(no_timeout).unwrap_err();
        assert_eq!(e.message(), NO_TIMEOUT);
        assert_eq!(field_of(parse(with("request", "not json".into()))), "request");
        assert_eq!(field_of(parse(with("parameters", "".into()))), "parameters");
        let f = serde_json::json!({"orchestrators": {"include": "x"}}).to_string();
        assert_eq!(field_of(parse(with("parameters", f.into()))), "parameters");
        assert_eq!(field_of(parse(with("capability", "".into()))), "capability");
    }

    #[test]
    fn include_and_exclude_compare_exact_strings() {
        let params = serde_json::json!({"orchestrators": {"include": ["http://a:1", "http://b:1"], "exclude": ["http://b:1"]}});
        let h = serde_json::json!({"request": "{}", "parameters": params.to_string(), "capability": "c", "timeout_seconds": 5});
        let r = JobRequest::parse(Some(&header(h)), "r", 60).unwrap();
        assert!(r.allows("http://a:1"));
        assert!(!r.allows("http://a:1/"), "exact string compare, as upstream");
        assert!(!r.allows("http://b:1") && !r.allows("http://c:1"));
    }

    #[test]
    fn the_signature_covers_request_then_parameters() {
        let key = LocalSigner::from_bytes(&[7; 32]).unwrap();
        let h = serde_json::json!({"id": "j", "request": "{\"a\":1}", "parameters": "{}", "capability": "c", "timeout_seconds": 5});
        let r = JobRequest::parse(Some(&header(h)), "r", 60).unwrap();
        let signed = STANDARD.decode(r.signed_header(&key).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        assert_eq!(v["id"], "j");
        assert_eq!(v["sender"], key.address().to_checksum(None));
        let sig = hex::decode(v["sig"].as_str().unwrap().trim_start_matches("0x")).unwrap();
        let who = livepeer_pm::recover_eth_signer(b"{\"a\":1}{}", &sig).unwrap();
        assert_eq!(who, key.address());
    }

    /// A cached signature is the one signing would make, for another job id too; the cache
    /// never holds more than its bound.
    #[test]
    fn cached_signatures_equal_fresh_ones_and_stay_bounded() {
        let key = LocalSigner::from_bytes(&[7; 32]).unwrap();
        let cache = SigCache::default();
        let job = |id: &str, request: &str| {
            let h = serde_json::json!({"id": id, "request": request, "parameters": "{}", "capability": "c", "timeout_seconds": 5});
            JobRequest::parse(Some(&header(h)), "r", 60).unwrap()
        };
        let first = job("a", "{\"x\":1}");
        assert_eq!(first.signed_header_cached(&key, &cache), first.signed_header(&key));
        let again = job("b", "{\"x\":1}");
        assert_eq!(again.signed_header_cached(&key, &cache), again.signed_header(&key));
        assert_eq!(cache.len(), 1, "the second job reused the signature");
        let other = job("c", "{\"x\":2}");
        assert_eq!(other.signed_header_cached(&key, &cache), other.signed_header(&key));
        assert_eq!(cache.len(), 2);
        for i in 0..SigCache::MAX + 10 {
            cache.put(livepeer_pm::keccak256(i.to_le_bytes()).0, Arc::from("0x"));
        }
        assert!(cache.len() <= SigCache::MAX);
    }
}
