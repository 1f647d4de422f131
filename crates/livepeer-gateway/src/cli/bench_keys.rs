//! The `keys` workload of `bench`: text-to-image through gateways with customer keys off and
//! on, in the same run against the same simulator: keys on SQLite and (with
//! `--keys-database-url`) on PostgreSQL, each with a key without a budget (the cached key
//! check, the rate limiter and the ledger row) and a key with one (plus the reservation,
//! served from the instance's budget lease in memory, topped up by a conditional `UPDATE` now
//! and then, and its settlement in the ledger's batches).

use std::path::Path;

use anyhow::Context as _;
use livepeer_gateway::Gateway;
use livepeer_gateway::config::{Config, Flags, Keys, OrchSource};
use livepeer_sim::Sim;
use serde_json::{Value, json};

use super::bench::{
    BenchArgs, Target, ephemeral_ports, latency, median, no_rtmp, t2i_body, throughput, us,
    via_gateway,
};

/// A customer price for text-to-image, so that every request is priced and charged.
const PRICES: &str = r#"{"price": [{"pipeline": "text-to-image", "usd": "0.0001"}]}"#;

/// A gateway with keys on, in front of `sim`, storing them under `dir` or at `database_url`.
async fn keys_gateway(
    sim: &Sim,
    dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Gateway> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys = Keys {
        auth: Some("keys".into()),
        data_dir: Some(dir.display().to_string()),
        database_url: database_url.map(str::to_owned),
        customer_prices: Some(PRICES.into()),
        ..Keys::default()
    };
    let flags = Flags { listen: ephemeral_ports(), ingest: no_rtmp(), keys, ..Flags::default() };
    let mut config = Config::load(flags)?;
    config.orchestrators = OrchSource::Static(vec![sim.url().parse()?]);
    Ok(Gateway::start(config).await?)
}

/// Creates a key on `gw` (with a budget of a million USD when `budget`); its secret.
async fn key(http: &reqwest::Client, gw: &Gateway, budget: bool) -> anyhow::Result<String> {
    let mut body = json!({"name": "bench"});
    if budget {
        body["budget_micro_usd"] = json!(1_000_000_000_000u64);
    }
    let resp = http.post(format!("http://{}/keys", gw.admin_addr)).json(&body).send().await?;
    anyhow::ensure!(resp.status().is_success(), "POST /keys: {}", resp.status());
    let answer: Value = resp.json().await?;
    Ok(answer["secret"].as_str().context("no secret")?.to_owned())
}

fn with_key(mut t: Target, secret: &str) -> Target {
    t.headers.push(("authorization", format!("Bearer {secret}")));
    t
}

/// Keys off against keys on (SQLite, PostgreSQL; without and with a budget): latency
/// interleaved, throughput in alternating rounds.
pub(super) async fn keys_on_vs_off(
    http: &reqwest::Client,
    gw: &Gateway,
    sim: &Sim,
    args: &BenchArgs,
) -> anyhow::Result<String> {
    // A fresh SQLite database of its own, removed at the end.
    let dir = std::env::temp_dir().join(format!("lp-bench-keys-{:016x}", rand::random::<u64>()));
    let mut databases = vec![("SQLite", None)];
    if let Some(url) = &args.keys_database_url {
        databases.push(("PostgreSQL", Some(url.as_str())));
    }
    // A gateway per path, so that in the interleaved latency pass each request, keys off
    // included, finds a gateway that served none of the previous four: with one gateway per
    // database, the second key's requests found it warm and measured lower than keys off.
    let mut gateways = Vec::new();
    let mut targets =
        vec![("keys off".to_owned(), via_gateway(http, gw.http_addr, "text-to-image"))];
    for (db, url) in databases {
        for budget in [false, true] {
            let g = keys_gateway(sim, &dir.join(format!("{db}-{budget}")), url).await?;
            let t = with_key(
                via_gateway(http, g.http_addr, "text-to-image"),
                &key(http, &g, budget).await?,
            );
            let what = if budget { "key with a budget" } else { "key, no budget" };
            targets.push((format!("keys on, {db}, {what}"), t));
            gateways.push(g);
        }
    }
    let body = t2i_body();
    for (_, t) in &targets {
        for _ in 0..50 {
            super::bench::request(t, &body).await?;
        }
    }
    let refs: Vec<&Target> = targets.iter().map(|(_, t)| t).collect();
    let lat = latency(&refs, &body, args.requests, args.client).await?;
    // The database server's CPU counts with the gateways': the local PostgreSQL's processes.
    let extra = if args.keys_database_url.is_some() { postgres_pids() } else { Vec::new() };
    let mut rates = vec![Vec::new(); targets.len()];
    let mut cpus = vec![Vec::new(); targets.len()];
    for _ in 0..args.rounds.max(1) {
        for (((_, t), r), c) in targets.iter().zip(rates.iter_mut()).zip(cpus.iter_mut()) {
            let (rps, cpu) = throughput(t, &body, args, &extra).await;
            r.push(rps);
            c.push(cpu.total());
        }
    }
    let off_rps = median(&mut rates[0].clone());
    let off_p50 = lat[0].0;
    let mut out = format!(
        "\n| text-to-image through the gateway | p50 | p99 | added p50 | req/s ({} clients) | / keys off | CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|\n",
        args.concurrency
    );
    let rows = targets.iter().zip(&lat).zip(rates.iter_mut()).zip(cpus.iter_mut());
    for ((((name, _), (p50, p99)), r), c) in rows {
        let rps = median(r);
        let added = p50.as_micros() as i128 - off_p50.as_micros() as i128;
        out.push_str(&format!(
            "| {name} | {} | {} | {added:+} µs | {rps:.0} | {:.2}× | {:.1} |\n",
            us(*p50),
            us(*p99),
            rps / off_rps.max(1.0),
            median(c)
        ));
    }
    for g in gateways {
        g.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

/// The processes of the machine named `postgres` (the server and its backends), whose CPU
/// the throughput rounds count: on this bench's local server, the database's share of the
/// work is the gateway's cost too.
fn postgres_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .collect()
}
