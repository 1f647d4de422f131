//! A key's shape: what is stored and shown ([`KeyInfo`]), what creates one ([`NewKey`]) and
//! what changes one ([`KeyPatch`]), with the checks of each field.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::KeyError;

/// Entries of a key's allowed list, at most.
const MAX_ALLOWED: usize = 256;
/// Bytes of a name, at most.
const MAX_NAME: usize = 200;
/// Bytes of the metadata's JSON, at most.
const MAX_METADATA: usize = 16 * 1024;
/// The longest budget period: a hundred years. Longer ones are no use, and a period end near
/// `i64::MAX` seconds would overflow where it is added to the period's start.
const MAX_BUDGET_PERIOD_SECONDS: u64 = 3_155_760_000;

/// A customer key as stored and shown (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    /// Its id (`key_` and 16 hex digits), which names it in the admin API.
    pub id: String,
    /// The secret's first characters (`lpk_` and 4 more), to tell keys apart.
    pub prefix: String,
    /// The operator's name for it.
    pub name: String,
    /// The operator's JSON object (e.g. the customer's account id).
    pub metadata: Value,
    /// Pipelines (`text-to-image`) and models (`text-to-image/stabilityai/sd-turbo`) it may
    /// use; empty: all.
    pub allowed: Vec<String>,
    /// Requests per minute it may make (on each gateway instance); none: unlimited.
    pub requests_per_minute: Option<u32>,
    /// Streams it may hold at once (live, BYOC, LLM and transcoding); none: unlimited.
    pub max_streams: Option<u32>,
    /// What it may spend per period, in micro-USD; none: unlimited.
    pub budget_micro_usd: Option<u64>,
    /// The budget's period in seconds; none: the key's lifetime.
    pub budget_period_seconds: Option<u64>,
    /// Unix seconds after which it is refused; none: never.
    pub expires_at: Option<i64>,
    /// Whether it is accepted.
    pub enabled: bool,
    /// Unix seconds of its creation.
    pub created_at: i64,
    /// Unix seconds of its last change.
    pub updated_at: i64,
}

impl KeyInfo {
    /// Whether it may use `pipeline`, and `model` when the route knows it: an entry naming the
    /// pipeline allows all its models; `pipeline/model` allows that model only (and, when the
    /// model is not known yet, the pipeline, whose model is checked later).
    pub fn allows(&self, pipeline: &str, model: Option<&str>) -> bool {
        if self.allowed.is_empty() {
            return true;
        }
        self.allowed.iter().any(|entry| match entry.split_once('/') {
            None => entry == pipeline,
            Some((p, m)) => p == pipeline && model.is_none_or(|model| model == m),
        })
    }
}

