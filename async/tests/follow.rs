//! The async followers against real writers: threads and another process, rolls,
//! cancellation and damaged segments.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use evstream::{Error, LogOptions, LogReader, LogWriter, StreamWriter};
use evstream_tokio::{LogFollower, StreamFollower, WaitPool, commit_cursor};
use futures_util::StreamExt;

/// Waits at most this long for an event a writer was made to append.
const PATIENCE: Duration = Duration::from_secs(20);

fn follower(path: &Path) -> LogFollower {
    let reader = LogReader::open(path).unwrap();
    LogFollower::new(reader.iter_from(reader.end().unwrap()).unwrap())
}

async fn next(follow: &mut LogFollower) -> evstream_tokio::Event {
    tokio::time::timeout(PATIENCE, follow.next())
        .await
        .expect("no event within the patience")
        .expect("a log follower never ends by itself")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_thread_wakes_a_waiting_follower() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default()).unwrap();
    let mut follow = follower(&path);
    let writer = std::thread::spawn(move || {
        for t in 0..50 {
            // Long enough apart that the follower is asleep at most of them.
            std::thread::sleep(Duration::from_millis(2));
            log.append(t, format!("event {t}").as_bytes()).unwrap();
        }
    });
    for t in 0..50 {
        let event = next(&mut follow).await;
        assert_eq!(event.timestamp, t);
        assert_eq!(&event.payload[..], format!("event {t}").as_bytes());
    }
    writer.join().unwrap();
}

