//! `evstream`: create, feed, inspect, check and follow stream files from the shell.
//!
//! A thin front end over the `evstream` library: every subcommand (one module each) parses
//! its arguments, calls the library, and prints. The byte format is the library's
//! business; this binary only presents it. Failures print one `error:` line and exit
//! with 1 (a problem in a file or its data) or 2 (a usage error).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod append;
mod bench;
mod cat;
mod create;
mod encode;
mod failure;
mod output;
mod stat;
mod tail;
mod time;
mod units;
mod upgrade;
mod verify;

/// Append-only event streams on memory-mapped files: create, append, read, check, follow.
#[derive(Debug, Parser)]
#[command(
    name = "evstream",
    version,
    propagate_version = true,
    after_help = "\
Examples:
  evstream create sensors.evs --capacity 64MiB
  printf 'temp=21.5\\ntemp=21.7\\n' | evstream append sensors.evs
  evstream cat sensors.evs --format json
  evstream tail sensors.evs -n 5 --follow
  evstream stat sensors.evs
  evstream verify sensors.evs

Exit status: 0 on success, 1 when a file or its data is the problem (missing, not a
stream, locked, full, corrupt), 2 for a usage error. Run `evstream help COMMAND` for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create an empty stream file of a fixed capacity
    #[command(after_help = create::EXAMPLES)]
    Create(create::Args),
    /// Append events: one per argument, one per line of standard input, or all of it
    #[command(after_help = append::EXAMPLES)]
    Append(append::Args),
    /// Print events, one per line, optionally filtered and following new ones
    #[command(after_help = cat::EXAMPLES)]
    Cat(cat::Args),
    /// Print the last events of a stream, optionally following new ones
    #[command(after_help = tail::EXAMPLES)]
    Tail(tail::Args),
    /// Show a stream's size, fill, event count, time span and writer
    #[command(after_help = stat::EXAMPLES)]
    Stat(stat::Args),
    /// Check every event's checksum and order, and the header's event count
    #[command(after_help = verify::EXAMPLES)]
    Verify(verify::Args),
    /// Convert a version 1 stream to format version 2, after checking every event
    #[command(after_help = upgrade::EXAMPLES)]
    Upgrade(upgrade::Args),
    /// Measure evstream's append and replay speed against std I/O baselines
    #[command(after_help = bench::EXAMPLES)]
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and exit 0; usage errors to stderr with 2.
            // A closed stdout is ignored here as everywhere.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match cli.command {
        Command::Create(args) => create::run(args),
        Command::Append(args) => append::run(args),
        Command::Cat(args) => cat::run(args),
        Command::Tail(args) => tail::run(args),
        Command::Stat(args) => stat::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Upgrade(args) => upgrade::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
