//! The `wharf` command line: connect, log in, then run the shell or a batch.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::commands::TransferArgs;
use crate::copy::CopyOptions;
use crate::credentials::log_in_then;
use crate::error::{ClientError, Result};
use crate::session::{AskUser, ConnectOptions, Session, Trust, UnknownHost};
use crate::target::{ShellTarget, Target, is_url, parse_url};
use crate::trust::KnownHosts;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a command failed
  2  usage error (arguments, or a batch command that does not parse)
  3  connection or host key problem (unreachable, certificate unknown or changed, connection lost)
  4  authentication failed

A key (-i FILE, or ~/.config/wharf/id_ed25519) is tried first; its passphrase comes from
WHARF_KEY_PASSPHRASE or the terminal. The password is taken from WHARF_PASSWORD, or asked for on
the terminal when standard input is one.";

/// Exit status when standard output was closed under us: 128 + SIGPIPE, as shells report it.
const BROKEN_PIPE_EXIT: u8 = 141;

#[derive(Debug, Parser)]
#[command(
    name = "wharf",
    version,
    about = "wharf client: a shell for wharfd file servers",
    after_help = EXIT_CODES,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    override_usage = "wharf [OPTIONS] [USER@]HOST[:PORT] | wharf://[USER@]HOST[:PORT]/DIR\n       \
                      wharf [OPTIONS] get [-r] [-j N] [--no-resume] wharf://[USER@]HOST[:PORT]/PATH... [LOCAL]\n       \
                      wharf [OPTIONS] put [-r] [-j N] [--no-resume] LOCAL... wharf://[USER@]HOST[:PORT]/DIR\n       \
                      wharf [OPTIONS] mirror [-R] [--delete] [--dry-run] [-j N] wharf://[USER@]HOST[:PORT]/DIR [LOCAL]\n       \
                      wharf keygen [--no-passphrase] [-C COMMENT] [FILE]"
)]
struct Args {
    /// Trust the server certificate(s) in FILE (a CA, or the server's own certificate) instead of
    /// known_hosts pinning.
    #[arg(long, value_name = "FILE", global = true)]
    ca: Option<PathBuf>,
    /// Trust servers whose certificate a CA in the system's store signed (a certificate from a public
    /// CA), instead of known_hosts pinning.
    #[arg(long, conflicts_with = "ca", global = true)]
    system_ca: bool,
    /// Known-hosts file for certificate pinning [default: ~/.config/wharf/known_hosts].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ca", "system_ca"], global = true)]
    known_hosts: Option<PathBuf>,
    /// Trust and record a server seen for the first time without asking.
    #[arg(long, global = true)]
    accept_new_host: bool,
    /// Run these commands (separated by ';') and exit.
    #[arg(short = 'c', value_name = "COMMANDS", conflicts_with = "batch")]
    commands: Option<String>,
    /// Run the commands in FILE (one per line) and exit.
    #[arg(short = 'b', value_name = "FILE")]
    batch: Option<PathBuf>,
    /// Log in with the private key in FILE (made by `wharf keygen`) [default:
    /// ~/.config/wharf/id_ed25519, if it exists]; a password is asked for only if the key is refused.
    #[arg(short = 'i', value_name = "FILE", global = true)]
    identity: Option<PathBuf>,
    /// Seconds to wait for the server to answer the handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10, global = true)]
    connect_timeout: u64,
    /// Congestion controller for what this client sends: tolerant, bbr, cubic or newreno (the
    /// server picks its own, in `[transport] congestion`).
    #[arg(long, value_name = "NAME", default_value = "tolerant", global = true)]
    congestion: wharf_common::net::Congestion,
    /// The server: [USER@]HOST[:PORT] (port 4433 by default), or wharf://[USER@]HOST[:PORT]/DIR to
    /// start in DIR.
    #[arg(required = true)]
    target: Option<ShellTarget>,
    #[command(subcommand)]
    one_shot: Option<OneShot>,
}