/// The body of `POST /keys`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// See [`KeyInfo::name`].
    pub name: String,
    /// See [`KeyInfo::metadata`].
    #[serde(default)]
    pub metadata: Option<Value>,
    /// See [`KeyInfo::allowed`].
    #[serde(default)]
    pub allowed: Vec<String>,
    /// See [`KeyInfo::requests_per_minute`].
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// See [`KeyInfo::max_streams`].
    #[serde(default)]
    pub max_streams: Option<u32>,
    /// See [`KeyInfo::budget_micro_usd`].
    #[serde(default)]
    pub budget_micro_usd: Option<u64>,
    /// See [`KeyInfo::budget_period_seconds`].
    #[serde(default)]
    pub budget_period_seconds: Option<u64>,
    /// See [`KeyInfo::expires_at`].
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl NewKey {
    pub(super) fn check(&self) -> Result<(), KeyError> {
        check_name(&self.name)?;
        check_metadata(self.metadata.as_ref())?;
        check_allowed(&self.allowed)?;
        check_limits(self.requests_per_minute, self.budget_micro_usd, self.budget_period_seconds)
    }

    pub(super) fn into_info(self, id: String, secret: &str, now: i64) -> KeyInfo {
        KeyInfo {
            id,
            prefix: secret.chars().take(super::SECRET_PREFIX.len() + 4).collect(),
            name: self.name,
            metadata: self.metadata.unwrap_or_else(|| Value::Object(Default::default())),
            allowed: self.allowed,
            requests_per_minute: self.requests_per_minute,
            max_streams: self.max_streams,
            budget_micro_usd: self.budget_micro_usd,
            budget_period_seconds: self.budget_period_seconds,
            expires_at: self.expires_at,
            enabled: true,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The body of `PATCH /keys/{id}`: each field given is set; `null` clears a limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New metadata.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// New allowed list.
    #[serde(default)]
    pub allowed: Option<Vec<String>>,
    /// New rate limit (`null`: unlimited).
    #[serde(default, deserialize_with = "set_or_clear")]
    pub requests_per_minute: Option<Option<u32>>,
    /// New stream limit (`null`: unlimited).
    #[serde(default, deserialize_with = "set_or_clear")]
    pub max_streams: Option<Option<u32>>,
    /// New budget (`null`: unlimited).
    #[serde(default, deserialize_with = "set_or_clear")]
    pub budget_micro_usd: Option<Option<u64>>,
    /// New budget period (`null`: the key's lifetime).
    #[serde(default, deserialize_with = "set_or_clear")]
    pub budget_period_seconds: Option<Option<u64>>,
    /// New expiry (`null`: never).
    #[serde(default, deserialize_with = "set_or_clear")]
    pub expires_at: Option<Option<i64>>,
    /// Enable or disable it.
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl KeyPatch {
    pub(super) fn apply(self, info: &mut KeyInfo) -> Result<(), KeyError> {
        if let Some(name) = self.name {
            check_name(&name)?;
            info.name = name;
        }
        if let Some(metadata) = self.metadata {
            check_metadata(Some(&metadata))?;
            info.metadata = metadata;
        }
        if let Some(allowed) = self.allowed {
            check_allowed(&allowed)?;
            info.allowed = allowed;
        }
        set(&mut info.requests_per_minute, self.requests_per_minute);
        set(&mut info.max_streams, self.max_streams);
        set(&mut info.budget_micro_usd, self.budget_micro_usd);
        set(&mut info.budget_period_seconds, self.budget_period_seconds);
        set(&mut info.expires_at, self.expires_at);
        if let Some(enabled) = self.enabled {
            info.enabled = enabled;
        }
        check_limits(info.requests_per_minute, info.budget_micro_usd, info.budget_period_seconds)
    }
}

fn set<T>(field: &mut Option<T>, change: Option<Option<T>>) {
    if let Some(value) = change {
        *field = value;
    }
}

/// A field that is absent (`None`), `null` (`Some(None)`) or set (`Some(Some(_))`).
fn set_or_clear<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn invalid(field: &'static str, message: impl Into<String>) -> KeyError {
    KeyError::Invalid { field, message: message.into() }
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if name.trim().is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if name.len() > MAX_NAME {
        return Err(invalid("name", format!("longer than {MAX_NAME} bytes")));
    }
    Ok(())
}

fn check_metadata(metadata: Option<&Value>) -> Result<(), KeyError> {
    let Some(metadata) = metadata else { return Ok(()) };
    if !metadata.is_object() {
        return Err(invalid("metadata", "must be a JSON object"));
    }
    if metadata.to_string().len() > MAX_METADATA {
        return Err(invalid("metadata", format!("larger than {MAX_METADATA} bytes")));
    }
    Ok(())
}

fn check_allowed(allowed: &[String]) -> Result<(), KeyError> {
    if allowed.len() > MAX_ALLOWED {
        return Err(invalid("allowed", format!("more than {MAX_ALLOWED} entries")));
    }
    for entry in allowed {
        let pipeline = entry.split_once('/').map_or(entry.as_str(), |(p, _)| p);
        let ok = !pipeline.is_empty()
            && !entry.ends_with('/')
            && entry.len() <= MAX_NAME
            && pipeline.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(invalid(
                "allowed",
                format!("{entry:?}: expected `pipeline` or `pipeline/model`"),
            ));
        }
    }
    Ok(())
}

fn check_limits(
    rpm: Option<u32>,
    budget: Option<u64>,
    period: Option<u64>,
) -> Result<(), KeyError> {
    if rpm == Some(0) {
        return Err(invalid("requests_per_minute", "must be at least 1 (omit it for no limit)"));
    }
    if period == Some(0) {
        return Err(invalid("budget_period_seconds", "must be at least 1"));
    }
    if period.is_some_and(|p| p > MAX_BUDGET_PERIOD_SECONDS) {
        return Err(invalid("budget_period_seconds", "at most 3155760000 (100 years)"));
    }
    if period.is_some() && budget.is_none() {
        return Err(invalid("budget_period_seconds", "needs budget_micro_usd"));
    }
    // Stored as signed 64-bit integers, which both databases have.
    for (field, value) in [("budget_micro_usd", budget), ("budget_period_seconds", period)] {
        if value.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err(invalid(field, "too large"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(allowed: &[&str]) -> KeyInfo {
        let new = NewKey {
            name: "k".into(),
            metadata: None,
            allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
            requests_per_minute: None,
            max_streams: None,
            budget_micro_usd: None,
            budget_period_seconds: None,
            expires_at: None,
        };
        new.into_info("key_1".into(), "lpk_abcdef", 0)
    }

    #[test]
    fn allowed_entries_name_pipelines_or_models() {
        assert!(key(&[]).allows("llm", Some("any")));
        let k = key(&["text-to-image", "llm/meta-llama/Llama-3.1-8B"]);
        assert!(k.allows("text-to-image", Some("x")));
        assert!(k.allows("llm", None));
        assert!(k.allows("llm", Some("meta-llama/Llama-3.1-8B")));
        assert!(!k.allows("llm", Some("other")));
        assert!(!k.allows("image-to-video", None));
        assert_eq!(k.prefix, "lpk_abcd");
    }

    #[test]
    fn a_patch_sets_clears_and_checks() {
        let mut k = key(&[]);
        let patch: KeyPatch =
            serde_json::from_str(r#"{"requests_per_minute": 5, "expires_at": null}"#).unwrap();
        patch.apply(&mut k).unwrap();
        assert_eq!(k.requests_per_minute, Some(5));
        let patch: KeyPatch = serde_json::from_str(r#"{"requests_per_minute": null}"#).unwrap();
        patch.apply(&mut k).unwrap();
        assert_eq!(k.requests_per_minute, None);
        let patch: KeyPatch = serde_json::from_str(r#"{"allowed": ["/x"]}"#).unwrap();
        assert!(matches!(patch.apply(&mut k), Err(KeyError::Invalid { field: "allowed", .. })));
    }

    /// A budget period's end is its start plus the period: one of `i64::MAX` seconds would
    /// overflow there, so a hundred years is the longest.
    #[test]
    fn a_budget_period_is_at_most_a_hundred_years() {
        let limits = |period| check_limits(None, Some(1), Some(period));
        assert!(limits(MAX_BUDGET_PERIOD_SECONDS).is_ok());
        for period in [MAX_BUDGET_PERIOD_SECONDS + 1, i64::MAX as u64] {
            let err = limits(period).unwrap_err();
            assert!(matches!(err, KeyError::Invalid { field: "budget_period_seconds", .. }));
        }
    }
}
