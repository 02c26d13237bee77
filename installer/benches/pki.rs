//! `kinit certs generate` for 3 control planes and 100 kubelets (103 nodes, 111 kubeconfigs,
//! 13 leaves, 3 CAs, written atomically and synced): from nothing, with ECDSA P-256 (the target:
//! ≤ 100 ms) and RSA 2048 side by side, and the no-change re-run that checks every file.
//!
//! Run: `cargo bench -p kinit --bench pki`

use std::fmt::Write;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kinit::config::{self, Cluster};
use kinit::ops::certs;
use kinit::yaml::Source;
use kinit_pki::Placement;
use time::OffsetDateTime;

fn cluster(key_algorithm: &str) -> Cluster {
    let mut text = String::from(
        "apiVersion: kinit.io/v1alpha1\nkind: Cluster\nmetadata: {name: bench}\nkubernetesVersion: v1.30.2\nhosts:\n",
    );
    for i in 1..=3 {
        writeln!(
            text,
            "  - {{name: cp{i}, address: 10.0.0.{i}, roles: [control-plane]}}"
        )
        .unwrap();
    }
    for i in 1..=100 {
        writeln!(
            text,
            "  - {{name: node{i}, address: 10.0.1.{i}, roles: [worker]}}"
        )
        .unwrap();
    }
    writeln!(text, "certificates: {{keyAlgorithm: {key_algorithm}}}").unwrap();
    config::parse(&Source::new("bench.yaml", text))
        .expect("valid")
        .0
}

fn full_pki(c: &mut Criterion) {
    let mut group = c.benchmark_group("full-pki-3cp-100kubelets");
    group.sample_size(20);
    for algorithm in ["ecdsa-p256", "rsa-2048"] {
        // RSA key generation dominates (~85 ms a key here); ten samples are plenty.
        group.sample_size(if algorithm == "rsa-2048" { 10 } else { 20 });
        let cluster = cluster(algorithm);
        group.bench_function(format!("generate/{algorithm}"), |b| {
            b.iter_batched(
                || tempfile::tempdir().unwrap(),
                |dir| {
                    let outcomes = certs::generate(
                        &cluster,
                        dir.path(),
                        &Placement::Cluster,
                        OffsetDateTime::now_utc(),
                    )
                    .unwrap();
                    black_box(outcomes);
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.sample_size(20);
    let cluster = cluster("ecdsa-p256");
    let dir = tempfile::tempdir().unwrap();
    certs::generate(
        &cluster,
        dir.path(),
        &Placement::Cluster,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    group.bench_function("unchanged-rerun/ecdsa-p256", |b| {
        b.iter(|| {
            black_box(
                certs::generate(
                    &cluster,
                    dir.path(),
                    &Placement::Cluster,
                    OffsetDateTime::now_utc(),
                )
                .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, full_pki);
criterion_main!(benches);
