//! A small Chrome DevTools Protocol client for the browser tests: headless Chromium is started
//! with `--remote-debugging-pipe`, which speaks the protocol as NUL-terminated JSON messages on
//! the browser's file descriptors 3 (commands in) and 4 (answers and events out), so no
//! WebSocket library is needed. A shell maps the child's stdin and stdout pipes onto those two
//! descriptors (`exec … 3<&0 4>&1`), which keeps the test free of `unsafe` descriptor juggling.
//!
//! Without Chromium the tests that need it skip with a note, unless
//! `LIVEPEER_REQUIRE_CHROMIUM=1` (set by `scripts/test`), in which case they fail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

/// How long one protocol command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A running headless Chromium, killed when dropped.
pub struct Browser {
    child: Child,
    input: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    next_id: AtomicU64,
    _profile: tempfile::TempDir,
}

/// One tab, attached with its own session.
pub struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

/// The Chromium binary: `LIVEPEER_CHROMIUM`, else the first of Debian's and others' names on
/// the PATH.
fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("LIVEPEER_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
    })
}

/// Where the browser tests leave their screenshots: `target/browser/`.
pub fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// Starts Chromium headless, or `None` (with a note) when it is not installed and not
    /// required.
    pub async fn launch() -> Option<Browser> {
        let Some(binary) = chromium() else {
            assert!(
                std::env::var("LIVEPEER_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
                "LIVEPEER_REQUIRE_CHROMIUM=1 but no chromium on the PATH (apt-get install chromium)"
            );
            eprintln!("skipped: no chromium on the PATH (set LIVEPEER_REQUIRE_CHROMIUM=1 to fail)");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(&binary)
            .args([
                "--headless",
                "--remote-debugging-pipe",
                // The tests run as root in containers, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let input = child.stdin.take().unwrap();
        let output = child.stdout.take().unwrap();
        let pending: Pending = Arc::default();
        tokio::spawn(read_messages(BufReader::new(output), pending.clone()));
        let browser = Browser {
            child,
            input: tokio::sync::Mutex::new(input),
            pending,
            next_id: AtomicU64::new(1),
            _profile: profile,
        };
        // The first answer proves the pipe works.
        browser.call(None, "Browser.getVersion", json!({})).await;
        Some(browser)
    }

    /// Sends `method` (to `session`'s target, or to the browser) and returns its result;
    /// panics on a protocol error or after [`CALL_TIMEOUT`].
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        {
            let mut input = self.input.lock().await;
            input.write_all(&bytes).await.unwrap();
            input.flush().await.unwrap();
        }
        let answer = tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer within {CALL_TIMEOUT:?}"))
            .unwrap_or_else(|_| panic!("{method}: the browser went away"));
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// A new tab of `width`×`height` CSS pixels, showing `url` once loaded.
    pub async fn open(&self, url: &str, width: u32, height: u32) -> Page<'_> {
        self.open_with(url, width, height, true).await
    }

    /// [`Browser::open`], with JavaScript off when `scripts` is false.
    pub async fn open_with(&self, url: &str, width: u32, height: u32, scripts: bool) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" })).await;
        let params = json!({ "targetId": target["targetId"], "flatten": true });
        let attached = self.call(None, "Target.attachToTarget", params).await;
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        let page = Page { browser: self, session };
        let metrics =
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false });
        page.call("Emulation.setDeviceMetricsOverride", metrics).await;
        if !scripts {
            page.call("Emulation.setScriptExecutionDisabled", json!({ "value": true })).await;
        }
        page.navigate(url).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Hands each answer to its caller; events are not needed by the tests and are dropped.
async fn read_messages<R: tokio::io::AsyncBufRead + Unpin>(mut output: R, pending: Pending) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match output.read_until(0, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        let Ok(message) = serde_json::from_slice::<Value>(&buf) else { continue };
        let Some(id) = message.get("id").and_then(Value::as_u64) else { continue };
        if let Some(tx) = pending.lock().unwrap().remove(&id) {
            let _ = tx.send(message);
        }
    }
}

impl Page<'_> {
    async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Loads `url` and waits for its `load` event's state (the document complete).
    pub async fn navigate(&self, url: &str) {
        let answer = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(answer.get("errorText").is_none(), "{url}: {answer}");
        self.wait_for("document.readyState === 'complete'", Duration::from_secs(20), url).await;
    }

    /// The value of the JavaScript `expression` (promises awaited); panics on an exception.
    pub async fn eval(&self, expression: &str) -> Value {
        let params =
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let answer = self.call("Runtime.evaluate", params).await;
        assert!(answer.get("exceptionDetails").is_none(), "{expression}: {answer}");
        answer["result"]["value"].clone()
    }

    /// The text of the element `selector` selects, or `None` when there is none.
    pub async fn text(&self, selector: &str) -> Option<String> {
        let selector = serde_json::to_string(selector).unwrap();
        let value =
            self.eval(&format!("document.querySelector({selector})?.textContent ?? null")).await;
        value.as_str().map(str::to_owned)
    }

    /// Polls `expression` until it is true; fails the test after `limit`.
    pub async fn wait_for(&self, expression: &str, limit: Duration, what: &str) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.eval(&format!("!!({expression})")).await == json!(true) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the whole page, saved as `target/browser/<name>.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let height = self.eval("document.documentElement.scrollHeight").await.as_f64().unwrap();
        let width = self.eval("document.documentElement.scrollWidth").await.as_f64().unwrap();
        let clip = json!({ "x": 0, "y": 0, "width": width, "height": height, "scale": 1 });
        let params = json!({ "format": "png", "clip": clip, "captureBeyondViewport": true });
        let shot = self.call("Page.captureScreenshot", params).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = artefacts().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}
