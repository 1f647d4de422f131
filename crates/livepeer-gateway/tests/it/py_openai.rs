//! OpenAI's own Python client (`openai`, in the venv `scripts/sdk-venv` makes) lists the models
//! of `GET /v1/models` and streams a chat completion through `/v1/chat/completions`.

use std::process::Stdio;
use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};

use crate::py_byoc::sdk_python;
use crate::support::*;

const SCRIPT: &str = r#"
import sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
print("models", ",".join(m.id for m in client.models.list()))
stream = client.chat.completions.create(
    model=sys.argv[2], messages=[{"role": "user", "content": "hello"}], stream=True)
text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
print("streamed", len(text) > 0)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openais_python_client_lists_the_models_and_streams_a_chat() {
    let Some(python) = sdk_python() else {
        assert!(
            std::env::var("LIVEPEER_REQUIRE_PYTRICKLE").as_deref() != Ok("1"),
            "LIVEPEER_REQUIRE_PYTRICKLE=1 but no Python SDK venv; run scripts/sdk-venv"
        );
        eprintln!("skipping: no Python venv with openai (run scripts/sdk-venv)");
        return;
    };
    let sim = Sim::start(SimConfig {
        name: "openai".into(),
        models: vec![SimModel::new("llm", LLM), SimModel::new("text-to-image", SD)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = start(config(&[sim.url()])).await;
    let run = tokio::process::Command::new(python)
        .args(["-c", SCRIPT, &format!("http://{}", gw.http_addr), LLM])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("models {LLM}\n")), "only the LLM is listed: {stdout}");
    assert!(stdout.contains("streamed True"), "{stdout}");
    gw.shutdown().await;
}
