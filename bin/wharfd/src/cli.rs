//! The `wharfd` command line: `setup`, `user add|passwd|del|list|quota`, and `serve` (the default).

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::layout::Layout;
use crate::password::{Passwords, random_password};
use crate::size::{Quota, format_bytes};
use crate::storage::Storage as _;
use crate::storage::fs::FsStorage;
use crate::users::{UserRecord, UserStore, validate_name};

#[derive(Debug, Parser)]
#[command(name = "wharfd", version, about = "wharf file server over QUIC")]
struct Cli {
    /// Server root holding certs/, etc/ and var/.
    #[arg(long, global = true, default_value = ".")]
    root: PathBuf,
    /// UDP address to listen on, overriding the configuration (for `wharfd` alone, which serves).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the certificate, the default configuration and the var/ layout.
    Setup {
        /// Extra DNS name or IP address for the certificate (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Replace an existing certificate (clients that pinned the old one will refuse the new one).
        #[arg(long)]
        force: bool,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Run the server (the default command).
    Serve {
        /// UDP address to listen on, overriding the configuration.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user and their home.
    Add {
        name: String,
        /// Disk quota: 500MiB, 10GB, 2G or unlimited (default from the configuration).
        #[arg(long, value_name = "SIZE")]
        quota: Option<Quota>,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Give the new user the files a deleted user of the same name left in their home.
        #[arg(long)]
        reuse_home: bool,
    },
    /// Change a user's password (their open sessions end).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user (their open sessions end; their home stays unless --purge).
    Del {
        name: String,
        /// Also delete the user's home and everything in it.
        #[arg(long)]
        purge: bool,
    },
    /// List users with their quota and usage.
    List,
    /// Set a user's quota.
    Quota { name: String, size: Quota },
}

/// Entry point of the binary: parses arguments, runs, and maps errors to exit codes
/// (0 success, 1 failure, 2 usage).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wharfd: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let layout = Layout::new(cli.root);
    let command = match cli.command {
        Some(_) if cli.listen.is_some() => {
            bail!("--listen goes with serve: wharfd serve --listen ADDR (or wharfd --listen ADDR)")
        }
        Some(command) => command,
        None => {
            // `wharfd` alone serves an existing root; creating one takes an explicit command, so
            // that running it in the wrong folder does not litter that folder.
            if !layout.config().exists() && !layout.cert().exists() {
                bail!(
                    "{} is not a wharfd root (no etc/wharfd.toml or certs/): run `wharfd setup` \
                     or `wharfd serve` to make one here, or give --root DIR",
                    display_root(&layout)
                );
            }
            Command::Serve { listen: cli.listen }
        }
    };
    match command {
        Command::Setup { hosts, force } => {
            let report = crate::setup::setup(&layout, &hosts, force)?;
            let verb = if report.cert_created { "generated" } else { "kept existing" };
            println!("{verb} certificate {}", layout.cert().display());
            if report.config_created {
                println!("wrote {}", layout.config().display());
            }
            println!("fingerprint {}", report.fingerprint);
            Ok(())
        }
        Command::User { action } => user_command(&layout, action),
        Command::Serve { listen } => serve(&layout, listen),
    }
}

/// The root as a person would recognise it: absolute where possible.
fn display_root(layout: &Layout) -> String {
    std::fs::canonicalize(layout.root())
        .unwrap_or_else(|_| layout.root().to_owned())
        .display()
        .to_string()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn storage(layout: &Layout, config: &Config) -> anyhow::Result<FsStorage> {
    std::fs::create_dir_all(layout.homes())?;
    let pool = crate::blocking::BlockingPool::new(config.server.blocking_ops);
    FsStorage::open(layout, pool).with_context(|| format!("opening {}", layout.homes().display()))
}

fn user_command(layout: &Layout, action: UserCommand) -> anyhow::Result<()> {
    let config = Config::load(&layout.config())?;
    let store = UserStore::new(layout.users());
    crate::layout::private_dir(&layout.users())?;
    let rt = runtime()?;
    match action {
        UserCommand::Add { name, quota, password_stdin, reuse_home } => {
            validate_name(&name)?;
            if store.load(&name)?.is_some() {
                bail!("user {name:?} already exists");
            }
            if home_in_use(layout, &name) && !reuse_home {
                bail!(
                    "{} holds files left by an earlier user named {name}: add --reuse-home to \
                     give them to the new user, or delete that folder first",
                    layout.homes().join(&name).display()
                );
            }
            let quota = match quota {
                Some(quota) => quota,
                None => config.default_quota().map_err(anyhow::Error::msg)?,
            };
            let password = read_new_password(password_stdin)?;
            let hash = Passwords::new(&config.auth)?.hash(&password)?;
            rt.block_on(storage(layout, &config)?.create_home(&name))?;
            store.create(&UserRecord {
                name: name.clone(),
                password: hash,
                quota: quota.limit(),
            })?;
            println!("added user {name} with quota {quota}");
        }
        UserCommand::Passwd { name, password_stdin } => {
            let mut record = store.get(&name)?;
            let password = read_new_password(password_stdin)?;
            record.password = Passwords::new(&config.auth)?.hash(&password)?;
            store.save(&record)?;
            println!("password changed for {name}");
        }
        UserCommand::Del { name, purge } => {
            store.remove(&name)?;
            if purge {
                rt.block_on(storage(layout, &config)?.remove_home(&name))?;
                println!("deleted user {name} and their home");
            } else {
                println!(
                    "deleted user {name} (home kept in {})",
                    layout.homes().join(&name).display()
                );
            }
        }
        UserCommand::List => {
            let storage = storage(layout, &config)?;
            println!("{:<32} {:>12} {:>12}", "USER", "QUOTA", "USED");
            for user in store.list()? {
                let used = rt.block_on(async {
                    let home = storage.open_home(&user.name).await?;
                    home.usage().await
                });
                let used = used.map_or_else(|err| format!("? ({})", err.code), format_bytes);
                println!(
                    "{:<32} {:>12} {:>12}",
                    user.name,
                    Quota::from_limit(user.quota).to_string(),
                    used
                );
            }
        }
        UserCommand::Quota { name, size } => {
            let mut record = store.get(&name)?;
            record.quota = size.limit();
            store.save(&record)?;
            println!("quota of {name} set to {size}");
        }
    }
    Ok(())
}

/// Reads a new password: one line of standard input, or twice from a hidden prompt.
fn read_new_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("New password: ").context("reading the password")?;
        let second =
            rpassword::prompt_password("Repeat password: ").context("reading the password")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    };
    if password.is_empty() {
        bail!("the password must not be empty");
    }
    if password.len() > wharf_common::limits::MAX_PASSWORD_LEN {
        bail!("the password is longer than {} bytes", wharf_common::limits::MAX_PASSWORD_LEN);
    }
    Ok(password)
}

