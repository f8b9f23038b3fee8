//! User records: one TOML file per user in `var/users/`, written atomically, or the same TOML text
//! in the database that several nodes share.
//!
//! A record holds the Argon2id PHC string and the quota, nothing else: the home is always
//! `var/homes/NAME`. The server reads the record at every login, so `wharfd user ...` changes take
//! effect without a restart.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wharf_common::keys::PublicKey;
use wharf_common::limits::MAX_USER_LEN;

use crate::db::Cached as _;

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub name: String,
    /// Argon2id hash in PHC string form (`$argon2id$v=19$m=...`); absent for a user with keys only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Bytes allowed; absent when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// Public keys the user may log in with. (Last: TOML writes tables after plain values.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<AuthorizedKey>,
}

/// One key a user may log in with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizedKey {
    /// The Ed25519 public key, base64.
    pub public: String,
    #[serde(default)]
    pub comment: String,
}

impl AuthorizedKey {
    /// The key, if the stored text is one.
    pub fn key(&self) -> Option<PublicKey> {
        PublicKey::from_base64(&self.public).ok()
    }
}

impl UserRecord {
    /// Whether `key` is one of the user's keys.
    pub fn has_key(&self, key: &PublicKey) -> bool {
        self.keys.iter().any(|listed| listed.key().as_ref() == Some(key))
    }
}

/// Why a user record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "invalid user name {0:?}: use 1-{MAX_USER_LEN} of a-z 0-9 _ . -, starting with a letter or _"
    )]
    InvalidName(String),
    #[error("user {0:?} does not exist")]
    NoSuchUser(String),
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("user record {path} is corrupt: {message}")]
    Corrupt { path: String, message: String },
    #[error("user store I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Checks a user name: it becomes a file name and a directory name, so it is kept to a safe alphabet.
pub fn validate_name(name: &str) -> Result<(), UserError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() <= MAX_USER_LEN {
        Ok(())
    } else {
        Err(UserError::InvalidName(name.to_owned()))
    }
}

/// Where user records live: one TOML file each in `var/users/`, or, on nodes that share a
/// database, the same TOML text in its `users` table.
#[derive(Debug, Clone)]
pub struct UserStore {
    backing: Backing,
}

#[derive(Clone)]
enum Backing {
    Files { dir: PathBuf },
    Database { pool: deadpool_postgres::Pool, runtime: tokio::runtime::Handle },
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backing::Files { dir } => f.debug_struct("Files").field("dir", dir).finish(),
            Backing::Database { .. } => f.write_str("Database"),
        }
    }
}

fn db_error(err: impl std::fmt::Display) -> UserError {
    UserError::Io { path: "the database".into(), source: std::io::Error::other(err.to_string()) }
}

fn parse_record(text: &str, name: &str, shown: &str) -> Result<UserRecord, UserError> {
    let record: UserRecord = toml::from_str(text)
        .map_err(|err| UserError::Corrupt { path: shown.to_owned(), message: err.to_string() })?;
    if record.name != name {
        return Err(UserError::Corrupt {
            path: shown.to_owned(),
            message: format!("record names user {:?}", record.name),
        });
    }
    Ok(record)
}

