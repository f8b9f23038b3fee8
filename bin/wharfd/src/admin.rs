//! `wharfd user ...`: accounts, passwords, quotas and login keys, written to the user store that a
//! running server re-reads (at every login, and every few seconds for open sessions).

use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use wharf_common::keys::PublicKey;

use crate::config::Config;
use crate::layout::Layout;
use crate::password::Passwords;
use crate::size::{Quota, format_bytes};
use crate::storage::Storage;
use crate::users::{AuthorizedKey, UserRecord, UserStore, validate_name};

/// Most keys one user may have: a record is read at every login.
pub const MAX_KEYS_PER_USER: usize = 64;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
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
        /// No password: the user logs in with keys only (add one with `user key add`).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
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
    /// Manage a user's login keys (seen by a running server at once).
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Authorise a public key (a `wharf keygen` .pub file, or - for standard input).
    Add { name: String, public_key_file: PathBuf },
    /// List a user's keys with their fingerprints.
    List { name: String },
    /// Remove a key, named by its fingerprint (or a unique start of it); sessions using it end.
    Del { name: String, fingerprint: String },
}

/// The configured backend, for the user commands.
pub async fn storage(layout: &Layout, config: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    let pool = crate::blocking::BlockingPool::new(config.server.blocking_ops);
    crate::storage::open(layout, config, pool).await
}

pub fn user_command(layout: &Layout, action: UserCommand) -> anyhow::Result<()> {
    let config = Config::load(&layout.config())?;
    crate::layout::private_dir(&layout.users())?;
    let rt = crate::cli::runtime()?;
    let store = UserStore::open(layout, &config, rt.handle().clone())?;
    let admin = Admin { layout, config, store, rt };
    let store = &admin.store;
    match action {
        UserCommand::Add { name, quota, password_stdin, reuse_home, no_password } => {
            let password = (!no_password).then_some(password_stdin);
            admin.add(&name, quota, password, reuse_home)?;
        }
        UserCommand::Passwd { name, password_stdin } => {
            let mut record = store.get(&name)?;
            let password = read_new_password(password_stdin)?;
            record.password = Some(Passwords::new(&admin.config.auth)?.hash(&password)?);
            store.save(&record)?;
            println!("password changed for {name}");
        }
        UserCommand::Del { name, purge } => {
            store.remove(&name)?;
            if purge {
                admin.rt.block_on(admin.storage()?.remove_home(&name))?;
                println!("deleted user {name} and their home");
            } else {
                let home = layout.homes().join(&name);
                println!("deleted user {name} (home kept in {})", home.display());
            }
        }
        UserCommand::List => admin.list()?,
        UserCommand::Quota { name, size } => {
            let mut record = store.get(&name)?;
            record.quota = size.limit();
            store.save(&record)?;
            println!("quota of {name} set to {size}");
        }
        UserCommand::Key { action } => key_command(store, action)?,
    }
    Ok(())
}

/// What the user commands work on.
struct Admin<'a> {
    layout: &'a Layout,
    config: Config,
    store: UserStore,
    rt: tokio::runtime::Runtime,
}