fn serve(layout: &Layout, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let report = crate::setup::setup(layout, &[], false)?;
    let config = Config::load(&layout.config())?;
    let logs = crate::logging::init(layout, &config.log.level).context("opening the logs")?;
    let listen = listen.unwrap_or(config.server.listen);
    let cert = config.tls.cert_path(layout.root());
    let fingerprint = match wharf_common::tls::load_certs(&cert)?.first() {
        Some(first) => wharf_common::tls::fingerprint(first),
        None => report.fingerprint.clone(),
    };

    let rt = runtime()?;
    // Bind first: a server that cannot start must not leave a demo user whose password nobody saw.
    let server =
        rt.block_on(async { crate::server::Server::bind(layout, config.clone(), listen) })?;
    let demo = rt.block_on(create_demo_user(layout, &config))?;
    let addr = server.local_addr()?;
    announce(layout, &cert, addr, &fingerprint, &demo)?;
    rt.spawn(crate::logging::reopen_on_sighup(std::sync::Arc::new(logs)));
    rt.block_on(server.run(crate::server::shutdown_signal()));
    Ok(())
}

/// What serving a root without users did about `demo`.
enum Demo {
    /// There were users already.
    NotNeeded,
    Created {
        password: String,
    },
    /// A home named `demo` is left from an earlier user: it is not handed to a new account silently.
    HomeTaken,
}

/// Creates the user `demo` with a random password when there are no users at all.
async fn create_demo_user(layout: &Layout, config: &Config) -> anyhow::Result<Demo> {
    let store = UserStore::new(layout.users());
    if !store.list()?.is_empty() {
        return Ok(Demo::NotNeeded);
    }
    if home_in_use(layout, "demo") {
        return Ok(Demo::HomeTaken);
    }
    let password = random_password(16);
    let hash = Passwords::new(&config.auth)?.hash(&password)?;
    let quota = config.default_quota().map_err(anyhow::Error::msg)?;
    storage(layout, config)?.create_home("demo").await?;
    store.create(&UserRecord { name: "demo".into(), password: hash, quota: quota.limit() })?;
    Ok(Demo::Created { password })
}

/// Whether `name` has a home with something in it: files of a deleted user of that name.
fn home_in_use(layout: &Layout, name: &str) -> bool {
    std::fs::read_dir(layout.homes().join(name)).is_ok_and(|mut entries| entries.next().is_some())
}

/// Prints the machine-readable `listening on` line (tests read it) and, once, the demo login.
fn announce(
    layout: &Layout,
    cert: &std::path::Path,
    addr: SocketAddr,
    fingerprint: &str,
    demo: &Demo,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "wharfd listening on {addr}")?;
    writeln!(out, "certificate fingerprint {fingerprint}")?;
    match demo {
        Demo::NotNeeded => {}
        Demo::Created { password } => {
            let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
                "localhost".to_owned()
            } else {
                addr.ip().to_string()
            };
            let cert = std::fs::canonicalize(cert).unwrap_or_else(|_| cert.to_owned());
            writeln!(out, "created user demo with password {password} (shown only this once)")?;
            writeln!(out, "connect with:")?;
            writeln!(out, "  wharf --ca {} demo@{host}:{}", cert.display(), addr.port())?;
        }
        Demo::HomeTaken => {
            let home = layout.homes().join("demo");
            writeln!(
                out,
                "no users, and {} still holds an earlier demo user's files, so demo was not \
                 created again; add a user with `wharfd user add NAME` (--reuse-home to give \
                 them that home), or delete the folder",
                home.display()
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
