//! `evstream ship` and `evstream pull` against real `nats-server` processes: a round trip
//! of mixed sizes, exactly-once delivery under `kill -9` of either side (and no partial
//! copy under the name of a target that pull creates), a three-node cluster losing a
//! node, a broker that is down or restarts, a pull whose connections are cut mid-fetch
//! (through an in-test proxy), a pull of a stream with deleted messages, messages that
//! did not come from this ship, wildcard subjects, a stream lost with its server's store,
//! a quiet ship whose messages age out, an event too large to publish, a wide window, and
//! authentication.
//!
//! Each test starts its own servers on free loopback ports. Where `nats-server` is not on
//! `PATH`, each says on the terminal that it did not run (counted as passed); under CI
//! (`CI=true`, or `EVSTREAM_REQUIRE_NATS_SERVER=1` as `.ci/run` sets) each fails instead.
//! `.ci/run` installs the Debian package.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod nats_support;
#[path = "../../tests/reliability_support/mod.rs"]
mod reliability_support;
mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use evstream::{LogOptions, LogReader, LogWriter, StreamWriter};
use nats_support::{Server, server_binary};
use reliability_support::Rng;

const BIN: &str = env!("CARGO_BIN_EXE_evstream");

fn evstream(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run evstream")
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn evstream")
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({:?}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Events as timestamps and payloads.
type Events = Vec<(i64, Vec<u8>)>;

/// `count` events whose sizes run from 0 B to `max` bytes, mostly small, half of them
/// zero-filled.
fn make_events(count: u64, max: usize, seed: u64) -> Vec<(i64, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    let mut events = Vec::with_capacity(count as usize);
    for i in 0..count {
        let size = match rng.below(100) {
            0 => rng.range(0, max as u64 + 1) as usize, // 1%: up to the maximum
            1..=9 => 0,                                 // empty payloads
            _ => rng.range(1, 512) as usize,
        };
        let mut payload = vec![0u8; size];
        if rng.chance(1, 2) {
            rng.fill(&mut payload); // the other half stays zero-filled
        }
        events.push((1_700_000_000_000_000_000 + i as i64 * 1_000, payload));
    }
    events
}

/// Writes a stream file of `count` events (see [`make_events`]) and returns them.
fn write_stream(path: &Path, count: u64, max: usize, seed: u64) -> Vec<(i64, Vec<u8>)> {
    let events = make_events(count, max, seed);
    let bytes: u64 = events.iter().map(|(_, p)| 16 + p.len() as u64).sum();
    let mut writer = StreamWriter::create(path, bytes + 64 * 1024).unwrap();
    for (t, p) in &events {
        writer.append(*t, p).unwrap();
    }
    writer.flush().unwrap();
    events
}

/// Segments of the test logs: small, so that every log rolls many times.
const SEGMENT: u64 = 1 << 20;

/// Writes a log of `count` events (see [`make_events`]) in 1 MiB segments.
fn write_log(dir: &Path, count: u64, max: usize, seed: u64) -> Vec<(i64, Vec<u8>)> {
    let events = make_events(count, max, seed);
    let mut writer = LogWriter::create(dir, LogOptions::default().segment_size(SEGMENT)).unwrap();
    for (t, p) in &events {
        writer.append(*t, p).unwrap();
    }
    writer.flush().unwrap();
    events
}

fn read_log(dir: &Path) -> Vec<(i64, Vec<u8>)> {
    let reader = LogReader::open(dir).unwrap();
    reader
        .iter()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.timestamp(), e.payload().to_vec())
        })
        .collect()
}

/// Pulls the whole JetStream stream into a fresh log and returns its events.
fn pull_all(url: &str, stream: &str, dir: &Path, name: &str) -> Vec<(i64, Vec<u8>)> {
    let target = dir.join(format!("{name}.log"));
    let output = evstream(&[
        "pull",
        "--from",
        url,
        "--stream",
        stream,
        "--to",
        target.to_str().unwrap(),
        "--create-log",
        "--segment-size",
        "1MiB",
        "--consumer",
        name,
        "--until-end",
        "--quiet",
    ]);
    assert_ok(&output, "pull");
    read_log(&target)
}

fn assert_same(got: &[(i64, Vec<u8>)], want: &[(i64, Vec<u8>)], context: &str) {
    assert_eq!(got.len(), want.len(), "{context}: event count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "{context}: event {i} differs (timestamps {} / {})",
            g.0,
            w.0
        );
    }
}

#[test]
fn a_log_round_trip_of_mixed_sizes_is_byte_for_byte() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let source = dir.path().join("source.log");
    let events = write_log(&source, 100_000, 64 * 1024, 1);
    let output = evstream(&[
        "ship",
        source.to_str().unwrap(),
        "--to",
        &server.url(),
        "--subject",
        "rt.events",
        "--create-stream",
        "--stream",
        "RT",
        "--until-end",
        "--quiet",
    ]);
    assert_ok(&output, "ship");
    let copy = pull_all(&server.url(), "RT", dir.path(), "copy");
    assert_same(&copy, &events, "round trip");
}

