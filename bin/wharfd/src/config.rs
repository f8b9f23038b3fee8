//! The server configuration, read from `etc/wharfd.toml`.
//!
//! The committed `etc/wharfd.toml` is the documentation: it lists every setting with its default and a
//! comment, and `wharfd setup` copies it into new roots. A test checks that it parses to exactly
//! [`Config::default`], so the two cannot drift apart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use wharf_common::net::TransportSettings;

use crate::size::Quota;

/// The documented default configuration file.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../etc/wharfd.toml");

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid configuration in {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("invalid configuration in {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub users: UserSettings,
    pub transfer: TransferSettings,
    pub transport: TransportSettings,
    pub tls: TlsSettings,
    pub log: LogSettings,
    pub storage: StorageSettings,
    pub database: DatabaseSettings,
    pub metrics: MetricsSettings,
}

/// Where the node serves its metrics (Prometheus text format), if anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// A TCP address such as `127.0.0.1:9464`; none: no metrics are served.
    #[serde(deserialize_with = "optional_address")]
    pub listen: Option<SocketAddr>,
}

/// An address, or none for an empty string.
fn optional_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Where users' files live: `local` (homes under `var/homes/`) or `s3` (an S3-compatible object
/// store, with the namespace in PostgreSQL: `[database]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    pub backend: Backend,
    /// The store's URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:3900`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// A TOML file with `access_key_id` and `secret_access_key`, relative to the root unless
    /// absolute; empty: the environment's `WHARF_S3_ACCESS_KEY_ID` and `WHARF_S3_SECRET_ACCESS_KEY`.
    pub credentials_file: String,
    /// Whether requests to the store reuse connections (see [`StoreConnections`]).
    pub connections: StoreConnections,
    /// How long one request to the store may take, its body included, before it is given up and
    /// retried.
    pub request_timeout_secs: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            backend: Backend::Local,
            endpoint: String::new(),
            region: String::new(),
            bucket: String::new(),
            credentials_file: String::new(),
            connections: StoreConnections::Auto,
            request_timeout_secs: 30,
        }
    }
}

/// How requests to the object store use connections.
///
/// Reusing one costs a small read a delayed acknowledgement when the store does not disable
/// Nagle's algorithm on its sockets: Garage 2.5 answers every GET after the first on a connection
/// about 40 ms late on Linux (measured on loopback: 44 ms for 4 KiB, against 0.7 ms on a fresh
/// connection). A fresh connection starts in quick-acknowledgement mode, and over plain HTTP to
/// a nearby store its handshake costs less than that stall; over HTTPS a handshake costs more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreConnections {
    /// Fresh connections for an `http://` endpoint, reused ones for `https://`.
    Auto,
    Reuse,
    Fresh,
}

impl StorageSettings {
    /// Whether requests to the store reuse connections, once `auto` is decided.
    pub fn reuse_connections(&self) -> bool {
        match self.connections {
            StoreConnections::Reuse => true,
            StoreConnections::Fresh => false,
            StoreConnections::Auto => !self.endpoint.starts_with("http://"),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Local,
    S3,
}

/// The PostgreSQL database several nodes share (required by the `s3` backend).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`; empty: no database.
    pub url: String,
    pub pool_size: usize,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings { url: String::new(), pool_size: 16 }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never in a log.
        let url = if self.url.is_empty() { "" } else { "<set>" };
        f.debug_struct("DatabaseSettings")
            .field("url", &url)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// Where the server's certificate chain and private key are, relative to the root unless absolute.
/// The defaults are what `wharfd setup` writes (self-signed); point them at a certificate from a
/// public CA to serve clients that trust the system's CA store (`wharf --system-ca`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings { cert: "certs/server.crt".into(), key: "certs/server.key".into() }
    }
}

impl TlsSettings {
    /// The certificate chain's path under `root`.
    pub fn cert_path(&self, root: &Path) -> std::path::PathBuf {
        root.join(&self.cert)
    }

