//! What a customer key costs a request on the request path (`--auth keys`): the cached lookup
//! of a verified key (SHA-256 of the secret, one map lookup, the enabled and expiry checks)
//! and the per-minute limiter, on SQLite; the database is not touched once a key is cached.
//!
//! Run: `cargo bench -p livepeer-gateway --bench keys`
#![allow(clippy::unwrap_used, reason = "a benchmark's setup may panic")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use livepeer_gateway::keys::{KeyStore, KeysConfig, NewKey};
use secrecy::ExposeSecret;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = KeysConfig::sqlite(dir.path().to_owned());
    let (store, _writer) = rt.block_on(KeyStore::open(&config)).unwrap();
    let new: NewKey = serde_json::from_value(serde_json::json!({
        "name": "bench", "requests_per_minute": 4_000_000_000u32,
    }))
    .unwrap();
    let (_, secret) = rt.block_on(store.create(new)).unwrap();
    let secret = secret.expose_secret().to_owned();
    c.bench_function("authenticate (cached) + admit", |b| {
        b.iter(|| {
            let key = rt.block_on(store.authenticate(black_box(&secret))).unwrap();
            rt.block_on(store.admit(&key)).unwrap();
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