/// Ships `source` to completion through `kills` runs each killed at a random moment,
/// then one run to the end.
fn ship_with_kills(source: &Path, url: &str, stream: &str, kills: u32, rng: &mut Rng) {
    let args = [
        "ship",
        source.to_str().unwrap(),
        "--to",
        url,
        "--subject",
        "k.events",
        "--create-stream",
        "--stream",
        stream,
        "--cursor",
        "k",
        "--until-end",
        "--quiet",
        "--window",
        "64",
    ];
    for _ in 0..kills {
        let mut child = spawn(&args);
        std::thread::sleep(Duration::from_millis(rng.range(20, 400)));
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_ok(&evstream(&args), "the last ship");
}

#[test]
fn kill_9_of_ship_of_a_log_leaves_every_event_exactly_once_in_order() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let source = dir.path().join("source.log");
    let events = write_log(&source, 30_000, 4096, 2);
    let mut rng = Rng::new(22);
    ship_with_kills(&source, &server.url(), "KILLS", 20, &mut rng);
    let cursor = LogReader::open(&source).unwrap().cursor("k").unwrap();
    assert_eq!(
        cursor,
        Some(LogReader::open(&source).unwrap().end().unwrap()),
        "the ship's cursor is at the end"
    );
    let copy = pull_all(&server.url(), "KILLS", dir.path(), "copy");
    assert_same(&copy, &events, "after 20 kills of ship");
}

/// Runs `evstream pull args` `kills` times, each killed at a random moment, then once to
/// the end. After every kill the target is absent or a whole copy of `want`; returns how
/// many kills left it absent with its temporary `.NAME.pulling` present (a first pull cut
/// off mid-way).
fn pull_with_kills(
    args: &[&str],
    target: &Path,
    want: &[(i64, Vec<u8>)],
    read: fn(&Path) -> Events,
    kills: u32,
    rng: &mut Rng,
) -> u32 {
    let name = target.file_name().unwrap().to_str().unwrap();
    let temporary = target.with_file_name(format!(".{name}.pulling"));
    let mut unfinished = 0;
    for kill in 0..kills {
        let mut child = spawn(args);
        std::thread::sleep(Duration::from_millis(rng.range(50, 400)));
        let _ = child.kill();
        let _ = child.wait();
        if target.exists() {
            assert_same(&read(target), want, &format!("{name} after kill {kill}"));
        } else {
            assert!(
                temporary.exists(),
                "kill {kill}: neither {name} nor its temporary"
            );
            unfinished += 1;
        }
    }
    assert_ok(&evstream(args), "the last pull");
    assert!(!temporary.exists(), "the temporary name is gone");
    assert_same(
        &read(target),
        want,
        &format!("{name} after {kills} kills of pull"),
    );
    unfinished
}