/// The child half of [`a_writer_process_wakes_a_waiting_follower`]: appends to the log
/// named by the environment, a few milliseconds apart.
#[test]
fn writer_process() {
    let Some(path) = std::env::var_os("EVSTREAM_TOKIO_TEST_WRITER") else {
        return;
    };
    // Waits for the parent's follower to be there: the log's end moves only after it.
    std::thread::sleep(Duration::from_millis(100));
    let mut log = LogWriter::open(&path).unwrap();
    for t in 0..20 {
        std::thread::sleep(Duration::from_millis(3));
        log.append(t, b"from another process").unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_writer_process_wakes_a_waiting_follower() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    drop(LogWriter::create(&path, LogOptions::default()).unwrap());
    let mut follow = follower(&path);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_process", "--test-threads", "1"])
        .env("EVSTREAM_TOKIO_TEST_WRITER", &path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for t in 0..20 {
        let event = next(&mut follow).await;
        assert_eq!(event.timestamp, t);
        assert_eq!(&event.payload[..], b"from another process");
    }
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_a_next_future_mid_wait_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default()).unwrap();
    let mut follow = follower(&path);
    let mut t = 0;
    for round in 0..20 {
        // A next() that waits, and is dropped while it does.
        let waited = tokio::time::timeout(Duration::from_millis(2), follow.next()).await;
        assert!(
            waited.is_err(),
            "round {round}: an event before any was appended"
        );
        // Events appended while no next() is pending: each is read once, in order.
        let batch = 1 + round % 3;
        for _ in 0..batch {
            log.append(t, &t.to_le_bytes()).unwrap();
            t += 1;
        }
        for expected in t - batch..t {
            let event = next(&mut follow).await;
            assert_eq!(event.timestamp, expected);
        }
        assert!(follow.try_next().unwrap().is_none(), "an event read twice");
    }
    // A next() dropped after the writer appended but before it was polled again.
    let pending = follow.next();
    log.append(t, b"last").unwrap();
    drop(pending);
    assert_eq!(next(&mut follow).await.timestamp, t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_follows_the_writer_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap();
    let first = log.segment();
    let mut follow = follower(&path);
    let writer = std::thread::spawn(move || {
        for t in 0..600 {
            if t % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            log.append(t, &[t as u8; 32]).unwrap();
        }
        log.segment()
    });
    let mut segments = std::collections::BTreeSet::new();
    for t in 0..600 {
        let event = next(&mut follow).await;
        assert_eq!(event.timestamp, t);
        assert_eq!(&event.payload[..], &[t as u8; 32]);
        segments.insert(event.position.segment());
    }
    let last = writer.join().unwrap();
    assert!(last >= first + 5, "the writer rolled only to {last}");
    assert_eq!(segments.len() as u64, last - first + 1, "segments seen");
}

#[tokio::test(flavor = "current_thread")]
async fn a_damaged_segment_comes_out_as_an_error_item() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default()).unwrap();
    for t in 0..10 {
        log.append(t, b"intact payload").unwrap();
    }
    drop(log);
    // A flipped byte in the payload of the fifth event (each is 16 + 14 bytes).
    let reader = LogReader::open(&path).unwrap();
    let (_, segment) = reader.segment_files().unwrap().remove(0);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[24 + 4 * 30 + 20] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let mut follow = LogFollower::new(reader.iter().unwrap());
    for t in 0..4 {
        assert_eq!(next(&mut follow).await.timestamp, t);
    }
    match follow.next().await {
        Some(Err(Error::Corrupt { offset, .. })) => assert_eq!(offset, 24 + 4 * 30),
        other => panic!("expected the damaged event as an error, got {other:?}"),
    }
    assert!(
        follow.next().await.is_none(),
        "the follower ends after its error"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_follower_reads_until_the_seal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.evs");
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    let mut follow = StreamFollower::open(&path, 24).unwrap();
    let producer = std::thread::spawn(move || {
        for t in 0..30 {
            std::thread::sleep(Duration::from_millis(1));
            writer.append(t, &[t as u8; 100]).unwrap();
        }
        writer.seal().unwrap();
    });
    let mut expected_at = 24;
    for t in 0..30 {
        let event = tokio::time::timeout(PATIENCE, follow.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((event.timestamp, event.position), (t, expected_at));
        expected_at = event.next_position;
    }
    let end = tokio::time::timeout(PATIENCE, follow.next()).await.unwrap();
    assert!(end.is_none(), "a sealed stream's follower ends");
    producer.join().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_committed_cursor_is_where_a_new_follower_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default()).unwrap();
    for t in 0..5 {
        log.append(t, b"e").unwrap();
    }
    let reader = LogReader::open(&path).unwrap();
    let mut follow = LogFollower::new(reader.iter_cursor("app").unwrap());
    let third = {
        next(&mut follow).await;
        next(&mut follow).await;
        next(&mut follow).await
    };
    commit_cursor(&reader, "app", third.next_position)
        .await
        .unwrap();
    let mut again = LogFollower::new(reader.iter_cursor("app").unwrap());
    assert_eq!(next(&mut again).await.timestamp, 3);
    assert!(matches!(
        commit_cursor(&reader, "bad/name", third.next_position).await,
        Err(Error::BadCursor { .. })
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_follower_leaves_the_pool_serving_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default()).unwrap();
    let pool = WaitPool::new(1);
    let mut kept = follower(&path).with_pool(pool.clone());
    let mut dropped = follower(&path).with_pool(pool.clone());
    assert!(
        tokio::time::timeout(Duration::from_millis(5), dropped.next())
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(5), kept.next())
            .await
            .is_err()
    );
    drop(dropped);
    log.append(1, b"x").unwrap();
    assert_eq!(next(&mut kept).await.timestamp, 1);
    assert_eq!(pool.threads(), 1);
}

/// A writer that sometimes pauses and sometimes bursts: the follower, woken through
/// renewed tickets and new ones in turn, gets every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bursty_writer_loses_no_event_to_the_follower() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(1 << 20)).unwrap();
    let mut follow = follower(&path);
    const EVENTS: i64 = 100_000;
    let writer = std::thread::spawn(move || {
        for t in 0..EVENTS {
            if t % 997 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            } else if t % 7 == 0 {
                std::thread::yield_now();
            }
            log.append(t, &t.to_le_bytes()).unwrap();
        }
    });
    for t in 0..EVENTS {
        let event = next(&mut follow).await;
        assert_eq!(event.timestamp, t);
        assert_eq!(&event.payload[..], &t.to_le_bytes());
        if t % 5000 == 0 {
            // Now and then a consumer busy elsewhere: its ticket is given up meanwhile.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    writer.join().unwrap();
    assert!(follow.try_next().unwrap().is_none());
}

/// A stream follower reads each event with a new `Follow`: the order of timestamps is
/// still checked across them, so a timestamp below the one before (here rewritten, with a
/// matching checksum, after the follower read the first event) is an error item.
#[tokio::test(flavor = "current_thread")]
async fn a_stream_follower_refuses_a_timestamp_below_the_one_before() {
    use std::os::unix::fs::FileExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.evs");
    let mut writer = StreamWriter::create(&path, 1 << 16).unwrap();
    for t in [10, 20, 30] {
        writer.append(t, b"abcd").unwrap();
    }
    drop(writer);
    let mut follow = StreamFollower::open(&path, 24).unwrap();
    let first = follow.next().await.unwrap().unwrap();
    assert_eq!((first.timestamp, first.next_position), (10, 44));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&5i64.to_le_bytes());
    header[8..12].copy_from_slice(&4u32.to_le_bytes());
    header[12..].copy_from_slice(&evstream::format::event_checksum(5, b"abcd").to_le_bytes());
    file.write_all_at(&header, 44).unwrap();
    match follow.next().await {
        Some(Err(Error::Corrupt {
            offset: 44,
            reason:
                evstream::Corruption::TimestampOutOfOrder {
                    previous: 10,
                    got: 5,
                },
            ..
        })) => {}
        other => panic!("expected the out-of-order event as an error, got {other:?}"),
    }
    assert!(follow.next().await.is_none());
}

