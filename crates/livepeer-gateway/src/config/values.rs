//! Parsers shared by the sections: durations, listen addresses, URLs, `name:value` header lists
//! and JSON given inline or as a file. Each turns text into a typed value or a [`ConfigError`]
//! naming the setting.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::{ConfigError, bad};

/// Parses `500ms`, `3s`, `2m`, `1h` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{text:?} is not a duration like 500ms or 3s"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?}; use ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration setting, or `default` when it is not set.
pub(super) fn duration(
    setting: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        Some(text) => parse_duration(&text).map_err(|e| bad(setting, e)),
        None => Ok(default),
    }
}

/// A duration setting that must be longer than zero.
pub(super) fn positive_duration(
    setting: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = duration(setting, value, default)?;
    if d.is_zero() {
        return Err(bad(setting, "must be longer than zero"));
    }
    Ok(d)
}

/// go-livepeer's address defaulting: empty → `127.0.0.1:<port>`, `:port` → `127.0.0.1:port`,
/// a bare host gets the default port.
pub(super) fn listen_addr(
    setting: &str,
    value: Option<String>,
    port: u16,
) -> Result<SocketAddr, ConfigError> {
    let value = value.unwrap_or_default();
    let value = value.trim();
    let text = if value.is_empty() {
        format!("127.0.0.1:{port}")
    } else if let Some(p) = value.strip_prefix(':') {
        format!("127.0.0.1:{p}")
    } else if value.parse::<std::net::IpAddr>().is_ok() {
        format!("{value}:{port}")
    } else if value == "localhost" {
        format!("127.0.0.1:{port}")
    } else {
        value.replace("localhost:", "127.0.0.1:")
    };
    text.parse().map_err(|_| bad(setting, format!("{value:?} is not an IP address and port")))
}

/// An optional URL setting: blank counts as unset.
pub(super) fn optional_url(
    setting: &str,
    value: Option<String>,
) -> Result<Option<Url>, ConfigError> {
    match value.filter(|u| !u.trim().is_empty()) {
        // The error names the setting, not the text: a URL may hold a key or a password.
        Some(u) => {
            Url::parse(u.trim()).map(Some).map_err(|e| bad(setting, format!("not a URL: {e}")))
        }
        None => Ok(None),
    }
}

/// Parses `k:v,k2:v2` (go-livepeer's `-remoteSignerHeaders`) into headers. Values are marked
/// sensitive: they are typically bearer tokens, and must stay out of `Debug` output.
pub(super) fn headers(setting: &str, text: Option<String>) -> Result<HeaderMap, ConfigError> {
    let text = text.unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (n, pair) in text.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        // Not the entry itself: one without its name is a bare token.
        let (k, v) = pair
            .split_once(':')
            .ok_or_else(|| bad(setting, format!("entry {} is not name:value", n + 1)))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|e| bad(setting, format!("header name {k:?}: {e}")))?;
        let mut value = HeaderValue::from_str(v.trim())
            .map_err(|_| bad(setting, format!("header {k:?} has an invalid value")))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// Reads inline JSON, or the file it names.
pub(super) fn json_or_file(setting: &str, text: &str) -> Result<serde_json::Value, ConfigError> {
    let trimmed = text.trim();
    let body = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        trimmed.to_owned()
    } else {
        std::fs::read_to_string(trimmed).map_err(|e| bad(setting, format!("{trimmed}: {e}")))?
    };
    serde_json::from_str(&body).map_err(|e| bad(setting, format!("not valid JSON: {e}")))
}