impl UserStore {
    /// Records in the directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> UserStore {
        UserStore { backing: Backing::Files { dir: dir.into() } }
    }

    /// The store the configuration names: the database's when `[database] url` is set, the
    /// root's `var/users/` otherwise. Its methods block: call them off the async runtime, which
    /// `runtime` belongs to.
    pub fn open(
        layout: &crate::layout::Layout,
        config: &crate::config::Config,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<UserStore> {
        if config.database.url.is_empty() {
            return Ok(UserStore::new(layout.users()));
        }
        let pool = crate::db::pool(&config.database)?;
        Ok(UserStore { backing: Backing::Database { pool, runtime } })
    }

    /// Whether records are shared through a database.
    pub fn is_shared(&self) -> bool {
        matches!(self.backing, Backing::Database { .. })
    }

    /// Runs a query against the database backing, to the end.
    fn query<T>(
        pool: &deadpool_postgres::Pool,
        runtime: &tokio::runtime::Handle,
        work: impl AsyncFnOnce(&deadpool_postgres::Object) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, UserError> {
        runtime.block_on(async {
            let client = pool.get().await.map_err(db_error)?;
            work(&client).await.map_err(db_error)
        })
    }

    fn path(dir: &std::path::Path, name: &str) -> Result<PathBuf, UserError> {
        validate_name(name)?;
        Ok(dir.join(format!("{name}.toml")))
    }

    /// The record of `name`, or `None` if there is none.
    pub fn load(&self, name: &str) -> Result<Option<UserRecord>, UserError> {
        match &self.backing {
            Backing::Files { dir } => {
                let path = Self::path(dir, name)?;
                let text = match fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(source) => return Err(io_error(&path, source)),
                };
                parse_record(&text, name, &path.display().to_string()).map(Some)
            }
            Backing::Database { pool, runtime } => {
                validate_name(name)?;
                let row = Self::query(pool, runtime, async |client| {
                    client
                        .query_opt_cached("SELECT record FROM users WHERE name = $1", &[&name])
                        .await
                })?;
                let shown = format!("the database's record of {name}");
                row.map(|row| parse_record(&row.get::<_, String>(0), name, &shown)).transpose()
            }
        }
    }

    /// The record of `name`, which must exist.
    pub fn get(&self, name: &str) -> Result<UserRecord, UserError> {
        self.load(name)?.ok_or_else(|| UserError::NoSuchUser(name.to_owned()))
    }

    /// Writes `record` atomically: in a file, a temporary file is written and synced, then renamed
    /// over the old record, and the directory is synced; in the database, one statement. A crash
    /// leaves the old record or the new one, never a mix.
    pub fn save(&self, record: &UserRecord) -> Result<(), UserError> {
        validate_name(&record.name)?;
        let text = toml::to_string(record).map_err(|err| UserError::Corrupt {
            path: record.name.clone(),
            message: err.to_string(),
        })?;
        match &self.backing {
            Backing::Files { dir } => {
                let path = Self::path(dir, &record.name)?;
                let write = || -> std::io::Result<()> {
                    // Password hashes: readable by the service's user alone.
                    let dir =
                        cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
                    let name = format!("{}.toml", record.name);
                    let durability = crate::atomic::Durability::Synced;
                    crate::atomic::replace(&dir, &name, text.as_bytes(), durability)
                };
                write().map_err(|source| io_error(&path, source))
            }
            Backing::Database { pool, runtime } => Self::query(pool, runtime, async |client| {
                client
                    .execute_cached(
                        "INSERT INTO users (name, record) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                        &[&record.name, &text],
                    )
                    .await
                    .map(drop)
            }),
        }
    }

    /// Saves a record for a user that must not exist yet.
    pub fn create(&self, record: &UserRecord) -> Result<(), UserError> {
        if self.load(&record.name)?.is_some() {
            return Err(UserError::Exists(record.name.clone()));
        }
        self.save(record)
    }

    /// Deletes the record of `name`, which must exist.
    pub fn remove(&self, name: &str) -> Result<(), UserError> {
        let removed = match &self.backing {
            Backing::Files { dir } => {
                let path = Self::path(dir, name)?;
                match fs::remove_file(&path) {
                    Ok(()) => true,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
                    Err(source) => return Err(io_error(&path, source)),
                }
            }
            Backing::Database { pool, runtime } => {
                validate_name(name)?;
                Self::query(pool, runtime, async |client| {
                    client.execute_cached("DELETE FROM users WHERE name = $1", &[&name]).await
                })? == 1
            }
        };
        if !removed {
            return Err(UserError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    /// Every user, sorted by name.
    pub fn list(&self) -> Result<Vec<UserRecord>, UserError> {
        let names = match &self.backing {
            Backing::Files { dir } => list_files(dir)?,
            Backing::Database { pool, runtime } => {
                let rows = Self::query(pool, runtime, async |client| {
                    client.query_cached("SELECT name FROM users", &[]).await
                })?;
                rows.iter().map(|row| row.get(0)).collect()
            }
        };
        let mut users = Vec::new();
        for name in names {
            if validate_name(&name).is_ok()
                && let Some(record) = self.load(&name)?
            {
                users.push(record);
            }
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }
}

/// The names of the records in `dir`.
fn list_files(dir: &std::path::Path) -> Result<Vec<String>, UserError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error(dir, source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        let file_name = entry.file_name();
        if let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".toml")) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn io_error(path: &std::path::Path, source: std::io::Error) -> UserError {
    UserError::Io { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_to_a_safe_alphabet() {
        for good in ["ann", "anna", "_svc", "a.b-c_9"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in
            ["", "..", ".hidden", "Ann", "a/b", "a b", "a\0", &"x".repeat(33), "-x", "9lives"]
        {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_round_trip_and_list_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = UserStore::new(dir.path());
        let bob = UserRecord {
            name: "bob".into(),
            password: Some("$argon2id$x".into()),
            quota: None,
            keys: Vec::new(),
        };
        let ann = UserRecord {
            name: "ann".into(),
            password: None,
            quota: Some(5),
            keys: vec![AuthorizedKey { public: "AAAA".into(), comment: "laptop".into() }],
        };
        store.create(&bob).expect("create bob");
        store.create(&ann).expect("create ann");
        assert!(matches!(store.create(&ann), Err(UserError::Exists(_))));
        assert_eq!(store.get("ann").expect("ann"), ann);
        let names: Vec<_> = store.list().expect("list").into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["ann", "bob"]);
        store.remove("bob").expect("remove");
        assert!(store.load("bob").expect("load").is_none());
        assert!(matches!(store.remove("bob"), Err(UserError::NoSuchUser(_))));
    }
}
