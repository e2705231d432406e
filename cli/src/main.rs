//! `evstream`: create, feed, inspect, check, copy, repair and follow logs and stream files
//! from the shell.
//!
//! A thin front end over the `evstream` library: every subcommand (one module each) parses
//! its arguments, calls the library, and prints. The byte format is the library's
//! business; this binary only presents it. Failures print one `error:` line and exit
//! with 1 (a problem in a file or its data) or 2 (a usage error).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod append;
mod archive;
mod bench;
mod cat;
mod create;
mod cursor;
mod encode;
mod failure;
mod generate;
mod import;
mod logcmd;
mod nats;
mod output;
mod progress;
mod pull;
mod salvage;
mod ship;
mod source;
mod staged;
mod stat;
mod tail;
mod time;
mod units;
mod upgrade;
mod verify;

/// Append-only event logs and streams on memory-mapped files: create, append, read, check,
/// copy, repair, follow.
#[derive(Debug, Parser)]
#[command(
    name = "evstream",
    version,
    propagate_version = true,
    after_help = "\
Examples:
  evstream create app-log --log --retain-age 30d      # a log: rolling 64 MiB segments
  printf 'temp=21.5\\ntemp=21.7\\n' | evstream append app-log
  evstream cat app-log --since -1h --format jsonl
  evstream tail app-log -n 5 --follow
  evstream stat app-log
  evstream verify app-log
  evstream create sensors.evs --capacity 64MiB        # a stream: one file, fixed capacity
  evstream salvage damaged.evs rescued.evs

Every command that takes a stream file takes a log directory too, but `upgrade` (which
converts version 1 stream files).

Exit status: 0 on success, 1 when a file or its data is the problem (missing, not a
stream, locked, full, corrupt), 2 for a usage error. Run `evstream help COMMAND` for more."
)]
struct Cli {
    /// Print times in the local time zone (with its offset) instead of UTC, and read dates
    /// without an offset in it
    #[arg(long, global = true)]
    local: bool,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a log (--log: a directory of rolling segments) or a stream file of a fixed capacity
    #[command(after_help = create::EXAMPLES)]
    Create(create::Args),
    /// Append events: arguments, lines, JSON Lines, CSV or binary frames from standard input
    #[command(after_help = append::EXAMPLES)]
    Append(append::Args),
    /// Print events, one per line, optionally filtered and following new ones
    #[command(after_help = cat::EXAMPLES)]
    Cat(cat::Args),
    /// Print the last events of a log or stream, optionally following new ones
    #[command(after_help = tail::EXAMPLES)]
    Tail(tail::Args),
    /// Show a log's or stream's size, event count, time span and writer (a stream's fill too)
    #[command(after_help = stat::EXAMPLES)]
    Stat(stat::Args),
    /// Check every event's checksum and order, and the header's event count
    #[command(after_help = verify::EXAMPLES)]
    Verify(verify::Args),
    /// Copy every readable event of a damaged log or stream to a new one, reporting what was skipped
    #[command(after_help = salvage::EXAMPLES)]
    Salvage(salvage::Args),
    /// List, show, move or delete a log's named cursors (where consumers resume)
    #[command(after_help = cursor::EXAMPLES)]
    Cursor(cursor::Args),
    /// Convert a version 1 stream to format version 2, after checking every event
    #[command(after_help = upgrade::EXAMPLES)]
    Upgrade(upgrade::Args),
    /// Measure evstream's append and replay speed against std I/O baselines
    #[command(after_help = bench::EXAMPLES)]
    Bench(bench::Args),
    /// Publish a log's or stream's events to NATS JetStream, exactly once, following new ones
    #[command(after_help = ship::EXAMPLES)]
    Ship(ship::Args),
    /// Append a NATS JetStream stream's messages to a log or stream file, exactly once
    #[command(after_help = pull::EXAMPLES)]
    Pull(pull::Args),
    /// Upload a log's sealed segments to S3-compatible object storage, each once, verified
    #[command(after_help = archive::EXAMPLES)]
    Archive(archive::Args),
    /// Rebuild a local log from an archive in S3-compatible object storage
    #[command(after_help = archive::RESTORE_EXAMPLES)]
    Restore(archive::RestoreArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = generate::COMPLETION_EXAMPLES)]
    Completions(generate::CompletionArgs),
    /// Print the manual page (roff), or write one page per command to a directory
    #[command(after_help = generate::MAN_EXAMPLES)]
    Man(generate::ManArgs),
    /// The follower process of `bench --follow-latency` (not for direct use)
    #[command(name = "bench-follower", hide = true)]
    BenchFollower(bench::FollowerArgs),
    /// An appending process of `bench --many` (not for direct use)
    #[command(name = "bench-appender", hide = true)]
    BenchAppender(bench::AppenderArgs),
}

/// The command-line definition, for completions and manual pages.
pub fn command() -> clap::Command {
    Cli::command()
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
            if e.use_stderr() {
                // Usage errors follow the same colour rule as every other error line.
                let text = e.render();
                let text = if failure::color() {
                    text.ansi().to_string()
                } else {
                    text.to_string()
                };
                let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
            } else {
                // Help and version go to stdout and exit 0. A closed stdout is ignored
                // here as everywhere.
                let _ = e.print();
            }
            return code;
        }
    };
    let zone = time::Zone::new(cli.local);
    let result = match cli.command {
        Command::Create(args) => create::run(args),
        Command::Append(args) => append::run(args, &zone),
        Command::Cat(args) => cat::run(args, zone),
        Command::Tail(args) => tail::run(args, zone),
        Command::Stat(args) => stat::run(args, &zone),
        Command::Verify(args) => verify::run(args),
        Command::Salvage(args) => salvage::run(args, &zone),
        Command::Cursor(args) => cursor::run(args, &zone),
        Command::Upgrade(args) => upgrade::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Ship(args) => ship::run(args),
        Command::Pull(args) => pull::run(args),
        Command::Archive(args) => archive::run(args),
        Command::Restore(args) => archive::restore(args, &zone),
        Command::Completions(args) => generate::completions(&args),
        Command::Man(args) => generate::man(&args),
        Command::BenchFollower(args) => bench::run_follower(&args),
        Command::BenchAppender(args) => bench::run_appender(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