#[test]
fn kill_9_of_pull_neither_loses_nor_duplicates_nor_leaves_a_partial_target() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let source = dir.path().join("source.evs");
    let events = write_stream(&source, 30_000, 4096, 3);
    let url = server.url();
    assert_ok(
        &evstream(&[
            "ship",
            source.to_str().unwrap(),
            "--to",
            &url,
            "--subject",
            "p.events",
            "--create-stream",
            "--stream",
            "PULLS",
            "--until-end",
            "--quiet",
        ]),
        "ship",
    );
    let mut rng = Rng::new(33);
    let log = dir.path().join("copy.log");
    let log_args = [
        "pull",
        "--from",
        &url,
        "--stream",
        "PULLS",
        "--to",
        log.to_str().unwrap(),
        "--create-log",
        "--segment-size",
        "1MiB",
        "--consumer",
        "to-log",
        "--until-end",
        "--quiet",
    ];
    let cut = pull_with_kills(&log_args, &log, &events, read_log, 10, &mut rng);
    assert!(cut > 0, "no kill interrupted the first pull into a log");

    let file = dir.path().join("copy.evs");
    let file_args = [
        "pull",
        "--from",
        &url,
        "--stream",
        "PULLS",
        "--to",
        file.to_str().unwrap(),
        "--create",
        "64MiB",
        "--consumer",
        "to-file",
        "--until-end",
        "--quiet",
    ];
    let cut = pull_with_kills(&file_args, &file, &events, support::events_of, 6, &mut rng);
    assert!(
        cut > 0,
        "no kill interrupted the first pull into a stream file"
    );

    // Without --until-end the target gets its name when the pull first catches up.
    let live = dir.path().join("live.evs");
    let mut child = spawn(&[
        "pull",
        "--from",
        &url,
        "--stream",
        "PULLS",
        "--to",
        live.to_str().unwrap(),
        "--create",
        "64MiB",
        "--consumer",
        "live",
        "--quiet",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !live.exists() {
        assert!(
            Instant::now() < deadline,
            "the following pull never caught up"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the following pull stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_same(
        &support::events_of(&live),
        &events,
        "a following pull caught up",
    );
}

#[test]
fn pull_stops_at_a_message_that_cannot_follow_the_last_event_and_resumes_nothing_twice() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let mut client = nats_support::RawClient::connect(server.port);
    client.create_stream("MIXED", &["m.events"]);
    let stamp = |t: i64| t.to_string();
    for (t, payload) in [(100, "a"), (200, "b")] {
        client.publish(
            "m.events",
            &[("Evstream-Timestamp", &stamp(t))],
            payload.as_bytes(),
        );
    }
    // A message that did not come from a ship, its timestamp going back.
    client.publish("m.events", &[("Evstream-Timestamp", "50")], b"back in time");
    let target = dir.path().join("copy.evs");
    let pull = || {
        run_for(
            &[
                "pull",
                "--from",
                &server.url(),
                "--stream",
                "MIXED",
                "--to",
                target.to_str().unwrap(),
                "--create",
                "1MiB",
                "--until-end",
                "--quiet",
            ],
            Duration::from_secs(20),
        )
    };
    let temporary = dir.path().join(".copy.evs.pulling");
    let want = vec![(100, b"a".to_vec()), (200, b"b".to_vec())];
    for run in 0..2 {
        let (code, stderr) = pull();
        assert_eq!(code, Some(1), "run {run} stops at once: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        for part in ["message 3 of JetStream stream MIXED", "timestamp 50"] {
            assert!(
                stderr.contains(part),
                "run {run}: the error names {part}: {stderr}"
            );
        }
        assert!(
            !target.exists(),
            "run {run}: an unfinished copy has no name"
        );
        assert_same(&support::events_of(&temporary), &want, "before the message");
    }
}

#[test]
fn a_cluster_losing_a_node_mid_ship_loses_and_duplicates_nothing() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Server::cluster(&binary, dir.path());
    let urls = nodes.iter().map(Server::url).collect::<Vec<_>>().join(",");
    let source = dir.path().join("source.log");
    let events = write_log(&source, 30_000, 4096, 4);
    let args = [
        "ship",
        source.to_str().unwrap(),
        "--to",
        &urls,
        "--subject",
        "c.events",
        "--create-stream",
        "--replicas",
        "3",
        "--stream",
        "CLUSTER",
        "--until-end",
        "--quiet",
    ];
    // The cluster elects its JetStream leaders after start; until then creating the
    // stream fails, so ship an empty stream until it succeeds.
    let empty = dir.path().join("empty.evs");
    drop(StreamWriter::create(&empty, 4096).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut probe = args;
        probe[1] = empty.to_str().unwrap();
        if evstream(&probe).status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never took the stream"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let ship = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    nodes[0].stop();
    let output = ship.wait_with_output().unwrap();
    assert_ok(&output, "ship through a node loss");
    let copy = pull_all(&nodes[1].url(), "CLUSTER", dir.path(), "copy");
    assert_same(&copy, &events, "cluster with a node stopped");
}

#[test]
fn a_broker_down_at_start_is_one_clear_error_and_a_restart_mid_ship_recovers() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.evs");
    let events = write_stream(&source, 30_000, 4096, 5);

    let nobody = format!("nats://127.0.0.1:{}", nats_support::free_port());
    let down = evstream(&[
        "ship",
        source.to_str().unwrap(),
        "--to",
        &nobody,
        "--subject",
        "d.events",
    ]);
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: cannot reach NATS at"),
        "{stderr}"
    );

    let mut server = Server::start(&binary, dir.path(), None);
    let ship = Command::new(BIN)
        .args([
            "ship",
            source.to_str().unwrap(),
            "--to",
            &server.url(),
            "--subject",
            "d.events",
            "--create-stream",
            "--stream",
            "DOWN",
            "--until-end",
            "--window",
            "16",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.stop();
    std::thread::sleep(Duration::from_millis(1000));
    server.restart();
    let output = ship.wait_with_output().unwrap();
    assert_ok(&output, "ship across a broker restart");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("disconnected"),
        "the loss is reported: {stderr}"
    );
    let copy = pull_all(&server.url(), "DOWN", dir.path(), "copy");
    assert_same(&copy, &events, "broker restarted mid-ship");
}

#[test]
fn user_and_password_work_and_a_wrong_password_is_a_clear_error() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), Some(("shipper", "right")));
    let source = dir.path().join("source.evs");
    let events = write_stream(&source, 100, 1024, 6);
    let ship = |password: &str| {
        evstream(&[
            "ship",
            source.to_str().unwrap(),
            "--to",
            &server.url(),
            "--subject",
            "a.events",
            "--create-stream",
            "--stream",
            "AUTH",
            "--until-end",
            "--quiet",
            "--user",
            "shipper",
            "--password",
            password,
        ])
    };
    let wrong = ship("wrong");
    assert_eq!(wrong.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    assert_ok(&ship("right"), "ship with the right password");
    let target = dir.path().join("copy");
    assert_ok(
        &evstream(&[
            "pull",
            "--from",
            &server.url(),
            "--stream",
            "AUTH",
            "--to",
            target.to_str().unwrap(),
            "--create",
            "1MiB",
            "--until-end",
            "--quiet",
            "--user",
            "shipper",
            "--password",
            "right",
        ]),
        "pull with the right password",
    );
    assert_same(
        &support::events_of(&target),
        &events,
        "authenticated round trip",
    );
}

