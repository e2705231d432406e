//! `evstream create FILE --capacity SIZE`.

use std::path::PathBuf;

use evstream::{Prefault, StreamWriter, WriterOptions};

use crate::failure::Failure;
use crate::output;
use crate::units;

/// Examples shown by `evstream create --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream create sensors.evs --capacity 64MiB
  evstream create big.evs --capacity 1GiB
  evstream create tiny.evs --capacity 4096

The whole capacity is allocated on disk at once, so appends can never meet a full disk;
a stream that is full stays full (create a new one). An existing file is never replaced.";

/// Arguments of `evstream create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file to create; it must not exist
    file: PathBuf,
    /// Size of the file, header included: bytes (4096) or with a unit (64MiB, 1GiB, 10MB)
    #[arg(long, short, value_name = "SIZE", value_parser = parse_capacity)]
    capacity: u64,
}

/// Parses SIZE and checks it against the capacities the library accepts.
pub fn parse_capacity(input: &str) -> Result<u64, String> {
    let bytes = units::parse_size(input)?;
    let minimum = evstream::format::MIN_CAPACITY;
    if bytes < minimum {
        return Err(format!(
            "a stream needs at least {minimum} bytes (its header and one empty event)"
        ));
    }
    Ok(bytes)
}

/// Creates the stream and prints its name and capacity.
pub fn run(args: Args) -> Result<(), Failure> {
    // No prefaulting: nothing is appended here.
    let options = WriterOptions::default().prefault(Prefault::Off);
    let writer = StreamWriter::create_with(&args.file, args.capacity, options)
        .map_err(|e| Failure::stream(&args.file, &e))?;
    output::line(&format!(
        "created {}: capacity {}",
        args.file.display(),
        units::size_exact(writer.capacity())
    ))
}