/// The stream's count of registered waiters (trailer bytes 260..264), as a writer sees it.
fn registered_waiters(path: &Path) -> u32 {
    use std::os::unix::fs::FileExt;

    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let trailer = evstream::format::trailer_offset(len).unwrap();
    let mut word = [0u8; 4];
    file.read_exact_at(&mut word, trailer + evstream::format::WAIT_WORDS_AT + 4)
        .unwrap();
    u32::from_le_bytes(word)
}

/// A follower dropped while it waits leaves nothing registered: its writer goes back to
/// appending without a wake call.
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_follower_unregisters_from_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.evs");
    let _writer = StreamWriter::create(&path, 1 << 16).unwrap();
    let mut follow = StreamFollower::open(&path, 24).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(5), follow.next())
            .await
            .is_err()
    );
    assert_eq!(
        registered_waiters(&path),
        1,
        "the waiting follower is registered"
    );
    drop(follow);
    let start = std::time::Instant::now();
    while registered_waiters(&path) != 0 {
        assert!(
            start.elapsed() < PATIENCE,
            "the dropped follower stays registered"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A stream follower whose file was deleted, and that no writer has open any more, ends
/// with one error (`NotFound`) within seconds instead of waiting for ever: no event can
/// come. While a writer still has the deleted file open, its events keep coming.
#[tokio::test(flavor = "current_thread")]
async fn a_stream_follower_of_a_deleted_file_with_no_writer_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.evs");
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    writer.append(1, b"first").unwrap();
    let mut follow = StreamFollower::open(&path, 24)
        .unwrap()
        .with_pool(WaitPool::new(1));
    let first = tokio::time::timeout(PATIENCE, follow.next()).await.unwrap();
    assert_eq!(&first.unwrap().unwrap().payload[..], b"first");
    std::fs::remove_file(&path).unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        writer.append(2, b"after the unlink").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(writer);
    });
    let second = tokio::time::timeout(PATIENCE, follow.next()).await.unwrap();
    assert_eq!(&second.unwrap().unwrap().payload[..], b"after the unlink");
    writer.join().unwrap();
    let began = std::time::Instant::now();
    match tokio::time::timeout(PATIENCE, follow.next()).await {
        Ok(Some(Err(Error::Io { source, .. }))) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(follow.next().await.is_none(), "it ends after its error");
}

