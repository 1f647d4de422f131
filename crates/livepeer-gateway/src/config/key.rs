//! The gateway's own key: a V3 keystore (file or directory, with go-livepeer's password rule)
//! or, for development, `LP_ETH_KEY`. Decrypted before any port is bound; neither keys nor
//! passwords appear in errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use livepeer_pm::{Address, LocalSigner};
use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, bad};

/// The gateway's key from `--eth-keystore-path` (with `--eth-password` and `--eth-acct-addr`),
/// else from `raw` (`LP_ETH_KEY`).
pub(super) fn resolve_signer(
    keystore: Option<PathBuf>,
    password: Option<String>,
    account: Option<String>,
    raw: Option<SecretString>,
) -> Result<Option<Arc<LocalSigner>>, ConfigError> {
    const S: &str = "--eth-keystore-path";
    let Some(path) = keystore else {
        return match raw {
            Some(key) => LocalSigner::from_hex(key.expose_secret())
                .map(|s| Some(Arc::new(s)))
                .map_err(|e| bad("LP_ETH_KEY", e.to_string())),
            None => Ok(None),
        };
    };
    let password = match password {
        // go-livepeer: a readable file's trimmed content, else the value itself.
        Some(p) => match std::fs::read_to_string(&p) {
            Ok(text) if !text.trim().is_empty() => livepeer_pm::keystore::normalize_password(&text),
            Ok(_) => SecretString::from(p),
            Err(_) => SecretString::from(p),
        },
        None => return Err(bad("--eth-password", "required with --eth-keystore-path")),
    };
    let want = match account {
        Some(a) => Some(
            format!("0x{}", a.trim().trim_start_matches("0x"))
                .parse::<Address>()
                .map_err(|e| bad("--eth-acct-addr", format!("{a:?}: {e}")))?,
        ),
        None => None,
    };
    let json = keystore_json(&path, want).map_err(|m| bad(S, m))?;
    let signer = livepeer_pm::keystore::load_keystore(&json, &password)
        .map_err(|e| bad(S, format!("{}: {e}", path.display())))?;
    if want.is_some_and(|w| w != signer.address()) {
        return Err(bad("--eth-acct-addr", "the keystore holds a different account"));
    }
    Ok(Some(Arc::new(signer)))
}

/// The keystore JSON at `path`: the file itself, or the one file of a directory whose `address`
/// matches `want` (or the only keystore there).
fn keystore_json(path: &Path, want: Option<Address>) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.is_file() {
        return std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"));
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("{shown}: {e}"))?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let address = doc["address"]
            .as_str()
            .and_then(|a| format!("0x{}", a.trim_start_matches("0x")).parse::<Address>().ok());
        found.push((address, text));
    }
    let mut matching: Vec<String> = found
        .into_iter()
        .filter(|(a, _)| want.is_none_or(|w| *a == Some(w)))
        .map(|(_, t)| t)
        .collect();
    match (matching.len(), want) {
        (1, _) => Ok(matching.remove(0)),
        (0, Some(w)) => Err(format!("{shown}: no keystore for account {}", w.to_checksum(None))),
        (0, None) => Err(format!("{shown}: no keystore files")),
        (n, _) => Err(format!("{shown}: {n} keystores; choose one with --eth-acct-addr")),
    }
}
