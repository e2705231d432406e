//! Arbitrary bytes as a stream file: opened and read every way, then recovered by a
//! writer. The checks live in `tests/reliability_support/open_any.rs`, shared with the
//! proptest twin `tests/fuzz_open.rs`, which runs in CI.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/reliability_support/open_any.rs"]
mod open_any;

/// One scratch file per fuzzing process, in memory when `/dev/shm` exists.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("evstream-fuzz-{}.evs", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    open_any::open_any(scratch(), data);
    // As the body of a version 2 file, so that the fuzzer reaches past the identity check.
    let v2 = open_any::with_trailer(data.to_vec(), 0, evstream::format::Trailer::empty());
    open_any::open_any(scratch(), &v2);
});
