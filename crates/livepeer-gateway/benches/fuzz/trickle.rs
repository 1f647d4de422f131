//! Trickle's HTTP server: paths (channel names, sequence numbers) and headers, as any client
//! sends them, against a fresh hub per case, over the router in-process.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use livepeer_trickle::{Hub, HubConfig};
use rand::Rng;
use rand::rngs::SmallRng;
use tower::ServiceExt as _;

use super::mutate;
use super::targets::Env;

const PATHS: &[&str] = &[
    "/c",
    "/c/0",
    "/c/1",
    "/c/5",
    "/c/-1",
    "/c/-2",
    "/c/-3",
    "/c/next",
    "/c/0/x",
    "/",
    "/c/99999999999999999999",
    "/%2e%2e/0",
    "/c%2F0",
    "/c/+1",
    "/c/0x1",
    "/c/%20",
    "//0",
];
const METHODS: &[&str] = &["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS"];
const HEADERS: &[(&str, &str)] = &[
    ("lp-trickle-seq", "0"),
    ("expect-content", "video/mp2t"),
    ("content-type", "video/mp2t"),
    ("lp-trickle-closed", "terminated"),
    ("content-length", "3"),
    ("transfer-encoding", "chunked"),
];

/// One case: one to five requests against a fresh hub.
pub fn request(rng: &mut SmallRng, env: &Env) {
    let hub = Hub::new(HubConfig {
        window: rng.random_range(0..4),
        max_segment_bytes: rng.random_range(0..64),
        max_channels: rng.random_range(0..4),
        autocreate: rng.random(),
        ..HubConfig::default()
    });
    if rng.random() {
        let _ = hub.create("c", "video/mp2t");
    }
    let router = hub.router();
    for _ in 0..rng.random_range(1..=5) {
        let Some(req) = build(rng) else { continue };
        let call = router.clone().oneshot(req);
        env.rt.block_on(async {
            // Paused clock: a request that waits (a segment not yet written) times out at once.
            let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(30), call).await else {
                return;
            };
            env.accepted_if(resp.status().is_success());
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16);
            let _ = tokio::time::timeout(Duration::from_secs(30), body).await;
        });
    }
    let _ = hub.sweep();
}

/// A request with a mutated method, path, headers and body; `None` when they do not make an
/// HTTP request at all (hyper refuses those before any route).
fn build(rng: &mut SmallRng) -> Option<Request<Body>> {
    let path = PATHS[rng.random_range(0..PATHS.len())];
    let path = if rng.random_range(0..3) == 0 { mutate::text(rng, path) } else { path.to_owned() };
    let method = METHODS[rng.random_range(0..METHODS.len())];
    let mut req = Request::builder().method(method).uri(path);
    for _ in 0..rng.random_range(0..3) {
        let (name, value) = HEADERS[rng.random_range(0..HEADERS.len())];
        let value = if rng.random() { mutate::text(rng, value) } else { value.to_owned() };
        req = req.header(name, value);
    }
    let body: Vec<u8> = (0..rng.random_range(0..80)).map(|_| rng.random()).collect();
    req.body(Body::from(body)).ok()
}
