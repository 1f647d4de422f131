//! Capabilities: the bitstring encoding and the compatibility rules of PROTOCOL.md §3. The ids
//! and pipeline names are in [`crate::job`], re-exported here.
//!
//! These are our own types, converted from and to the prost structs at the client boundary.
//! [`compatible`] follows go-livepeer core/capabilities.go `CompatibleWith` rule by rule,
//! including its quirks (a gateway bitstring longer than the orchestrator's never matches).

use std::collections::BTreeMap;

use livepeer_proto::net;

pub use crate::job::{
    AI_PIPELINES, H264, LIVE_VIDEO_TO_VIDEO, capability_pipeline, pipeline_capability,
};

/// go-livepeer's `DefaultCapabilities()`: {0–12, 14, 26}. Every orchestrator advertises them,
/// and go-livepeer's gateway includes them in AI requests, so we do too.
pub const DEFAULT_CAPABILITIES: [u32; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 26];

/// Capabilities an orchestrator may lack entirely and still serve ("legacy only", 0–11).
const LEGACY_MAX: u32 = 11;

/// Most AI models kept of one orchestrator's answer, over all its pipelines. Each becomes a job
/// key with its own statistics, breaker, index entry and metric series, and the orchestrator
/// chooses how many it lists: a 4 MiB answer holds 200,000.
pub const MAX_MODELS: usize = 256;
/// The longest model id kept, in characters: the longest a client can ask for (`model_id`).
pub const MAX_MODEL_CHARS: usize = 256;

/// What an orchestrator says about one model of one capability (or what a gateway requires).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModelConstraint {
    /// Orchestrator: the model is loaded. Gateway: require a loaded model.
    pub warm: bool,
    /// Orchestrator: how many requests it can take at once (live: idle containers).
    pub capacity: u32,
    /// Orchestrator: lowest ai-runner version serving it. Gateway: minimum required.
    pub runner_version: String,
    /// Orchestrator, live only: containers in use.
    pub capacity_in_use: u32,
}

/// A capability set, on either side of GetOrchestrator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Supported (orchestrator) or required (gateway) capability bits.
    pub bitstring: Vec<u64>,
    /// Bits the orchestrator requires the gateway to set.
    pub mandatories: Vec<u64>,
    /// Capability id → capacity.
    pub capacities: BTreeMap<u32, u32>,
    /// Node version of the sender (orchestrator side), e.g. `0.9.1`.
    pub version: String,
    /// Gateway side: minimum orchestrator version.
    pub min_version: String,
    /// Capability id → model id → constraint.
    pub per_capability: BTreeMap<u32, BTreeMap<String, ModelConstraint>>,
}

// === impl Capabilities ===

impl Capabilities {
    /// Whether capability `id` is set in the bitstring.
    pub fn has(&self, id: u32) -> bool {
        bit_is_set(&self.bitstring, id)
    }

    /// Sets capability `id` in the bitstring, growing it as needed.
    pub fn set(&mut self, id: u32) {
        let word = (id / 64) as usize;
        if self.bitstring.len() <= word {
            self.bitstring.resize(word + 1, 0);
        }
        self.bitstring[word] |= 1 << (id % 64);
    }

    /// The requirement a gateway sends for one AI (capability, model) job, as go-livepeer builds it:
    /// the default bits plus the pipeline's, capacity 1, and the model with an optional minimum
    /// runner version. `min_version` is the minimum orchestrator node version, empty for none.
    pub fn ai_job(capability: u32, model: &str, min_runner: &str, min_version: &str) -> Self {
        let mut caps = Self::transcode_job(min_version);
        caps.set(capability);
        caps.capacities.insert(capability, 1);
        let constraint =
            ModelConstraint { runner_version: min_runner.to_owned(), ..ModelConstraint::default() };
        caps.per_capability.entry(capability).or_default().insert(model.to_owned(), constraint);
        caps
    }

