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
    /// Change the remote working directory (to / without an argument, back to the previous one
    /// with -).
    Cd { path: Option<String> },
    /// List remote directories or files (wildcards match remote names).
    #[command(disable_help_flag = true)]
    Ls(ListArgs),
    /// Show remote files' metadata (wildcards match remote names).
    Stat {
        #[arg(required = true)]
        paths: Vec<String>,
    },
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
    /// Remove remote files (and with -r, directories and their contents); wildcards match remote names.
    Rm {
        /// Remove directories and everything in them.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Rename or move remote files or directories: mv FROM TO renames (or moves into TO if TO is
    /// a directory); with several sources, or wildcards (which match remote names), TO must be a
    /// directory and each moves into it.
    #[command(visible_alias = "rename", override_usage = "mv FROM... TO")]
    Mv {
        /// The sources, then TO.
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Copy remote files on the server, their bytes never crossing the network: cp [-r] FROM...
    /// TO, as cp(1) takes them (into TO if it is a directory; several sources need one). Each copy
    /// is verified and counts against your quota.
    #[command(override_usage = "cp [-r] FROM... TO")]
    Cp {
        /// Copy directories and everything in them.
        #[arg(short = 'r', short_alias = 'R')]
        recursive: bool,
        /// The sources, then TO.
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Change the permission bits of remote files: chmod 640 FILE... (octal, like chmod(1)).
    Chmod {
        /// Octal permission bits, 000 to 777.
        mode: String,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Show the space files take below remote directories, like du(1): du [-a|-s] [-d N] [-h|-b]
    /// [PATH...]. Sizes are the files' own bytes, what the quota counts.
    #[command(disable_help_flag = true)]
    Du(DuArgs),
    /// Find remote files by name or kind: find [PATH...] [-name PATTERN] [-type f|d|l]
    /// [-maxdepth N]; prints each path below PATH that matches, as find(1) does.
    Find(FindArgs),
    /// Show your disk usage and quota, and what partial uploads hold.
    Quota,
    /// Show your space like df(1): size (your quota), used, available.
    #[command(disable_help_flag = true)]
    Df {
        /// Sizes in KiB, MiB, GiB rather than 1024-byte blocks.
        #[arg(short = 'h')]
        human: bool,
        /// Print help (-h means human-readable sizes here, as in df).
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// List interrupted uploads (they hold quota until resumed or dropped), or drop them:
    /// partials drop PATH... | partials drop --all.
    Partials {
        #[command(subcommand)]
        action: Option<PartialsAction>,
    },
    /// Upload files: put LOCAL... [REMOTE] (with two or more arguments the last is the destination
    /// directory, or with one source the new name). Wildcards match local names; interrupted
    /// uploads resume.
    #[command(visible_aliases = ["reput", "mput"])]
    Put(TransferArgs),
    /// Download files: get REMOTE... [LOCAL] (with two or more arguments the last is the destination
    /// directory, or with one source the new name). Wildcards match remote names (quote them);
    /// interrupted downloads resume.
    #[command(visible_aliases = ["reget", "mget"])]
    Get(TransferArgs),
    /// Show remote files, each once its SHA-256 checks out (wildcards match remote names).
    Cat {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Make LOCAL a copy of REMOTE (with -R, REMOTE a copy of LOCAL), sending only files whose
    /// content differs: mirror [-R] [--delete] [--dry-run] [-j N] [REMOTE [LOCAL]].
    Mirror(MirrorArgs),
    /// List the background jobs (a put, get, mirror or cp line ending in &) and their progress.
    Jobs,
    /// Wait for background jobs to end and show how they did: wait [N...] (all without N).
    Wait {
        #[arg(value_name = "N")]
        jobs: Vec<String>,
    },
    /// Stop background jobs; their partial files are kept: kill N... | kill all.
    Kill {
        #[arg(value_name = "N", required = true)]
        jobs: Vec<String>,
    },
    /// A transfer run in the background (its line ended in `&`), as typed without the `&`.
    #[command(skip)]
    Background { command: Box<ShellCommand>, line: String },
    /// Change the local working directory (to your home without an argument, back to the
    /// previous one with -).
    Lcd { path: Option<String> },
    /// Print the local working directory.
    Lpwd,
    /// Create local directories.
    Lmkdir {
        /// Create missing parents, and accept directories that already exist.
        #[arg(short = 'p')]
        parents: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// List local directories or files.
    #[command(disable_help_flag = true)]
    Lls(ListArgs),
    /// List the commands, or show one command's usage.
    Help { command: Option<String> },
    /// Leave the shell.
    #[command(visible_aliases = ["quit", "bye"])]
    Exit,
}

/// The options of `mirror`, in the shell and the one-shot form alike.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct MirrorArgs {
    /// Reverse: make the remote directory a copy of the local one.
    #[arg(short = 'R')]
    pub reverse: bool,
    /// Delete what the source no longer has (after every transfer succeeded).
    #[arg(long)]
    pub delete: bool,
    /// Print what would be sent and deleted, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Files to move at once.
    #[arg(short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// The remote directory [default: the current one].
    pub remote: Option<String>,
    /// The local directory [default: the current one].
    pub local: Option<String>,
}

impl MirrorArgs {
    pub fn options(&self) -> crate::mirror::MirrorOptions {
        crate::mirror::MirrorOptions {
            reverse: self.reverse,
            delete: self.delete,
            dry_run: self.dry_run,
            jobs: self.jobs.into(),
        }
    }
}

/// `partials drop ...`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum PartialsAction {
    /// Delete partial uploads and give their space back.
    Drop {
        /// Every partial upload not running right now.
        #[arg(long, conflicts_with = "paths")]
        all: bool,
        /// The remote paths the uploads were going to.
        #[arg(required_unless_present = "all")]
        paths: Vec<String>,
    },
}

/// How `ls` and `lls` list: the flags of ls(1) that people type without thinking.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ListArgs {
    /// Long format: type, permissions, size, modification time (UTC) and name.
    #[arg(short = 'l')]
    pub long: bool,
    /// Show names starting with a dot.
    #[arg(short = 'a')]
    pub all: bool,
    /// Sizes in KiB, MiB, GiB (with -l).
    #[arg(short = 'h')]
    pub human: bool,
    /// Newest first.
    #[arg(short = 't')]
    pub by_time: bool,
    /// Largest first.
    #[arg(short = 'S', conflicts_with = "by_time")]
    pub by_size: bool,
    /// Reverse the order.
    #[arg(short = 'r')]
    pub reverse: bool,
    /// One name per line.
    #[arg(short = '1')]
    pub one_per_line: bool,
    /// List directories themselves, not their contents.
    #[arg(short = 'd')]
    pub directory: bool,
    /// List every directory below too (links to directories are not followed).
    #[arg(short = 'R', conflicts_with = "directory")]
    pub recursive: bool,
    /// Print help (-h means human-readable sizes here, as in ls).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    pub paths: Vec<String>,
}

/// The flags of du(1) that people type without thinking.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct DuArgs {
    /// Every file too, not only directories.
    #[arg(short = 'a', conflicts_with = "summarize")]
    pub all: bool,
    /// Only a total for each path.
    #[arg(short = 's', conflicts_with = "max_depth")]
    pub summarize: bool,
    /// Directories (and with -a files) at most N levels below each path.
    #[arg(short = 'd', long = "max-depth", value_name = "N")]
    pub max_depth: Option<u32>,
    /// Sizes in KiB, MiB, GiB rather than 1024-byte blocks.
    #[arg(short = 'h', conflicts_with = "bytes")]
    pub human: bool,
    /// Sizes in bytes.
    #[arg(short = 'b')]
    pub bytes: bool,
    /// Print help (-h means human-readable sizes here, as in du).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The directories or files [default: the current directory].
    pub paths: Vec<String>,
}

/// The tests of find(1) that people use most. Each may be typed with one dash, as find(1) takes
/// them, or two.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct FindArgs {
    /// Only names matching PATTERN (wildcards as in the shell; quote them).
    #[arg(long, value_name = "PATTERN")]
    pub name: Option<String>,
    /// Only files (f), directories (d) or symbolic links (l).
    #[arg(long = "type", value_name = "f|d|l")]
    pub kind: Option<FindKind>,
    /// Descend at most N levels below each path.
    #[arg(long = "maxdepth", value_name = "N")]
    pub max_depth: Option<u32>,
    /// Where to look [default: the current directory].
    pub paths: Vec<String>,
}

/// `find -type`'s letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FindKind {
    F,
    D,
    L,
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
    /// Resume partial transfers, as sftp's -a asks (what put and get do anyway).
    #[arg(short = 'a', conflicts_with = "no_resume")]
    pub resume: bool,
    /// Keep modification times.
    #[arg(short = 'p')]
    pub preserve: bool,
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
            preserve: self.preserve,
            glob_local: true,
        }
    }
}