/// scp-like transfers without a shell.
#[derive(Debug, clap::Subcommand)]
enum OneShot {
    /// Download: wharf get wharf://[USER@]HOST[:PORT]/PATH... [LOCAL] (here without LOCAL)
    Get(TransferArgs),
    /// Upload: wharf put LOCAL... wharf://[USER@]HOST[:PORT]/DIR
    Put(TransferArgs),
    /// Mirror: wharf mirror [-R] [--delete] [--dry-run] [-j N] wharf://[USER@]HOST[:PORT]/DIR [LOCAL]
    Mirror(crate::commands::MirrorArgs),
    /// Make an Ed25519 key pair for key logins: FILE (private, mode 0600) and FILE.pub, which the
    /// server's administrator adds with `wharfd user key add`.
    Keygen {
        /// Where to write the private key [default: ~/.config/wharf/id_ed25519].
        file: Option<PathBuf>,
        /// Do not protect the key with a passphrase (for unattended scripts).
        #[arg(long)]
        no_passphrase: bool,
        /// A comment for the public key (who and where) [default: USER@HOST].
        #[arg(short = 'C', value_name = "COMMENT")]
        comment: Option<String>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    init_logging();
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("wharf: cannot start the async runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
    match run(args, &runtime) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`wharf ... | head`): end quietly, with the status a
        // shell reports for a program ended by SIGPIPE, as cat or ls would.
        Err(err) if err.is_broken_pipe() => ExitCode::from(BROKEN_PIPE_EXIT),
        Err(err) => {
            eprintln!("wharf: {}", crate::format::printable(&err.to_string()));
            err.exit()
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// What to do once logged in.
enum Work {
    /// The interactive shell.
    Shell,
    Once(Once),
}

/// Work that runs once and exits: what the command line asked for, but the shell.
enum Once {
    /// Commands from `-c`, `-b` or standard input.
    Script(String),
    Get(Vec<String>, CopyOptions),
    Put(Vec<String>, CopyOptions),
    Mirror(crate::commands::MirrorArgs),
}

fn run(mut args: Args, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if let Some(OneShot::Keygen { file, no_passphrase, comment }) = &args.one_shot {
        return keygen(file.clone(), *no_passphrase, comment.clone());
    }
    let mut start_dir = None;
    let (target, work) = match args.one_shot.take() {
        Some(_) if args.target.is_some() => {
            return Err(ClientError::Usage(
                "give the server in the wharf:// URL, not before get or put".into(),
            ));
        }
        Some(one_shot) => one_shot_work(one_shot)?,
        None => {
            let shell =
                args.target.clone().ok_or_else(|| ClientError::Usage("no server given".into()))?;
            start_dir = shell.start_dir;
            (shell.target, script_or_shell(&args)?)
        }
    };
    let interactive = match &work {
        Work::Shell => true,
        Work::Once(Once::Script(_)) => false,
        Work::Once(_) => std::io::stdin().is_terminal(),
    };
    let user = match &target.user {
        Some(user) => user.clone(),
        None => std::env::var("USER")
            .map_err(|_| ClientError::Usage("no user name: use USER@HOST".into()))?,
    };
    let mut options = ConnectOptions::new(target, trust(&args, interactive));
    options.connect_timeout = std::time::Duration::from_secs(args.connect_timeout);
    options.transport.congestion = args.congestion;

    let session = Arc::new(runtime.block_on(Session::connect(&options))?);
    let identity = args.identity.as_deref();
    // The `cd` into a URL's folder goes out behind the login, as the first command does.
    let start = async {
        match &start_dir {
            Some(dir) => session.cd(dir).await.map(drop),
            None => Ok(()),
        }
    };
    let outcome = match work {
        Work::Shell => {
            log_in_then(&session, &user, identity, runtime, start)?;
            crate::shell::run(session.clone(), runtime)
        }
        Work::Once(once) => log_in_then(&session, &user, identity, runtime, async {
            start.await?;
            run_once(&session, once).await
        }),
    };
    if let Ok(session) = Arc::try_unwrap(session) {
        runtime.block_on(session.close());
    }
    outcome
}

/// Runs what the command line asked for, but the interactive shell.
async fn run_once(session: &Arc<Session>, once: Once) -> Result<()> {
    match once {
        Once::Script(script) => crate::batch::run(session, &script).await,
        Once::Get(paths, copy) => crate::copy::get(session, &paths, copy).await,
        Once::Put(paths, copy) => crate::copy::put(session, &paths, copy).await,
        Once::Mirror(args) => {
            let (remote, local) = (args.remote.as_deref(), args.local.as_deref());
            crate::mirror::mirror(session, remote, local, args.options(), &mut std::io::stdout())
                .await
        }
    }
}

/// Turns `wharf get URL... LOCAL` or `wharf put LOCAL... URL` into a server and copy arguments.
fn one_shot_work(one_shot: OneShot) -> Result<(Target, Work)> {
    let (is_get, args) = match one_shot {
        OneShot::Get(args) => (true, args),
        OneShot::Put(args) => (false, args),
        OneShot::Keygen { .. } => return Err(ClientError::Usage("keygen takes no server".into())),
        OneShot::Mirror(mut args) => {
            let url = args.remote.take().ok_or_else(|| {
                ClientError::Usage("mirror needs wharf://[USER@]HOST[:PORT]/DIR".into())
            })?;
            let (target, path) = parse_url(&url)?;
            args.remote = Some(path);
            return Ok((target, Work::Once(Once::Mirror(args))));
        }
    };
    let mut options = args.options();
    // The user's shell has expanded the local paths already; globbing them again would turn a
    // name like `report[1].txt` into a pattern.
    options.glob_local = false;
    let (last, sources) =
        args.paths.split_last().ok_or_else(|| ClientError::Usage("nothing to copy".into()))?;
    // `wharf get URL...` without a local destination downloads here, as `sftp HOST:FILE` does.
    let here = ".".to_owned();
    let (last, sources) =
        if is_get && is_url(last) { (&here, args.paths.as_slice()) } else { (last, sources) };
    if sources.is_empty() {
        return Err(ClientError::Usage("give one or more sources, then the destination".into()));
    }
    if is_get {
        let mut target = None;
        let mut paths = Vec::new();
        for url in sources {
            let (server, path) = parse_url(url)?;
            if target.as_ref().is_some_and(|t: &Target| *t != server) {
                return Err(ClientError::Usage("all sources must be on the same server".into()));
            }
            target = Some(server);
            paths.push(path);
        }
        paths.push(last.clone());
        let target = target.ok_or_else(|| ClientError::Usage("no source given".into()))?;
        Ok((target, Work::Once(Once::Get(paths, options))))
    } else {
        let (target, dir) = parse_url(last)?;
        let mut paths = sources.to_vec();
        paths.push(dir);
        Ok((target, Work::Once(Once::Put(paths, options))))
    }
}

/// Commands from `-c`, `-b` or a standard input that is not a terminal; otherwise the shell.
fn script_or_shell(args: &Args) -> Result<Work> {
    let script = if let Some(commands) = &args.commands {
        commands.clone()
    } else if let Some(file) = &args.batch {
        std::fs::read_to_string(file).map_err(|err| {
            ClientError::Usage(format!("cannot read batch file {}: {err}", file.display()))
        })?
    } else if std::io::stdin().is_terminal() {
        return Ok(Work::Shell);
    } else {
        let mut script = String::new();
        std::io::stdin()
            .read_to_string(&mut script)
            .map_err(|err| ClientError::local("reading commands from standard input", err))?;
        script
    };
    Ok(Work::Once(Once::Script(script)))
}

fn trust(args: &Args, interactive: bool) -> Trust {
    if let Some(ca) = &args.ca {
        return Trust::Ca(ca.clone());
    }
    if args.system_ca {
        return Trust::System;
    }
    let known_hosts =
        KnownHosts::new(args.known_hosts.clone().unwrap_or_else(KnownHosts::default_path));
    let unknown = if args.accept_new_host {
        UnknownHost::Accept
    } else if interactive {
        let ask: AskUser = Arc::new(|host, fingerprint| {
            // Called inside the async connect: let the runtime move other work off this thread.
            tokio::task::block_in_place(|| ask_about_host(host, fingerprint))
        });
        UnknownHost::Ask(ask)
    } else {
        UnknownHost::Refuse
    };
    Trust::Pinned { known_hosts, unknown }
}

fn ask_about_host(host: &str, fingerprint: &str) -> bool {
    eprint!(
        "The authenticity of host '{host}' can't be established.\n\
         Its certificate fingerprint is {fingerprint}.\n\
         Are you sure you want to continue connecting (yes/no)? "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y")
}

/// `wharf keygen`.
fn keygen(file: Option<PathBuf>, no_passphrase: bool, comment: Option<String>) -> Result<()> {
    let path = file.unwrap_or_else(crate::identity::default_key_path);
    let passphrase = if no_passphrase {
        None
    } else if let Ok(passphrase) = std::env::var("WHARF_KEY_PASSPHRASE") {
        Some(passphrase)
    } else if std::io::stdin().is_terminal() {
        let read = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map_err(|err| ClientError::local("reading the passphrase", err))
        };
        let first = read("Passphrase (empty for none): ")?;
        if !first.is_empty() && read("Same passphrase again: ")? != first {
            return Err(ClientError::Usage("the passphrases do not match".into()));
        }
        Some(first)
    } else {
        return Err(ClientError::Usage(
            "no terminal to ask for a passphrase: use --no-passphrase or set WHARF_KEY_PASSPHRASE"
                .into(),
        ));
    };
    let comment = comment.unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_default();
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{user}@{}", host.trim())
    });
    let public = crate::identity::generate(&path, passphrase.as_deref(), &comment)?;
    println!("wrote {} and {}", path.display(), crate::identity::public_path(&path).display());
    println!("key fingerprint {}", public.fingerprint());
    println!(
        "on the server: wharfd user key add NAME {}",
        crate::identity::public_path(&path).display()
    );
    Ok(())
}
