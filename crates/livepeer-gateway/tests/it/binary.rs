//! The real binary: bad configuration exits 64 naming the setting; startup and graceful
//! shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_livepeer-gateway");

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("LP_ETH_KEY")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A config that wrongly validates would start serving: never wait on it for ever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if tokio::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{args:?} {envs:?}: still running after 10 s; the config was accepted");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_config_exits_64_and_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("gw.toml");
    std::fs::write(&bad_file, "orch-addr = \"a\"\nmystery = 1\n").unwrap();
    let bad_file = bad_file.to_str().unwrap().to_owned();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec!["--http-addr", "not-an-address"], vec![], "--http-addr"),
        (vec!["--orch-addr", "ftp://o"], vec![], "--orch-addr"),
        (vec!["--discovery-timeout", "soon"], vec![], "--discovery-timeout"),
        (vec!["--max-price-per-unit=-5"], vec![], "--max-price-per-unit"),
        (vec!["--config", &bad_file], vec![], "mystery"),
        (vec![], vec![("LP_ORCHADDR", "gopher://x")], "--orch-addr"),
        (vec![], vec![("LP_ETH_KEY", "0x1234")], "LP_ETH_KEY"),
        (vec!["--no-such-flag"], vec![], "--no-such-flag"),
    ];
    for (args, envs, needle) in cases {
        let (code, stderr) = run(&args, &envs);
        assert_eq!(code, 64, "{args:?} {envs:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?} should name {needle}");
        assert!(!stderr.contains("0x1234") || needle != "LP_ETH_KEY", "the key is never echoed");
    }
}

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Starts the binary with JSON logs on ephemeral ports; returns it with its admin address.
fn spawn_listening(extra: &[&str]) -> (std::process::Child, String, Lines) {
    let (child, admin, lines, _) = spawn_listening_with_log(extra);
    (child, admin, lines)
}

/// As [`spawn_listening`], also returning the log lines printed until it listened (that one
/// last).
fn spawn_listening_with_log(extra: &[&str]) -> (std::process::Child, String, Lines, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["--http-addr", "127.0.0.1:0", "--cli-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--rtmp-addr", "127.0.0.1:0"])
        .args(extra)
        .env_remove("LP_ETH_KEY")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    let admin = loop {
        let line = lines.next().expect("gateway exited before listening").unwrap();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if v["fields"]["message"] == "gateway listening" {
            before.push(line);
            break v["fields"]["admin_addr"].as_str().unwrap().to_owned();
        }
        before.push(line);
    };
    (child, admin, lines, before)
}

/// The public API address from the "gateway listening" line.
fn public_addr(log: &[String]) -> String {
    let last: serde_json::Value = serde_json::from_str(log.last().unwrap()).unwrap();
    last["fields"]["http_addr"].as_str().unwrap().to_owned()
}