/// Commands whose path arguments are all local, for completion.
pub const LOCAL_PATH_COMMANDS: &[&str] = &["lcd", "lls", "lmkdir"];

/// Commands whose first path is local and the rest remote, and the other way round (the
/// destination of a transfer is on the other side), for completion.
pub const LOCAL_THEN_REMOTE: &[&str] = &["put", "reput", "mput"];
pub const REMOTE_THEN_LOCAL: &[&str] = &["get", "reget", "mget"];

/// What a typed line turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Nothing but blanks or a comment.
    Empty,
    /// `--help` or similar: text to print.
    Help(String),
    /// `!COMMAND` (or `!` alone): run it in a local shell.
    Local(String),
    Command(ShellCommand),
}

/// Parses one command line with shell-like quoting.
pub fn parse_line(line: &str) -> Result<Parsed, ClientError> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Parsed::Empty);
    }
    if let Some(local) = trimmed.strip_prefix('!') {
        return Ok(Parsed::Local(local.trim().to_owned()));
    }
    if let Some(line) = crate::jobs::backgrounded(trimmed) {
        return match parse_line(line)? {
            Parsed::Command(command) => crate::jobs::background(command, line),
            _ => Err(crate::jobs::not_a_job()),
        };
    }
    let mut words =
        shlex::split(trimmed).ok_or_else(|| ClientError::Usage("unbalanced quotes".into()))?;
    if words.first().is_some_and(|command| command == "find") {
        for word in &mut words[1..] {
            if ["-name", "-type", "-maxdepth"].contains(&word.as_str()) {
                word.insert(0, '-');
            }
        }
    }
    match Line::try_parse_from(&words) {
        Ok(line) => {
            // FROM... TO: clap cannot say "missing TO" of one list, so it is checked here, where
            // a batch finds its usage errors before it runs anything.
            if let ShellCommand::Mv { paths } | ShellCommand::Cp { paths, .. } = &line.command {
                crate::rearrange::split(&words[0], paths)?;
            }
            Ok(Parsed::Command(line.command))
        }
        Err(err) if matches!(err.kind(), clap::error::ErrorKind::DisplayHelp) => {
            Ok(Parsed::Help(err.render().to_string()))
        }
        Err(err) => Err(ClientError::Usage(plain_error(&err, &words))),
    }
}