    /// The default transcoding requirement: go-livepeer's default capability bits.
    pub fn transcode_job(min_version: &str) -> Self {
        let mut caps = Self { min_version: min_version.to_owned(), ..Self::default() };
        for id in DEFAULT_CAPABILITIES {
            caps.set(id);
        }
        caps
    }

    /// Whether every requested bit is one of the legacy capabilities (0–11), which orchestrators
    /// that send no capabilities at all are assumed to support.
    pub fn legacy_only(&self) -> bool {
        self.bitstring.iter().enumerate().all(|(word, bits)| {
            (0..64).all(|b| bits & (1 << b) == 0 || (word as u32) * 64 + b <= LEGACY_MAX)
        })
    }
}

impl Capabilities {
    /// An orchestrator's capabilities as the gateway keeps them: models only of the pipelines
    /// it runs (none other is ever asked for), with ids a client can name, and at most
    /// [`MAX_MODELS`] of them, the first by (capability, model id), so that the same answer
    /// always keeps the same ones.
    pub fn from_orchestrator(c: &net::Capabilities) -> Self {
        type Wire = net::capabilities::capability_constraints::ModelConstraint;
        let mut kept: Vec<(u32, &String, &Wire)> = c
            .constraints
            .iter()
            .flat_map(|k| k.per_capability.iter())
            .filter(|(cap, _)| capability_pipeline(**cap).is_some())
            .flat_map(|(cap, cc)| cc.models.iter().map(move |(m, mc)| (*cap, m, mc)))
            .filter(|(_, m, _)| m.chars().nth(MAX_MODEL_CHARS).is_none())
            .collect();
        if kept.len() > MAX_MODELS {
            kept.select_nth_unstable_by(MAX_MODELS, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            kept.truncate(MAX_MODELS);
        }
        let mut per_capability: BTreeMap<u32, BTreeMap<String, ModelConstraint>> = BTreeMap::new();
        for (cap, model, mc) in kept {
            let mc = ModelConstraint {
                warm: mc.warm,
                capacity: mc.capacity,
                runner_version: mc.runner_version.clone(),
                capacity_in_use: mc.capacity_in_use,
            };
            per_capability.entry(cap).or_default().insert(model.clone(), mc);
        }
        let constraints = c.constraints.as_ref();
        Self {
            bitstring: c.bitstring.iter().take(MAX_WORDS).copied().collect(),
            mandatories: bounded_mandatories(&c.mandatories),
            capacities: c
                .capacities
                .iter()
                .filter(|(id, _)| **id < MAX_ID)
                .map(|(k, v)| (*k, *v))
                .collect(),
            version: c.version.clone(),
            min_version: constraints.map(|k| k.min_version.clone()).unwrap_or_default(),
            per_capability,
        }
    }
}

/// The smallest transcoding job: H.264 in, one H.264 MPEG-TS rendition, the auth token
/// ({0, 1, 12}). What a transcoding selection that names no job of its own requires.
pub const BASIC_TRANSCODE: u64 = 1 | 1 << 1 | 1 << 12;

/// The legacy capabilities (0–11) as a mask of the first word.
const LEGACY_MASK: u64 = (1 << (LEGACY_MAX + 1)) - 1;

/// What an orchestrator offers jobs whose capabilities all lie in ids 0–63 (every transcoding
/// job), computed once when the pool is built, so that selection tests a job against it with
/// two ANDs. For such a job without models or version, [`CapMask::serves`] says what
/// [`compatible`] says (a unit test holds them to it); the node version, the same for every
/// job, is checked when the pool is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapMask {
    offered: u64,
    mandatory: u64,
}

impl CapMask {
    /// Serves no job.
    pub const NONE: Self = Self { offered: 0, mandatory: u64::MAX };

    /// The mask of an orchestrator's capabilities (`None`: it sent none).
    pub fn of(orch: Option<&Capabilities>) -> Self {
        // One that sends none serves legacy-only jobs (go-livepeer discovery's `LegacyOnly`).
        let Some(orch) = orch else { return Self { offered: LEGACY_MASK, mandatory: 0 } };
        // An empty bitstring is shorter than any job's, which go-livepeer never matches; a
        // mandatory bit beyond the first word is one no such job sets.
        if orch.bitstring.is_empty() || orch.mandatories.iter().skip(1).any(|w| *w != 0) {
            return Self::NONE;
        }
        Self {
            offered: orch.bitstring[0],
            mandatory: orch.mandatories.first().copied().unwrap_or(0),
        }
    }

