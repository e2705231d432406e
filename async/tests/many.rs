//! Many followers share the pool's few threads (its own test binary, so that the
//! process's threads are this test's).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use evstream::{LogOptions, LogReader, LogWriter};
use evstream_tokio::{LogFollower, WaitPool};
use futures_util::StreamExt;

/// The `/proc` directories of this process's threads named as the pool names them.
fn pool_tasks() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|task| task.unwrap().path())
        .filter(|task| {
            let comm = std::fs::read_to_string(task.join("comm"));
            comm.is_ok_and(|c| c.trim() == "evstream-wait")
        })
        .collect()
}

fn pool_threads() -> usize {
    pool_tasks().len()
}

/// How many times the pool's threads went to sleep and were woken, in all.
fn pool_switches() -> u64 {
    pool_tasks()
        .iter()
        .map(|task| {
            let status = std::fs::read_to_string(task.join("status")).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .map_or(0, |n| n.trim().parse::<u64>().unwrap())
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_followers_of_many_logs_share_two_threads() {
    const LOGS: usize = 30;
    const PER_LOG: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let pool = WaitPool::new(2);
    let mut writers = Vec::new();
    let mut tasks = Vec::new();
    for l in 0..LOGS {
        let path = dir.path().join(format!("log{l}"));
        writers.push(LogWriter::create(&path, LogOptions::default()).unwrap());
        for _ in 0..PER_LOG {
            let reader = LogReader::open(&path).unwrap();
            let mut follow = LogFollower::new(reader.iter_from(reader.end().unwrap()).unwrap())
                .with_pool(pool.clone());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..3 {
                    let event = follow.next().await.unwrap().unwrap();
                    got.push(event.timestamp);
                }
                got
            }));
        }
    }
    // Every follower is asleep in the pool before the first append.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool_threads(), pool.threads());
    assert!(pool.threads() <= 2, "{} threads", pool.threads());
    // Asleep, not polling: once every follower is parked (a slow machine may take a
    // while), the idle pool's threads are not woken for 300 ms on end.
    let mut windows = Vec::new();
    loop {
        let before = pool_switches();
        tokio::time::sleep(Duration::from_millis(300)).await;
        windows.push(pool_switches() - before);
        if windows.last() <= Some(&2) {
            break;
        }
        assert!(
            windows.len() < 20,
            "the idle pool's threads kept waking: {windows:?}"
        );
    }
    for t in 0..3 {
        for writer in &mut writers {
            writer.append(t, b"news").unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in tasks {
        let got = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("a follower was not woken")
            .unwrap();
        assert_eq!(got, [0, 1, 2]);
    }
    assert!(pool_threads() <= 2, "{} threads", pool_threads());
    // The followers are gone with their tasks: dropping the pool ends its threads.
    drop(pool);
    let start = std::time::Instant::now();
    while pool_threads() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the pool's threads live on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
