//! Opening damaged, torn and hostile files: recovery where the format allows it, a typed
//! error and an untouched file everywhere else.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use evstream::{
    Corruption, Error, HeaderProblem, StreamReader, StreamWriter, WriterOptions,
    format::STREAM_HEADER_LEN,
};

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    (dir, path)
}

/// Payloads with no zero bytes, so damage can never look like an unwritten sector.
fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((i * 7 + j) % 255) as u8 + 1).collect()
}

/// A stream of `n` events with `len`-byte payloads, all flushed; returns their offsets.
fn build(path: &Path, n: usize, len: usize) -> Vec<u64> {
    build_flushed(path, n, len, n)
}

/// A stream of `n` events with `len`-byte payloads of which the first `flushed` were
/// flushed (the durable watermark ends there); returns their offsets.
fn build_flushed(path: &Path, n: usize, len: usize, flushed: usize) -> Vec<u64> {
    let mut writer = StreamWriter::create(path, 64 << 10).unwrap();
    let offsets = (0..n)
        .map(|i| {
            if i == flushed {
                writer.flush().unwrap();
            }
            writer.append(i as i64, &payload(i, len)).unwrap()
        })
        .collect();
    if flushed == n {
        writer.flush().unwrap();
    }
    offsets
}

/// The end of the event area of the stream at `path`.
fn events_end(path: &Path) -> usize {
    let len = std::fs::metadata(path).unwrap().len();
    evstream::format::trailer_offset(len).unwrap() as usize
}

fn events(path: &Path) -> Vec<Vec<u8>> {
    let reader = StreamReader::open(path).unwrap();
    reader
        .iter()
        .map_while(|e| e.ok().map(|e| e.payload().to_vec()))
        .collect()
}

/// Leaves the stream at `path` as a writer that died while appending does: its dirty
/// limit past the write offset (a writer that closes brings it back to the offset). The
/// current trailer record is written again with the limit at the end of the event area.
fn died_while_writing(path: &Path) {
    use evstream::format::{TRAILER_RECORD_LEN, TRAILER_SLOT_LEN, Trailer, decode_trailer};
    use std::os::unix::fs::FileExt;
    use zerocopy::IntoBytes;
    let at = events_end(path) as u64;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut slots = [[0u8; TRAILER_RECORD_LEN]; 2];
    for (i, slot) in slots.iter_mut().enumerate() {
        file.read_exact_at(slot, at + i as u64 * TRAILER_SLOT_LEN)
            .unwrap();
    }
    let current = decode_trailer([&slots[0], &slots[1]], at).unwrap();
    let next = Trailer {
        sequence: current.sequence + 1,
        dirty_limit: at,
        ..current
    };
    let slot = at + Trailer::slot(next.sequence) * TRAILER_SLOT_LEN;
    file.write_all_at(next.encode().as_bytes(), slot).unwrap();
}

fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = std::fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).unwrap();
}

