//! The engine: every case gets its own RNG, seeded from the run's seed, the target and the
//! case number, so one case reproduces alone; each runs under `catch_unwind`, and panics are
//! counted with the first message and the case that raised it.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::targets::Env;

/// One parser under test: `run` makes an input from the RNG and feeds it to the parser.
pub struct Target {
    /// Short name, for reports and `FUZZ_ONLY`.
    pub name: &'static str,
    /// Makes one case and runs it.
    pub run: fn(&mut SmallRng, &Env),
}

/// What one target's run found.
#[derive(Debug)]
pub struct Outcome {
    /// The target.
    pub name: &'static str,
    /// Cases run.
    pub cases: u64,
    /// Cases (trickle: requests) whose input the parser accepted.
    pub accepted: u64,
    /// Cases that panicked.
    pub panics: u64,
    /// The first panic: case number and message.
    pub first: Option<(u64, String)>,
    /// Wall time of the target's cases.
    pub took: Duration,
}

/// Which cases to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The run's seed.
    pub seed: u64,
    /// Cases per target.
    pub cases: u64,
    /// Only the target of this name, if set.
    pub only: Option<String>,
    /// Only this case number (with `only`: reproduces one case).
    pub case: Option<u64>,
}

thread_local! {
    static FUZZING: Cell<bool> = const { Cell::new(false) };
}

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// Keeps the message of panics raised while fuzzing (and prints nothing for them); other
/// threads' panics go to the previous hook, so tests running beside the harness still report.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if FUZZING.with(Cell::get) {
                let at = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                if let Ok(mut last) = LAST_PANIC.lock() {
                    *last = Some(format!("{message}{at}"));
                }
            } else {
                previous(info);
            }
        }));
    });
}

/// The message and place of the last panic raised while fuzzing, if one was raised since the
/// last call, caught or not: a target whose parser catches its own panics reads it here.
pub fn take_last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|mut m| m.take())
}

/// The RNG of one case.
pub fn case_rng(seed: u64, target: &str, case: u64) -> SmallRng {
    // FNV-1a of the name, so that adding a target does not move the others' cases.
    let name = target
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut z = seed ^ name.rotate_left(17) ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

/// Runs `plan` over `targets`.
pub fn run(targets: &[Target], env: &Env, plan: &Plan) -> Vec<Outcome> {
    install_hook();
    let mut out = Vec::new();
    for t in targets {
        if plan.only.as_deref().is_some_and(|o| o != t.name) {
            continue;
        }
        let range = match plan.case {
            Some(c) => c..c + 1,
            None => 0..plan.cases,
        };
        let started = Instant::now();
        let mut outcome = Outcome {
            name: t.name,
            cases: 0,
            accepted: 0,
            panics: 0,
            first: None,
            took: Duration::ZERO,
        };
        env.take_accepted();
        for case in range {
            let mut rng = case_rng(plan.seed, t.name, case);
            // A panic an earlier case left unread (any after a target's first, or one its
            // parser caught) must not be taken for this case's.
            let _ = take_last_panic();
            FUZZING.with(|f| f.set(true));
            let result = panic::catch_unwind(AssertUnwindSafe(|| (t.run)(&mut rng, env)));
            FUZZING.with(|f| f.set(false));
            outcome.cases += 1;
            if result.is_err() {
                outcome.panics += 1;
                if outcome.first.is_none() {
                    let message = LAST_PANIC.lock().ok().and_then(|mut m| m.take());
                    outcome.first = Some((case, message.unwrap_or_default()));
                }
            }
        }
        outcome.took = started.elapsed();
        outcome.accepted = env.take_accepted();
        out.push(outcome);
    }
    out
}

/// Prints one line per target and the total; returns whether no case panicked.
pub fn report(outcomes: &[Outcome], plan: &Plan) -> bool {
    let (mut cases, mut panics, mut took) = (0u64, 0u64, Duration::ZERO);
    for o in outcomes {
        println!(
            "fuzz {:<22} {:>9} cases {:>9} accepted {:>4} panics {:>8.2} s",
            o.name,
            o.cases,
            o.accepted,
            o.panics,
            o.took.as_secs_f64()
        );
        if let Some((case, message)) = &o.first {
            println!(
                "  first panic: {message}\n  reproduce: FUZZ_SEED={} FUZZ_ONLY={} FUZZ_CASE={case} \
                 cargo bench -p livepeer-gateway --bench fuzz",
                plan.seed, o.name
            );
        }
        cases += o.cases;
        panics += o.panics;
        took += o.took;
    }
    println!(
        "fuzz total: {cases} cases, {panics} panics, {:.1} s (seed {})",
        took.as_secs_f64(),
        plan.seed
    );
    panics == 0
}
