//! `livepeer-gateway demo`: three local simulated orchestrators of different price and latency,
//! and a gateway in front of them, on the usual ports.

use std::time::Duration;

use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig, SimModel};

use livepeer_gateway::config::{Config, OrchSource};

/// The simulators of the demo, kept alive while it runs.
#[derive(Debug)]
pub(crate) struct DemoOrchestrators {
    /// The running simulators.
    pub(crate) sims: Vec<Sim>,
}

/// Starts three simulators: cheap and slow, mid, and expensive and fast; the first one over TLS
/// like a real orchestrator, the others over h2c.
pub(crate) async fn start_orchestrators() -> Result<DemoOrchestrators, livepeer_sim::SimError> {
    let specs = [
        ("budget", true, 40u64, 3i64, false),
        ("standard", false, 15, 6, true),
        ("premium", false, 5, 12, true),
    ];
    let mut sims = Vec::new();
    for (name, tls, latency_ms, price, sdxl_warm) in specs {
        let models = vec![
            SimModel::new("text-to-image", "stabilityai/sd-turbo").price(price, 1).capacity(4),
            SimModel::new("text-to-image", "ByteDance/SDXL-Lightning")
                .price(price * 2, 1)
                .warm(sdxl_warm),
            SimModel::new("llm", "meta-llama/Meta-Llama-3.1-8B-Instruct")
                .price(price, 1000)
                .capacity(8),
            SimModel::new("audio-to-text", "openai/whisper-large-v3").price(price, 100),
            SimModel::new("live-video-to-video", "noop").price(price, 1_000_000).capacity(8),
        ];
        let config = SimConfig {
            name: name.to_owned(),
            tls,
            latency: Duration::from_millis(latency_ms),
            jitter: Duration::from_millis(latency_ms / 4 + 1),
            base_price: (price, 1),
            models,
            // A free BYOC capability (the demo orchestrators are off-chain).
            byoc: vec![SimByoc::new("text-reversal", ByocKind::Reverse).capacity(8)],
            ..SimConfig::default()
        };
        sims.push(Sim::start(config).await?);
    }
    Ok(DemoOrchestrators { sims })
}

/// Points `config` at the demo orchestrators.
pub(crate) fn use_orchestrators(config: &mut Config, demo: &DemoOrchestrators) {
    let urls = demo.sims.iter().filter_map(|s| url::Url::parse(s.url()).ok()).collect();
    config.orchestrators = OrchSource::Static(urls);
}

/// What to try, printed once the demo is up.
pub(crate) fn instructions(
    admin: std::net::SocketAddr,
    http: std::net::SocketAddr,
    rtmp: Option<std::net::SocketAddr>,
    demo: &DemoOrchestrators,
) -> String {
    let rtmp = rtmp.map_or_else(|| "(RTMP is off)".to_owned(), |a| a.to_string());
    let sims: Vec<&str> = demo.sims.iter().map(Sim::url).collect();
    let job = serde_json::json!({
        "request": "{}",
        "parameters": "{}",
        "capability": "text-reversal",
        "timeout_seconds": 30,
    });
    let job = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, job.to_string());
    format!(
        "\nlivepeer-gateway demo is running.\n\
         \n  simulated orchestrators: {}\n  public API:  http://{http}\n  admin API:   http://{admin}\n\
         \nOpen in a browser:\n\
         \x20 http://{http}/    what the gateway offers, its prices and a curl example per pipeline\n\
         \x20 http://{admin}/    the operator dashboard (pool, streams, failures, payments, charts)\n\
         \x20 http://{http}/openapi.json    every public route (OpenAPI 3.1)\n\
         \nTry:\n\
         \x20 curl -s http://{http}/text-to-image -H 'content-type: application/json' \\\n\
         \x20   -d '{{\"prompt\": \"a lighthouse at dusk\", \"model_id\": \"stabilityai/sd-turbo\"}}'\n\
         \x20 curl -sN http://{http}/llm -H 'content-type: application/json' \\\n\
         \x20   -d '{{\"model\": \"meta-llama/Meta-Llama-3.1-8B-Instruct\", \"stream\": true, \"messages\": [{{\"role\": \"user\", \"content\": \"hello there\"}}]}}'\n\
         \x20 curl -s http://{http}/live/video-to-video/cam1/start -H 'content-type: application/json' \\\n\
         \x20   -d '{{\"pipeline\": \"noop\", \"params\": {{\"prompt\": \"hello\"}}}}'\n\
         \x20   then publish MPEG-TS segments to its publish_url with a trickle client (e.g. PyTrickle),\n\
         \x20   read them back from its subscribe_url and watch its status_url\n\
         \x20   (sending its stream_secret as the Livepeer-Stream-Secret header)\n\
         \x20 curl -s http://{http}/process/request/reverse -H 'content-type: application/json' \\\n\
         \x20   -H 'Livepeer: {job}' -d '{{\"text\": \"hello\"}}'\n\
         \x20   (BYOC; the header is base64 of {{\"request\",\"parameters\",\"capability\",\"timeout_seconds\"}})\n\
         \x20 ffmpeg -re -f lavfi -i testsrc=size=1280x720:rate=30 -c:v libx264 -g 60 -f flv \\\n\
         \x20   rtmp://{rtmp}/stream/demo    (transcoding; then play it:)\n\
         \x20 ffplay http://{http}/stream/demo.m3u8\n\
         \x20 curl -s http://{http}/v1/catalog    (what the gateway offers; /v1/models for OpenAI clients)\n\
         \x20 curl -s http://{admin}/byoc/capabilities\n\
         \x20 curl -s http://{admin}/orchestrators\n\
         \x20 curl -s 'http://{admin}/select?pipeline=text-to-image&model=ByteDance/SDXL-Lightning'\n\
         \x20 curl -s http://{admin}/metrics | grep livepeer_\n\
         \nPress Ctrl-C to stop.\n",
        sims.join(", ")
    )
}
