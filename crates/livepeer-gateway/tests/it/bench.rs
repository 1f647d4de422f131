//! The bench (`livepeer-gateway bench`), run briefly: its BYOC workload measures all three of
//! its paths, having first checked that the direct baseline sends the simulator the job the
//! gateway sends (the bench exits with an error otherwise).

use std::time::Duration;

/// `livepeer-gateway bench` with `args`, tiny settings and without nginx (which the bench
/// would install); its report, once it has succeeded.
async fn tiny_bench(args: &[&str]) -> String {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_livepeer-gateway"))
        .args(["bench", "--no-nginx", "--requests", "20"])
        .args(["--rounds", "1", "--seconds", "1", "--concurrency", "4"])
        .args(args)
        .env_remove("LP_ETH_KEY")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("a one-second bench ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    stdout
}

/// `--only byoc` with tiny settings and without nginx (which the bench would install): the
/// run succeeds and reports the direct and gateway rows and their comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byoc_workload_runs_direct_and_through_the_gateway() {
    let stdout = tiny_bench(&["--only", "byoc"]).await;
    let row = |path: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("| byoc (json) | {path} |")))
            .unwrap_or_else(|| panic!("no {path} row in:\n{stdout}"))
            .to_owned()
    };
    // Every throughput cell counts successful requests only: each path answered some.
    for path in ["direct", "gateway"] {
        let line = row(path);
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let rps: f64 = cells[5].parse().unwrap();
        assert!(rps > 0.0, "{path}: {stdout}");
    }
    assert!(row("**gateway vs direct**").contains('×'), "{stdout}");
    assert!(!stdout.contains("| nginx |"), "--no-nginx leaves nginx out: {stdout}");
    assert!(!stdout.contains("text-to-image"), "--only byoc runs byoc alone: {stdout}");
}

/// Text-to-image and LLM with each load client, tiny settings, no nginx: every path answers,
/// so the light client followed each image URL (a failed download fails the latency pass and
/// the bench) and read each answer to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_load_clients_complete_text_to_image_and_llm_jobs() {
    for client in ["light", "reqwest"] {
        let stdout = tiny_bench(&["--only", "t2i,llm", "--client", client]).await;
        for workload in ["text-to-image", "llm"] {
            for path in ["direct", "gateway"] {
                let line = stdout
                    .lines()
                    .find(|l| l.starts_with(&format!("| {workload} | {path} |")))
                    .unwrap_or_else(|| panic!("{client}: no {workload} {path} row in:\n{stdout}"));
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let rps: f64 = cells[5].parse().unwrap();
                assert!(rps > 0.0, "{client}, {workload}, {path}: {stdout}");
            }
        }
    }
}
