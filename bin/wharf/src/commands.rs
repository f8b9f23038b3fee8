//! The shell's commands, defined once with clap. Parsing, `help`, and command-name completion all
//! come from this one definition, and batch mode parses with it too.

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::error::ClientError;

/// One command line, as typed.
#[derive(Debug, Parser)]
#[command(multicall = true, disable_help_subcommand = true)]
pub struct Line {
    #[command(subcommand)]
    pub command: ShellCommand,
}

/// Every command the shell and batch mode understand.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ShellCommand {
    /// Print the remote working directory.
    Pwd,
    /// Change the remote working directory (to / without an argument).
    Cd { path: Option<String> },
    /// List a remote directory.
    Ls {
        /// Long format: type, permissions, size, modification time (UTC) and name.
        #[arg(short = 'l')]
        long: bool,
        /// Show names starting with a dot.
        #[arg(short = 'a')]
        all: bool,
        path: Option<String>,
    },
    /// Show a remote file's metadata.
    Stat { path: String },
    /// Create remote directories.
    Mkdir {
        /// Create missing parents, and accept directories that already exist.
        #[arg(short = 'p')]
        parents: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Remove empty remote directories.
    Rmdir {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Remove remote files (and with -r, directories and their contents).
    Rm {
        /// Remove directories and everything in them.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Rename or move a remote file or directory (into TO if TO is a directory).
    Mv { from: String, to: String },
    /// Show your disk usage and quota.
    Quota,
    /// Upload files: put LOCAL... [REMOTEDIR] (with two or more arguments the last is the
    /// destination directory). Wildcards match local names; interrupted uploads resume.
    Put(TransferArgs),
    /// Download files: get REMOTE... [LOCALDIR] (with two or more arguments the last is the
    /// destination directory). Wildcards match remote names (quote them); interrupted downloads resume.
    Get(TransferArgs),
    /// Change the local working directory (to your home without an argument).
    Lcd { path: Option<String> },
    /// Print the local working directory.
    Lpwd,
    /// List a local directory.
    Lls {
        #[arg(short = 'l')]
        long: bool,
        #[arg(short = 'a')]
        all: bool,
        path: Option<String>,
    },
    /// List the commands, or show one command's usage.
    Help { command: Option<String> },
    /// Leave the shell.
    #[command(visible_aliases = ["quit", "bye"])]
    Exit,
}

/// The options and paths of `put` and `get`, in the shell and in the one-shot form alike.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TransferArgs {
    /// Copy directories and everything in them.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// Files to move at once.
    #[arg(short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Start over instead of resuming partial transfers.
    #[arg(long)]
    pub no_resume: bool,
    /// Sources, then (with two or more) the destination directory.
    #[arg(required = true)]
    pub paths: Vec<String>,
}

impl TransferArgs {
    pub fn options(&self) -> crate::copy::CopyOptions {
        crate::copy::CopyOptions {
            recursive: self.recursive,
            jobs: self.jobs.into(),
            resume: !self.no_resume,
        }
    }
}

/// Commands whose path arguments are local, for completion.
pub const LOCAL_PATH_COMMANDS: &[&str] = &["lcd", "lls", "put"];

/// What a typed line turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Nothing but blanks or a comment.
    Empty,
    /// `--help` or similar: text to print.
    Help(String),
    Command(ShellCommand),
}

/// Parses one command line with shell-like quoting.
pub fn parse_line(line: &str) -> Result<Parsed, ClientError> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Parsed::Empty);
    }
    let words =
        shlex::split(trimmed).ok_or_else(|| ClientError::Usage("unbalanced quotes".into()))?;
    match Line::try_parse_from(words) {
        Ok(line) => Ok(Parsed::Command(line.command)),
        Err(err) if matches!(err.kind(), clap::error::ErrorKind::DisplayHelp) => {
            Ok(Parsed::Help(err.render().to_string()))
        }
        Err(err) => Err(ClientError::Usage(first_line(&err.render().to_string()))),
    }
}

fn first_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned() + " (try: help)"
}

/// Names of all commands and their aliases, for completion.
pub fn command_names() -> Vec<String> {
    let command = Line::command();
    let mut names: Vec<String> = command
        .get_subcommands()
        .flat_map(|sub| {
            std::iter::once(sub.get_name().to_owned())
                .chain(sub.get_all_aliases().map(str::to_owned))
        })
        .collect();
    names.sort();
    names
}

/// `help` without an argument: every command with its one-line description.
pub fn overview() -> String {
    let command = Line::command();
    let mut text = String::from("Commands (help COMMAND for details):\n");
    for sub in command.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        text.push_str(&format!("  {:<8} {about}\n", sub.get_name()));
    }
    text
}

/// `help COMMAND`: that command's full usage.
pub fn usage_of(name: &str) -> Result<String, ClientError> {
    let mut command = Line::command();
    let sub = command
        .find_subcommand_mut(name)
        .ok_or_else(|| ClientError::Usage(format!("no such command: {name} (try: help)")))?;
    Ok(sub.render_long_help().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> ShellCommand {
        match parse_line(line).expect("parses") {
            Parsed::Command(cmd) => cmd,
            other => panic!("expected a command, got {other:?}"),
        }
    }

    #[test]
    fn quoting_keeps_spaces() {
        assert_eq!(parse("cd 'my dir'"), ShellCommand::Cd { path: Some("my dir".into()) });
        assert_eq!(parse(r"stat a\ b"), ShellCommand::Stat { path: "a b".into() });
        assert_eq!(
            parse("ls -la \"x y\""),
            ShellCommand::Ls { long: true, all: true, path: Some("x y".into()) }
        );
    }

    #[test]
    fn aliases_help_and_errors() {
        assert_eq!(parse("quit"), ShellCommand::Exit);
        assert_eq!(parse_line("  # note").expect("comment"), Parsed::Empty);
        assert!(matches!(parse_line("ls --help"), Ok(Parsed::Help(text)) if text.contains("-l")));
        assert!(matches!(parse_line("frobnicate"), Err(ClientError::Usage(_))));
        assert!(matches!(parse_line("rm"), Err(ClientError::Usage(_))));
        assert!(matches!(parse_line("cd 'open"), Err(ClientError::Usage(_))));
        assert!(command_names().contains(&"mkdir".to_owned()));
        assert!(usage_of("mv").expect("usage").contains("TO"));
    }
}
