//! Replay throughput: evstream's verified and unverified iteration against a
//! `BufReader` parse that checks every checksum, per payload size.
//!
//! Each size's file is written once by evstream. A timed run either opens the file and
//! visits every event (`open/…`) or is a second full pass over an already open reader
//! (`reused/…`); see [`evstream_bench::replay_once`]. The page cache is warm throughout.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use evstream_bench::{
    BenchDir, ReplayMethod, ReplayMode, Workload, replay_once, write_replay_file,
};

/// Payload sizes from the benchmark issue.
const SIZES: [usize; 5] = [32, 256, 1024, 4096, 64 * 1024];

fn replay(c: &mut Criterion) {
    let dir = BenchDir::new(None).expect("create a temporary directory");
    for size in SIZES {
        // 10,000 events, fewer for big payloads so a file holds at most 16 MiB.
        let workload = Workload::new(((16u64 << 20) / size as u64).min(10_000), size);
        let path = dir.fresh_file();
        write_replay_file(&path, &workload).expect("write the replay file");
        let mut group = c.benchmark_group(format!("replay/{size}B"));
        group
            .throughput(Throughput::Bytes(workload.payload_bytes()))
            .sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for mode in [ReplayMode::Open, ReplayMode::Reused] {
            let kind = match mode {
                ReplayMode::Open => "open",
                ReplayMode::OpenHugePages => "open_huge_pages",
                ReplayMode::Reused => "reused",
            };
            for method in ReplayMethod::ALL {
                group.bench_function(format!("{kind}/{}", method.id()), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                let (time, events) =
                                    replay_once(method, mode, &path).expect("replay run");
                                // Every method but the limit counts the events it saw.
                                if let Some(events) = events {
                                    assert_eq!(events, workload.events());
                                }
                                time
                            })
                            .sum()
                    })
                });
            }
        }
        group.finish();
        std::fs::remove_file(&path).expect("remove the replay file");
    }
}

criterion_group!(benches, replay);
criterion_main!(benches);