/// clap's error as a short sentence a person reads at a prompt.
fn plain_error(err: &clap::Error, words: &[String]) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let command = words.first().map_or("", String::as_str);
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(text)) => text.clone(),
        Some(ContextValue::Strings(texts)) => texts.join(", "),
        _ => String::new(),
    };
    match err.kind() {
        ErrorKind::InvalidSubcommand => format!("unknown command: {command} (try: help)"),
        ErrorKind::MissingRequiredArgument => format!(
            "{command}: missing {} (try: help {command})",
            context(ContextKind::InvalidArg).to_lowercase().replace(['<', '>'], "")
        ),
        ErrorKind::UnknownArgument => format!(
            "{command}: unknown option {} (try: help {command})",
            context(ContextKind::InvalidArg)
        ),
        ErrorKind::TooManyValues | ErrorKind::WrongNumberOfValues => {
            format!("{command}: too many arguments (try: help {command})")
        }
        _ => {
            let text = err.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            format!("{command}: {first} (try: help {command})")
        }
    }
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
        let about = about.split(':').next().unwrap_or_default().trim_end_matches('.');
        let aliases: Vec<&str> = sub.get_visible_aliases().collect();
        let aliases = if aliases.is_empty() {
            String::new()
        } else {
            format!(" (also {})", aliases.join(", "))
        };
        text.push_str(&format!("  {:<8} {about}{aliases}\n", sub.get_name()));
    }
    text.push_str(
        "  CMD &    run a put, get, mirror or cp in the background (see jobs, wait, kill)\n",
    );
    text.push_str("  !CMD     run CMD in a local shell (! alone: an interactive one)\n");
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
        assert_eq!(parse(r"stat a\ b"), ShellCommand::Stat { paths: vec!["a b".into()] });
        assert_eq!(
            parse("ls -la \"x y\""),
            ShellCommand::Ls(ListArgs {
                long: true,
                all: true,
                paths: vec!["x y".into()],
                ..ListArgs::default()
            })
        );
    }

    #[test]
    fn the_command_definitions_are_consistent() {
        Line::command().debug_assert();
    }

    #[test]
    fn aliases_help_and_errors() {
        assert_eq!(parse("quit"), ShellCommand::Exit);
        assert_eq!(parse_line("  # note").expect("comment"), Parsed::Empty);
        assert!(matches!(parse_line("ls --help"), Ok(Parsed::Help(text)) if text.contains("-l")));
        assert!(
            matches!(parse("ls -lhtr1"), ShellCommand::Ls(a) if a.human && a.by_time && a.reverse && a.one_per_line)
        );
        assert_eq!(parse_line("!ls -l").expect("local"), Parsed::Local("ls -l".into()));
        assert_eq!(parse("reget a"), parse("get a"));
        assert!(
            matches!(parse_line("frobnicate"), Err(ClientError::Usage(m)) if m == "unknown command: frobnicate (try: help)")
        );
        assert!(
            matches!(parse_line("mv a"), Err(ClientError::Usage(m)) if m.starts_with("mv: missing"))
        );
        assert!(matches!(parse_line("frobnicate"), Err(ClientError::Usage(_))));
        assert!(matches!(parse_line("rm"), Err(ClientError::Usage(_))));
        assert!(matches!(parse_line("cd 'open"), Err(ClientError::Usage(_))));
        assert!(command_names().contains(&"mkdir".to_owned()));
        assert!(usage_of("mv").expect("usage").contains("TO"));
    }
}
