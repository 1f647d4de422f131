//! Interop with PyTrickle (the Python trickle client used by Livepeer's AI runners), unmodified,
//! against our server: its publisher and subscriber through our hub, and its subscriber reading
//! what our `HttpPublisher` wrote (and our `HttpSubscriber` reading what it wrote).
//!
//! Needs the venv made by `scripts/pytrickle-venv` (or `PYTRICKLE_PYTHON`). Without it the test
//! is skipped with a note, unless `LIVEPEER_REQUIRE_PYTRICKLE=1`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, client_config, next_whole};
use livepeer_trickle::{HttpPublisher, HttpSubscriber, Hub, HubConfig, Publish, WriteSegment};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Segments PyTrickle publishes, and segments our publisher writes for it to read.
const PY_SEGMENTS: usize = 6;
const RUST_SEGMENTS: usize = 4;

fn python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("PYTRICKLE_PYTHON") {
        return Some(PathBuf::from(python));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = std::env::var_os("PYTRICKLE_VENV")
        .map_or_else(|| root.join("target/pytrickle-venv"), |v| root.join(v));
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

/// Segment `i` as PyTrickle writes it (the same function as in pytrickle_client.py).
fn py_segment(i: usize) -> Bytes {
    (0..3)
        .map(|part| format!("py-segment-{i}-part-{part}|").repeat(100 + 50 * part))
        .collect::<String>()
        .into()
}

fn rust_segment(i: usize) -> Bytes {
    format!("rust-segment-{i}|").repeat(200).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pytrickle_interop() {
    let Some(python) = python() else {
        assert!(
            std::env::var("LIVEPEER_REQUIRE_PYTRICKLE").as_deref() != Ok("1"),
            "LIVEPEER_REQUIRE_PYTRICKLE=1 but no PyTrickle venv; run scripts/pytrickle-venv"
        );
        eprintln!("skipping pytrickle_interop: no PyTrickle venv (run scripts/pytrickle-venv)");
        return;
    };
    let hub = Hub::new(HubConfig::default());
    hub.create("py-pub", "video/mp2t").unwrap();
    hub.create("rust-pub", "video/mp2t").unwrap();
    let server = TestServer::start(hub.clone()).await;
    let config = client_config();
    let client = config.client().unwrap();

    // Our publisher writes segments for PyTrickle to read (all within the 5-segment window).
    let mut publisher =
        HttpPublisher::new(client.clone(), &server.url("rust-pub"), "video/mp2t", config.clone())
            .unwrap();
    for i in 0..RUST_SEGMENTS {
        let mut writer = publisher.segment().await.unwrap();
        let data = rust_segment(i);
        writer.write(data.slice(..data.len() / 2)).await.unwrap();
        writer.write(data.slice(data.len() / 2..)).await.unwrap();
        assert_eq!(writer.finish().await.unwrap(), i as u64);
    }

    // Our subscriber follows the channel PyTrickle publishes into.
    let mut subscriber =
        HttpSubscriber::new(client.clone(), &server.url("py-pub"), 0, config).unwrap();
    let rust_reader = tokio::spawn(async move {
        for i in 0..PY_SEGMENTS {
            let (seq, bytes) = next_whole(&mut subscriber).await.expect("py-pub ended early");
            assert_eq!(seq, i as u64);
            assert_eq!(bytes, py_segment(i), "segment {i} as PyTrickle published it");
        }
    });

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pytrickle_client.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(server.url("py-pub"))
        .arg(server.url("rust-pub"))
        .arg(PY_SEGMENTS.to_string())
        .arg(RUST_SEGMENTS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python");
    let mut stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let run = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("pytrickle: {line}");
            if line == "RUST-READ" {
                // PyTrickle read everything; closing the channel must end its stream.
                publisher.close().await.unwrap();
            }
            seen.push(line);
        }
        child.wait().await.unwrap()
    })
    .await;
    let stderr = stderr.await.unwrap();
    if !stderr.trim().is_empty() {
        // PyTrickle's own logs (PYTRICKLE_LOG=INFO for more), shown with --nocapture.
        println!("pytrickle stderr:\n{stderr}");
    }
    let status = match run {
        Ok(status) => status,
        Err(_) => panic!("pytrickle client timed out; output {seen:?}; stderr:\n{stderr}"),
    };
    assert!(
        status.success(),
        "pytrickle client failed ({status}); output {seen:?}; stderr:\n{stderr}"
    );
    for expected in ["PY-READ 5", "RUST-SEGMENT 3", "RUST-EOS", "OK"] {
        assert!(
            seen.iter().any(|line| line.starts_with(expected)),
            "missing {expected:?} in {seen:?}"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), rust_reader).await.unwrap().unwrap();
    assert!(!hub.contains("rust-pub"));
}
