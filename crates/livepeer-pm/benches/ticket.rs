//! Ticket hashing and signing throughput; the payments issue targets at least 20,000
//! signatures per second per core.
#![allow(clippy::unwrap_used, missing_docs, reason = "benchmark harness")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use livepeer_pm::{Address, B256, LocalSigner, Ticket, U256};

fn ticket(sender_nonce: u32, recipient: Address, signer: &LocalSigner) -> Ticket {
    Ticket {
        recipient,
        sender: signer.address(),
        face_value: U256::from(24_703_611_594_215_916u64),
        win_prob: U256::MAX >> 3,
        sender_nonce,
        recipient_rand_hash: B256::repeat_byte(0x53),
        creation_round: 3500,
        creation_round_block_hash: B256::repeat_byte(0xcb),
    }
}

fn bench(c: &mut Criterion) {
    let signer =
        LocalSigner::from_hex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
            .unwrap();
    let recipient: Address = "0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F".parse().unwrap();
    let mut group = c.benchmark_group("ticket");
    group.throughput(Throughput::Elements(1));
    let mut nonce = 0u32;
    group.bench_function("hash", |b| {
        b.iter(|| {
            nonce = nonce.wrapping_add(1);
            black_box(ticket(nonce, recipient, &signer).hash())
        })
    });
    group.bench_function("hash_and_sign", |b| {
        b.iter(|| {
            nonce = nonce.wrapping_add(1);
            black_box(ticket(nonce, recipient, &signer).sign(&signer).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