/// The 2 s look of a waiting follower is kept while other followers of the same pool
/// thread are woken all the time: a stream follower of a file deleted with no writer
/// left ends though a busy log beside it wakes the pool's one thread every 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_s_follower_ends_while_a_busy_neighbour_keeps_its_pool_thread_awake() {
    let dir = tempfile::tempdir().unwrap();
    let pool = WaitPool::new(1);
    let path = dir.path().join("gone.evs");
    let writer = StreamWriter::create(&path, 1 << 20).unwrap();
    let mut follow = StreamFollower::open(&path, 24)
        .unwrap()
        .with_pool(pool.clone());
    let log_path = dir.path().join("busy");
    let mut log = LogWriter::create(&log_path, LogOptions::default()).unwrap();
    let mut busy = follower(&log_path).with_pool(pool.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let appender = std::thread::spawn(move || {
        let mut t = 0;
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            log.append(t, b"tick").unwrap();
            t += 1;
        }
    });
    let reading = tokio::spawn(async move {
        loop {
            if busy.next().await.unwrap().is_err() {
                break;
            }
        }
    });
    // The stream's follower parks on the pool's thread, then its file goes.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), follow.next())
            .await
            .is_err()
    );
    drop(writer);
    std::fs::remove_file(&path).unwrap();
    let began = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), follow.next()).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    appender.join().unwrap();
    reading.abort();
    match ended {
        Ok(Some(Err(Error::Io { source, .. }))) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        Err(_) => panic!("the follower of the deleted file still waits after 10 s"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

/// A log whose newest segment was sealed behind its writer's back (a segment is a stream
/// file, and `StreamWriter::seal` works on it) takes its next event in a new segment,
/// which the next writer rolls into. Until then a follower at its end waits, handing its
/// runtime back: a `timeout` around `next()` fires, and the next writer's event comes.
#[test]
fn a_follower_at_a_sealed_newest_segment_waits_without_holding_its_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default()).unwrap();
    log.append(1, b"one").unwrap();
    drop(log);
    let reader = LogReader::open(&path).unwrap();
    let (_, newest) = reader.segment_files().unwrap().pop().unwrap();
    StreamWriter::open(&newest).unwrap().seal().unwrap();
    let mut follow = LogFollower::new(reader.iter().unwrap());
    // The follower on a runtime of its own, in a thread of its own: a poll that never
    // returns holds that thread, not this test's.
    let (told, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let first = follow.next().await.unwrap().unwrap();
            told.send(("first", first.timestamp)).unwrap();
            let waited = tokio::time::timeout(Duration::from_millis(100), follow.next()).await;
            told.send(("waited", i64::from(waited.is_err()))).unwrap();
            let second = next(&mut follow).await;
            told.send(("second", second.timestamp)).unwrap();
        });
    });
    assert_eq!(heard.recv_timeout(PATIENCE).unwrap(), ("first", 1));
    assert_eq!(
        heard.recv_timeout(Duration::from_secs(5)),
        Ok(("waited", 1)),
        "the follower held its runtime: its timeout never fired"
    );
    let mut log = LogWriter::open(&path).unwrap();
    log.append(2, b"two").unwrap();
    assert_eq!(heard.recv_timeout(PATIENCE).unwrap(), ("second", 2));
}