    /// The private key's path under `root`.
    pub fn key_path(&self, root: &Path) -> std::path::PathBuf {
        root.join(&self.key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_requests_in_flight: usize,
    /// Handshakes from addresses not yet validated that may be in progress at once; past it, new
    /// ones get a stateless Retry first (one more round trip, no state kept).
    pub retry_above_handshakes: usize,
    pub blocking_ops: usize,
    pub session_idle_secs: u64,
    pub shutdown_grace_secs: u64,
    pub partial_ttl_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from((
                std::net::Ipv6Addr::UNSPECIFIED,
                wharf_common::limits::DEFAULT_PORT,
            )),
            max_connections: 1000,
            max_connections_per_ip: 32,
            max_requests_in_flight: 512,
            retry_above_handshakes: 16,
            blocking_ops: 64,
            session_idle_secs: 900,
            shutdown_grace_secs: 10,
            partial_ttl_secs: 7 * 24 * 3600,
        }
    }
}

impl ServerSettings {
    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn partial_ttl(&self) -> Duration {
        Duration::from_secs(self.partial_ttl_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Whether password logins are accepted at all (keys always are).
    pub passwords: bool,
    pub login_timeout_secs: u64,
    pub max_failures_per_connection: u32,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub max_concurrent_hashes: usize,
    pub throttle_base_delay_ms: u64,
    pub throttle_max_delay_ms: u64,
    pub throttle_window_secs: u64,
    pub max_failures_per_ip: u32,
    pub throttle_table_size: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            passwords: true,
            login_timeout_secs: 10,
            max_failures_per_connection: 3,
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 2,
            throttle_base_delay_ms: 200,
            throttle_max_delay_ms: 5000,
            throttle_window_secs: 900,
            max_failures_per_ip: 30,
            throttle_table_size: 10_000,
        }
    }
}