/// Runs `evstream` with `args`, killing it after `limit`; returns its exit code (`None` if
/// it had to be killed) and its standard error.
fn run_for(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn evstream");
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, std::fs::read_to_string(&err_path).unwrap())
}

#[test]
fn ship_onto_a_subject_whose_last_message_is_not_its_own_stops_with_one_clear_error() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let mut client = nats_support::RawClient::connect(server.port);
    let source = dir.path().join("source.evs");
    write_stream(&source, 100, 256, 7);
    let ship = |subject: &str, stream: &str| {
        run_for(
            &[
                "ship",
                source.to_str().unwrap(),
                "--to",
                &server.url(),
                "--subject",
                subject,
                "--stream",
                stream,
                "--cursor",
                stream,
                "--until-end",
                "--quiet",
            ],
            Duration::from_secs(20),
        )
    };

    // A message without an id, alone on a new subject.
    client.create_stream("BARE", &["bare.events"]);
    let sequence = client.publish("bare.events", &[], b"not from evstream");
    assert_eq!(sequence, 1);
    let (code, stderr) = ship("bare.events", "BARE");
    assert_eq!(code, Some(1), "ship stops at once with status 1: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for part in ["bare.events", "sequence 1", "no Nats-Msg-Id"] {
        assert!(stderr.contains(part), "the error names {part}: {stderr}");
    }
    assert_eq!(client.stream_messages("BARE"), 1, "nothing was published");

    // A message with another id after this source's whole stream.
    client.create_stream("AFTER", &["after.events"]);
    let (code, stderr) = ship("after.events", "AFTER");
    assert_eq!(code, Some(0), "the first ship: {stderr}");
    assert_eq!(client.stream_messages("AFTER"), 100);
    let sequence = client.publish(
        "after.events",
        &[("Nats-Msg-Id", "someone-else:7")],
        b"not from this source",
    );
    assert_eq!(sequence, 101);
    let (code, stderr) = ship("after.events", "AFTER");
    assert_eq!(code, Some(1), "the second ship stops at once: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for part in ["after.events", "sequence 101", "Nats-Msg-Id someone-else:7"] {
        assert!(stderr.contains(part), "the error names {part}: {stderr}");
    }
    assert_eq!(
        client.stream_messages("AFTER"),
        101,
        "nothing was published"
    );

    // A later message on another subject of the same JetStream stream: every publish
    // naming this source's last message as the one to follow would be refused.
    client.create_stream("MIXED", &["mixed.ours", "mixed.theirs"]);
    let (code, stderr) = ship("mixed.ours", "MIXED");
    assert_eq!(code, Some(0), "the first ship: {stderr}");
    let sequence = client.publish("mixed.theirs", &[], b"another subject");
    assert_eq!(sequence, 101);
    let (code, stderr) = ship("mixed.ours", "MIXED");
    assert_eq!(code, Some(1), "the second ship stops at once: {stderr}");
    for part in ["mixed.theirs", "sequence 101", "no Nats-Msg-Id"] {
        assert!(stderr.contains(part), "the error names {part}: {stderr}");
    }
    assert_eq!(
        client.stream_messages("MIXED"),
        101,
        "nothing was published"
    );
}

