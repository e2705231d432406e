//! Full disks: streams and logs created and filled on small tmpfs mounts, and a flush that
//! fails because the device under the file system ran out of space.
//!
//! Mounting needs root (CI runs as root). Where a mount is not allowed each test prints
//! why it is skipped and passes.
//!
//! - `create` that cannot reserve its blocks fails with `ENOSPC` from `preallocate` and
//!   leaves nothing behind.
//! - Once created, a stream can be filled to capacity on a file system with no free
//!   block left, without `SIGBUS`. The appends run in a child process, so a `SIGBUS` is
//!   reported as a failure rather than killing the test harness; a control run that
//!   punches the stream's reserved blocks out first shows that the child would die.
//! - A flush whose write-back fails (ext4 on a loop device whose backing file cannot
//!   grow) returns the error, and the writer then refuses appends and flushes: the
//!   kernel reports a write-back error only once, and a second `msync` succeeds although
//!   the data never reached the disk. A failure the writer's background sync of a
//!   raised dirty limit learned of (the kernel tells one sync of the file, whatever its
//!   range) fails the next flush too.
//! - A log that fills its disk refuses the append that needs a new segment, keeps every
//!   event it acknowledged, and continues once there is room; one that cannot write a
//!   sealed segment's index carries on without it, and so does a new writer's open
//!   (a file system without a free inode); the failed write-back of a segment it
//!   rolled into names the segment as it is named; one that cannot be created leaves
//!   nothing that stops a retry; a cursor commit that fails keeps the last position.
//! - Threads sharing a log whose device fails: no flush says `Ok` once one failed, and
//!   every event a flush said `Ok` for reads back (where the file system turns
//!   read-only; a full loop device loses blocks that `msync` said were written).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use evstream::{Error, Prefault, StreamReader, StreamWriter, WriterOptions};
use reliability_support::{Workload, assert_prefix_of, child_test, read_stream};

/// A tmpfs mounted on a fresh temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`, or says why it cannot.
    fn mount(bytes: u64) -> Result<Self, String> {
        Self::mount_with(&format!("size={bytes}"))
    }

    /// Mounts a tmpfs with the mount options `options`, or says why it cannot.
    fn mount_with(options: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(self.dir.path());
    }
}

