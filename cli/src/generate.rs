//! `evstream completions SHELL` and `evstream man`: generated from the same clap
//! definitions as `--help`, so they cannot drift from it.

use std::io::{self, Write};
use std::path::PathBuf;

use clap_complete::Shell;

use crate::failure::{Failure, os_reason};

/// Examples shown by `evstream completions --help`.
pub const COMPLETION_EXAMPLES: &str = "\
Examples:
  evstream completions bash > ~/.local/share/bash-completion/completions/evstream
  evstream completions zsh > ~/.zfunc/_evstream     # with fpath+=~/.zfunc before compinit
  evstream completions fish > ~/.config/fish/completions/evstream.fish";

/// Examples shown by `evstream man --help`.
pub const MAN_EXAMPLES: &str = "\
Examples:
  evstream man | man -l -
  evstream man cat | man -l -
  sudo evstream man --dir /usr/local/share/man/man1   # evstream.1, evstream-cat.1, ...";

/// Arguments of `evstream completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for
    shell: Shell,
}

/// Arguments of `evstream man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The command whose page to print (default: evstream itself)
    #[arg(value_name = "COMMAND")]
    command: Option<String>,
    /// Write the pages of evstream and every command to this directory instead
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for the shell.
pub fn completions(args: &CompletionArgs) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut crate::command(), "evstream", &mut script);
    write_stdout(&script)
}

/// Prints a manual page or writes all of them.
pub fn man(args: &ManArgs) -> Result<(), Failure> {
    let mut command = crate::command().disable_help_subcommand(true);
    command.build();
    if let Some(dir) = &args.dir {
        return clap_mangen::generate_to(command, dir).map_err(|e| {
            Failure::data(format!(
                "cannot write manual pages to {}: {}",
                dir.display(),
                os_reason(&e)
            ))
        });
    }
    let page = match &args.command {
        None => command,
        Some(name) => command
            .get_subcommands()
            .find(|sub| sub.get_name() == name)
            .cloned()
            .ok_or_else(|| {
                Failure::usage(format!(
                    "{name:?} is not an evstream command (see `evstream --help`)"
                ))
            })?,
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .map_err(|e| Failure::output(&e))?;
    write_stdout(&roff)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::output(&e))
}