#[test]
fn ship_refuses_wildcard_and_malformed_subjects_as_usage_errors() {
    // Refused before any connection: no server is needed, and none listens on the port.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.evs");
    write_stream(&source, 3, 16, 8);
    let nobody = format!("nats://127.0.0.1:{}", nats_support::free_port());
    for subject in ["w.*", ">", "app.>", "a..b", ".a", "a.", "", "a b", "*"] {
        let output = evstream(&[
            "ship",
            source.to_str().unwrap(),
            "--to",
            &nobody,
            "--subject",
            subject,
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{subject:?}: {stderr}");
        assert!(stderr.contains("subject"), "{subject:?}: {stderr}");
        assert!(!stderr.contains("cannot reach"), "{subject:?}: {stderr}");
    }
}

#[test]
fn pull_through_connections_cut_mid_fetch_loses_and_duplicates_nothing() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let source = dir.path().join("source.evs");
    let events = write_stream(&source, 20_000, 256, 9);
    assert_ok(
        &evstream(&[
            "ship",
            source.to_str().unwrap(),
            "--to",
            &server.url(),
            "--subject",
            "cut.events",
            "--create-stream",
            "--stream",
            "CUT",
            "--until-end",
            "--quiet",
        ]),
        "ship",
    );
    // The pull reaches the server through a proxy that cuts each connection once the
    // server sent 512 KiB through it, in the middle of a fetch's messages: those after the
    // cut are lost in flight, and the server's deliveries after the reconnection follow
    // them. The whole stream is 7 MiB or so.
    let proxy = nats_support::Proxy::start(server.port, Some(512 << 10));
    let target = dir.path().join("copy.log");
    let err_path = dir.path().join("pull.err");
    let mut pull = Command::new(BIN)
        .args([
            "pull",
            "--from",
            &proxy.url(),
            "--stream",
            "CUT",
            "--to",
            target.to_str().unwrap(),
            "--create-log",
            "--segment-size",
            "1MiB",
            "--until-end",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = pull.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = pull.kill();
            let _ = pull.wait();
            panic!(
                "the pull never finished: {}",
                std::fs::read_to_string(&err_path).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "pull failed ({status:?}): {stderr}");
    assert!(
        proxy.cuts() >= 3,
        "the connection was cut {} times",
        proxy.cuts()
    );
    assert!(
        stderr.contains("disconnected"),
        "the cuts are reported: {stderr}"
    );
    assert!(
        stderr.contains("last sequence 20000"),
        "the pull ends at the stream's last message: {stderr}"
    );
    assert_same(
        &read_log(&target),
        &events,
        "a pull through cut connections",
    );
}

#[test]
fn pull_passes_over_messages_the_stream_no_longer_holds() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let mut client = nats_support::RawClient::connect(server.port);
    client.create_stream("HOLES", &["h.events"]);
    for i in 1..=20i64 {
        let sequence = client.publish(
            "h.events",
            &[("Evstream-Timestamp", &(i * 10).to_string())],
            format!("m{i}").as_bytes(),
        );
        assert_eq!(sequence, i as u64);
    }
    // The first four purged (the stream starts at 5), and three deleted inside, the last
    // message among them: sequences a pull never gets, and must not wait for.
    client.purge_below("HOLES", 5);
    for sequence in [8, 9, 15, 20] {
        client.delete_message("HOLES", sequence);
    }
    let want: Events = (5..20i64)
        .filter(|i| ![8, 9, 15].contains(i))
        .map(|i| (i * 10, format!("m{i}").into_bytes()))
        .collect();
    let target = dir.path().join("copy.evs");
    let pull = || {
        run_for(
            &[
                "pull",
                "--from",
                &server.url(),
                "--stream",
                "HOLES",
                "--to",
                target.to_str().unwrap(),
                "--create",
                "1MiB",
                "--until-end",
            ],
            Duration::from_secs(30),
        )
    };
    let (code, stderr) = pull();
    assert_eq!(code, Some(0), "the pull ends: {stderr}");
    assert!(
        !stderr.contains("retrying"),
        "a gap the stream holds nothing in is no failure: {stderr}"
    );
    assert_same(
        &support::events_of(&target),
        &want,
        "the messages the stream holds",
    );

    // A message published after the holes follows them in the next pull.
    client.publish("h.events", &[("Evstream-Timestamp", "1000")], b"m21");
    let (code, stderr) = pull();
    assert_eq!(code, Some(0), "the second pull ends: {stderr}");
    let mut want = want;
    want.push((1000, b"m21".to_vec()));
    assert_same(&support::events_of(&target), &want, "after the second pull");
}

#[test]
fn pull_refuses_to_resume_from_a_stream_made_again_or_another_stream() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&binary, dir.path(), None);
    let mut client = nats_support::RawClient::connect(server.port);
    let publish = |client: &mut nats_support::RawClient, from: i64, to: i64| {
        for i in from..to {
            client.publish(
                "app.events",
                &[("Evstream-Timestamp", &(i * 10).to_string())],
                format!("m{i}").as_bytes(),
            );
        }
    };
    let want = |to: i64| -> Events {
        (0..to)
            .map(|i| (i * 10, format!("m{i}").into_bytes()))
            .collect()
    };
    client.create_stream("APP", &["app.events"]);
    publish(&mut client, 0, 100);
    let target = dir.path().join("copy.log");
    let record = target.join("pull.evstream-pull");
    let url = server.url(); // the same after a restart
    let pull = |stream: &str| {
        run_for(
            &[
                "pull",
                "--from",
                &url,
                "--stream",
                stream,
                "--to",
                target.to_str().unwrap(),
                "--create-log",
                "--until-end",
                "--quiet",
            ],
            Duration::from_secs(30),
        )
    };
    let (code, stderr) = pull("APP");
    assert_eq!(code, Some(0), "the first pull: {stderr}");
    assert_same(&read_log(&target), &want(100), "the first pull");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.starts_with("stream=APP\ncreated="),
        "the record names the stream: {text}"
    );

    // A restart of the server keeps the stream's identity: the pull resumes.
    server.restart();
    let mut client = nats_support::RawClient::connect(server.port);
    publish(&mut client, 100, 110);
    let (code, stderr) = pull("APP");
    assert_eq!(code, Some(0), "the pull after a restart: {stderr}");
    assert_same(&read_log(&target), &want(110), "after a server restart");

    // A record of an earlier version names no stream: it is read as before, and the next
    // one names the stream.
    let text = std::fs::read_to_string(&record).unwrap();
    let legacy: String = text
        .lines()
        .filter(|l| !l.starts_with("stream=") && !l.starts_with("created="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&record, legacy).unwrap();
    publish(&mut client, 110, 120);
    let (code, stderr) = pull("APP");
    assert_eq!(code, Some(0), "the pull from an earlier record: {stderr}");
    assert_same(&read_log(&target), &want(120), "from an earlier record");
    assert!(
        std::fs::read_to_string(&record)
            .unwrap()
            .starts_with("stream=APP\n")
    );

    // The stream deleted and made again: its sequences start again at 1.
    client.delete_stream("APP");
    client.create_stream("APP", &["app.events"]);
    publish(&mut client, 1000, 1150);
    let (code, stderr) = pull("APP");
    assert_eq!(code, Some(1), "a stream made again is refused: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for part in [
        "pull.evstream-pull",
        "JetStream stream APP",
        "deleted and made again",
    ] {
        assert!(stderr.contains(part), "the error names {part}: {stderr}");
    }
    assert_same(&read_log(&target), &want(120), "nothing appended");

    // Another stream into the same target, under the same consumer name.
    client.create_stream("OTHER", &["other.events"]);
    client.publish("other.events", &[("Evstream-Timestamp", "99999")], b"o");
    let (code, stderr) = pull("OTHER");
    assert_eq!(code, Some(1), "another stream is refused: {stderr}");
    assert!(stderr.contains("not stream OTHER"), "{stderr}");
    assert_same(&read_log(&target), &want(120), "nothing appended");
}