/// Unmounts `at`, waiting up to 5 s while it is busy: a log writer dropped just before
/// (on a panic too) leaves its mappings to a thread that unmaps them after it returns.
fn unmount(at: &Path) -> bool {
    for _ in 0..500 {
        let done = Command::new("umount")
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if done {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    eprintln!("could not unmount {}", at.display());
    false
}

/// Mounts a tmpfs or prints why the test is skipped.
macro_rules! tmpfs_or_skip {
    ($bytes:expr) => {
        match Tmpfs::mount($bytes) {
            Ok(fs) => fs,
            Err(reason) => {
                eprintln!("skipped: {reason}");
                return;
            }
        }
    };
}

/// Waits up to a second for the log at `path` to have segment 1 prepared
/// (`.next-00000001.evs`), and fails the test if it does not.
fn wait_for_prepared_segment_1(path: &Path) {
    let next = path.join(".next-00000001.evs");
    for _ in 0..500 {
        if next.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(next.exists(), "segment 1 was not prepared");
}

/// Writes to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = File::create(path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    // What a buffered write could not place is lost; make sure nothing is left to give.
    let _ = file.sync_all();
    written
}

/// Removes `filler` and waits until the file system has its room back: a child process
/// another test forks while the file is open keeps it until the child's `exec`, and a
/// loaded machine may delay that.
fn make_room(filler: &Path) {
    let len = std::fs::metadata(filler).unwrap().len();
    let dir = filler.parent().unwrap();
    std::fs::remove_file(filler).unwrap();
    for _ in 0..500 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut fields = text
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        let free = fields.next().unwrap_or(0) * fields.next().unwrap_or(0);
        if free >= len / 2 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!(
        "{} bytes did not come back after removing {}",
        len,
        filler.display()
    );
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn create_that_cannot_reserve_its_blocks_fails_cleanly() {
    let fs = tmpfs_or_skip!(1 << 20);
    let path = fs.path().join("big.evs");
    for capacity in [2 << 20, 1 << 30, (1 << 20) + 4096] {
        let err = StreamWriter::create(&path, capacity).unwrap_err();
        match &err {
            Error::Io { op, source, .. } => {
                assert_eq!(*op, "preallocate", "{err}");
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
            }
            other => panic!("capacity {capacity}: {other:?}"),
        }
        // Neither the stream nor its temporary file is left behind.
        assert!(entries(fs.path()).is_empty(), "{:?}", entries(fs.path()));
    }
    // With part of the space taken, a stream that fits in the rest is created and one
    // that does not is refused.
    let taken = fs.path().join("taken");
    std::fs::write(&taken, vec![1u8; 600 << 10]).unwrap();
    let err = StreamWriter::create(&path, 512 << 10).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: "preallocate",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(entries(fs.path()), ["taken"]);
    let writer = StreamWriter::create(&path, 256 << 10).unwrap();
    assert_eq!(writer.capacity(), 256 << 10);
    drop(writer);
    assert_eq!(entries(fs.path()), ["big.evs", "taken"]);
}

/// Child: create a stream in `EVSTREAM_FULL_DIR`, fill the file system, optionally punch
/// the stream's unused blocks out, then append until the stream is full.
#[test]
#[ignore = "child process of `appends_up_to_capacity_never_sigbus`"]
fn fill_child() {
    let Ok(dir) = std::env::var("EVSTREAM_FULL_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let path = dir.join("s.evs");
    let capacity = 1u64 << 20;
    let punch = std::env::var("EVSTREAM_FULL_PUNCH").is_ok();
    // The control prefaults nothing: a background prefaulter could map the punched pages
    // back in (allocating them) before the file system is full, and the control would
    // then not die (issue 9, defect 10).
    let options = if punch {
        WriterOptions::default().prefault(Prefault::Off)
    } else {
        WriterOptions::default()
    };
    let mut writer = StreamWriter::create_with(&path, capacity, options).unwrap();
    if punch {
        // The control: give the event area's reserved blocks back, as if `create` had not
        // reserved them.
        let events_end = evstream::format::trailer_offset(capacity).unwrap();
        let status = Command::new("fallocate")
            .args(["--punch-hole", "--offset", "4096", "--length"])
            .arg((events_end - 4096).to_string())
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let filler = fill(&dir.join("filler"));
    println!("FILLED {filler}");
    let workload = Workload::mixed(11);
    loop {
        let index = writer.event_count();
        match writer.append(workload.timestamp(index), &workload.payload(index)) {
            Ok(_) => {}
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("append {index}: {e}"),
        }
    }
    writer.flush().unwrap();
    let count = writer.event_count();
    drop(writer);
    let contents = read_stream(&path).unwrap();
    assert!(contents.error.is_none());
    assert_prefix_of(&contents.events, &workload, "filled stream");
    assert_eq!(contents.events.len() as u64, count);
    println!("DONE {count} {}", contents.write_offset);
}

#[test]
fn appends_up_to_capacity_never_sigbus() {
    for punch in [false, true] {
        let fs = tmpfs_or_skip!(3 << 20);
        let mut cmd = child_test("fill_child");
        cmd.env("EVSTREAM_FULL_DIR", fs.path());
        if punch {
            cmd.env("EVSTREAM_FULL_PUNCH", "1");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if punch {
            // Without reserved blocks the child dies at the first page it cannot get.
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGBUS),
                "control run: {}\n{stdout}\n{stderr}",
                out.status
            );
            continue;
        }
        assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
        let done = stdout
            .lines()
            .find_map(|l| l.find("DONE ").map(|i| l[i + 5..].to_owned()))
            .unwrap_or_else(|| panic!("no DONE line: {stdout}"));
        let filled = stdout
            .lines()
            .find_map(|l| l.find("FILLED ").map(|i| l[i + 7..].to_owned()))
            .unwrap();
        let mut fields = done.split(' ').map(|f| f.parse::<u64>().unwrap());
        let (count, write_offset) = (fields.next().unwrap(), fields.next().unwrap());
        eprintln!(
            "full disk: filler took {filled} bytes; {count} events filled the 1 MiB stream \
             to offset {write_offset}"
        );
        assert!(count > 0);
        // The stream is full to within one event of the largest size class.
        assert!(write_offset > (1 << 20) - 70_016, "{write_offset}");
        // And still reads back whole from a new process' view.
        let reader = StreamReader::open(fs.path().join("s.evs")).unwrap();
        assert_eq!(reader.verify().unwrap().events, count);
    }
}

/// A loop device over a sparse file on a small tmpfs, with ext4 on it, mounted.
struct LoopExt4 {
    backing: Tmpfs,
    device: String,
    mount: tempfile::TempDir,
}

impl LoopExt4 {
    fn new() -> Result<Self, String> {
        let backing = Tmpfs::mount(8 << 20)?;
        let image = backing.path().join("disk.img");
        File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .map_err(|e| e.to_string())?;
        let run = |cmd: &mut Command| -> Result<String, String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
            } else {
                Err(format!(
                    "{cmd:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let device = run(Command::new("losetup").args(["-f", "--show"]).arg(&image))?;
        let mount = tempfile::tempdir().map_err(|e| e.to_string())?;
        let made = run(Command::new("mkfs.ext4").args([
            "-q",
            "-F",
            "-O",
            "^has_journal",
            "-E",
            "lazy_itable_init=1",
            &device,
        ]))
        .and_then(|_| run(Command::new("mount").arg(&device).arg(mount.path())));
        if let Err(e) = made {
            let _ = Command::new("losetup").args(["-d", &device]).status();
            return Err(e);
        }
        Ok(Self {
            backing,
            device,
            mount,
        })
    }
}

impl LoopExt4 {
    /// Unmounts and mounts the file system again, so that nothing of it is left in the
    /// page cache: what reads back then is what reached the device.
    fn remount(&self) {
        let _ = Command::new("sync").status();
        assert!(unmount(self.mount.path()), "umount");
        let mount = Command::new("mount")
            .arg(&self.device)
            .arg(self.mount.path())
            .status()
            .unwrap();
        assert!(mount.success(), "mount");
    }
}

impl LoopExt4 {
    /// The file system's error trigger (`/sys/fs/ext4/DEV/trigger_fs_error`).
    fn trigger(&self) -> PathBuf {
        Path::new("/sys/fs/ext4")
            .join(self.device.trim_start_matches("/dev/"))
            .join("trigger_fs_error")
    }

    /// Readies the disk to fail as `failure` says (a read-only failure remounts it to
    /// turn read-only on an error), or says why it cannot.
    fn prepare_to_fail(&self, failure: DeviceFailure) -> Result<(), String> {
        if let DeviceFailure::ReadOnly = failure {
            let remounted = Command::new("mount")
                .args(["-o", "remount,errors=remount-ro"])
                .arg(self.mount.path())
                .status()
                .unwrap();
            assert!(remounted.success());
            if !self.trigger().exists() {
                return Err(format!("no {}", self.trigger().display()));
            }
        }
        Ok(())
    }

    /// Makes the disk fail as `failure` says, after [`prepare_to_fail`](Self::prepare_to_fail).
    fn fail(&self, failure: DeviceFailure) {
        match failure {
            DeviceFailure::Full => {
                fill(&self.backing.path().join("filler"));
            }
            DeviceFailure::ReadOnly => std::fs::write(self.trigger(), "test\n").unwrap(),
        }
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        unmount(self.mount.path());
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

#[test]
fn a_failed_flush_poisons_the_writer() {
    let disk = match LoopExt4::new() {
        Ok(d) => d,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let path = disk.mount.path().join("s.evs");
    let mut writer = StreamWriter::create(&path, 4 << 20).unwrap();
    let workload = Workload::mixed_up_to(5, 5000);
    // Room for the device's backing file to grow runs out.
    fill(&disk.backing.path().join("filler"));
    let mut appended = 0;
    while writer.available() > 600_000 {
        let index = writer.event_count();
        writer
            .append(workload.timestamp(index), &workload.payload(index))
            .unwrap();
        appended += 1;
    }
    let err = writer.flush().unwrap_err();
    match &err {
        Error::Io { op, source, .. } => {
            assert_eq!(*op, "msync", "{err}");
            let code = source.raw_os_error();
            assert!(
                code == Some(libc::ENOSPC) || code == Some(libc::EIO),
                "{err}: {source}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The writer is poisoned: nothing more is accepted, not even a retried flush, which
    // the kernel would now report as a success.
    let index = writer.event_count();
    let refused = writer.append(workload.timestamp(index), b"after the failure");
    assert!(
        matches!(refused, Err(Error::Poisoned { .. })),
        "{refused:?}"
    );
    assert!(matches!(writer.flush(), Err(Error::Poisoned { .. })));
    assert_eq!(writer.event_count(), index, "a refused append counted");
    eprintln!("full disk: flush of {appended} events failed with {err:?}; writer poisoned");
    drop(writer);
    // Reopening does not panic; whatever it finds is a prefix of what was appended.
    if let Ok(contents) = read_stream(&path) {
        assert_prefix_of(&contents.events, &workload, "after a failed flush");
    }

    // Issue 9, defect 3: space comes back and a new writer opens the stream. The pages
    // whose write-back failed are clean in the page cache, so a flush that only `msync`s
    // would return Ok without writing them. The new writer must not acknowledge events
    // that are not on the device: after a flush that returns Ok, every event it counted
    // reads back from the device itself (after a remount).
    std::fs::remove_file(disk.backing.path().join("filler")).unwrap();
    let mut writer = match StreamWriter::open(&path) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("full disk: reopening after the failure refused: {e}");
            return;
        }
    };
    let counted = writer.event_count();
    let flushed = writer.flush();
    eprintln!(
        "full disk: a new writer counted {counted} events above watermark {}; flush: {flushed:?}",
        writer.durable_offset()
    );
    drop(writer);
    if flushed.is_ok() {
        disk.remount();
        let contents = read_stream(&path).unwrap();
        assert_prefix_of(&contents.events, &workload, "after remount");
        assert!(
            contents.events.len() as u64 >= counted,
            "flush said Ok for {counted} events, {} are on the device ({:?})",
            contents.events.len(),
            contents.error
        );
        eprintln!(
            "full disk: after a remount {} of {counted} acknowledged events read back",
            contents.events.len()
        );
    }
}

/// Bytes in use on the file system holding `path` (`df`'s "used").
fn used_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=used", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// A 4 GiB sparse file with a valid trailer and a header that claims the whole event
/// area: `durable` says whether the watermark claims it too.
fn hostile_sparse(path: &Path, durable: bool) {
    use std::os::unix::fs::FileExt;
    use zerocopy::IntoBytes;
    let len = 4u64 << 30;
    let file = File::create(path).unwrap();
    file.set_len(len).unwrap();
    let end = evstream::format::trailer_offset(len).unwrap();
    let mut header = end.to_le_bytes().to_vec();
    header.extend_from_slice(&1000u64.to_le_bytes());
    header.extend_from_slice(&7i64.to_le_bytes());
    file.write_all_at(&header, 0).unwrap();
    let trailer = evstream::format::Trailer {
        dirty_limit: end,
        ..evstream::format::Trailer::empty()
    };
    let trailer = if durable {
        evstream::format::Trailer {
            durable_offset: end,
            durable_count: 1000,
            durable_last_timestamp: Some(7),
            ..trailer
        }
    } else {
        trailer
    };
    file.write_all_at(trailer.encode().as_bytes(), end + 512)
        .unwrap();
}

/// Child: every way of opening and reading the hostile file, and a writer.
#[test]
#[ignore = "child process of `a_hostile_sparse_file_never_fills_the_disk`"]
fn hostile_child() {
    let Ok(path) = std::env::var("EVSTREAM_HOSTILE_PATH") else {
        return;
    };
    let reader = StreamReader::open(&path).unwrap();
    assert!(reader.iter().any(|e| e.is_err()));
    assert!(reader.iter_unverified().any(|e| e.is_err()));
    let verification = reader.verify().unwrap();
    assert!(verification.damage.is_some());
    let _ = reader.seek_time(i64::MAX);
    let _ = reader.is_sealed();
    drop(reader);
    println!("READ");
    let writer = StreamWriter::open_with(&path, WriterOptions::default().prefault(Prefault::Off));
    println!("WRITER {:?}", writer.as_ref().map(|w| w.recovery().clone()));
}

/// Issue 9, defect 6: a 4 GiB sparse file whose header claims all of it, on a 64 MiB
/// tmpfs. Reading it every way, and opening a writer on it, allocates next to nothing
/// and nothing dies of `SIGBUS`: holes are damage, recovery zeroes only pages that hold
/// something, and unverified iteration stops at an all-zero event header.
#[test]
fn a_hostile_sparse_file_never_fills_the_disk() {
    for durable in [false, true] {
        let fs = tmpfs_or_skip!(64 << 20);
        let path = fs.path().join("hostile.evs");
        hostile_sparse(&path, durable);
        let before = used_bytes(fs.path());
        let out = child_test("hostile_child")
            .env("EVSTREAM_HOSTILE_PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            None,
            "durable {durable}: killed\n{stdout}\n{stderr}"
        );
        assert!(
            out.status.success(),
            "durable {durable}\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("READ"), "{stdout}");
        let after = used_bytes(fs.path());
        eprintln!(
            "hostile sparse file (watermark claims all: {durable}): {before} bytes used \
             before, {after} after; {}",
            stdout
                .lines()
                .find(|l| l.starts_with("WRITER"))
                .unwrap_or("")
        );
        assert!(
            after < before + (1 << 20),
            "durable {durable}: {before} -> {after} bytes used"
        );
    }
}

/// A log whose disk fills: the append that needs a segment that cannot be created is
/// refused with an I/O error and writes nothing, every event acknowledged before it
/// stays readable, the writer is not poisoned (the append is retried and succeeds once
/// there is room), and the log reopens and verifies clean.
#[test]
fn a_log_that_fills_its_disk_refuses_the_roll_and_continues_after_room_is_made() {
    use evstream::{LogOptions, LogReader, LogWriter};
    let fs = tmpfs_or_skip!(4 << 20);
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![1u8; 2 << 20]).unwrap();
    let path = fs.path().join("log");
    let segment = 256u64 << 10;
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(segment)).unwrap();
    let workload = Workload::mixed(5);
    let mut acked = Vec::new();
    let refused = loop {
        let index = acked.len() as u64;
        match log.append(workload.timestamp(index), &workload.payload(index)) {
            Ok(position) => acked.push(position),
            Err(e) => break e,
        }
        assert!(index < 100_000, "the disk never filled");
    };
    match &refused {
        Error::Io { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{refused}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        log.segment() >= 2,
        "{} segments before the disk filled",
        log.segment()
    );
    // Nothing of the refused event was written; a retry is refused the same way.
    assert_eq!(log.event_count(), acked.len() as u64);
    let index = acked.len() as u64;
    assert!(
        log.append(workload.timestamp(index), &workload.payload(index))
            .is_err()
    );
    assert_eq!(log.event_count(), acked.len() as u64);
    let read = |path: &Path| -> Vec<(evstream::Position, Vec<u8>)> {
        LogReader::open(path)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.position(), e.payload().to_vec())
            })
            .collect()
    };
    let expected = |acked: &[evstream::Position]| -> Vec<(evstream::Position, Vec<u8>)> {
        acked
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, workload.payload(i as u64)))
            .collect()
    };
    assert_eq!(read(&path), expected(&acked));
    // Room is made: the same writer continues, across more rolls.
    make_room(&filler);
    let before = log.segment();
    while log.segment() < before + 3 {
        let index = acked.len() as u64;
        let position = log
            .append(workload.timestamp(index), &workload.payload(index))
            .unwrap_or_else(|e| panic!("append {index} after room was made: {e}"));
        acked.push(position);
    }
    log.flush().unwrap();
    drop(log);
    assert_eq!(read(&path), expected(&acked));
    let log = LogWriter::open(&path).unwrap();
    assert!(log.recovery().is_clean(), "{:?}", log.recovery());
    drop(log);
    assert!(LogReader::open(&path).unwrap().verify().unwrap().is_ok());
}

/// A log on a disk filled to the last block while a prepared segment waits: the roll into
/// it succeeds (its blocks were reserved), and the index the sealing thread cannot write
/// costs nothing but the index (readers scan that segment): the writer is not poisoned,
/// and every event is read back.
#[test]
fn a_full_disk_costs_a_sealed_segment_its_index_not_the_writer() {
    use evstream::{LogOptions, LogReader, LogWriter};
    let fs = tmpfs_or_skip!(4 << 20);
    let path = fs.path().join("log");
    let segment = 256u64 << 10;
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(segment)).unwrap();
    let workload = Workload::mixed(7);
    let mut count = 0u64;
    // Past a quarter of segment 0, so that segment 1 is prepared, then wait for it.
    while log.end().offset() < segment / 2 {
        log.append(workload.timestamp(count), &workload.payload(count))
            .unwrap();
        count += 1;
    }
    log.flush().unwrap();
    wait_for_prepared_segment_1(&path);
    let filler = fs.path().join("filler");
    fill(&filler);
    while log.segment() < 1 {
        log.append(workload.timestamp(count), &workload.payload(count))
            .unwrap();
        count += 1;
    }
    // The sealing thread has sealed segment 0 (or failed to) once this returns.
    let flushed = log.flush();
    make_room(&filler);
    flushed.unwrap();
    while log.segment() < 3 {
        log.append(workload.timestamp(count), &workload.payload(count))
            .unwrap_or_else(|e| panic!("append {count} after room was made: {e}"));
        count += 1;
    }
    log.flush().unwrap();
    drop(log);
    let reader = LogReader::open(&path).unwrap();
    let payloads: Vec<Vec<u8>> = reader
        .iter()
        .unwrap()
        .map(|e| e.unwrap().payload().to_vec())
        .collect();
    assert_eq!(payloads.len() as u64, count);
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(*p, workload.payload(i as u64), "event {i}");
    }
    assert!(reader.verify().unwrap().is_ok());
}

/// A cursor commit on a full disk fails with an I/O error and leaves the cursor where the
/// last commit put it, with no temporary file behind; once there is room it commits.
#[test]
fn a_cursor_commit_on_a_full_disk_keeps_the_last_position() {
    use evstream::{LogOptions, LogReader, LogWriter};
    let fs = tmpfs_or_skip!(2 << 20);
    let path = fs.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(64 << 10)).unwrap();
    let first = log.append(1, b"first").unwrap();
    let second = log.append(2, b"second").unwrap();
    log.flush().unwrap();
    let reader = LogReader::open(&path).unwrap();
    reader.commit_cursor("consumer", first).unwrap();
    let filler = fs.path().join("filler");
    fill(&filler);
    let err = reader.commit_cursor("consumer", second).unwrap_err();
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(reader.cursor("consumer").unwrap(), Some(first));
    assert_eq!(entries(&path.join("cursors")), ["consumer"]);
    make_room(&filler);
    reader.commit_cursor("consumer", second).unwrap();
    assert_eq!(
        LogReader::open(&path).unwrap().cursor("consumer").unwrap(),
        Some(second)
    );
}

/// A log that cannot be created for lack of room leaves nothing that stops a second try.
#[test]
fn a_log_create_that_cannot_reserve_its_segment_can_be_retried() {
    use evstream::{LogOptions, LogWriter};
    let fs = tmpfs_or_skip!(1 << 20);
    let path = fs.path().join("log");
    let err = LogWriter::create(&path, LogOptions::default().segment_size(4 << 20)).unwrap_err();
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}"),
        other => panic!("{other:?}"),
    }
    // The directory the call made is gone again.
    assert!(entries(fs.path()).is_empty(), "{:?}", entries(fs.path()));
    // Into a directory that existed, too: the directory stays, empty.
    std::fs::create_dir(&path).unwrap();
    assert!(LogWriter::create(&path, LogOptions::default().segment_size(4 << 20)).is_err());
    assert!(entries(&path).is_empty(), "{:?}", entries(&path));
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(256 << 10))
        .unwrap_or_else(|e| panic!("second create: {e}"));
    log.append(1, b"x").unwrap();
    assert_eq!(log.options().get_segment_size(), 256 << 10);
}

