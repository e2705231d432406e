//! Named crash points for the reliability tests.
//!
//! With the `failpoints` feature, [`hit`] aborts the process when the environment
//! variable `EVSTREAM_FAILPOINT` names the point being passed, optionally as `NAME:N`
//! to abort on the N-th pass (counting from 1). Without the feature the macro expands
//! to nothing, so release builds carry no trace of it.
//!
//! The points, in the order an append, a create, an open and a flush pass them, then
//! those of a log's open, roll, seal, retention and cursor commit, and a shared log's
//! handover, are listed in
//! [`POINTS`].

/// Every crash point, by name.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub const POINTS: &[&str] = &[
    "append:after_payload",
    "append:after_header",
    "append:after_offset",
    "append:after_count",
    "create:after_preallocate",
    "create:after_header",
    "create:after_rename",
    "open:after_lock",
    "open:after_generation",
    "open:after_truncate",
    "open:after_zero",
    "flush:before_sync",
    "flush:after_data",
    "flush:after_trailer",
    "log_open:after_lock",
    "log_open:record_boot",
    "roll:after_handoff",
    "roll:before_rename",
    "roll:after_rename",
    "seal:after_flush",
    "retain:after_remove",
    "retain:after_spare_rename",
    "recycle:after_reset",
    "recycle:after_rename",
    "cursor:before_rename",
    "cursor:after_rename",
    "handover:after_record",
    "handover:after_open",
];

/// Passes the crash point `name`: aborts the process if `EVSTREAM_FAILPOINT` selects it.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::Mutex;
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSES: Mutex<u64> = Mutex::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("EVSTREAM_FAILPOINT").ok()?;
        match spec
            .rsplit_once(':')
            .and_then(|(n, k)| Some((n, k.parse().ok()?)))
        {
            Some((point, nth)) => Some((point.to_owned(), nth)),
            None => Some((spec, 1)),
        }
    });
    if let Some((point, nth)) = target
        && point == name
    {
        let mut passes = PASSES.lock().unwrap_or_else(|e| e.into_inner());
        *passes += 1;
        if *passes >= *nth {
            std::process::abort();
        }
    }
}

/// Passes a crash point (a no-op unless the `failpoints` feature is enabled).
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name);
    };
}
pub(crate) use failpoint;
