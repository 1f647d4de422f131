//! `GET /` on the public port: the catalogue as a page for a person: what the gateway is,
//! what it offers now and at what price, and a `curl` example per pipeline. Rendered on the
//! server with no script at all, so it reads the same without JavaScript.
//!
//! Model and capability names come from orchestrators, so they are untrusted twice over: every
//! one is HTML-escaped, and inside a shell command it is also shell-quoted (a name with a
//! quote in it must not turn a copied example into another command).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::catalog::{CatalogEntry, CatalogState, entries, pipeline_info};

/// No script, no frames, nothing fetched: a page of text and its own inline style.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:0 auto;\
padding:0 20px 40px;color:#111827}h1{margin-bottom:0}.lead{color:#374151}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;\
border-bottom:1px solid #e5e7eb;vertical-align:top}th{background:#f3f4f6}\
.cold{color:#6b7280}.warm{color:#15803d;font-weight:600}code,pre{font-family:ui-monospace,monospace;\
font-size:13px}pre{background:#111827;color:#f9fafb;padding:10px;overflow-x:auto;border-radius:4px;\
white-space:pre-wrap;word-break:break-all}.small{font-size:13px;color:#4b5563}";

/// `s` with HTML's five special characters escaped (text and attribute values alike).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one single-quoted shell word.
pub(crate) fn shell(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A JSON string literal of `s`.
fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The `curl` command that tries `entry` against the gateway at `base` (unescaped).
pub(crate) fn example(base: &str, entry: &CatalogEntry) -> String {
    let m = &entry.model;
    // Text fields go as `--form-string`: with `-F`, a value starting with `@` or `<` is a
    // file curl reads and uploads, and a model named `@/home/u/.ssh/id_rsa` would make the
    // copied example send that file.
    let form = |route: &str, fields: &str| {
        format!("curl -s {base}/{route} {fields} --form-string model_id={}", shell(m))
    };
    let json = |route: &str, body: String| {
        format!(
            "curl -s {base}/{route} -H 'content-type: application/json' \\\n  -d {}",
            shell(&body)
        )
    };
    match entry.pipeline {
        "text-to-image" => json(
            "text-to-image",
            format!(r#"{{"prompt": "a lighthouse at dusk", "model_id": {}}}"#, json_str(m)),
        ),
        "image-to-image" => {
            form("image-to-image", "-F image=@photo.png --form-string prompt='as a watercolour'")
        }
        "image-to-video" => form("image-to-video", "-F image=@photo.png"),
        "upscale" => form("upscale", "-F image=@photo.png --form-string prompt='sharper'"),
        "audio-to-text" => form("audio-to-text", "-F audio=@speech.wav"),
        "segment-anything-2" => form("segment-anything-2", "-F image=@photo.png"),
        "image-to-text" => {
            form("image-to-text", "-F image=@photo.png --form-string prompt='what is this?'")
        }
        "llm" => json(
            "v1/chat/completions",
            format!(
                r#"{{"model": {}, "messages": [{{"role": "user", "content": "hello"}}]}}"#,
                json_str(m)
            ),
        ),
        "text-to-speech" => json(
            "text-to-speech",
            format!(r#"{{"text": "hello there", "model_id": {}}}"#, json_str(m)),
        ),
        "live-video-to-video" => json(
            "live/video-to-video/my-stream/start",
            format!(r#"{{"pipeline": {}, "params": {{}}}}"#, json_str(m)),
        ),
        "byoc" => {
            let job = serde_json::json!({
                "request": "{}", "parameters": "{}", "capability": m, "timeout_seconds": 30,
            });
            let header = base64::engine::general_purpose::STANDARD.encode(job.to_string());
            format!(
                "curl -s {base}/process/request/run -H 'content-type: application/json' \\\n  \
                 -H {} -d '{{}}'",
                shell(&format!("Livepeer: {header}"))
            )
        }
        _ => format!(
            "curl -s -X POST {base}/live/my-stream/0.ts -H 'Content-Duration: 2000' \
             --data-binary @segment.ts"
        ),
    }
}

fn price_cell(entry: &CatalogEntry) -> String {
    let Some(p) = &entry.network_price else { return "—".into() };
    let range =
        |lo: &str, hi: &str| if lo == hi { lo.to_owned() } else { format!("{lo} – {hi}") };
    let mut cell = format!(
        "{} wei per {}",
        esc(&range(&p.min_wei_per_unit, &p.max_wei_per_unit)),
        esc(p.unit)
    );
    if let Some(m) = &p.per_minute {
        let _ = write!(
            cell,
            "<br><span class=\"per-minute\">{} wei a minute</span>",
            esc(&range(&m.min_wei, &m.max_wei))
        );
    }
    cell
}

fn row(out: &mut String, e: &CatalogEntry) {
    let latency = e.latency.map_or("—".to_owned(), |l| {
        format!(
            "{} / {} ms <span class=\"small\">({} requests)</span>",
            l.p50_ms, l.p95_ms, l.samples
        )
    });
    let customer = match &e.customer_price {
        Some(q) => match (&q.usd_per_unit, &q.orchestrator_multiple) {
            (Some(usd), _) => format!("{} USD per {}", esc(usd), esc(q.unit.name)),
            (None, Some(m)) => format!("{}× the orchestrator's price", esc(m)),
            (None, None) => "<span class=\"small\">unavailable</span>".into(),
        },
        None => "<span class=\"small\">not set</span>".into(),
    };
    let _ = write!(
        out,
        "<tr data-id=\"{id}\"><td class=\"name\">{name}<br><code class=\"small\">{model}</code></td>\
         <td class=\"pipeline\">{pipeline}</td><td class=\"availability {avail}\">{avail} \
         <span class=\"small\">({warm} warm, {cold} cold; capacity {cap})</span></td>\
         <td class=\"price\">{price}</td><td class=\"customer-price\">{customer}</td>\
         <td class=\"latency\">{latency}</td></tr>",
        id = esc(&e.id),
        name = esc(&e.name),
        model = esc(&e.model),
        pipeline = esc(e.pipeline),
        avail = e.availability,
        warm = e.orchestrators.warm,
        cold = e.orchestrators.cold,
        cap = e.capacity,
        price = price_cell(e),
    );
}

/// The page for `catalog` as served at `base`.
pub(crate) fn render(base: &str, catalog: &[CatalogEntry]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Livepeer AI gateway — what it offers</title><style>{STYLE}</style></head><body>\
         <h1>Livepeer AI gateway</h1><p class=\"lead\">This gateway runs AI jobs — images, video, \
         speech, language models, live video and custom containers — on GPUs of the \
         <a href=\"https://livepeer.org\">Livepeer</a> network. It picks a healthy orchestrator \
         for each request, moves it to another one if that fails, and pays orchestrators as the \
         work is done. Below is what it can serve right now, read from its orchestrators a \
         moment ago.</p><p class=\"small\">Machine-readable: <a href=\"/v1/catalog\">/v1/catalog</a> \
         (this list as JSON), <a href=\"/v1/models\">/v1/models</a> (the language models, as \
         OpenAI's API lists them), <a href=\"/openapi.json\">/openapi.json</a> (every route).</p>\
         <h2>On offer now</h2><p id=\"summary\">{n} pipelines and models.</p>\
         <table id=\"catalog-table\"><thead><tr><th>model</th><th>pipeline</th>\
         <th>availability</th><th>network price</th><th>your price</th>\
         <th>latency p50 / p95</th></tr></thead><tbody>",
        n = catalog.len()
    );
    if catalog.is_empty() {
        out.push_str(
            "<tr><td colspan=\"6\">Nothing right now: no orchestrator is reachable.</td></tr>",
        );
    }
    for e in catalog {
        row(&mut out, e);
    }
    out.push_str(
        "</tbody></table><h2>Try it</h2><p>One example per pipeline, with the first \
                  model it offers (change the model to any of the list above).</p>",
    );
    let mut seen: Vec<&str> = Vec::new();
    for e in catalog {
        if seen.contains(&e.pipeline) {
            continue;
        }
        seen.push(e.pipeline);
        let info = pipeline_info(e.pipeline);
        let _ = write!(
            out,
            "<section class=\"example\" id=\"example-{p}\"><h3>{title}</h3>\
             <p class=\"small\">{input} in, {output} out; priced per {unit}.</p>\
             <pre><code>{code}</code></pre></section>",
            p = esc(e.pipeline),
            title = esc(info.title),
            input = info.input.join(" and "),
            output = info.output.join(" and "),
            unit = esc(info.unit),
            code = esc(&example(base, e)),
        );
    }
    out.push_str("</body></html>");
    out
}

/// The page's route, `GET /`.
pub(crate) fn router(state: CatalogState) -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(page)).with_state(state)
}

async fn page(State(state): State<CatalogState>, headers: HeaderMap, uri: Uri) -> Response {
    let base = super::public_base(None, &headers, &uri);
    let body = render(&base, &entries(&state));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::catalog::{Modalities, Orchestrators};

    fn entry(pipeline: &'static str, model: &str) -> CatalogEntry {
        CatalogEntry {
            id: format!("{pipeline}/{model}"),
            pipeline,
            model: model.to_owned(),
            name: model.to_owned(),
            modalities: Modalities { input: &["image"], output: &["image"] },
            availability: "warm",
            orchestrators: Orchestrators { warm: 1, cold: 0 },
            capacity: 1,
            network_price: None,
            latency: None,
            customer_price: None,
        }
    }

    /// A model named like curl's file syntax stays text in a copied form example: never
    /// `-F name=@file` (uploads the file) or `-F name=<file` (sends its content).
    #[test]
    fn form_examples_send_a_hostile_model_name_as_text() {
        let base = "http://gw";
        for model in ["@/home/u/.ssh/id_rsa", "</etc/passwd", "it's"] {
            for pipeline in ["image-to-image", "upscale", "audio-to-text", "image-to-text"] {
                let code = example(base, &entry(pipeline, model));
                let field = format!(" --form-string model_id={}", shell(model));
                assert!(code.ends_with(&field), "{code}");
                assert!(!code.contains("-F model_id") && !code.contains("-F prompt"), "{code}");
            }
        }
        let code = example(base, &entry("image-to-text", "m"));
        assert_eq!(
            code,
            "curl -s http://gw/image-to-text -F image=@photo.png --form-string \
             prompt='what is this?' --form-string model_id='m'"
        );
    }
}
