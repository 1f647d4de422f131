//! After the clients stopped: what live streams are left, on each side. The gateway must hold
//! nothing (no stream running, no lease): that fails the run. An orchestrator may still run a
//! stream the gateway let go of while it could not reach it (a start whose answer was lost, a
//! teardown that did not arrive): go-livepeer orchestrators end such streams themselves when
//! their input stays idle, the simulator does not; those are reported for information, each
//! with what the gateway's log says of its request.

use std::time::Duration;

use livepeer_sim::Sim;
use serde_json::Value;
use tokio::time::Instant;

/// How long the simulators are given to see every stream end.
const SIM_GRACE: Duration = Duration::from_secs(20);
/// How long the gateway is given to let go of its last stream (its teardown is asynchronous).
const GATEWAY_GRACE: Duration = Duration::from_secs(5);

/// What the gateway still holds of live streams after every client stopped its own.
#[derive(Debug, Default, Clone)]
pub(crate) struct GatewayHolds {
    /// `livepeer_gateway_live_streams`, all pipelines.
    pub(crate) streams_gauge: i64,
    /// Leases in flight, all orchestrators (`/orchestrators`, `in_flight`).
    pub(crate) leases: u64,
    /// Streams the admin `/live/streams` lists as starting, running or swapping.
    pub(crate) running: Vec<String>,
    /// The admin API could not be read.
    pub(crate) unreadable: Option<String>,
}

impl GatewayHolds {
    /// Anything held: the run fails.
    pub(crate) fn any(&self) -> bool {
        self.streams_gauge != 0
            || self.leases != 0
            || !self.running.is_empty()
            || self.unreadable.is_some()
    }
}

/// A stream still running on a simulator, and what the gateway logged of its request.
#[derive(Debug, Clone)]
pub(crate) struct SimLeftover {
    pub(crate) sim: String,
    pub(crate) manifest_id: String,
    pub(crate) request_id: String,
    /// The gateway's log lines naming the request (their message and fields), first few.
    pub(crate) gateway_log: Vec<String>,
}

/// Waits (up to [`SIM_GRACE`]) for the simulators to have no live stream running; the ones
/// still running then.
pub(crate) async fn wait_sims_idle(sims: &[Sim], log: &std::path::Path) -> Vec<SimLeftover> {
    let until = Instant::now() + SIM_GRACE;
    loop {
        let active: usize = sims.iter().map(|s| s.live().active).sum();
        if active == 0 || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    for sim in sims {
        for r in sim.live().running {
            let lines = text
                .lines()
                .filter(|l| !r.gateway_request_id.is_empty() && l.contains(&r.gateway_request_id))
                .map(|l| l.split_once("live::").map_or(l, |(_, rest)| rest).to_owned())
                .take(6)
                .collect();
            out.push(SimLeftover {
                sim: sim.url().to_owned(),
                manifest_id: r.manifest_id,
                request_id: r.gateway_request_id,
                gateway_log: lines,
            });
        }
    }
    out
}

/// Polls (up to [`GATEWAY_GRACE`]) the gateway's admin API until it holds nothing; what it
/// holds then.
pub(crate) async fn gateway_holds(http: &reqwest::Client, admin: &str) -> GatewayHolds {
    let until = Instant::now() + GATEWAY_GRACE;
    loop {
        let holds = read_holds(http, admin).await.unwrap_or_else(|e| GatewayHolds {
            unreadable: Some(format!("{e:#}")),
            ..GatewayHolds::default()
        });
        if !holds.any() || Instant::now() >= until {
            return holds;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_holds(http: &reqwest::Client, admin: &str) -> anyhow::Result<GatewayHolds> {
    let metrics = http.get(format!("{admin}/metrics")).send().await?.text().await?;
    let streams_gauge = metrics
        .lines()
        .filter(|l| l.starts_with("livepeer_gateway_live_streams"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as i64)
        .sum();
    let orchs: Value = http.get(format!("{admin}/orchestrators")).send().await?.json().await?;
    let leases = orchs["orchestrators"]
        .as_array()
        .map_or(0, |a| a.iter().filter_map(|o| o["in_flight"].as_u64()).sum());
    let streams: Value = http.get(format!("{admin}/live/streams")).send().await?.json().await?;
    let running = streams["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| matches!(s["state"].as_str(), Some("starting" | "running" | "swapping")))
        .filter_map(|s| s["stream"].as_str().map(str::to_owned))
        .collect();
    Ok(GatewayHolds { streams_gauge, leases, running, unreadable: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_hold_fails_and_none_passes() {
        assert!(!GatewayHolds::default().any());
        assert!(GatewayHolds { leases: 1, ..GatewayHolds::default() }.any());
        assert!(GatewayHolds { streams_gauge: 1, ..GatewayHolds::default() }.any());
        let running = vec!["s".to_owned()];
        assert!(GatewayHolds { running, ..GatewayHolds::default() }.any());
    }
}
