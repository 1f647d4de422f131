//! How a section of settings is declared, and how the TOML file is read into sections.
//!
//! Every setting is one `Option` field of one section struct. The same struct is the clap
//! `Args` (its flag and `LP_*` variable) and the serde shape of the file (its key, the flag's
//! name), so a setting is written down once; its default is applied where the section is
//! validated. Each section reads the whole flat file and ignores the other sections' keys;
//! [`check_keys`] rejects keys no section knows (serde's `deny_unknown_fields` cannot see
//! across sections).

use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::{ConfigError, bad};

/// Declares a section: the struct (clap `Args` + serde `Deserialize`, kebab-case keys) and its
/// `or`, which takes each setting from the command line where given, else from the file.
///
/// A macro rather than a hand-written `or` per section: that `or` would list every field a
/// second time, which is the duplication this module exists to remove. It only adds the
/// derives and `or`; the fields, their help texts and their attributes are written as usual.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: Option<$ty:ty>,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub struct $name {
            $($(#[$field_meta])* pub $field: Option<$ty>,)*
        }

        impl $name {
            /// Each setting from `self` (flags and `LP_*` variables) where set, else from `file`.
            pub(super) fn or(self, file: Self) -> Self {
                Self { $($field: self.$field.or(file.$field),)* }
            }
        }
    };
}
pub(super) use section;

/// Rejects a file key that is not in `known` (the flag names).
pub(super) fn check_keys(text: &str, path: &Path, known: &[&str]) -> Result<(), ConfigError> {
    let shown = path.display();
    let table = text.parse::<toml::Table>().map_err(|e| file_error(&e, text, path))?;
    match table.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(bad("--config", format!("{shown}: unknown key `{key}`"))),
        None => Ok(()),
    }
}

/// One section's settings from the file's text; the other sections' keys are ignored here.
pub(super) fn from_file<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| file_error(&e, text, path))
}

/// A file's error as it is shown: where (line, column, the line's key) and what, never the
/// line itself or the value. toml's own text quotes the offending line, and serde's type
/// errors the value (`invalid type: integer `19283746`, expected a string`), which would put
/// an unquoted password or token on stderr and into the service manager's log.
fn file_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let mut place = String::new();
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        place = format!(" line {line}, column {column}");
        let this = text[before.len() - (column - 1)..].lines().next().unwrap_or("");
        if let Some((key, _)) = this.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                place.push_str(&format!(" (`{key}`)"));
            }
        }
    }
    let message = e.message().lines().next().unwrap_or("");
    let what = match message.split_once(": ") {
        Some((kind, rest)) if kind == "invalid type" || kind == "invalid value" => {
            rest.rsplit_once(", ").map_or(kind.to_owned(), |(_, want)| format!("{kind}, {want}"))
        }
        _ => message.to_owned(),
    };
    bad("--config", format!("{}:{place}: {what}", path.display()))
}

/// A list setting: one comma-separated string (as on the command line) or, in the file only,
/// an array of strings; both end up as the comma-separated form.
pub(super) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrList {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<StringOrList>::deserialize(d)?.map(|v| match v {
        StringOrList::One(s) => s,
        StringOrList::Many(v) => v.join(","),
    }))
}