#[test]
fn torn_tail_is_truncated_reported_and_zeroed() {
    let (_dir, path) = temp();
    // 20 events of 300 bytes: events 0..=3 end before file offset 1536, and only they
    // were flushed.
    let offsets = build_flushed(&path, 20, 300, 4);
    let header_offset = std::fs::read(&path).unwrap()[..8].to_vec();
    // Power loss: the header reached the disk, the sectors from 1536 to 2560 did not.
    let mut data = std::fs::read(&path).unwrap();
    data[1536..2560].fill(0);
    std::fs::write(&path, &data).unwrap();
    let torn = offsets.iter().position(|&o| o + 316 > 1536).unwrap();
    assert_eq!(torn, 4);

    // Readers see the valid prefix, then an error naming the torn event.
    let mut reader = StreamReader::open(&path).unwrap();
    let seen: Vec<_> = reader.iter().collect();
    assert_eq!(seen.len(), torn + 1);
    assert!(matches!(
        seen.last().unwrap(),
        Err(Error::Corrupt { offset, .. }) if *offset == offsets[torn]
    ));

    assert_eq!(reader.durable_offset(), offsets[torn]);
    assert_eq!(reader.generation(), 0);
    // While a reader is open (its views borrow those bytes), recovery is refused and the
    // file left unchanged.
    let views: Vec<&[u8]> = reader
        .iter()
        .map_while(|e| e.ok().map(|e| e.payload()))
        .collect();
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        StreamWriter::open(&path),
        Err(Error::ReadersPresent { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(views.len(), torn, "the views still read what they read");
    assert_eq!(views[3], payload(3, 300));
    drop(views);
    assert!(reader.refresh().is_ok());
    drop(reader);
    let writer = StreamWriter::open(&path).unwrap();
    assert_eq!(writer.generation(), 1, "a recovery bumps the generation");
    assert_eq!(StreamReader::open(&path).unwrap().generation(), 1);
    let recovery = writer.recovery().clone();
    assert_eq!(recovery.torn_at.as_ref().map(|t| t.0), Some(offsets[torn]));
    assert_eq!(recovery.dropped_events, 20 - torn as u64);
    let old_end = u64::from_le_bytes(header_offset.try_into().unwrap());
    assert_eq!(recovery.dropped_bytes, old_end - offsets[torn]);
    assert_eq!(writer.event_count(), torn as u64);
    assert_eq!(writer.write_offset(), offsets[torn]);
    drop(writer);

    let data = std::fs::read(&path).unwrap();
    assert!(
        data[offsets[torn] as usize..events_end(&path)]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(
        events(&path),
        (0..torn).map(|i| payload(i, 300)).collect::<Vec<_>>()
    );
    // Recovering again changes nothing.
    let again = StreamWriter::open(&path).unwrap();
    assert!(again.recovery().is_clean());
    drop(again);
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn torn_tail_can_be_refused_for_inspection() {
    let (_dir, path) = temp();
    let offsets = build_flushed(&path, 5, 50, 4);
    patch(&path, offsets[4] as usize, &[0; 16]);
    let before = std::fs::read(&path).unwrap();
    let opts = WriterOptions::default().recover_torn_tail(false);
    assert!(matches!(
        StreamWriter::open_with(&path, opts),
        Err(Error::Corrupt { offset, watermark, .. })
            if offset == offsets[4] && watermark == offsets[4]
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// Issue 9, defect 1: a flipped bit inside flushed records that hold zero-filled sectors
/// was taken for a torn tail, and every later event was dropped.
#[test]
fn a_flipped_bit_in_flushed_data_never_drops_events() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    let record = |i: usize| {
        let mut r = format!("rec{i:05}:").into_bytes();
        r.resize(1100, 0);
        r
    };
    let offsets: Vec<u64> = (0..300)
        .map(|i| writer.append(i as i64, &record(i)).unwrap())
        .collect();
    writer.flush().unwrap();
    drop(writer);
    let at = offsets[20] as usize + 16 + 600;
    let mut data = std::fs::read(&path).unwrap();
    data[at] ^= 0x10;
    std::fs::write(&path, &data).unwrap();

    // A writer that checks the durable events refuses, naming the event and the
    // watermark, and changes nothing.
    let checked = StreamWriter::open_with(&path, WriterOptions::default().check_durable(true));
    match checked {
        Err(Error::Corrupt {
            offset, watermark, ..
        }) => {
            assert_eq!(offset, offsets[20]);
            assert_eq!(watermark, offsets[299] + 16 + 1100);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), data);
    // The default writer checks only what lies above the watermark: it drops nothing,
    // changes no flushed byte, and appends after the last event.
    let mut writer = StreamWriter::open(&path).unwrap();
    assert!(writer.recovery().is_clean(), "{:?}", writer.recovery());
    assert_eq!(writer.event_count(), 300);
    writer.append(300, b"more").unwrap();
    writer.flush().unwrap();
    drop(writer);
    let after = std::fs::read(&path).unwrap();
    let end = offsets[299] as usize + 16 + 1100;
    assert_eq!(after[24..end], data[24..end], "flushed bytes changed");
    // Readers report the damage at the event, with the watermark.
    let reader = StreamReader::open(&path).unwrap();
    let verification = reader.verify().unwrap();
    assert_eq!(verification.events, 20);
    assert_eq!(verification.damage.map(|d| d.0), Some(offsets[20]));
    let message = reader.iter().nth(20).unwrap().unwrap_err().to_string();
    assert!(message.contains("durable watermark"), "{message}");
}

#[test]
fn damage_followed_by_valid_events_is_refused_and_untouched() {
    let (_dir, path) = temp();
    let offsets = build(&path, 5, 40);
    // Flip one payload bit of event 2: events 3 and 4 still parse after it.
    let at = offsets[2] as usize + 16 + 5;
    let mut data = std::fs::read(&path).unwrap();
    data[at] ^= 0x04;
    std::fs::write(&path, &data).unwrap();
    let checked = || StreamWriter::open_with(&path, WriterOptions::default().check_durable(true));
    match checked() {
        Err(Error::Corrupt {
            path: p,
            offset,
            reason: Corruption::ChecksumMismatch { .. },
            ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(offset, offsets[2]);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(events(&path).len(), 2);
    // The message names the file, the offset and the reason.
    let message = checked().unwrap_err().to_string();
    assert!(message.contains("s.evs"), "{message}");
    assert!(message.contains(&offsets[2].to_string()), "{message}");
    assert!(message.contains("checksum mismatch"), "{message}");
}

#[test]
fn event_count_is_repaired_from_the_watermark_and_the_events() {
    let (_dir, path) = temp();
    build_flushed(&path, 6, 10, 3);
    // One short (a writer stopped between its two stores), or any other value (a crash
    // between the two stores of a recovery, issue 9 defect 7): the count is derived data,
    // the durable count plus the events above the watermark, and is repaired.
    for lie in [5u64, 0, 4, 7, u64::MAX] {
        patch(&path, 8, &lie.to_le_bytes());
        let check = StreamReader::open(&path).unwrap().verify().unwrap();
        assert_eq!(
            check.is_ok(),
            lie == 5,
            "one short is what a live writer shows"
        );
        assert_eq!(check.events, 6);
        let writer = StreamWriter::open(&path).unwrap();
        assert!(writer.recovery().count_repaired, "count {lie}");
        assert_eq!(writer.event_count(), 6);
        drop(writer);
        assert_eq!(
            u64::from_le_bytes(std::fs::read(&path).unwrap()[8..16].try_into().unwrap()),
            6
        );
        assert!(StreamReader::open(&path).unwrap().verify().unwrap().is_ok());
    }
}

#[test]
fn stale_bytes_of_an_unpublished_append_are_cleared() {
    let (_dir, path) = temp();
    let offsets = build(&path, 3, 100);
    let end = 24 + 3 * 116;
    // A writer that died after writing a whole event but before publishing it.
    let (_d2, other) = temp();
    let more = build(&other, 4, 100);
    let ghost = std::fs::read(&other).unwrap()[more[3] as usize..more[3] as usize + 116].to_vec();
    patch(&path, end, &ghost);
    died_while_writing(&path);
    let writer = StreamWriter::open(&path).unwrap();
    assert!(writer.recovery().stale_bytes_cleared >= 116);
    assert_eq!(writer.write_offset(), end as u64);
    drop(writer);
    let data = std::fs::read(&path).unwrap();
    assert!(data[end..events_end(&path)].iter().all(|&b| b == 0));
    assert_eq!(events(&path).len(), offsets.len());
}

/// A fill of `append_with` that panicked, the panic caught and the writer kept (as a
/// `SharedLogWriter` does, whose lock survives a panic), left its payload's bytes past
/// the write offset. The writer's drop lowered the dirty limit over them, so that the
/// next open never cleared them. Now the next open clears them, as it clears any byte an
/// unpublished append left.
#[test]
fn a_fill_that_panicked_leaves_no_bytes_the_next_open_keeps() {
    let (_dir, path) = temp();
    let offsets = build(&path, 3, 100);
    let end = 24 + 3 * 116;
    let mut writer = StreamWriter::open(&path).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        writer.append_with(1_000, 1_000, |buf| {
            buf.fill(7);
            panic!("the fill fails");
        })
    }));
    assert!(caught.is_err());
    assert_eq!(writer.write_offset(), end as u64);
    drop(writer);
    let writer = StreamWriter::open(&path).unwrap();
    assert!(
        writer.recovery().stale_bytes_cleared >= 1_000,
        "{:?}",
        writer.recovery()
    );
    drop(writer);
    let data = std::fs::read(&path).unwrap();
    assert!(data[end..events_end(&path)].iter().all(|&b| b == 0));
    assert_eq!(events(&path).len(), offsets.len());
}

#[test]
fn every_bit_flip_is_detected_or_yields_a_valid_prefix() {
    let (dir, path) = temp();
    let lens = [0usize, 1, 17, 40, 3];
    let mut writer = StreamWriter::create(&path, 1536).unwrap();
    for (i, &len) in lens.iter().enumerate() {
        writer.append(i as i64 * 3, &payload(i, len)).unwrap();
    }
    writer.flush().unwrap();
    let end = writer.write_offset() as usize;
    drop(writer);
    let checking = || WriterOptions::default().check_durable(true);
    let original = std::fs::read(&path).unwrap();
    let expected: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| payload(i, l))
        .collect();
    let copy = dir.path().join("copy.evs");
    let (mut refused, mut recovered, mut clean) = (0, 0, 0);
    for bit in 0..end * 8 {
        let mut data = original.clone();
        data[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&copy, &data).unwrap();

        // Readers: a prefix of the original events, never a changed payload.
        if let Ok(reader) = StreamReader::open(&copy) {
            let mut seen = Vec::new();
            for event in reader.iter() {
                match event {
                    Ok(e) => seen.push(e.payload().to_vec()),
                    Err(Error::Corrupt { .. }) => break,
                    Err(other) => panic!("bit {bit}: unexpected {other}"),
                }
            }
            assert!(seen.len() <= expected.len(), "bit {bit}");
            assert_eq!(seen[..], expected[..seen.len()], "bit {bit}");
            let _ = reader.verify();
        }

        match StreamWriter::open_with(&copy, checking()) {
            Ok(w) => {
                let n = w.event_count() as usize;
                if w.recovery().is_clean() {
                    clean += 1;
                } else {
                    recovered += 1;
                }
                drop(w);
                let after = events(&copy);
                assert_eq!(after.len(), n, "bit {bit}");
                assert_eq!(after[..], expected[..n], "bit {bit}");
                // A flip inside an event's bytes never leaves that event readable.
                if bit / 8 >= 24 {
                    let (mut start, mut index) = (24usize, 0usize);
                    while start + 16 + lens[index] <= bit / 8 {
                        start += 16 + lens[index];
                        index += 1;
                    }
                    assert!(n <= index, "bit {bit}: damaged event {index} survived");
                }
            }
            Err(Error::Corrupt { .. } | Error::BadHeader { .. }) => {
                refused += 1;
                assert_eq!(std::fs::read(&copy).unwrap(), data, "bit {bit}");
            }
            Err(other) => panic!("bit {bit}: unexpected error {other}"),
        }
    }
    // Only the start timestamp (header bytes 16..24) is informational and unchecked:
    // its 64 flips, and no others, open as a clean stream.
    println!("{refused} refused, {recovered} recovered, {clean} opened clean");
    assert_eq!(clean, 64);
    assert!(refused > end * 8 / 2, "most flips must be refused");
}

#[test]
fn bad_inputs_get_typed_errors_and_stay_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);

    // Files that are not streams: refused by identity before anything else is read.
    let foreign: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short", vec![1; 23]),
        ("header_only", {
            // Plausible as a version 1 header: offset 24, count 0.
            let mut v = vec![0; 4096];
            v[..8].copy_from_slice(&24u64.to_le_bytes());
            v
        }),
    ];
    for (name, bytes) in &foreign {
        let path = p(name);
        std::fs::write(&path, bytes).unwrap();
        let w = StreamWriter::open(&path).unwrap_err();
        assert!(matches!(w, Error::NotAStream { .. }), "{name}: {w:?}");
        assert!(matches!(
            StreamReader::open(&path),
            Err(Error::NotAStream { .. })
        ));
        assert!(w.to_string().contains(name), "{w}");
        assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{name} changed");
    }

    // Streams whose header lies.
    let stream = p("template.evs");
    drop(StreamWriter::create(&stream, 4096).unwrap());
    let template = std::fs::read(&stream).unwrap();
    let end = events_end(&stream) as u64;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("offset_past_end", {
            let mut v = template.clone();
            v[..8].copy_from_slice(&(end + 1).to_le_bytes());
            v
        }),
        ("offset_before_events", {
            let mut v = template.clone();
            v[..8].copy_from_slice(&23u64.to_le_bytes());
            v
        }),
        ("offset_huge", {
            let mut v = template.clone();
            v[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            v
        }),
        ("size_overflows", {
            let mut v = template.clone();
            v[..8].copy_from_slice(&100u64.to_le_bytes());
            v[8..16].copy_from_slice(&1u64.to_le_bytes());
            v[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
            v
        }),
    ];
    for (name, bytes) in &cases {
        let path = p(name);
        std::fs::write(&path, bytes).unwrap();
        let inspect = WriterOptions::default().recover_torn_tail(false);
        let w = StreamWriter::open_with(&path, inspect).unwrap_err();
        let r = StreamReader::open(&path).map(|r| r.iter().filter(|e| e.is_err()).count());
        match *name {
            "size_overflows" => {
                assert!(matches!(
                    w,
                    Error::Corrupt {
                        offset: 24,
                        reason: Corruption::TruncatedPayload {
                            size: u32::MAX,
                            available: 60
                        },
                        ..
                    }
                ));
                assert_eq!(r.unwrap(), 1);
            }
            _ => {
                assert!(
                    matches!(
                        w,
                        Error::BadHeader {
                            reason: HeaderProblem::WriteOffsetOutOfRange { .. },
                            ..
                        }
                    ),
                    "{name}: {w:?}"
                );
                assert!(matches!(r, Err(Error::BadHeader { .. })));
            }
        }
        assert!(w.to_string().contains(name), "{w}");
        assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{name} changed");
    }

    // Random bytes of many lengths: a typed error or a valid (possibly empty) stream.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in (0..300).chain([4096, 65536]) {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let path = p("random");
        std::fs::write(&path, &bytes).unwrap();
        let _ = StreamWriter::open(&path);
        if let Ok(reader) = StreamReader::open(&path) {
            let _ = reader.iter().count();
            let _ = reader.iter_unverified().count();
            let _ = reader.verify();
        }
        let after = std::fs::read(&path).unwrap();
        if after != bytes {
            // Only an accepted stream may change, and only past its valid events.
            let reader = StreamReader::open(&path).unwrap();
            assert!(
                reader.verify().unwrap().is_ok(),
                "len {len}: changed but not valid"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }

    // Things that are not stream files.
    let missing = p("missing.evs");
    assert!(matches!(
        StreamWriter::open(&missing),
        Err(Error::Io { op: "open", ref path, ref source }) if *path == missing
            && source.kind() == std::io::ErrorKind::NotFound
    ));
    assert!(matches!(
        StreamReader::open(&missing),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        StreamWriter::open(dir.path()),
        Err(Error::NotAFile {
            kind: "directory",
            ..
        })
    ));
    assert!(matches!(
        StreamReader::open(dir.path()),
        Err(Error::NotAFile {
            kind: "directory",
            ..
        })
    ));
    let fifo = p("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.map(|s| s.success()).unwrap_or(false) {
        assert!(matches!(
            StreamReader::open(&fifo),
            Err(Error::NotAFile { kind: "FIFO", .. })
        ));
        assert!(matches!(
            StreamWriter::open(&fifo),
            Err(Error::NotAFile { kind: "FIFO", .. }) | Err(Error::Io { .. })
        ));
        assert!(matches!(
            StreamWriter::create(&fifo, 4096),
            Err(Error::AlreadyExists { .. })
        ));
    } else {
        println!("skipped the FIFO case: mkfifo is not available");
    }
}

#[test]
fn no_permission_is_an_io_error_and_changes_nothing() {
    let (_dir, path) = temp();
    build(&path, 2, 10);
    let before = std::fs::read(&path).unwrap();
    // As root, mode bits do not stop a write open; the immutable attribute does.
    let immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let restricted = if immutable {
        true
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).is_err()
    };
    if !restricted {
        println!("skipped: cannot make the file unwritable here (root without chattr)");
        return;
    }
    let err = StreamWriter::open(&path).unwrap_err();
    assert!(
        matches!(err, Error::Io { op: "open", ref source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied),
        "{err:?}"
    );
    // Reading needs no write permission.
    assert_eq!(events(&path).len(), 2);
    if immutable {
        std::process::Command::new("chattr")
            .arg("-i")
            .arg(&path)
            .status()
            .unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn create_refuses_paths_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/dir/s.evs");
    assert!(matches!(
        StreamWriter::create(&missing_dir, 4096),
        Err(Error::Io { op: "create", .. })
    ));
    assert!(matches!(
        StreamWriter::create(dir.path(), 4096),
        Err(Error::AlreadyExists { .. })
    ));
    let smallest = dir.path().join("h.evs");
    let mut w = StreamWriter::create(&smallest, 1536).unwrap();
    assert_eq!(w.capacity(), 1536);
    assert_eq!(w.available(), 512 - 24);
    w.append(1, &[7; 512 - 24 - 16]).unwrap();
    assert!(matches!(w.append(1, b""), Err(Error::Full { .. })));
    assert_eq!(512, w.write_offset());
    assert_eq!(STREAM_HEADER_LEN, 24);
}

/// A version 1 stream: the header and events `stdio` writes, zeros to `len`.
fn version1(path: &Path, events: &[(i64, &[u8])], len: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut writer =
        evstream::stdio::EventWriter::new(std::io::Cursor::new(&mut bytes), 1).unwrap();
    for (ts, payload) in events {
        writer.append(*ts, payload).unwrap();
    }
    writer.finish().unwrap();
    bytes.resize(len, 0);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn version1_streams_are_refused_until_upgraded() {
    let (_dir, path) = temp();
    let events: Vec<(i64, &[u8])> = vec![(1, b"one"), (2, b"two"), (2, b"three")];
    let bytes = version1(&path, &events, 8192);
    // Refused, naming the upgrade, and unchanged.
    let err = StreamWriter::open(&path).unwrap_err();
    assert!(matches!(err, Error::NotAStream { .. }), "{err:?}");
    assert!(err.to_string().contains("evstream upgrade"), "{err}");
    assert!(matches!(
        StreamReader::open(&path),
        Err(Error::NotAStream { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // Upgraded: the events are durable, the stream appendable; upgrading again is a no-op.
    assert!(evstream::upgrade_v1(&path).unwrap());
    let after = std::fs::read(&path).unwrap();
    assert_eq!(
        after[..8192 - 1024],
        bytes[..8192 - 1024],
        "only the trailer was written"
    );
    assert!(!evstream::upgrade_v1(&path).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), after);
    let reader = StreamReader::open(&path).unwrap();
    assert_eq!(reader.durable_offset(), reader.write_offset());
    assert_eq!(reader.verify().unwrap().events, 3);
    drop(reader);
    let mut writer = StreamWriter::open(&path).unwrap();
    assert_eq!(writer.event_count(), 3);
    writer.append(3, b"four").unwrap();
    writer.flush().unwrap();
    drop(writer);
    assert_eq!(events_of(&path), 4);
}

#[test]
fn upgrade_refuses_without_changing_a_byte() {
    let (dir, _) = temp();
    // The events reach into the trailer's place (the last two sectors).
    let full = dir.path().join("full.evs");
    let big = vec![7u8; 1200];
    let bytes = version1(&full, &[(1, &big)], 2048);
    assert!(matches!(
        evstream::upgrade_v1(&full),
        Err(Error::NoRoomForTrailer { .. })
    ));
    assert_eq!(std::fs::read(&full).unwrap(), bytes);
    // Non-zero bytes in the trailer's place.
    let busy = dir.path().join("busy.evs");
    let mut bytes = version1(&busy, &[(1, b"x")], 4096);
    bytes[4000] = 1;
    std::fs::write(&busy, &bytes).unwrap();
    assert!(matches!(
        evstream::upgrade_v1(&busy),
        Err(Error::NoRoomForTrailer { .. })
    ));
    assert_eq!(std::fs::read(&busy).unwrap(), bytes);
    // A damaged event.
    let damaged = dir.path().join("damaged.evs");
    let mut bytes = version1(&damaged, &[(1, b"abc"), (2, b"def")], 4096);
    bytes[24 + 16 + 1] ^= 1;
    std::fs::write(&damaged, &bytes).unwrap();
    assert!(matches!(
        evstream::upgrade_v1(&damaged),
        Err(Error::Corrupt { offset: 24, .. })
    ));
    assert_eq!(std::fs::read(&damaged).unwrap(), bytes);
    // Not a stream at all.
    let words = dir.path().join("words.bin");
    let bytes: Vec<u8> = (0..4096u32)
        .flat_map(|i| (i * 7 + 4096).to_le_bytes())
        .collect();
    std::fs::write(&words, &bytes).unwrap();
    assert!(evstream::upgrade_v1(&words).is_err());
    assert_eq!(std::fs::read(&words).unwrap(), bytes);
}

fn events_of(path: &Path) -> usize {
    events(path).len()
}

/// Issue 9, defect 5: a reader or follower whose stream was recovered under it is told,
/// never left to skip events. On Linux the reader-presence lock keeps recovery from
/// running under an open reader at all; this simulates one that did (another
/// implementation, or a platform without OFD locks) by writing what it writes: a trailer
/// with the next generation, and a write offset moved back.
#[test]
fn a_recovery_under_a_reader_ends_refresh_follow_and_iteration() {
    use std::os::unix::fs::FileExt;
    use zerocopy::IntoBytes;
    let (_dir, path) = temp();
    let offsets = build_flushed(&path, 3, 10, 1);
    let mut reader = StreamReader::open(&path).unwrap();
    assert_eq!(reader.generation(), 0);

    let len = std::fs::metadata(&path).unwrap().len();
    let trailer_at = evstream::format::trailer_offset(len).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let current = {
        let reader = StreamReader::open(&path).unwrap();
        evstream::format::Trailer {
            sequence: 100,
            durable_offset: reader.durable_offset(),
            durable_count: 1,
            durable_last_timestamp: Some(0),
            generation: 1,
            dirty_limit: trailer_at,
            sealed: false,
            seed: reader.crc_seed(),
        }
    };
    let slot = trailer_at + evstream::format::Trailer::slot(current.sequence) * 512;
    file.write_all_at(current.encode().as_bytes(), slot)
        .unwrap();
    file.write_all_at(&offsets[1].to_le_bytes(), 0).unwrap();

    let mut follow = reader.follow(offsets[2]).unwrap();
    assert!(matches!(
        follow.next_timeout(std::time::Duration::ZERO),
        Err(Error::Recovered { was: 0, now: 1, .. })
    ));
    assert!(matches!(
        reader.iter().next(),
        Some(Err(Error::Recovered { was: 0, now: 1, .. }))
    ));
    assert!(matches!(
        reader.refresh(),
        Err(Error::Recovered { was: 0, now: 1, .. })
    ));
    // A reader opened now sees the new generation.
    assert_eq!(StreamReader::open(&path).unwrap().generation(), 1);
}

/// A writer that opened a stream holding events past its watermark checks them on the
/// device at its first flush (they may be the remains of a failed write-back). It checks
/// the file it has open: renamed meanwhile (a log's segment put in place by its roll, a
/// stream moved by its user), the flush succeeds and makes every event durable; with
/// another stream created at the old name, it neither checks that one nor blames it.
#[test]
fn the_first_flush_after_a_recovery_checks_the_file_it_has_open_whatever_its_name() {
    for replaced in [false, true] {
        let (dir, path) = temp();
        build_flushed(&path, 10, 40, 4);
        let mut writer = StreamWriter::open(&path).unwrap();
        let moved = dir.path().join("moved.evs");
        std::fs::rename(&path, &moved).unwrap();
        if replaced {
            build(&path, 3, 40);
        }
        writer.append(100, &payload(10, 40)).unwrap();
        writer.flush().unwrap();
        writer.append(101, &payload(11, 40)).unwrap();
        writer.flush().unwrap();
        drop(writer);
        let reader = StreamReader::open(&moved).unwrap();
        assert_eq!(reader.iter().count(), 12, "replaced: {replaced}");
        assert_eq!(
            StreamWriter::open(&moved).unwrap().recovery(),
            &evstream::Recovery::default(),
            "every event under the watermark (replaced: {replaced})"
        );
        if replaced {
            assert_eq!(events(&path).len(), 3, "the stream at the old name");
        }
    }
}
