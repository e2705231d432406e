//! `evstream upgrade FILE`: convert a version 1 stream to format version 2.

use std::path::PathBuf;

use crate::failure::Failure;
use crate::output;

/// Examples shown by `evstream upgrade --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream upgrade old.evs

Version 1 streams have no trailer (magic number, durable watermark, generation) and
this evstream refuses to open them. upgrade checks every event first and then writes the
trailer into the last two 512-byte sectors of the file, which must be free (zero); it
refuses otherwise, without changing a byte. A stream that already is version 2 is left
as it is.";

/// Arguments of `evstream upgrade`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The version 1 stream file
    file: PathBuf,
}

/// Converts the file, or says it already was version 2.
pub fn run(args: Args) -> Result<(), Failure> {
    let path = args.file.as_path();
    let converted = evstream::upgrade_v1(path).map_err(|e| Failure::stream(path, &e))?;
    output::line(&if converted {
        format!("upgraded: {} is a version 2 stream now", path.display())
    } else {
        format!(
            "{} already is a version 2 stream; nothing changed",
            path.display()
        )
    })
}