#[test]
fn ship_of_a_stream_file_created_again_does_not_start_from_the_earlier_files_cursor() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let source = dir.path().join("app.evs");
    let cursor = dir.path().join("app.evs.ship.shipper");
    let ship = |subject: &str, stream: &str| {
        run_for(
            &[
                "ship",
                source.to_str().unwrap(),
                "--to",
                &server.url(),
                "--subject",
                subject,
                "--create-stream",
                "--stream",
                stream,
                "--cursor",
                "shipper",
                "--until-end",
            ],
            Duration::from_secs(30),
        )
    };
    write_stream(&source, 100, 256, 10);
    let (code, stderr) = ship("day1.events", "DAY1");
    assert_eq!(code, Some(0), "the first ship: {stderr}");
    let first = std::fs::read_to_string(&cursor).unwrap();
    assert!(
        first.contains("\nsource="),
        "the cursor names its file: {first}"
    );

    // The application starts a new file under the same name, shorter than the first
    // cursor's position: that cursor must not be where the new file's ship starts.
    std::fs::remove_file(&source).unwrap();
    let events = write_stream(&source, 150, 8, 11);
    let (code, stderr) = ship("day2.events", "DAY2");
    assert_eq!(code, Some(0), "the second ship: {stderr}");
    assert!(
        stderr.contains("cursor") && stderr.contains("not used"),
        "the earlier file's cursor is reported: {stderr}"
    );
    assert!(
        stderr.contains("shipping from position 24 (the start of the source)"),
        "{stderr}"
    );
    assert_same(
        &pull_all(&server.url(), "DAY2", dir.path(), "day2"),
        &events,
        "the new file's ship",
    );
    let second = std::fs::read_to_string(&cursor).unwrap();
    assert_ne!(second, first, "the cursor names the new file");

    // An earlier evstream's cursor (no `source=` line) within the file is still used.
    let end = second
        .lines()
        .find_map(|l| l.strip_prefix("next="))
        .unwrap()
        .to_owned();
    std::fs::write(&cursor, format!("next={end}\n")).unwrap();
    let (code, stderr) = ship("day3.events", "DAY3");
    assert_eq!(code, Some(0), "a ship from an earlier cursor: {stderr}");
    assert!(
        stderr.contains(&format!("shipping from position {end} (the cursor)")),
        "{stderr}"
    );
}

#[test]
fn ship_resumes_after_a_server_restart_once_its_last_message_is_older_than_the_duplicate_window() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&binary, dir.path(), None);
    let mut client = nats_support::RawClient::connect(server.port);
    // A duplicate window of 1 s: a restart 1.5 s after the last publish forgets its id.
    client.create_stream_with(
        "WINDOW",
        &["w.events"],
        serde_json::json!({ "duplicate_window": 1_000_000_000u64 }),
    );
    let source = dir.path().join("source.evs");
    let events = make_events(200, 256, 12);
    let mut writer = StreamWriter::create(&source, 1 << 20).unwrap();
    let append = |writer: &mut StreamWriter, events: &[(i64, Vec<u8>)]| {
        for (t, p) in events {
            writer.append(*t, p).unwrap();
        }
        writer.flush().unwrap();
    };
    append(&mut writer, &events[..100]);
    let url = server.url(); // the same after a restart
    let ship = || {
        run_for(
            &[
                "ship",
                source.to_str().unwrap(),
                "--to",
                &url,
                "--subject",
                "w.events",
                "--stream",
                "WINDOW",
                "--until-end",
            ],
            Duration::from_secs(30),
        )
    };
    let (code, stderr) = ship();
    assert_eq!(code, Some(0), "the first ship: {stderr}");
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    append(&mut writer, &events[100..]);
    let (code, stderr) = ship();
    assert_eq!(
        code,
        Some(0),
        "the ship after the restart finishes: {stderr}"
    );
    assert!(
        !stderr.contains("wrong last"),
        "no publish is refused: {stderr}"
    );
    assert!(
        stderr.contains("(after the last event JetStream holds)"),
        "{stderr}"
    );
    let copy = pull_all(&server.url(), "WINDOW", dir.path(), "copy");
    assert_same(&copy, &events, "across a restart past the duplicate window");
}

