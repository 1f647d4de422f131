//! `GET /openapi.json`: valid by a real OpenAPI validator (`openapi-spec-validator`, pinned in
//! the venv `scripts/sdk-venv` makes); every route it names is served and every public route
//! in the source is named; live answers (catalogue, model list, an error) validate against its
//! schemas; and the AI request schemas agree with the gateway's own validation.

use std::path::Path;

use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::keys::{create, keys_config};
use crate::py_byoc::sdk_python;
use crate::support::*;

/// Validates the document (argv[1]) and, for each further pair of arguments, a JSON file
/// against a named schema of it; prints `ok` or fails.
const SCRIPT: &str = r##"
import json, sys
from openapi_spec_validator import validate
from openapi_schema_validator import OAS31Validator
doc = json.load(open(sys.argv[1]))
validate(doc)
args = sys.argv[2:]
for name, path in zip(args[0::2], args[1::2]):
    schema = {"$ref": "#/components/schemas/" + name, "components": doc["components"]}
    instance = json.load(open(path))
    OAS31Validator(schema).validate(instance)
for path, spec in doc["paths"].items():
    for method, op in spec.items():
        body = op.get("requestBody", {}).get("content", {})
        for media, media_spec in body.items():
            OAS31Validator.check_schema(media_spec["schema"])
print("ok")
"##;

/// Public routes the source declares on the admin listener instead (in the same files).
const ADMIN_ONLY: &[&str] = &[
    "/live/streams",
    "/byoc/streams",
    "/byoc/capabilities",
    "/transcode/streams",
    "/transcode/streams/{manifest}",
    "/usage.csv",
];

/// Every `.route("…")` path of the public routers' files, in OpenAPI's spelling (the
/// remote-signer routes, served and documented only on a signer, are left out).
fn source_routes() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let files = [
        "ai.rs",
        "live.rs",
        "byoc.rs",
        "byoc_stream.rs",
        "transcode.rs",
        "catalog.rs",
        "catalog_page.rs",
        "openapi.rs",
        "keys.rs",
        "mod.rs",
    ];
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        for piece in text.split(".route(").skip(1) {
            let Some(rest) = piece.trim_start().strip_prefix('"') else { continue };
            let path = rest.split('"').next().unwrap().replace("{*", "{");
            if !ADMIN_ONLY.contains(&path.as_str()) && !path.starts_with("/keys") {
                out.push(path);
            }
        }
    }
    out
}

async fn sim() -> Sim {
    Sim::start(SimConfig {
        name: "openapi".into(),
        models: vec![SimModel::new("text-to-image", SD), SimModel::new("llm", LLM)],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_complete_and_true() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = keys_config(&[sim.url()], dir.path(), None);
    // A customer price, so that the catalogue validated below carries one.
    let table = r#"{"price": [{"pipeline": "text-to-image", "usd": "0.002"}]}"#;
    let prices = livepeer_gateway::keys::price::CustomerPrices::parse(Some(table), Some("3000"));
    cfg.keys.prices = std::sync::Arc::new(prices.unwrap());
    let gw = start(cfg).await;
    let base = format!("http://{}", gw.http_addr);
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    let doc: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();

    // Every public route of the source is documented.
    for route in source_routes() {
        assert!(paths.contains_key(&route), "{route} is served but not in /openapi.json");
    }
    // Every documented route is served: axum's own 404 (no route) and 405 have empty bodies;
    // our handlers' refusals are JSON.
    for (path, spec) in paths {
        let concrete = path.replace('{', "x").replace('}', "");
        for method in spec.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = client
                .request(method.clone(), format!("{base}{concrete}"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap();
            assert!(
                status != 405 && !(status == 404 && body.is_empty()),
                "{method} {path} is documented but not served ({status})"
            );
        }
    }

    // The AI request schemas are the validation table's: a width off the multiple of 8 is
    // refused by both.
    let t2i =
        &paths["/text-to-image"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(t2i["required"], json!(["prompt"]), "{t2i}");
    assert_eq!(t2i["properties"]["width"]["multipleOf"], 8, "{t2i}");
    let (_, secret) = create(&gw, json!({ "name": "openapi" })).await;
    let t2i_as = |body: Value| {
        client.post(format!("{base}/text-to-image")).bearer_auth(&secret).json(&body).send()
    };
    let refused = t2i_as(json!({ "prompt": "x", "width": 7 })).await.unwrap();
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert!(refused.to_string().contains("width"), "{refused}");
    let accepted = t2i_as(json!({ "prompt": "x", "width": 64, "model_id": SD })).await.unwrap();
    assert_eq!(accepted.status(), 200);
    let upload = &paths["/image-to-image"]["post"]["requestBody"]["content"]["multipart/form-data"]
        ["schema"];
    assert!(upload["required"].as_array().unwrap().contains(&json!("image")), "{upload}");

    // A real validator accepts the document, and live answers match its schemas.
    let Some(python) = sdk_python() else {
        assert!(
            std::env::var("LIVEPEER_REQUIRE_PYTRICKLE").as_deref() != Ok("1"),
            "LIVEPEER_REQUIRE_PYTRICKLE=1 but no Python SDK venv; run scripts/sdk-venv"
        );
        eprintln!("skipping the validator: no Python venv (run scripts/sdk-venv)");
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let save = |name: &str, v: &Value| {
        let path = files.path().join(name);
        std::fs::write(&path, serde_json::to_vec(v).unwrap()).unwrap();
        path
    };
    let catalog: Value = get("/v1/catalog").await.unwrap().json().await.unwrap();
    assert!(catalog["data"].as_array().unwrap().len() >= 2, "{catalog}");
    let priced =
        catalog["data"].as_array().unwrap().iter().filter(|e| e["customer_price"].is_object());
    assert_eq!(priced.count(), 1, "{catalog}");
    let models: Value = get("/v1/models").await.unwrap().json().await.unwrap();
    let error: Value = get("/v1/usage").await.unwrap().json().await.unwrap();
    assert_eq!(error["error"]["status"], 401, "{error}");
    let out = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(save("doc.json", &doc))
        .args(["Catalog".as_ref(), save("catalog.json", &catalog).as_os_str()])
        .args(["ModelList".as_ref(), save("models.json", &models).as_os_str()])
        .args(["Error".as_ref(), save("error.json", &error).as_os_str()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "the validator refused: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.shutdown().await;
}