impl Admin<'_> {
    fn storage(&self) -> anyhow::Result<Arc<dyn Storage>> {
        self.rt.block_on(storage(self.layout, &self.config))
    }

    /// `user add`: a new record and its home. `password` says whether to read a password from
    /// standard input (`Some(true)`), ask for one (`Some(false)`), or set none (`None`).
    fn add(
        &self,
        name: &str,
        quota: Option<Quota>,
        password: Option<bool>,
        reuse_home: bool,
    ) -> anyhow::Result<()> {
        validate_name(name)?;
        if self.store.load(name)?.is_some() {
            bail!("user {name:?} already exists");
        }
        if home_in_use(self.layout, name) && !reuse_home {
            bail!(
                "{} holds files left by an earlier user named {name}: add --reuse-home to give \
                 them to the new user, or delete that folder first",
                self.layout.homes().join(name).display()
            );
        }
        let quota = match quota {
            Some(quota) => quota,
            None => self.config.default_quota().map_err(anyhow::Error::msg)?,
        };
        let password = match password {
            Some(from_stdin) => {
                let password = read_new_password(from_stdin)?;
                Some(Passwords::new(&self.config.auth)?.hash(&password)?)
            }
            None => None,
        };
        self.rt.block_on(self.storage()?.create_home(name))?;
        let keys = Vec::new();
        self.store.create(&UserRecord {
            name: name.to_owned(),
            password,
            quota: quota.limit(),
            keys,
        })?;
        println!("added user {name} with quota {quota}");
        Ok(())
    }

    /// `user list`: each user's quota and what their home holds.
    fn list(&self) -> anyhow::Result<()> {
        let storage = self.storage()?;
        println!("{:<32} {:>12} {:>12}", "USER", "QUOTA", "USED");
        for user in self.store.list()? {
            let used = self.rt.block_on(async {
                let home = storage.open_home(&user.name).await?;
                home.usage().await
            });
            let used = used.map_or_else(|err| format!("? ({})", err.code), format_bytes);
            let quota = Quota::from_limit(user.quota).to_string();
            println!("{:<32} {:>12} {:>12}", user.name, quota, used);
        }
        Ok(())
    }
}

fn key_command(store: &UserStore, action: KeyCommand) -> anyhow::Result<()> {
    match action {
        KeyCommand::Add { name, public_key_file } => {
            let mut record = store.get(&name)?;
            let text = if public_key_file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).context("reading the key")?;
                text
            } else {
                std::fs::read_to_string(&public_key_file)
                    .with_context(|| format!("reading {}", public_key_file.display()))?
            };
            let (key, comment) = PublicKey::parse_line(&text)?;
            if record.has_key(&key) {
                bail!("{name} already has key {}", key.fingerprint());
            }
            if record.keys.len() >= MAX_KEYS_PER_USER {
                bail!("{name} has {MAX_KEYS_PER_USER} keys already; remove one first");
            }
            record.keys.push(AuthorizedKey { public: key.to_base64(), comment });
            store.save(&record)?;
            println!("added key {} for {name}", key.fingerprint());
        }
        KeyCommand::List { name } => {
            let record = store.get(&name)?;
            if record.keys.is_empty() {
                println!("{name} has no keys");
            }
            for listed in &record.keys {
                let fingerprint =
                    listed.key().map_or_else(|| "(unreadable)".to_owned(), |k| k.fingerprint());
                println!("{fingerprint}  {}", listed.comment);
            }
        }
        KeyCommand::Del { name, fingerprint } => {
            let mut record = store.get(&name)?;
            let matching: Vec<usize> = record
                .keys
                .iter()
                .enumerate()
                .filter(|(_, listed)| {
                    listed.key().is_some_and(|key| key.fingerprint().starts_with(&fingerprint))
                })
                .map(|(index, _)| index)
                .collect();
            let index = match matching.as_slice() {
                [index] => *index,
                [] => bail!("{name} has no key {fingerprint} (see `wharfd user key list {name}`)"),
                _ => bail!("{fingerprint} names several of {name}'s keys: give more of it"),
            };
            let removed = record.keys.remove(index);
            store.save(&record)?;
            let shown = removed.key().map_or_else(String::new, |k| k.fingerprint());
            println!("removed key {shown} of {name}");
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
    } else if !std::io::stdin().is_terminal() {
        // A password piped in without the flag would be ignored for a prompt on the terminal, or
        // fail with no terminal at all: say what to do instead.
        bail!(
            "standard input is not a terminal: pass --password-stdin to read the password from it"
        );
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

/// Whether `name` has a home with something in it: files of a deleted user of that name.
pub fn home_in_use(layout: &Layout, name: &str) -> bool {
    std::fs::read_dir(layout.homes().join(name)).is_ok_and(|mut entries| entries.next().is_some())
}