#[test]
fn ship_to_a_stream_that_does_not_take_its_subject_stops_at_once_with_one_clear_error() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let mut client = nats_support::RawClient::connect(server.port);
    client.create_stream("APP", &["app.events", "audit.>"]);
    let source = dir.path().join("source.evs");
    write_stream(&source, 10, 64, 13);
    let url = server.url();
    let ship = |subject: &str, more: &[&str]| {
        let mut args = vec![
            "ship",
            source.to_str().unwrap(),
            "--to",
            &url,
            "--subject",
            subject,
            "--stream",
            "APP",
            "--quiet",
        ];
        args.extend(more);
        let started = Instant::now();
        let (code, stderr) = run_for(&args, Duration::from_secs(20));
        (code, stderr, started.elapsed())
    };
    for more in [
        &[][..],
        &["--until-end"],
        &["--create-stream", "--until-end"],
    ] {
        let (code, stderr, took) = ship("app.other", more);
        assert_eq!(code, Some(1), "{more:?}: stops with status 1: {stderr}");
        assert!(
            took < Duration::from_secs(10),
            "{more:?}: at once ({took:?})"
        );
        assert_eq!(stderr.lines().count(), 1, "{more:?}: one line: {stderr}");
        for part in [
            "error: JetStream stream APP does not take subject app.other",
            "its subjects: app.events, audit.>",
        ] {
            assert!(
                stderr.contains(part),
                "{more:?}: the error says {part}: {stderr}"
            );
        }
    }
    assert_eq!(client.stream_messages("APP"), 0, "nothing was published");

    // A subject the stream's wildcard takes is shipped to.
    let (code, stderr, _) = ship("audit.eu", &["--until-end"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(client.stream_messages("APP"), 10);
}

#[test]
fn ship_creates_a_stream_that_keeps_messages_for_less_than_the_duplicate_window() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let source = dir.path().join("source.evs");
    let events = write_stream(&source, 20, 64, 14);
    let url = server.url();
    // JetStream refuses a duplicate window (2 minutes by default) longer than the
    // stream's maximum age.
    let (code, stderr) = run_for(
        &[
            "ship",
            source.to_str().unwrap(),
            "--to",
            &url,
            "--subject",
            "short.events",
            "--create-stream",
            "--stream",
            "SHORT",
            "--max-age",
            "90s",
            "--until-end",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "a stream keeping messages 90 s: {stderr}");
    let copy = pull_all(&url, "SHORT", dir.path(), "copy");
    assert_same(&copy, &events, "a stream of a short maximum age");
}

#[test]
fn a_quiet_ships_cursor_catches_up_and_messages_aged_out_are_not_shipped_again() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let mut client = nats_support::RawClient::connect(server.port);
    // Messages kept 5 s, their ids 1 s.
    client.create_stream_with(
        "QUIET",
        &["q.events"],
        serde_json::json!({ "max_age": 5_000_000_000u64, "duplicate_window": 1_000_000_000u64 }),
    );
    let source = dir.path().join("source.evs");
    let events = make_events(10, 64, 15);
    let mut writer = StreamWriter::create(&source, 1 << 20).unwrap();
    let url = server.url();
    let args = [
        "ship",
        source.to_str().unwrap(),
        "--to",
        &url,
        "--subject",
        "q.events",
        "--stream",
        "QUIET",
        "--cursor",
        "shipper",
        "--quiet",
    ];
    let mut ship = spawn(&args);
    std::thread::sleep(Duration::from_millis(500));
    for (t, p) in &events {
        writer.append(*t, p).unwrap();
    }
    writer.flush().unwrap();
    let end = writer.write_offset();
    let first = pull_all(&url, "QUIET", dir.path(), "copy");

    // The source stays quiet: the cursor comes to the acknowledged end all the same.
    let cursor = dir.path().join("source.evs.ship.shipper");
    let saved = || {
        std::fs::read_to_string(&cursor)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("next=").and_then(|n| n.parse::<u64>().ok()))
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while saved() < end && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = saved();
    ship.kill().unwrap();
    ship.wait().unwrap();
    assert_same(&first, &events, "the first pull");
    assert_eq!(
        at, end,
        "the quiet ship's cursor is at the acknowledged end"
    );

    // The ship is killed, the messages age out, and the ship starts again: from its
    // cursor, shipping nothing again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.stream_messages("QUIET") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(client.stream_messages("QUIET"), 0, "the messages aged out");
    let mut again = args.to_vec();
    again.push("--until-end");
    let (code, stderr) = run_for(&again, Duration::from_secs(30));
    assert_eq!(code, Some(0), "the ship started again: {stderr}");
    assert_eq!(client.stream_messages("QUIET"), 0, "nothing shipped twice");
    let copy = pull_all(&url, "QUIET", dir.path(), "copy");
    assert_same(&copy, &events, "the pull after the ship started again");
}

