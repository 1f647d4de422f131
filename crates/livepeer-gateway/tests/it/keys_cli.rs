//! The real binary with customer keys: the `keys` subcommand's lifecycle against a running
//! gateway, the start refused when the admin listener is public without a token, and no
//! secret in the gateway's log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_livepeer-gateway");
const TOKEN: &str = "cli-admin-token-0123456789";

/// Runs the binary to its end (bounded): exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("LP_ETH_KEY")
        .env_remove("LP_ADMINTOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if tokio::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{args:?}: still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// Starts the gateway (JSON logs at debug, keys on under `dir`); answers it, its admin and
/// public addresses and a reader of the rest of its log.
fn spawn(dir: &str) -> (Child, String, String, impl Iterator<Item = String>) {
    let mut child = Command::new(BIN)
        .args(["--http-addr", "127.0.0.1:0", "--cli-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--log-level", "debug", "--auth", "keys", "--data-dir", dir])
        .args(["--admin-token", TOKEN])
        .env_remove("LP_ETH_KEY")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let (public, admin) = crate::support::listening(&mut lines);
    (child, admin, public, lines)
}

/// `livepeer-gateway keys …` against `admin`, with the token: its JSON answer.
fn keys(admin: &str, args: &[&str]) -> Value {
    let url = format!("http://{admin}");
    let mut all = vec!["keys", "--admin-url", &url, "--admin-token", TOKEN];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(&all);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// A text-to-image call with `secret`: the status.
fn call(public: &str, secret: Option<&str>) -> u16 {
    let mut req = reqwest::blocking::Client::new()
        .post(format!("http://{public}/text-to-image"))
        .json(&serde_json::json!({"prompt": "x", "model_id": "m", "width": 64, "height": 64}));
    if let Some(secret) = secret {
        req = req.bearer_auth(secret);
    }
    req.send().unwrap().status().as_u16()
}

#[test]
fn keys_subcommand_lifecycle_and_no_secret_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, admin, public, lines) = spawn(dir.path().to_str().unwrap());

    let created = keys(
        &admin,
        &["create", "--name", "alice", "--allow", "text-to-image", "--requests-per-minute", "100"],
    );
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["key"]["allowed"][0], "text-to-image");
    let listed = keys(&admin, &["list"]);
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&secret));
    assert_eq!(keys(&admin, &["show", &id])["key"]["name"], "alice");

    // No orchestrator: with the key, the job passes the check and finds none (503).
    assert_eq!(call(&public, None), 401);
    assert_eq!(call(&public, Some(&secret)), 503);
    // The ledger is written off the request path: its row shows up soon after the answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let usage = loop {
        let usage = keys(&admin, &["usage", &id, "--from", "0"]);
        if usage["requests"] == 1 || tokio::time::Instant::now() > deadline {
            break usage;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((&usage["requests"], &usage["from"]), (&Value::from(1), &Value::from(0)), "{usage}");
    // The ledger as CSV: its header, then the request's row.
    let admin_url = format!("http://{admin}");
    let export = ["keys", "--admin-url", &admin_url, "--admin-token", TOKEN, "export", &id];
    let (code, csv, stderr) = run(&[&export[..], &["--from", "0"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("at_ms,key_id,request_id,pipeline,model,status,outcome"), "{csv}");
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[1].contains(&format!(",{id},")) && rows[1].contains(",503,failed,"), "{csv}");
    assert_eq!(keys(&admin, &["disable", &id])["key"]["enabled"], false);
    assert_eq!(call(&public, Some(&secret)), 401);
    keys(&admin, &["delete", &id]);
    let url = format!("http://{admin}");
    let (code, _, stderr) =
        run(&["keys", "--admin-url", &url, "--admin-token", TOKEN, "show", &id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("404"), "{stderr}");

    // Without the token the admin API refuses, and the subcommand says so.
    let (code, _, stderr) = run(&["keys", "--admin-url", &url, "list"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("401"), "{stderr}");

    let status = Command::new("kill").args(["-TERM", &gw.id().to_string()]).status().unwrap();
    assert!(status.success());
    let log: Vec<String> = lines.collect();
    assert_eq!(gw.wait().unwrap().code(), Some(0));
    assert!(log.len() > 3, "{log:?}");
    use sha2::Digest as _;
    let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    for line in &log {
        assert!(!line.contains(&secret[4..]), "secret logged: {line}");
        assert!(!line.contains(&hash[..16]), "secret's hash logged: {line}");
        assert!(!line.contains(TOKEN), "admin token logged: {line}");
    }
}

#[test]
fn a_public_admin_listener_needs_an_admin_token() {
    let (code, _, stderr) = run(&["--cli-addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--admin-token"), "{stderr}");
    let (code, _, stderr) = run(&["--auth", "tokens"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--auth"), "{stderr}");
    let (code, _, stderr) = run(&["--database-url", "mysql://x"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");
    // Customer prices: checked entry by entry before any port is bound.
    let in_wei = r#"{"price": [{"pipeline": "llm", "wei": "1000"}]}"#;
    let (code, _, stderr) = run(&["--customer-prices", in_wei]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--customer-prices") && stderr.contains("--usd-per-eth"), "{stderr}");
    let (code, _, stderr) = run(&["--customer-prices", in_wei, "--usd-per-eth", "3k"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--usd-per-eth"), "{stderr}");
    let feed = "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419";
    let (code, _, stderr) = run(&["--customer-prices", in_wei, "--usd-per-eth-feed", feed]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--usd-per-eth-feed") && stderr.contains("--eth-url"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.toml");
    std::fs::write(&file, "[[price]]\npipeline = \"upscaling\"\nusd = \"1\"\n").unwrap();
    let (code, _, stderr) = run(&["--customer-prices", file.to_str().unwrap()]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("price[0] (upscaling): unknown pipeline"), "{stderr}");
}
