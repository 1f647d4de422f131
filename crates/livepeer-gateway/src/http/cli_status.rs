//! go-livepeer's `NodeStatus` (`common/types.go`, built by `server/mediaserver.go`
//! `GetNodeStatus`), which `/status` serves beside our own fields. Go writes it without JSON
//! tags, so the members carry Go's field names and Go's encodings: a `*url.URL` is the struct
//! of its fields, a `*time.Duration` nanoseconds, a master playlist the fields of
//! `m3u8.MasterPlaylist`. `livepeer_cli` decodes the whole `/status` into this struct, so every
//! member here has the type Go expects (a mismatch makes its decoding report an error).

use serde_json::{Map, Value, json};
use url::Url;

use crate::state::AppState;
use crate::transcode::TranscodeState;

/// `NodeStatus`'s members, from the pool and the transcoding streams.
pub(super) fn node_status(app: &AppState, transcode: &TranscodeState) -> Map<String, Value> {
    let snap = app.pool.snapshot();
    // go-livepeer scores a static or webhook list as trusted (1) and the on-chain pool as
    // untrusted (0); our selection uses no score.
    let on_chain = app.chain.as_ref().is_some_and(|c| c.discovers());
    let score = if on_chain { 0.0 } else { 1.0 };
    let pool: Vec<Value> = snap.slots.iter().map(|s| go_url_string(&s.url).into()).collect();
    let infos: Vec<Value> = snap
        .slots
        .iter()
        .map(|s| {
            let latency =
                s.info.as_ref().map(|i| u64::try_from(i.rtt.as_nanos()).unwrap_or(u64::MAX));
            json!({ "Url": go_url(&s.url), "Score": score, "Latency": latency })
        })
        .collect();
    let (manifests, stream_info) = streams(transcode);
    let mut out = Map::new();
    out.insert("Manifests".into(), manifests.into());
    // Stream renames by the auth webhook are not kept apart from the streams themselves.
    out.insert("InternalManifests".into(), json!({}));
    out.insert("StreamInfo".into(), stream_info.into());
    out.insert("OrchestratorPool".into(), pool.into());
    out.insert("OrchestratorPoolInfos".into(), infos.into());
    out.insert("Version".into(), env!("CARGO_PKG_VERSION").into());
    // Not a Go program: no Go runtime version to give. `livepeer_cli` only prints this.
    out.insert("GolangRuntimeVersion".into(), "".into());
    out.insert("GOArch".into(), go_arch().into());
    out.insert("GOOS".into(), go_os().into());
    // A gateway has no remote transcoders and transcodes nothing itself (go-livepeer's
    // gateway says `true` here, an artefact of testing for a missing transcoder manager).
    out.insert("RegisteredTranscodersNumber".into(), 0.into());
    out.insert("RegisteredTranscoders".into(), json!([]));
    out.insert("LocalTranscoding".into(), false.into());
    // Prices an orchestrator sets per gateway: none on a gateway.
    out.insert("BroadcasterPrices".into(), json!({}));
    out
}

/// `Manifests` (manifest id → master playlist) and `StreamInfo` (manifest id →
/// `{SourceBytes, TranscodedBytes}`) of the running transcoding streams.
fn streams(transcode: &TranscodeState) -> (Map<String, Value>, Map<String, Value>) {
    let status = transcode.streams_status();
    let mut manifests = Map::new();
    let mut info = Map::new();
    for stream in status["streams"].as_array().into_iter().flatten() {
        let Some(id) = stream["manifest_id"].as_str() else { continue };
        let playlist = transcode.master_playlist(id).ok();
        manifests.insert(id.to_owned(), master_playlist(playlist.as_deref()));
        // Rendition bytes are not counted, so `TranscodedBytes` stays 0.
        let source = stream["ingest"]["bytes"].as_u64().unwrap_or(0);
        info.insert(id.to_owned(), json!({ "SourceBytes": source, "TranscodedBytes": 0 }));
    }
    (manifests, info)
}

