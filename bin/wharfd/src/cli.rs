//! The `wharfd` command line: `setup`, `user add|passwd|del|list|quota`, and `serve` (the default).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::layout::Layout;
use crate::password::{Passwords, random_password};
use crate::users::{UserRecord, UserStore};

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
        action: crate::admin::UserCommand,
    },
    /// Create or upgrade the schema of the database in [database] (for the s3 backend).
    Migrate,
    /// Run the server (the default command).
    Serve {
        /// UDP address to listen on, overriding the configuration.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
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
        Command::User { action } => crate::admin::user_command(&layout, action),
        Command::Migrate => migrate(&layout),
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

/// `wharfd migrate`: brings the database's schema to this build's version.
fn migrate(layout: &Layout) -> anyhow::Result<()> {
    let config = Config::load(&layout.config())?;
    if config.database.url.is_empty() {
        bail!("no database.url in {}: nothing to migrate", layout.config().display());
    }
    runtime()?.block_on(async {
        let pool = crate::db::pool(&config.database)?;
        let applied = crate::db::migrate(&pool).await?;
        match applied.as_slice() {
            [] => println!("the schema is up to date (version {})", crate::db::SCHEMA_VERSION),
            versions => println!(
                "applied migrations {versions:?}; the schema is at version {}",
                crate::db::SCHEMA_VERSION
            ),
        }
        Ok(())
    })
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn serve(layout: &Layout, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let report = crate::setup::setup(layout, &[], false)?;
    let config = Config::load(&layout.config())?;
    let logs = crate::logging::init(layout, &config.log.level).context("opening the logs")?;
    log_open_files(&config, crate::open_files::raise_to_hard_limit());
    let listen = listen.unwrap_or(config.server.listen);
    let cert = config.tls.cert_path(layout.root());
    let fingerprint = match wharf_common::tls::load_certs(&cert)?.first() {
        Some(first) => wharf_common::tls::fingerprint(first),
        None => report.fingerprint.clone(),
    };

    let rt = runtime()?;
    // Bind first: a server that cannot start must not leave a demo user whose password nobody saw.
    let server = rt.block_on(crate::server::Server::bind(layout, config.clone(), listen))?;
    let demo = rt.block_on(create_demo_user(layout, &config))?;
    let addr = server.local_addr()?;
    // Signals are listened for before the server says it listens, which is when they may come.
    let (shutdown, reopen_logs) = {
        let _in_runtime = rt.enter();
        let reopen = crate::logging::reopen_on_sighup(std::sync::Arc::new(logs));
        (crate::server::shutdown_signal(), reopen)
    };
    rt.spawn(reopen_logs);
    announce(layout, &cert, addr, &fingerprint, &demo)?;
    rt.block_on(server.run(shutdown));
    Ok(())
}

/// Says what the open-files limit is, and warns when it holds the uploads of fewer busy
/// connections than `server.max_connections` allows.
fn log_open_files(config: &Config, limit: crate::open_files::OpenFiles) {
    let in_flight = config.server.max_requests_in_flight as u64;
    let allowed = config.server.max_connections as u64;
    let (before, now) = (limit.before, limit.now);
    match limit.busy_connections(in_flight) {
        Some(held) if held < allowed => tracing::warn!(
            ?before,
            ?now,
            "the open-files limit holds the uploads of {held} busy connections, of the {allowed} \
             allowed: raise the hard limit (LimitNOFILE=, ulimit -Hn) or lower \
             server.max_requests_in_flight"
        ),
        _ => tracing::info!(?before, ?now, "open-files limit"),
    }
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

/// Creates the user `demo` with a random password when there are no users at all. Nodes that
/// share a database never invent an account: their users are added with `wharfd user add`.
async fn create_demo_user(layout: &Layout, config: &Config) -> anyhow::Result<Demo> {
    if !config.database.url.is_empty() {
        return Ok(Demo::NotNeeded);
    }
    let store = UserStore::new(layout.users());
    if !store.list()?.is_empty() {
        return Ok(Demo::NotNeeded);
    }
    if crate::admin::home_in_use(layout, "demo") {
        return Ok(Demo::HomeTaken);
    }
    let password = random_password(16);
    let hash = Passwords::new(&config.auth)?.hash(&password)?;
    let quota = config.default_quota().map_err(anyhow::Error::msg)?;
    crate::admin::storage(layout, config).await?.create_home("demo").await?;
    let record = UserRecord {
        name: "demo".into(),
        password: Some(hash),
        quota: quota.limit(),
        keys: Vec::new(),
    };
    store.create(&record)?;
    Ok(Demo::Created { password })
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
