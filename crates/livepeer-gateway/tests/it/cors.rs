//! go-livepeer's CORS on the live and BYOC stream routes: preflights answered 204 whether or
//! not CORS is on, and the `Access-Control-*` headers only with `--live-ai-allow-cors`.

use livepeer_gateway::Gateway;
use reqwest::Method;

use crate::support::*;

async fn gateway(cors: bool) -> Gateway {
    let mut config = config(&[]);
    config.live.allow_cors = cors;
    start(config).await
}

async fn send(gw: &Gateway, method: Method, path: &str) -> reqwest::Response {
    let url = format!("http://{}{path}", gw.http_addr);
    let req = reqwest::Client::new().request(method, url);
    req.header("Origin", "https://app.example").send().await.unwrap()
}

const PREFLIGHTS: &[&str] = &[
    "/live/video-to-video/cam/start",
    "/live/video-to-video/cam/update",
    "/live/video-to-video/cam/status",
    "/live/video-to-video/cam/stop",
    "/process/stream/start",
    "/process/stream/cam-1/update",
    "/process/stream/cam-1/status",
    "/process/stream/cam-1/stop",
    "/process/stream/cam-1/data",
];

#[tokio::test]
async fn preflights_are_answered_204_and_cors_headers_come_only_when_allowed() {
    let gw = gateway(false).await;
    for path in PREFLIGHTS {
        let resp = send(&gw, Method::OPTIONS, path).await;
        assert_eq!(resp.status(), 204, "{path}");
        assert!(resp.headers().get("access-control-allow-origin").is_none(), "{path}");
    }
    gw.shutdown().await;

    let gw = gateway(true).await;
    for path in PREFLIGHTS {
        let resp = send(&gw, Method::OPTIONS, path).await;
        assert_eq!(resp.status(), 204, "{path}");
        let header = |name: &str| resp.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("access-control-allow-origin"), "*", "{path}");
        assert_eq!(header("access-control-allow-methods"), "OPTIONS, POST, GET, DELETE");
        // A BYOC start returns its stream's secret in a header only.
        assert!(header("access-control-expose-headers").contains("Livepeer-Stream-Secret"));
        // A stream's owner proves itself with these; a browser sends only what is allowed.
        let allowed = header("access-control-allow-headers").to_lowercase();
        for name in ["content-type", "authorization", "livepeer-stream-secret", "livepeer"] {
            assert!(allowed.split(", ").any(|h| h == name), "{path}: {allowed}");
        }
    }
    // The routes' own answers carry it too, errors included; other routes do not.
    let resp = send(&gw, Method::GET, "/live/video-to-video/nobody/status").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let resp = send(&gw, Method::GET, "/process/stream/nobody/status").await;
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let resp = send(&gw, Method::PUT, "/live/video-to-video/nobody/status").await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let resp = send(&gw, Method::GET, "/healthz").await;
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn with_customer_keys_a_preflight_needs_no_key_and_a_refusal_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::keys::keys_config(&[], dir.path(), None);
    config.live.allow_cors = true;
    let gw = start(config).await;
    // A browser's preflight carries no credentials: it must not be refused for want of them.
    for path in ["/live/video-to-video/cam/start", "/process/stream/start"] {
        let resp = send(&gw, Method::OPTIONS, path).await;
        assert_eq!(resp.status(), 204, "{path}");
        assert_eq!(resp.headers()["access-control-allow-origin"], "*", "{path}");
        // The start itself without a key: 401, which the page can read.
        let resp = send(&gw, Method::POST, path).await;
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(resp.headers()["access-control-allow-origin"], "*", "{path}");
    }
    gw.shutdown().await;
}