/// An `m3u8.MasterPlaylist` as Go encodes it, from the text of the master playlist we serve
/// (`None` before the first segment: no variants yet, as go-livepeer's empty playlist).
fn master_playlist(text: Option<&str>) -> Value {
    let mut variants = Vec::new();
    let mut lines = text.unwrap_or("").lines();
    while let Some(line) = lines.next() {
        let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") else { continue };
        let uri = lines.next().unwrap_or("").trim();
        let attr = |name: &str| {
            attrs.split(',').find_map(|a| a.strip_prefix(name)?.strip_prefix('=')).unwrap_or("")
        };
        // The fields of `m3u8.Variant`, `VariantParams` embedded (so flattened by Go).
        variants.push(json!({
            "URI": uri,
            "Chunklist": null,
            "ProgramId": attr("PROGRAM-ID").parse::<u32>().unwrap_or(0),
            "Bandwidth": attr("BANDWIDTH").parse::<u32>().unwrap_or(0),
            "Codecs": "",
            "Resolution": attr("RESOLUTION"),
            "Audio": "",
            "Video": "",
            "Subtitles": "",
            "Captions": "",
            "Name": "",
            "Iframe": false,
            "Alternatives": null,
        }));
    }
    let variants = if variants.is_empty() { Value::Null } else { variants.into() };
    json!({ "Variants": variants, "Args": "", "CypherVersion": "" })
}

/// `url.URL.String()` of an orchestrator's address as the operator wrote it: without the `/`
/// our URL type adds as the path of `https://host:port`.
pub(super) fn go_url_string(url: &Url) -> String {
    let text = url.as_str();
    match (url.path(), url.query(), url.fragment()) {
        ("/", None, None) => text.strip_suffix('/').unwrap_or(text).to_owned(),
        _ => text.to_owned(),
    }
}

/// A `*url.URL` as Go's `encoding/json` writes it: the struct of its fields (it has no JSON or
/// text marshaller); `User` is `{}` when set (its fields are unexported), else `null`.
fn go_url(url: &Url) -> Value {
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    };
    let user = (!url.username().is_empty() || url.password().is_some()).then(|| json!({}));
    let path = if url.path() == "/" { "" } else { url.path() };
    json!({
        "Scheme": url.scheme(),
        "Opaque": "",
        "User": user,
        "Host": host,
        "Path": path,
        "RawPath": "",
        "OmitHost": false,
        "ForceQuery": false,
        "RawQuery": url.query().unwrap_or(""),
        "Fragment": url.fragment().unwrap_or(""),
        "RawFragment": "",
    })
}

/// `runtime.GOARCH`'s name for the architecture this was built for.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `runtime.GOOS`'s name for the operating system.
fn go_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_read_as_go_writes_them() {
        let url: Url = "https://o.example:8935".parse().unwrap();
        assert_eq!(go_url_string(&url), "https://o.example:8935");
        let v = go_url(&url);
        assert_eq!(
            (v["Scheme"].as_str(), v["Host"].as_str()),
            (Some("https"), Some("o.example:8935"))
        );
        assert_eq!((v["Path"].as_str(), v["User"].is_null()), (Some(""), true));
        let url: Url = "http://u:p@[::1]:9/a/b?x=1".parse().unwrap();
        assert_eq!(go_url_string(&url), "http://u:p@[::1]:9/a/b?x=1");
        let v = go_url(&url);
        assert_eq!((v["Host"].as_str(), v["Path"].as_str()), (Some("[::1]:9"), Some("/a/b")));
        assert_eq!((v["RawQuery"].as_str(), v["User"].clone()), (Some("x=1"), json!({})));
    }

    #[test]
    fn master_playlists_become_go_variants() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:PROGRAM-ID=0,BANDWIDTH=600000,RESOLUTION=426x240\nm/P240p30fps16x9.m3u8\n#EXT-X-STREAM-INF:PROGRAM-ID=0,BANDWIDTH=4000000\nm/source.m3u8\n";
        let v = master_playlist(Some(text));
        let variants = v["Variants"].as_array().unwrap();
        assert_eq!(variants.len(), 2);
        assert_eq!(variants[0]["URI"], "m/P240p30fps16x9.m3u8");
        assert_eq!(
            (variants[0]["Bandwidth"].as_u64(), variants[0]["Resolution"].as_str()),
            (Some(600_000), Some("426x240"))
        );
        assert_eq!(variants[1]["Resolution"], "");
        assert!(master_playlist(None)["Variants"].is_null());
    }
}