    /// Whether a job needing exactly the capabilities `job` may be sent here: it offers all
    /// of them, and the job asks for every one it makes mandatory.
    pub fn serves(self, job: u64) -> bool {
        job & self.offered == job && job & self.mandatory == self.mandatory
    }
}

/// Words of capability bits kept of an orchestrator's bitstring and mandatories: ids up to
/// 4,095, where go-livepeer's highest is below 64. A job the gateway forms is one word, so
/// what lies beyond changes no verdict of [`compatible`], except a mandatory bit there.
const MAX_WORDS: usize = 64;
/// The first capability id beyond the words kept.
const MAX_ID: u32 = MAX_WORDS as u32 * 64;

/// An orchestrator's mandatory bits, bounded to [`MAX_WORDS`] with the same verdicts: trailing
/// zero words require nothing and go; a bit set beyond the words kept requires a capability no
/// job of the gateway has, and is kept as the last word's bits.
fn bounded_mandatories(words: &[u64]) -> Vec<u64> {
    let used = words.iter().rposition(|w| *w != 0).map_or(0, |last| last + 1);
    let mut kept: Vec<u64> = words[..used.min(MAX_WORDS)].to_vec();
    if used > MAX_WORDS {
        kept[MAX_WORDS - 1] = u64::MAX;
    }
    kept
}

