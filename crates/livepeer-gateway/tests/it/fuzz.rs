//! The fuzz harness of `benches/fuzz` in the test suite: the same parsers and mutations, about
//! 20,000 cases (the bench runs over a million), and not one may panic.

#![allow(clippy::print_stdout, clippy::disallowed_types, clippy::unreachable, dead_code)]

#[path = "../../benches/fuzz/audio.rs"]
mod audio;
#[path = "../../benches/fuzz/engine.rs"]
mod engine;
#[path = "../../benches/fuzz/mutate.rs"]
mod mutate;
#[path = "../../benches/fuzz/proto.rs"]
mod proto;
#[path = "../../benches/fuzz/targets.rs"]
mod targets;
#[path = "../../benches/fuzz/trickle.rs"]
mod trickle;

#[test]
fn twenty_thousand_cases_of_untrusted_input_panic_nowhere() {
    let plan = engine::Plan { seed: 0x11_0010, cases: 1_900, only: None, case: None };
    let env = targets::Env::new();
    let outcomes = engine::run(targets::TARGETS, &env, &plan);
    let clean = engine::report(&outcomes, &plan);
    let total: u64 = outcomes.iter().map(|o| o.cases).sum();
    assert!(total >= 20_000, "{total} cases");
    assert!(outcomes.iter().all(|o| o.accepted > 0), "every parser accepted some input");
    assert!(clean, "a parser panicked: {outcomes:?}");
}