/// A write-back failure the kernel reports once, to whichever sync of the file asks
/// first: here the writer's own background sync of a raised dirty limit (which syncs the
/// trailer's slot, but learns of every failure of the file). The flush after it must not
/// return `Ok` for events that never reached the device, even once the disk has room
/// again and the flush's own write-back succeeds.
#[test]
fn a_write_back_failure_a_background_sync_learned_of_fails_the_flush() {
    let disk = match LoopExt4::new() {
        Ok(d) => d,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let path = disk.mount.path().join("s.evs");
    let filler = disk.backing.path().join("filler");
    // Created with its dirty limit 32 MiB past the header: the append 16 MiB in hands the
    // raise's sync to the prefaulting thread.
    let mut writer = StreamWriter::create(&path, 40 << 20).unwrap();
    let workload = Workload::fixed(7, 4000);
    fill(&filler);
    let append_to = |writer: &mut StreamWriter, end: u64| {
        while writer.write_offset() < end {
            let index = writer.event_count();
            writer
                .append(workload.timestamp(index), &workload.payload(index))
                .unwrap();
        }
    };
    append_to(&mut writer, 12 << 20);
    // The kernel writes those events back, and fails: the device cannot grow.
    let synced = Command::new("sync")
        .arg("-f")
        .arg(disk.mount.path())
        .status()
        .unwrap();
    eprintln!("full disk: sync -f of the file system: {synced}");
    // Room comes back; the appends cross the point where the dirty limit is raised.
    make_room(&filler);
    append_to(&mut writer, 18 << 20);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let counted = writer.event_count();
    let flushed = writer.flush();
    eprintln!("full disk: flush of {counted} events after a failed write-back: {flushed:?}");
    drop(writer);
    match flushed {
        Err(Error::Io { op, .. }) => {
            assert_eq!(op, "msync");
            // What reached the device: the events lost are above the watermark, a torn
            // tail that a writer's open drops, not damage to flushed events.
            disk.remount();
            let contents = read_stream(&path).unwrap();
            assert_prefix_of(&contents.events, &workload, "after remount");
            match contents.error {
                None => {}
                Some(Error::Corrupt {
                    offset, watermark, ..
                }) => assert!(offset >= watermark, "damage below the watermark"),
                Some(other) => panic!("{other:?}"),
            }
            let reopened = StreamWriter::open(&path).unwrap();
            assert_eq!(reopened.event_count(), contents.events.len() as u64);
        }
        Err(e) => panic!("{e:?}"),
        Ok(()) => {
            disk.remount();
            let contents = read_stream(&path).unwrap();
            assert_prefix_of(&contents.events, &workload, "after remount");
            panic!(
                "flush said Ok for {counted} events; {} read back from the device ({:?})",
                contents.events.len(),
                contents.error
            );
        }
    }
}

/// A log whose file system has no inode left when a segment is sealed: the sealing thread
/// cannot write the segment's index, which costs readers a scan and nothing else. A new
/// writer opens the log all the same (the index is written when there is room again), and
/// appends into the segment that is already there.
#[test]
fn a_log_without_inodes_for_an_index_opens_and_appends() {
    use evstream::{LogOptions, LogReader, LogWriter};
    let fs = match Tmpfs::mount_with("size=16m,nr_inodes=64") {
        Ok(fs) => fs,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let path = fs.path().join("log");
    let segment = 256u64 << 10;
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(segment)).unwrap();
    let workload = Workload::mixed_up_to(11, 5000);
    let mut count = 0u64;
    let append = |log: &mut LogWriter, count: &mut u64| {
        log.append(workload.timestamp(*count), &workload.payload(*count))
            .unwrap_or_else(|e| panic!("append {count}: {e}"));
        *count += 1;
    };
    // Past a quarter of segment 0, so that segment 1 is prepared, then wait for it.
    while log.end().offset() < segment / 2 {
        append(&mut log, &mut count);
    }
    log.flush().unwrap();
    wait_for_prepared_segment_1(&path);
    // Every inode taken.
    let fillers = fs.path().join("fillers");
    std::fs::create_dir(&fillers).unwrap();
    for i in 0.. {
        match File::create(fillers.join(i.to_string())) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    while log.segment() < 1 {
        append(&mut log, &mut count);
    }
    // Segment 0 sealed, its index not written.
    log.flush().unwrap();
    drop(log);
    assert!(!path.join("00000000.idx").exists());

    let mut log = LogWriter::open(&path)
        .unwrap_or_else(|e| panic!("open with no inode for segment 0's index: {e}"));
    while log.end().offset() < segment / 2 {
        append(&mut log, &mut count);
    }
    log.flush().unwrap();
    drop(log);

    std::fs::remove_dir_all(&fillers).unwrap();
    let log = LogWriter::open(&path).unwrap();
    drop(log);
    assert!(
        path.join("00000000.idx").exists(),
        "index written once there is room"
    );
    let reader = LogReader::open(&path).unwrap();
    let payloads: Vec<Vec<u8>> = reader
        .iter()
        .unwrap()
        .map(|e| e.unwrap().payload().to_vec())
        .collect();
    assert_eq!(payloads.len() as u64, count);
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(*p, workload.payload(i as u64), "event {i}");
    }
    assert!(reader.verify().unwrap().is_ok());
}

/// How the device under a log fails ([`LoopExt4::fail`]).
#[derive(Debug, Clone, Copy)]
enum DeviceFailure {
    /// The device's backing file cannot grow.
    Full,
    /// The file system meets an error and turns read-only (`errors=remount-ro`).
    ReadOnly,
}

/// A log whose device fails under the segments it rolled into, under both write-back
/// policies: the failures of their write-back (in the sealing thread, and in the flush
/// of the newest segment), and the `Poisoned` errors after them, name the segments by the
/// names they have, not by the preparation names they had before their rolls.
#[test]
fn a_log_s_write_back_failures_name_the_segments_as_they_are_named() {
    use evstream::{LogOptions, LogWriter, WriteBack};
    for failure in [DeviceFailure::Full, DeviceFailure::ReadOnly] {
        for policy in [WriteBack::Lazy, WriteBack::Eager] {
            let disk = match LoopExt4::new() {
                Ok(d) => d,
                Err(reason) => {
                    eprintln!("skipped: {reason}");
                    return;
                }
            };
            if let Err(reason) = disk.prepare_to_fail(failure) {
                eprintln!("skipped: {reason}");
                continue;
            }
            let path = disk.mount.path().join("log");
            let options = LogOptions::default()
                .segment_size(1 << 20)
                .write_back(policy);
            let mut log = LogWriter::create(&path, options).unwrap();
            let workload = Workload::fixed(3, 1200);
            let mut count = 0u64;
            while count < 2000 {
                log.append(workload.timestamp(count), &workload.payload(count))
                    .unwrap();
                count += 1;
            }
            log.flush().unwrap();
            // Two rolls after the flush: the segment rolled into first is retired under
            // a name the flush never saw, and sealed at once (eager) or at the next flush
            // (lazy).
            let until = log.segment() + 2;
            while log.segment() < until {
                log.append(workload.timestamp(count), &workload.payload(count))
                    .unwrap();
                count += 1;
            }
            disk.fail(failure);
            // Another roll, if the device lets it happen.
            let until = log.segment() + 1;
            let mut failures = Vec::new();
            while log.segment() < until {
                match log.append(workload.timestamp(count), &workload.payload(count)) {
                    Ok(_) => count += 1,
                    Err(e) => {
                        failures.push(e);
                        break;
                    }
                }
            }
            let flushed = log.flush();
            assert!(flushed.is_err(), "{failure:?} {policy:?}: flush said Ok");
            failures.extend(flushed.err());
            failures.extend(log.flush().err());
            eprintln!("{failure:?} {policy:?}: {failures:?}");
            for error in &failures {
                // A segment being created or renamed into place may not be there under
                // the name the error gives; a segment written back is.
                let named = match error {
                    Error::Io { op, path, .. } if matches!(*op, "msync" | "write back") => path,
                    Error::Poisoned { path } => path,
                    _ => continue,
                };
                assert!(
                    named.exists(),
                    "{failure:?} {policy:?}: {error} names {}, which is not there",
                    named.display()
                );
            }
            drop(log);
        }
    }
}

/// Threads sharing one `SharedLogWriter` on a device that fails under them: once a thread
/// has seen a flush fail, no flush begun after it, on any thread, says `Ok` (the group
/// commit's failure reaches every caller, and the writer takes nothing more as durable),
/// and every event a thread's `flush` said `Ok` for (every append of that thread that
/// returned before the flush began) reads back from the device afterwards, in that
/// thread's order.
///
/// The second promise is checked where the file system turns read-only. Where the
/// device runs out of room (a loop device over a full tmpfs), the loop driver takes a
/// write that its backing file took only in part for a whole one, and `msync` and
/// `fdatasync` return success for blocks that never reached the device (see
/// docs/RELIABILITY.md, "Assumptions"): no writer can keep that promise on it.
#[test]
fn threads_sharing_a_log_whose_device_fails_keep_every_event_a_flush_said_ok_for() {
    for failure in [DeviceFailure::ReadOnly, DeviceFailure::Full] {
        if !shared_log_on_a_failing_device(failure) {
            return;
        }
    }
}

/// The test above on a device that fails as `failure` says; `false` if it was skipped.
fn shared_log_on_a_failing_device(failure: DeviceFailure) -> bool {
    use evstream::{LogOptions, LogReader, SharedLogWriter};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const THREADS: u64 = 3;
    const EVERY: u64 = 40;
    let disk = match LoopExt4::new() {
        Ok(d) => d,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return false;
        }
    };
    if let Err(reason) = disk.prepare_to_fail(failure) {
        eprintln!("skipped: {reason}");
        return false;
    }
    let path = disk.mount.path().join("log");
    let log = SharedLogWriter::create(&path, LogOptions::default().segment_size(1 << 20)).unwrap();
    // Each thread's payloads: its number, its append's index, then filler.
    let payload = |thread: u64, index: u64| {
        let mut payload = format!("{thread}:{index}:").into_bytes();
        payload.resize(300, b'.');
        payload
    };
    let failed = AtomicBool::new(false);
    let acked_events = AtomicU64::new(0);
    let acked: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let log = log.clone();
                let (failed, acked_events) = (&failed, &acked_events);
                s.spawn(move || {
                    // The count of this thread's events its last `Ok` flush covered.
                    let mut acked = 0;
                    let mut index = 0;
                    let mut errors = 0;
                    while errors < 3 && index < 40_000 {
                        if log.append_now(&payload(thread, index)).is_err() {
                            errors += 1;
                        } else {
                            index += 1;
                        }
                        if index % EVERY == 0 || errors > 0 {
                            let after_failure = failed.load(Ordering::SeqCst);
                            match log.flush() {
                                Ok(()) => {
                                    assert!(
                                        !after_failure,
                                        "{failure:?}: thread {thread}: a flush begun after \
                                         another failed said Ok"
                                    );
                                    acked_events.fetch_add(index - acked, Ordering::Relaxed);
                                    acked = index;
                                }
                                Err(e) => {
                                    if !failed.swap(true, Ordering::SeqCst) {
                                        eprintln!("{failure:?}: first failed flush: {e}");
                                    }
                                    errors += 1;
                                }
                            }
                        }
                    }
                    assert!(errors > 0, "{failure:?}: thread {thread}: no failure");
                    acked
                })
            })
            .collect();
        // Once the threads have flushed some events, the device fails.
        while acked_events.load(Ordering::Relaxed) < 600 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        disk.fail(failure);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    eprintln!("{failure:?}: events each thread's last Ok flush covered: {acked:?}");
    drop(log);
    if let DeviceFailure::Full = failure {
        return true;
    }
    disk.remount();
    let mut next = vec![0u64; THREADS as usize];
    let reader = LogReader::open(&path).unwrap();
    for event in reader.iter().unwrap() {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                // Damage past the flushed events, where the device failed: what the
                // flushes covered is checked below through the counts.
                eprintln!("{failure:?}: read back {next:?}, then {e}");
                break;
            }
        };
        let text = String::from_utf8_lossy(event.payload()).into_owned();
        let mut fields = text.split(':');
        let thread: usize = fields.next().unwrap().parse().unwrap();
        let index: u64 = fields.next().unwrap().parse().unwrap();
        assert_eq!(index, next[thread], "thread {thread}'s events out of order");
        next[thread] += 1;
    }
    for (thread, (&read, &acked)) in next.iter().zip(&acked).enumerate() {
        assert!(
            read >= acked,
            "{failure:?}: thread {thread}: {acked} events flushed, {read} read back"
        );
    }
    true
}