impl From<&net::Capabilities> for Capabilities {
    fn from(c: &net::Capabilities) -> Self {
        let constraints = c.constraints.as_ref();
        let per_capability = constraints
            .map(|k| {
                k.per_capability
                    .iter()
                    .map(|(cap, cc)| {
                        let models = cc
                            .models
                            .iter()
                            .map(|(m, mc)| {
                                let mc = ModelConstraint {
                                    warm: mc.warm,
                                    capacity: mc.capacity,
                                    runner_version: mc.runner_version.clone(),
                                    capacity_in_use: mc.capacity_in_use,
                                };
                                (m.clone(), mc)
                            })
                            .collect();
                        (*cap, models)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            bitstring: c.bitstring.clone(),
            mandatories: c.mandatories.clone(),
            capacities: c.capacities.iter().map(|(k, v)| (*k, *v)).collect(),
            version: c.version.clone(),
            min_version: constraints.map(|k| k.min_version.clone()).unwrap_or_default(),
            per_capability,
        }
    }
}

impl From<&Capabilities> for net::Capabilities {
    fn from(c: &Capabilities) -> Self {
        use net::capabilities::{CapabilityConstraints, Constraints, capability_constraints};
        let per_capability = c
            .per_capability
            .iter()
            .map(|(cap, models)| {
                let models = models
                    .iter()
                    .map(|(m, mc)| {
                        let mc = capability_constraints::ModelConstraint {
                            warm: mc.warm,
                            capacity: mc.capacity,
                            runner_version: mc.runner_version.clone(),
                            capacity_in_use: mc.capacity_in_use,
                        };
                        (m.clone(), mc)
                    })
                    .collect();
                (*cap, CapabilityConstraints { models })
            })
            .collect();
        let has_constraints = !c.min_version.is_empty() || !c.per_capability.is_empty();
        Self {
            bitstring: c.bitstring.clone(),
            mandatories: c.mandatories.clone(),
            capacities: c.capacities.iter().map(|(k, v)| (*k, *v)).collect(),
            version: c.version.clone(),
            constraints: has_constraints
                .then(|| Constraints { min_version: c.min_version.clone(), per_capability }),
        }
    }
}

fn bit_is_set(words: &[u64], id: u32) -> bool {
    words.get((id / 64) as usize).is_some_and(|w| w & (1 << (id % 64)) != 0)
}

/// Why an orchestrator cannot serve a requirement. Shown to operators on `/orchestrators`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// Its node version is missing or below the minimum.
    #[error("node version {found:?} is below the minimum {min}")]
    Version {
        /// What the orchestrator reported.
        found: String,
        /// What the gateway requires.
        min: String,
    },
    /// It requires a capability the gateway did not ask for.
    #[error("orchestrator requires capabilities the job lacks")]
    Mandatory,
    /// It does not list a requested model.
    #[error("model {model} of capability {capability} is not offered")]
    Model {
        /// Capability id.
        capability: u32,
        /// Model id.
        model: String,
    },
    /// The model is cold and the gateway requires it warm.
    #[error("model {0} is cold and a warm model is required")]
    Cold(String),
    /// The model's runner is older than required.
    #[error("model {model} runs ai-runner {found:?}, below the minimum {min}")]
    RunnerVersion {
        /// Model id.
        model: String,
        /// What the orchestrator reported.
        found: String,
        /// What the gateway requires.
        min: String,
    },
    /// A requested capability bit is not supported.
    #[error("capability bits are not a subset of the orchestrator's")]
    Bits,
    /// The orchestrator sent no capabilities and the job needs more than legacy transcoding.
    #[error("orchestrator sent no capabilities")]
    NoCapabilities,
}

/// Whether an orchestrator with capabilities `orch` (None if it sent none) can serve a job that
/// requires `job`, by PROTOCOL.md §3.5.
pub fn compatible(job: &Capabilities, orch: Option<&Capabilities>) -> Result<(), Mismatch> {
    let Some(orch) = orch else {
        return if job.legacy_only() { Ok(()) } else { Err(Mismatch::NoCapabilities) };
    };
    // 1. Node version.
    if !job.min_version.is_empty() && !version_at_least(&orch.version, &job.min_version) {
        return Err(Mismatch::Version {
            found: orch.version.clone(),
            min: job.min_version.clone(),
        });
    }
    // 2. The orchestrator's mandatory bits must all be requested.
    for (i, m) in orch.mandatories.iter().enumerate() {
        let have = job.bitstring.get(i).copied().unwrap_or(0);
        if m & have != *m {
            return Err(Mismatch::Mandatory);
        }
    }
    // 3. Per-capability model constraints; a capability the orchestrator has no constraints for
    //    is not a failure at this step (go-livepeer behaves the same way).
    for (cap, models) in &job.per_capability {
        let Some(offered) = orch.per_capability.get(cap) else { continue };
        for (model, want) in models {
            let Some(have) = offered.get(model) else {
                return Err(Mismatch::Model { capability: *cap, model: model.clone() });
            };
            if want.warm && !have.warm {
                return Err(Mismatch::Cold(model.clone()));
            }
            if !want.runner_version.is_empty()
                && !version_at_least(&have.runner_version, &want.runner_version)
            {
                return Err(Mismatch::RunnerVersion {
                    model: model.clone(),
                    found: have.runner_version.clone(),
                    min: want.runner_version.clone(),
                });
            }
        }
    }
    // 4. Bitstring subset. Like go-livepeer, a longer gateway bitstring never matches.
    if job.bitstring.len() > orch.bitstring.len()
        || job.bitstring.iter().zip(&orch.bitstring).any(|(g, o)| g & o != *g)
    {
        return Err(Mismatch::Bits);
    }
    Ok(())
}

/// `found >= min` under go-livepeer's semver rule: prerelease and build suffixes are ignored,
/// a missing or `undefined` version fails, and an unparsable minimum accepts everything.
pub fn version_at_least(found: &str, min: &str) -> bool {
    let Some(min) = parse_version(min) else { return true };
    if found.is_empty() || found == "undefined" {
        return false;
    }
    parse_version(found).is_some_and(|found| found >= min)
}

/// Parses `v1.2.3-rc1+meta` leniently into (1, 2, 3); missing parts are 0.
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let text = text.trim();
    let text = text.strip_prefix('v').unwrap_or(text);
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let mut next = |required: bool| -> Option<u64> {
        match parts.next() {
            Some(p) => p.parse().ok(),
            None if required => None,
            None => Some(0),
        }
    };
    let v = (next(true)?, next(false)?, next(false)?);
    parts.next().is_none().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orch() -> Capabilities {
        let mut o = Capabilities::transcode_job("");
        o.version = "0.9.1".into();
        o.set(27);
        let mut models = BTreeMap::new();
        models.insert(
            "sd-turbo".to_owned(),
            ModelConstraint {
                warm: true,
                capacity: 2,
                runner_version: "0.14.1".into(),
                ..Default::default()
            },
        );
        models.insert(
            "sdxl".to_owned(),
            ModelConstraint { warm: false, capacity: 1, ..Default::default() },
        );
        o.per_capability.insert(27, models);
        o
    }

    #[test]
    fn bitstring_layout_matches_the_wire_vector() {
        // go-livepeer's defaults plus text-to-image: bits {0–12, 14, 26, 27}.
        let job = Capabilities::ai_job(27, "m", "", "");
        assert_eq!(job.bitstring, vec![0b1100_0000_0000_0101_1111_1111_1111]);
        let mut high = Capabilities::default();
        high.set(70);
        assert_eq!(high.bitstring, vec![0, 1 << 6]);
        assert!(high.has(70) && !high.has(6));
    }

    #[test]
    fn ai_job_matches_warm_and_cold_models() {
        let o = orch();
        assert_eq!(compatible(&Capabilities::ai_job(27, "sd-turbo", "", ""), Some(&o)), Ok(()));
        assert_eq!(compatible(&Capabilities::ai_job(27, "sdxl", "", ""), Some(&o)), Ok(()));
        assert!(matches!(
            compatible(&Capabilities::ai_job(27, "other", "", ""), Some(&o)),
            Err(Mismatch::Model { .. })
        ));
        let mut warm = Capabilities::ai_job(27, "sdxl", "", "");
        warm.per_capability.get_mut(&27).unwrap().get_mut("sdxl").unwrap().warm = true;
        assert_eq!(compatible(&warm, Some(&o)), Err(Mismatch::Cold("sdxl".into())));
        // Capability bit missing on the orchestrator.
        assert_eq!(
            compatible(&Capabilities::ai_job(33, "llm", "", ""), Some(&o)),
            Err(Mismatch::Bits)
        );
    }

    #[test]
    fn versions_follow_go_semver_rules() {
        let o = orch();
        assert_eq!(
            compatible(&Capabilities::ai_job(27, "sd-turbo", "0.14.0", "0.9.0"), Some(&o)),
            Ok(())
        );
        assert!(matches!(
            compatible(&Capabilities::ai_job(27, "sd-turbo", "0.15", ""), Some(&o)),
            Err(Mismatch::RunnerVersion { .. })
        ));
        // sdxl has no runner version: fails only when the gateway sets a minimum.
        assert!(compatible(&Capabilities::ai_job(27, "sdxl", "0.1.0", ""), Some(&o)).is_err());
        assert!(matches!(
            compatible(&Capabilities::ai_job(27, "sd-turbo", "", "0.9.2"), Some(&o)),
            Err(Mismatch::Version { .. })
        ));
        assert!(version_at_least("0.9.1-rc.2", "0.9.1"));
        assert!(version_at_least("v1.0", "0.9.9"));
        assert!(!version_at_least("undefined", "0.1.0"));
        assert!(!version_at_least("", "0.1.0"));
        assert!(version_at_least("", "not a version"));
    }

    #[test]
    fn mandatories_and_legacy_orchestrators() {
        let mut o = orch();
        o.mandatories = vec![1 << 13];
        assert_eq!(
            compatible(&Capabilities::transcode_job(""), Some(&o)),
            Err(Mismatch::Mandatory)
        );
        let mut legacy_job = Capabilities::default();
        legacy_job.set(0);
        legacy_job.set(11);
        assert_eq!(compatible(&legacy_job, None), Ok(()));
        assert_eq!(
            compatible(&Capabilities::transcode_job(""), None),
            Err(Mismatch::NoCapabilities)
        );
    }

    #[test]
    fn longer_gateway_bitstring_never_matches() {
        let o = orch();
        let mut job = Capabilities::transcode_job("");
        job.bitstring.push(0);
        assert_eq!(compatible(&job, Some(&o)), Err(Mismatch::Bits));
    }

    #[test]
    fn what_is_kept_of_an_orchestrators_answer_is_bounded_with_the_same_verdicts() {
        let mut wire = net::Capabilities::from(&orch());
        let per = &mut wire.constraints.as_mut().unwrap().per_capability;
        let mut many = per[&27].clone();
        for i in 0..1000 {
            many.models.insert(format!("m{i:04}"), Default::default());
        }
        many.models.insert("x".repeat(MAX_MODEL_CHARS + 1), Default::default());
        per.insert(27, many);
        per.insert(u32::MAX, per[&27].clone());
        wire.bitstring.resize(100_000, u64::MAX);
        wire.mandatories = vec![0; 100_000];
        wire.capacities.insert(u32::MAX, 1);
        let kept = Capabilities::from_orchestrator(&wire);
        let models = &kept.per_capability[&27];
        assert_eq!(kept.per_capability.len(), 1, "pipelines the gateway runs only");
        assert_eq!(models.len(), MAX_MODELS);
        assert!(models.contains_key("m0000") && !models.contains_key("sd-turbo"), "first by id");
        assert_eq!((kept.bitstring.len(), kept.mandatories.len()), (MAX_WORDS, 0));
        assert!(!kept.capacities.contains_key(&u32::MAX));
        let job = Capabilities::ai_job(27, "m0000", "", "");
        assert_eq!(compatible(&job, Some(&kept)), Ok(()));
        // A mandatory bit beyond the words kept still refuses every job of the gateway.
        wire.mandatories[99_999] = 1;
        let kept = Capabilities::from_orchestrator(&wire);
        assert_eq!(kept.mandatories.len(), MAX_WORDS);
        assert_eq!(compatible(&job, Some(&kept)), Err(Mismatch::Mandatory));
    }

    /// The mask selection tests transcoding jobs with says what the whole rule says, for
    /// every job of the first word: random orchestrators (with and without capabilities,
    /// mandatories, short and long bitstrings) against random jobs.
    #[test]
    fn the_selection_mask_agrees_with_the_whole_rule() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let word = |rng: &mut rand::rngs::StdRng| -> u64 {
            match rng.random_range(0..4) {
                0 => 0,
                1 => rng.random::<u64>() & 0x7ff_ffff,
                2 => rng.random::<u64>() & LEGACY_MASK,
                _ => rng.random(),
            }
        };
        for _ in 0..20_000 {
            let orch = (rng.random_range(0..8) != 0).then(|| Capabilities {
                bitstring: (0..rng.random_range(0..3)).map(|_| word(&mut rng)).collect(),
                mandatories: (0..rng.random_range(0..3))
                    .map(|_| if rng.random_range(0..3) == 0 { word(&mut rng) } else { 0 })
                    .collect(),
                ..Capabilities::default()
            });
            let job = word(&mut rng) | if rng.random() { 1 << 12 } else { 0 };
            let whole = Capabilities { bitstring: vec![job], ..Capabilities::default() };
            assert_eq!(
                CapMask::of(orch.as_ref()).serves(job),
                compatible(&whole, orch.as_ref()).is_ok(),
                "job {job:#x}, orchestrator {orch:?}"
            );
        }
        assert!(!CapMask::NONE.serves(0) && !CapMask::NONE.serves(BASIC_TRANSCODE));
    }

    #[test]
    fn converts_to_and_from_the_wire() {
        let o = orch();
        let wire = net::Capabilities::from(&o);
        assert_eq!(Capabilities::from(&wire), o);
        assert_eq!(pipeline_capability("llm"), Some(33));
        assert_eq!(capability_pipeline(36), Some("text-to-speech"));
    }
}
