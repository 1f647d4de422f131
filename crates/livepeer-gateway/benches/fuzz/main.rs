//! Fuzzing every parser of untrusted input on stable Rust: each case mutates a valid seed (bit
//! flips, truncation, splicing, JSON values of the wrong type, huge numbers, bounded deep
//! nesting, random bytes) from a seeded RNG and feeds it to the parser under `catch_unwind`.
//! Prints cases and panics per parser and in total; exits 1 on any panic, printing what
//! reproduces it.
//!
//! Run: `cargo bench -p livepeer-gateway --bench fuzz` (1,008,000 cases, split evenly among the parsers).
//! `FUZZ_CASES` sets the total, `FUZZ_SEED` the seed, `FUZZ_ONLY` one parser and `FUZZ_CASE`
//! one case of it. `tests/it/fuzz.rs` runs a small share of the same cases in the test suite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    missing_docs,
    unreachable_pub,
    clippy::print_stdout,
    clippy::disallowed_types,
    reason = "a harness: setup may panic, its panics are what it counts, it prints its report and times itself by the wall clock"
)]

mod audio;
mod engine;
mod mutate;
mod proto;
mod targets;
mod trickle;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() -> std::process::ExitCode {
    // `cargo bench` passes `--bench`; a filter argument is not used.
    let total = env_u64("FUZZ_CASES").unwrap_or(1_008_000);
    let plan = engine::Plan {
        seed: env_u64("FUZZ_SEED").unwrap_or(0x11_0010),
        cases: total.div_ceil(targets::TARGETS.len() as u64),
        only: std::env::var("FUZZ_ONLY").ok(),
        case: env_u64("FUZZ_CASE"),
    };
    let env = targets::Env::new();
    let outcomes = engine::run(targets::TARGETS, &env, &plan);
    if engine::report(&outcomes, &plan) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