/// A log deleted and made again at the same path is another log: its follower stops with
/// `NotFound` instead of taking the new log's segments for the successors of its own
/// (from the sequence number it had reached, the new log's first segments skipped).
#[tokio::test(flavor = "current_thread")]
async fn a_follower_of_a_log_replaced_at_its_path_ends_instead_of_reading_the_new_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = LogOptions::default().segment_size(4096);
    let mut log = LogWriter::create(&path, options.clone()).unwrap();
    while log.segment() < 3 {
        log.append(1, &[1; 100]).unwrap();
    }
    let mut follow = follower(&path).with_pool(WaitPool::new(1));
    assert!(
        tokio::time::timeout(Duration::from_millis(20), follow.next())
            .await
            .is_err()
    );
    drop(log);
    std::fs::remove_dir_all(&path).unwrap();
    let mut log = LogWriter::create(&path, options).unwrap();
    while log.segment() < 6 {
        log.append(2, &[2; 100]).unwrap();
    }
    match tokio::time::timeout(PATIENCE, follow.next()).await {
        Ok(Some(Err(Error::Io { source, .. }))) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(follow.next().await.is_none(), "it ends after its error");
}

/// A follower whose `next()` was dropped while it waited in one task, then polled in
/// another (a request handler's task each time), is woken by an event published while
/// that poll looks: the pool's thread, woken by the publish meanwhile, renewed the ticket
/// the follower then waited on (registered after the look, so deaf to that event) and
/// woke the first task, and the event came only with the pool's look every 2 s. A log
/// of many segments makes the look long enough (it lists the directory) for the publish
/// to land inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_polled_in_another_task_is_woken_by_a_publish_during_its_look() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap();
    let mut t = 0;
    while log.segment() < 600 {
        log.append(t, &[0; 3000]).unwrap();
        t += 1;
    }
    let mut follow = follower(&path).with_pool(WaitPool::new(1));
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert!(follow.try_next().unwrap().is_none());
    }
    let look = started.elapsed() / 5;
    // The writer publishes when told, after the delay it is given.
    let (publish, delays) = std::sync::mpsc::channel::<Duration>();
    let writer = std::thread::spawn(move || {
        while let Ok(delay) = delays.recv() {
            // Asleep, not spinning: the pool's thread needs a core to renew the ticket.
            std::thread::sleep(delay);
            log.append(t, b"x").unwrap();
            t += 1;
        }
    });
    let mut late = Vec::new();
    for round in 0..24u32 {
        // A next() that waits and is dropped (a timeout) in one task...
        let (back, waited) = tokio::spawn(async move {
            let waited = tokio::time::timeout(Duration::from_millis(2), follow.next()).await;
            (follow, waited)
        })
        .await
        .unwrap();
        assert!(
            waited.is_err(),
            "round {round}: an event before any was appended"
        );
        follow = back;
        // ...then a next() in another task, the event published during its look.
        let delay = look * (round % 5 + 1) / 10;
        let publish = publish.clone();
        let (back, took) = tokio::spawn(async move {
            publish.send(delay).unwrap();
            let asked = std::time::Instant::now();
            let event = tokio::time::timeout(PATIENCE, follow.next()).await;
            assert!(matches!(event, Ok(Some(Ok(_)))), "round {round}: {event:?}");
            (follow, asked.elapsed())
        })
        .await
        .unwrap();
        follow = back;
        if took > Duration::from_millis(500) {
            late.push((round, took));
        }
    }
    drop(publish);
    writer.join().unwrap();
    assert!(
        late.is_empty(),
        "events that woke no follower (a look takes {look:?}): {late:?}"
    );
}

/// Polls `future` to its end on this thread, with no runtime: an executor that is not
/// tokio's.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

/// The followers run under any executor, and so does `commit_cursor`: awaited outside a
/// tokio runtime it commits (it panicked: tokio's blocking threads need a runtime).
#[test]
fn commit_cursor_awaited_outside_a_tokio_runtime_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default()).unwrap();
    log.append(1, b"one").unwrap();
    let after = log.append(2, b"two").unwrap();
    let reader = LogReader::open(&path).unwrap();
    block_on(commit_cursor(&reader, "app", after)).unwrap();
    assert_eq!(reader.cursor("app").unwrap(), Some(after));
    assert!(matches!(
        block_on(commit_cursor(&reader, "bad/name", after)),
        Err(Error::BadCursor { .. })
    ));
}
