//! The audio-to-text upload's duration probe: the committed audio fixtures (WAV, MP3, FLAC,
//! Ogg, M4A, ADTS AAC, WebM), mutated and spliced into each other, measured as an upload is.
//!
//! `audio_duration` runs the demuxer under its own `catch_unwind`, since symphonia asserts on
//! some malformed headers and a crafted upload must cost its sender a 422, not the gateway a
//! thread. That would hide a panic of the gateway's own code (the ID3 walk, the MP4 and
//! Matroska length checks) as well: such a panic, told apart by where it was raised, is
//! raised again here so that the harness counts it. symphonia's own are what the probe's
//! guard is for, and are let pass.

use std::sync::OnceLock;

use bytes::Bytes;
use livepeer_gateway::ai::probe::audio_duration;
use rand::Rng;
use rand::rngs::SmallRng;

use super::engine::take_last_panic;
use super::targets::Env;
use super::{mutate, targets::pick};

/// The fixtures, read once.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/audio");
        let mut files: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x != "md"))
            .collect();
        files.sort();
        let seeds: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert!(seeds.len() >= 8, "audio fixtures in {}", root.display());
        seeds
    })
}

/// One upload: a fixture as it is (now and then), or mutated and spliced.
pub fn duration_probe(rng: &mut SmallRng, env: &Env) {
    let seeds = seeds();
    let seed = pick(rng, seeds);
    let upload =
        if rng.random_ratio(1, 16) { seed.clone() } else { mutate::bytes(rng, seed, seeds) };
    let measured = audio_duration(Bytes::from(upload));
    if let Some(message) = take_last_panic().filter(|m| m.contains("crates/livepeer-gateway/")) {
        panic!(
            "the gateway's own probe code panicked, hidden behind the demuxer's guard: {message}"
        );
    }
    env.accepted_if(measured.is_ok());
}
