//! Tests that change what the whole process shares (its descriptor limit, the request-body
//! budget) run in a process of their own. nextest gives every test one; `cargo test`, which
//! `scripts/test` falls back to without nextest, runs a binary's tests as threads of one
//! process, where such a test would fail its neighbours. There the test runs itself again,
//! alone, in a child process.

/// Whether the test `name` (its full path in this binary) is to run here: `true` when this
/// process is its own (under nextest, or the child this spawned). Otherwise runs it in a
/// child process, fails if the child fails, and returns `false`.
pub(crate) fn run_here(name: &str) -> bool {
    const CHILD: &str = "LIVEPEER_TEST_ALONE";
    if std::env::var_os("NEXTEST").is_some() || std::env::var(CHILD).as_deref() == Ok(name) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .output()
        .expect("running the test alone");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed alone:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run alone:\n{stdout}\n{stderr}");
    false
}
