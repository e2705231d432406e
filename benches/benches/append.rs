//! Append throughput of evstream and the `std` baselines, cold and warm, per payload size.
//!
//! Every system runs the same measured operation as `evstream bench`
//! ([`evstream_bench::append_once`]); see `benches/src/lib.rs` for what each one times.
//! One group per payload size holds every system, cold and warm, with
//! `Throughput::Bytes` counting payload bytes.
//!
//! `cargo bench --bench append` runs them all (about three minutes on two cores);
//! `cargo bench --bench append -- 1024B` runs one size.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use evstream_bench::{AppendMethod, BenchDir, Mode, Workload, append_once};

/// Payload sizes from the benchmark issue.
const SIZES: [usize; 5] = [32, 256, 1024, 4096, 64 * 1024];
/// Events per run: 10,000, fewer for big payloads so a run writes at most 16 MiB.
fn events_for(size: usize) -> u64 {
    (16 << 20) / size.max(1) as u64
}

fn append(c: &mut Criterion) {
    let dir = BenchDir::new(None).expect("create a temporary directory");
    for size in SIZES {
        let workload = Workload::new(events_for(size).min(10_000), size);
        let mut group = c.benchmark_group(format!("append/{size}B"));
        group
            .throughput(Throughput::Bytes(workload.payload_bytes()))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200));
        for mode in [Mode::Cold, Mode::Warm] {
            // Warm runs spend most of their wall time in untimed setup (creating and
            // prefaulting the file), so they get a shorter measured budget.
            group.measurement_time(match mode {
                Mode::Cold => Duration::from_millis(1000),
                Mode::Warm => Duration::from_millis(400),
            });
            for method in AppendMethod::ALL {
                let skip = match (mode, method) {
                    (Mode::Cold, AppendMethod::AnonMemory) => true,
                    // Warm, evstream's prefault mode does not matter: run it once.
                    (Mode::Warm, AppendMethod::Evstream(p)) => p != evstream::Prefault::Background,
                    (Mode::Warm, AppendMethod::EvstreamHugePages) => true,
                    _ => false,
                };
                if skip {
                    continue;
                }
                let id = match (mode, method) {
                    (Mode::Warm, AppendMethod::Evstream(_)) => "evstream_prefaulted",
                    _ => method.id(),
                };
                group.bench_function(format!("{}/{id}", mode.name()), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                append_once(method, mode, &workload, &dir).expect("append run")
                            })
                            .sum()
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
