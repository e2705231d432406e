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
    /// The command whose page to print, such as cat or "cursor set" (default: evstream
    /// itself)
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
        Some(name) => find_page(&command, name).ok_or_else(|| {
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

/// The command `name` names, among the subcommands of `command` (built): `cat`, or a
/// subcommand's subcommand as `cursor set` or `cursor-set`, the name of its page
/// (`evstream-cursor-set.1`) without the `evstream-`.
fn find_page(command: &clap::Command, name: &str) -> Option<clap::Command> {
    if let Some(sub) = command.get_subcommands().find(|sub| sub.get_name() == name) {
        return Some(sub.clone());
    }
    let wanted = format!(
        "{}-{}",
        command.get_name(),
        name.split_whitespace().collect::<Vec<_>>().join("-")
    );
    let mut pending: Vec<&clap::Command> = command.get_subcommands().collect();
    while let Some(sub) = pending.pop() {
        if sub.get_display_name() == Some(wanted.as_str()) {
            return Some(sub.clone());
        }
        pending.extend(sub.get_subcommands());
    }
    None
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::output(&e))
}