fn stop(child: &mut std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "did not stop within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn starts_serves_and_stops_gracefully_on_sigterm() {
    let (mut child, admin, lines) = spawn_listening(&[]);
    let body = reqwest::blocking::get(format!("http://{admin}/healthz")).unwrap().text().unwrap();
    assert_eq!(body, "ok");
    stop(&mut child);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn demo_runs_three_simulated_orchestrators_and_selects_among_them() {
    let (mut child, admin, lines, before) = spawn_listening_with_log(&["demo"]);
    let orchs: serde_json::Value =
        reqwest::blocking::get(format!("http://{admin}/orchestrators")).unwrap().json().unwrap();
    let list = orchs["orchestrators"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|o| o["state"] == "healthy"), "{orchs}");
    assert!(
        list.iter().any(|o| o["url"].as_str().unwrap().starts_with("https://")),
        "one over TLS"
    );
    let url = format!("http://{admin}/select?pipeline=text-to-image&model=stabilityai/sd-turbo");
    let pick: serde_json::Value = reqwest::blocking::get(url).unwrap().json().unwrap();
    assert!(list.iter().any(|o| o["url"] == pick["orchestrator"]), "{pick}");

    // A job through the public API leaves its record in the log (written by the log thread),
    // with the request id the client got.
    let http_addr = public_addr(&before);
    let resp = reqwest::blocking::Client::new()
        .post(format!("http://{http_addr}/text-to-image"))
        .json(&serde_json::json!({"prompt": "a lighthouse", "model_id": "stabilityai/sd-turbo"}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    // Both pages the demo names: the public catalogue and the operator dashboard.
    let page = reqwest::blocking::get(format!("http://{http_addr}/")).unwrap().text().unwrap();
    assert!(page.contains("id=\"catalog-table\"") && page.contains("sd-turbo"), "{page}");
    let dash = reqwest::blocking::get(format!("http://{admin}/")).unwrap().text().unwrap();
    assert!(dash.contains("id=\"pool-table\""), "{dash}");
    stop(&mut child);
    let records: Vec<serde_json::Value> = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter(|v| v["fields"]["message"] == "ai request")
        .collect();
    let record = records.iter().find(|v| v["fields"]["request_id"] == id.as_str());
    let record = record.unwrap_or_else(|| panic!("no record of {id} in {records:?}"));
    assert_eq!(record["fields"]["outcome"], "ok");
    assert_eq!(record["fields"]["pipeline"], "text-to-image");
}

const KEYSTORE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../livepeer-pm/tests/fixtures/light-scrypt-hardhat-1.json"
);
const KEYSTORE_PASSWORD: &str = "livepeer gateway keystore ✓";

#[test]
fn unlocks_a_keystore_with_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("password.txt");
    std::fs::write(&pw, format!("{KEYSTORE_PASSWORD}\n")).unwrap();
    let pw = pw.to_str().unwrap();
    let (mut child, _admin, _lines, log) =
        spawn_listening_with_log(&["--eth-keystore-path", KEYSTORE, "--eth-password", pw]);
    stop(&mut child);
    let identity = log.iter().find(|l| l.contains("gateway identity")).expect("identity logged");
    assert!(identity.contains("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"), "{identity}");
    assert!(!log.iter().any(|l| l.contains(KEYSTORE_PASSWORD)), "the password is never logged");
    // A directory of keystores: the account picks one, and a missing one is named.
    let keys = tempfile::tempdir().unwrap();
    std::fs::copy(KEYSTORE, keys.path().join("UTC--key-a")).unwrap();
    let dir_arg = keys.path().to_str().unwrap();
    let other = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let args = ["--eth-keystore-path", dir_arg, "--eth-password", pw, "--eth-acct-addr", other];
    let (code, stderr) = run(&args, &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("no keystore for account"), "{stderr}");
}

#[test]
fn a_wrong_keystore_password_exits_64_without_echoing_it() {
    let (code, stderr) =
        run(&["--eth-keystore-path", KEYSTORE, "--eth-password", "hunter2-not-it"], &[]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--eth-keystore-path"), "{stderr}");
    assert!(!stderr.contains("hunter2-not-it"), "the password is never echoed: {stderr}");
    let (code, stderr) = run(&["--eth-keystore-path", KEYSTORE], &[]);
    assert_eq!(code, 64);
    assert!(stderr.contains("--eth-password"), "{stderr}");
}

#[test]
fn signer_routes_need_an_api_key_and_a_key() {
    let (code, stderr) = run(&["--remote-signer"], &[]);
    assert_eq!(code, 64);
    assert!(stderr.contains("--remote-signer"), "{stderr}");
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let (code, stderr) = run(&["--remote-signer"], &[("LP_ETH_KEY", key)]);
    assert_eq!(code, 64);
    assert!(stderr.contains("--remote-signer-api-key"), "{stderr}");
    assert!(!stderr.contains(&key[2..]), "the key is never echoed");
}