/// Kills the child process when dropped (a failed assertion included).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_stream_lost_with_the_servers_store_is_made_again_or_stops_the_ship() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&binary, dir.path(), None);
    let url = server.url(); // the same after a restart
    let lose_store = |server: &mut Server| {
        server.stop();
        std::fs::remove_dir_all(&server.store).unwrap();
        server.restart();
    };
    let wait_for = |port: u16, stream: &str, count: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = nats_support::RawClient::connect(port);
        loop {
            let held = client.messages_if_any(stream);
            if held == Some(count) || Instant::now() >= deadline {
                return held;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let events = make_events(200, 64, 16);
    let append = |writer: &mut StreamWriter, events: &[(i64, Vec<u8>)]| {
        for (t, p) in events {
            writer.append(*t, p).unwrap();
        }
        writer.flush().unwrap();
    };

    // With --create-stream, the ship makes the stream again and goes on from its cursor.
    let source = dir.path().join("source.evs");
    let mut writer = StreamWriter::create(&source, 1 << 20).unwrap();
    append(&mut writer, &events[..100]);
    let ship = KillOnDrop(spawn(&[
        "ship",
        source.to_str().unwrap(),
        "--to",
        &url,
        "--subject",
        "lost.events",
        "--create-stream",
        "--stream",
        "LOST",
        "--cursor",
        "shipper",
    ]));
    assert_eq!(wait_for(server.port, "LOST", 100), Some(100), "shipped");
    std::thread::sleep(Duration::from_millis(1500)); // the cursor saved
    lose_store(&mut server);
    append(&mut writer, &events[100..]);
    assert_eq!(
        wait_for(server.port, "LOST", 100),
        Some(100),
        "the stream made again holds the events after the cursor"
    );
    drop(ship);
    let copy = pull_all(&url, "LOST", dir.path(), "copy");
    assert_same(&copy, &events[100..], "the stream made again");

    // Without it, the ship stops with one clear error instead of retrying for ever.
    let other = dir.path().join("other.evs");
    let mut writer = StreamWriter::create(&other, 1 << 20).unwrap();
    append(&mut writer, &events[..10]);
    let mut client = nats_support::RawClient::connect(server.port);
    client.create_stream("GONE", &["gone.events"]);
    let args = [
        "ship",
        other.to_str().unwrap(),
        "--to",
        &url,
        "--subject",
        "gone.events",
        "--stream",
        "GONE",
        "--quiet",
    ];
    let err_path = dir.path().join("stderr");
    let mut ship = KillOnDrop(
        Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    assert_eq!(wait_for(server.port, "GONE", 10), Some(10), "shipped");
    lose_store(&mut server);
    append(&mut writer, &events[10..20]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = ship.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "the ship stops: {stderr}"
    );
    assert!(
        stderr.contains("error: JetStream: stream GONE: it no longer exists"),
        "{stderr}"
    );
}

#[test]
fn an_event_too_large_to_publish_stops_the_ship_with_one_clear_error() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let mut client = nats_support::RawClient::connect(server.port);
    client.create_stream("WIDE", &["wide.events"]);
    client.create_stream_with(
        "NARROW",
        &["narrow.events"],
        serde_json::json!({ "max_msg_size": 1000 }),
    );
    let url = server.url();
    // Larger than the server's max_payload (1 MiB), and than NARROW's maximum message
    // size (1000 B), each after 5 events that fit.
    for (stream, subject, size) in [
        ("WIDE", "wide.events", 1_500_000usize),
        ("NARROW", "narrow.events", 2_000),
    ] {
        let source = dir.path().join(format!("{stream}.evs"));
        let mut writer = StreamWriter::create(&source, 4 << 20).unwrap();
        for i in 0..5i64 {
            writer.append(i, b"fits").unwrap();
        }
        let position = writer.write_offset();
        writer.append(5, &vec![7u8; size]).unwrap();
        writer.append(6, b"after").unwrap();
        writer.flush().unwrap();
        for more in [&[][..], &["--until-end"]] {
            let mut args = vec![
                "ship",
                source.to_str().unwrap(),
                "--to",
                &url,
                "--subject",
                subject,
                "--stream",
                stream,
                "--quiet",
            ];
            args.extend(more);
            let (code, stderr) = run_for(&args, Duration::from_secs(20));
            assert_eq!(code, Some(1), "{stream} {more:?}: the ship stops: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stream}: one line: {stderr}");
            let said = format!(
                "error: the event at position {position} ({size} B of payload) is too large to publish"
            );
            assert!(stderr.contains(&said), "{stream}: {stderr}");
            assert_eq!(
                client.stream_messages(stream),
                5,
                "{stream}: the events before it"
            );
        }
    }
}

#[test]
fn a_ship_with_a_window_above_the_clients_5000_acknowledgements_finishes() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&binary, dir.path(), None);
    let source = dir.path().join("source.evs");
    let events = write_stream(&source, 12_000, 64, 18);
    let url = server.url();
    let (code, stderr) = run_for(
        &[
            "ship",
            source.to_str().unwrap(),
            "--to",
            &url,
            "--subject",
            "wide.events",
            "--create-stream",
            "--stream",
            "WIDE",
            "--window",
            "10000",
            "--until-end",
            "--quiet",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "the ship finishes: {stderr}");
    let copy = pull_all(&url, "WIDE", dir.path(), "copy");
    assert_same(&copy, &events, "a window of 10,000");
}