impl AuthSettings {
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserSettings {
    pub default_quota: String,
}

impl Default for UserSettings {
    fn default() -> Self {
        UserSettings { default_quota: "1GiB".to_owned() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferSettings {
    pub segment_threshold: u64,
    pub segment_lanes: u32,
    pub stall_timeout_secs: u64,
    pub thread_niceness: i32,
}

impl Default for TransferSettings {
    fn default() -> Self {
        TransferSettings {
            segment_threshold: 64 * 1024 * 1024,
            segment_lanes: 4,
            stall_timeout_secs: wharf_common::transfer::DEFAULT_STALL_TIMEOUT.as_secs(),
            thread_niceness: 0,
        }
    }
}

impl TransferSettings {
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".to_owned() }
    }
}

impl Config {
    /// Loads the file at `path`, or the defaults if it does not exist.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read { path: shown, source });
            }
        };
        let config: Config = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: shown.clone(), source })?;
        config.validate().map_err(|message| ConfigError::Invalid { path: shown, message })?;
        Ok(config)
    }

    /// The quota for users added without `--quota`.
    pub fn default_quota(&self) -> Result<Quota, String> {
        self.users.default_quota.parse().map_err(|e: crate::size::SizeError| e.to_string())
    }

    fn validate(&self) -> Result<(), String> {
        let a = &self.auth;
        if a.argon2_memory_kib < 19456 || a.argon2_iterations < 2 || a.argon2_parallelism < 1 {
            return Err("argon2 parameters below the floor of m=19456 KiB, t=2, p=1".into());
        }
        let positive = [
            ("server.max_connections", self.server.max_connections),
            ("server.max_connections_per_ip", self.server.max_connections_per_ip),
            ("server.blocking_ops", self.server.blocking_ops),
            ("auth.max_concurrent_hashes", a.max_concurrent_hashes),
            ("auth.throttle_table_size", a.throttle_table_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        // Clients send requests behind their login before its answer says this limit.
        let least = wharf_common::limits::MIN_REQUESTS_IN_FLIGHT;
        if self.server.max_requests_in_flight < least {
            return Err(format!("server.max_requests_in_flight must be at least {least}"));
        }
        let lanes = self.transfer.segment_lanes;
        if !(1..=wharf_common::transfer::MAX_LANES).contains(&lanes) {
            let max = wharf_common::transfer::MAX_LANES;
            return Err(format!("transfer.segment_lanes must be between 1 and {max}"));
        }
        if self.storage.backend == Backend::S3 {
            let s = &self.storage;
            if s.endpoint.is_empty() || s.bucket.is_empty() || s.region.is_empty() {
                return Err(
                    "storage.backend \"s3\" needs storage.endpoint, region and bucket".into()
                );
            }
            if self.database.url.is_empty() {
                return Err("storage.backend \"s3\" needs database.url".into());
            }
            if s.request_timeout_secs == 0 {
                return Err("storage.request_timeout_secs must be at least 1".into());
            }
        }
        if self.database.pool_size == 0 {
            return Err("database.pool_size must be at least 1".into());
        }
        if self.transfer.stall_timeout_secs == 0 {
            return Err("transfer.stall_timeout_secs must be at least 1".into());
        }
        if !(0..=19).contains(&self.transfer.thread_niceness) {
            return Err("transfer.thread_niceness must be between 0 and 19".into());
        }
        if a.login_timeout_secs == 0 || a.max_failures_per_connection == 0 {
            return Err(
                "auth.login_timeout_secs and auth.max_failures_per_connection must be at least 1"
                    .into(),
            );
        }
        crate::logging::check_level(&self.log.level)?;
        self.default_quota().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_file_documents_exactly_the_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG_TOML).expect("etc/wharfd.toml parses");
        assert_eq!(parsed, Config::default());
        assert!(parsed.validate().is_ok());
    }

    #[test]
    fn every_setting_has_a_comment_of_its_own() {
        let mut previous = "";
        let mut settings = 0;
        for line in DEFAULT_CONFIG_TOML.lines() {
            if line.contains('=') && !line.starts_with('#') {
                settings += 1;
                assert!(
                    previous.starts_with('#'),
                    "setting without a comment right above it: {line}"
                );
            }
            previous = line;
        }
        assert!(settings > 30, "the check saw the settings ({settings})");
    }

    #[test]
    fn store_connections_are_fresh_over_plain_http_unless_told() {
        let storage = |endpoint: &str, connections: &str| {
            let text =
                format!("[storage]\nendpoint = \"{endpoint}\"\nconnections = \"{connections}\"\n");
            toml::from_str::<Config>(&text).expect("parses").storage.reuse_connections()
        };
        assert!(!storage("http://127.0.0.1:3900", "auto"));
        assert!(storage("https://s3.eu-west-1.amazonaws.com", "auto"));
        assert!(storage("http://127.0.0.1:3900", "reuse"));
        assert!(!storage("https://s3.eu-west-1.amazonaws.com", "fresh"));
        assert!(toml::from_str::<Config>("[storage]\nconnections = \"sometimes\"\n").is_err());
    }

    #[test]
    fn an_s3_store_gives_each_request_at_least_a_second() {
        let s3 = |timeout: u64| {
            let text = format!(
                "[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:3900\"\n\
                 region = \"garage\"\nbucket = \"b\"\nrequest_timeout_secs = {timeout}\n\
                 [database]\nurl = \"postgres://wharf@127.0.0.1/wharf\"\n"
            );
            toml::from_str::<Config>(&text).expect("parses").validate()
        };
        let refused = s3(0).expect_err("no time at all");
        assert!(refused.contains("request_timeout_secs"), "{refused}");
        assert!(s3(1).is_ok());
    }

    #[test]
    fn refuses_weak_argon2_and_unknown_keys() {
        let weak = "[auth]\nargon2_memory_kib = 1024\n";
        let config: Config = toml::from_str(weak).expect("parses");
        assert!(config.validate().is_err());
        assert!(toml::from_str::<Config>("[server]\nlisen = \"x\"\n").is_err());
    }

    #[test]
    fn requests_in_flight_go_no_lower_than_what_clients_assume_before_login() {
        let at = |n: usize| {
            let text = format!("[server]\nmax_requests_in_flight = {n}\n");
            toml::from_str::<Config>(&text).expect("parses").validate()
        };
        let refused = at(wharf_common::limits::MIN_REQUESTS_IN_FLIGHT - 1).expect_err("31");
        assert!(refused.contains("at least 32"), "{refused}");
        assert!(at(0).is_err());
        assert!(at(wharf_common::limits::MIN_REQUESTS_IN_FLIGHT).is_ok());
    }
}
