//! Measures `archive_log` against a bare loop of PUTs of the same segment bytes through
//! the same client, and reading N events from a time (`cat --since T -n N`) with the
//! requests it makes, on an S3-compatible store.
//!
//! ```text
//! AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. AWS_ENDPOINT_URL=http://127.0.0.1:8333 \
//!   cargo run --release -p evstream-archive --example archive_bench -- DIR s3://BUCKET/PREFIX SIZE_MIB
//! ```
//! DIR is created (a log of SIZE_MIB MiB in 64 MiB segments) and left for reuse.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::io::Read as _;
use std::path::Path;
use std::time::Instant;

use evstream::{LogOptions, LogReader, LogWriter};
use evstream_archive::{Archive, ArchiveOptions, ArchiveReader, Settings, archive_log};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStoreExt as _, PutPayload};

const T0: i64 = 1_700_000_000_000_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(&args[1]);
    let url = &args[2];
    let mib: u64 = args[3].parse().unwrap();
    let step = 1_000_000i64; // 1 ms between events
    let mut events = 0u64;
    if !dir.exists() {
        let started = Instant::now();
        let mut log = LogWriter::create(dir, LogOptions::default()).unwrap();
        let mut payload = [0u8; 200];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let target = mib << 20;
        let mut bytes = 0u64;
        while bytes < target {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 100 + (x % 100) as usize;
            for (i, b) in payload[..len].iter_mut().enumerate() {
                *b = b'a' + ((x >> (i % 56)) % 26) as u8;
            }
            log.append(T0 + events as i64 * step, &payload[..len])
                .unwrap();
            events += 1;
            bytes += 16 + len as u64;
        }
        log.flush().unwrap();
        eprintln!("log: {events} events in {:?}", started.elapsed());
    }
    let reader = LogReader::open(dir).unwrap();
    let last = reader.tail(1).unwrap()[0].timestamp();
    let segments = reader.segment_files().unwrap();
    let sealed: Vec<_> = segments[..segments.len() - 1].to_vec();

    if std::env::var_os("COSTS").is_some() {
        let (_, path) = &sealed[0];
        let t = Instant::now();
        let segment = evstream::StreamReader::open(path).unwrap();
        let n = segment.iter().inspect(|e| assert!(e.is_ok())).count();
        let verify = t.elapsed();
        let mut bytes = vec![0u8; segment.write_offset() as usize];
        std::fs::File::open(path)
            .unwrap()
            .read_exact(&mut bytes)
            .unwrap();
        let t = Instant::now();
        let c = crc32fast::hash(&bytes);
        let crc = t.elapsed();
        let t = Instant::now();
        use md5::Digest as _;
        let m = md5::Md5::digest(&bytes);
        let md5 = t.elapsed();
        println!(
            "one segment ({n} events): verify {verify:?}, crc {crc:?}, md5 {md5:?} ({c} {})",
            m.len()
        );
    }
    // The bare loop: the same bytes the archive uploads, PUT one after the other.
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let at = evstream_archive::Location::parse(url).unwrap();
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(at.bucket())
        .with_region("us-east-1")
        .with_endpoint(&endpoint)
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut total = 0u64;
    let started = Instant::now();
    for (seq, path) in &sealed {
        let segment = evstream::StreamReader::open(path).unwrap();
        let mut bytes = vec![0u8; segment.write_offset() as usize];
        std::fs::File::open(path)
            .unwrap()
            .read_exact(&mut bytes)
            .unwrap();
        total += bytes.len() as u64;
        let key = Key::from(format!("{}-bare/{seq:08}.evs", at.prefix()));
        runtime
            .block_on(store.put(&key, PutPayload::from(bytes)))
            .unwrap();
    }
    let bare = started.elapsed();
    let mb = total as f64 / (1 << 20) as f64;
    println!(
        "bare PUT loop: {} segments, {mb:.0} MiB in {bare:.2?}: {:.0} MiB/s",
        sealed.len(),
        mb / bare.as_secs_f64()
    );

    let archive = Archive::connect(url, &Settings::default()).unwrap();
    let cursor = format!("bench-{}", std::process::id());
    let options = ArchiveOptions {
        cursor: cursor.clone(),
        ..ArchiveOptions::default()
    };
    let started = Instant::now();
    let report = archive_log(dir, &archive, &options, |_| {}).unwrap();
    let took = started.elapsed();
    reader.remove_cursor(&cursor).unwrap();
    let mb = report.bytes as f64 / (1 << 20) as f64;
    println!(
        "archive_log: {} segments uploaded ({} already there), {mb:.0} MiB in {took:.2?}: {:.0} MiB/s, {:.2}x the bare loop",
        report.uploaded,
        report.already,
        mb / took.as_secs_f64(),
        bare.as_secs_f64() / took.as_secs_f64()
    );

    // Reading 1000 events from a time: open (one listing), then the index and range reads.
    for fraction in [0.1, 0.5, 0.9] {
        let archive = Archive::connect(url, &Settings::default()).unwrap();
        let since = T0 + ((last - T0) as f64 * fraction) as i64;
        let started = Instant::now();
        let reader = ArchiveReader::open(archive).unwrap();
        let got = reader
            .iter_since(since)
            .unwrap()
            .take(1000)
            .inspect(|e| assert!(e.is_ok()))
            .count();
        let took = started.elapsed();
        println!(
            "--since at {:.0}% -n 1000: {got} events in {took:.2?}, {} requests ({} segments archived)",
            fraction * 100.0,
            reader.archive().requests(),
            reader.segments().len()
        );
    }
}
