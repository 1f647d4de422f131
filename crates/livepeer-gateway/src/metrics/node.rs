//! The series that say which node this is and what it holds: go-livepeer's `versions`, and
//! its deposit and reserve gauges.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Metrics, add};

/// The sender's deposit and reserve in gwei, under go-livepeer's names and its older ones
/// (`broadcaster_*`, which its dashboards still read), labelled by the sender's address.
#[derive(Debug, Clone)]
pub(super) struct FundsFamilies {
    gateway: [Family<SenderLabel, FloatGauge>; 2],
    broadcaster: [Family<SenderLabel, FloatGauge>; 2],
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SenderLabel {
    sender: String,
}

pub(super) type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// go-livepeer's `versions` labels, as far as a Rust build has them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    compiler: &'static str,
    goos: &'static str,
    livepeerversion: &'static str,
}

/// The four funds families, registered.
pub(super) fn funds_families(r: &mut Registry) -> FundsFamilies {
    let mut pair = |deposit: &str, reserve: &str| {
        [
            add(r, deposit, "Current remaining deposit for the gateway node", Family::default()),
            add(r, reserve, "Current remaining reserve for the gateway node", Family::default()),
        ]
    };
    let gateway = pair("gateway_deposit", "gateway_reserve");
    let broadcaster = pair("broadcaster_deposit", "broadcaster_reserve");
    FundsFamilies { gateway, broadcaster }
}

/// go-livepeer's `versions`: one series, 1, naming the build.
pub(super) fn versions(r: &mut Registry) {
    let versions: Family<VersionLabel, Gauge> =
        add(r, "versions", "Versions used by the gateway", Family::default());
    versions
        .get_or_create(&VersionLabel {
            compiler: "rustc",
            goos: std::env::consts::OS,
            livepeerversion: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
}

impl Metrics {
    /// The sender's deposit and reserve as last read, in wei.
    pub(crate) fn sender_funds(&self, sender: &str, deposit_wei: u128, reserve_wei: u128) {
        let label = SenderLabel { sender: sender.to_owned() };
        // Gauges are floats, as go-livepeer's; the exact amounts are on `/status`.
        let gwei = |wei: u128| wei as f64 / 1e9;
        for family in [&self.funds.gateway, &self.funds.broadcaster] {
            family[0].get_or_create(&label).set(gwei(deposit_wei));
            family[1].get_or_create(&label).set(gwei(reserve_wei));
        }
    }
}
