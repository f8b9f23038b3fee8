//! A throwaway Garage (an S3-compatible object store) for a test: one node on loopback ports, with
//! a bucket and a key made at start-up (`server --single-node --default-bucket`), killed when
//! dropped. `.ci/run` builds Garage into a cache directory and names it in `WHARF_GARAGE_BIN`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The bucket every test node starts with.
pub const BUCKET: &str = "wharf";
/// The region Garage answers for.
pub const REGION: &str = "garage";

/// The Garage binary, from `WHARF_GARAGE_BIN` or the cache `.ci/run` fills.
fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WHARF_GARAGE_BIN") {
        return Some(PathBuf::from(path));
    }
    // A build in progress installs into NAME.tmp, then renames it.
    let cache = std::fs::read_dir("/var/cache/wharf-ci").ok()?;
    cache
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("garage-")))
        .filter(|dir| dir.extension().is_none_or(|ext| ext != "tmp" && ext != "target"))
        .map(|dir| dir.join("bin/garage"))
        .find(|path| path.exists())
}

/// Why a Garage cannot be started here, if it cannot.
pub fn unavailable() -> Option<String> {
    match binary() {
        None => Some("no Garage binary: set WHARF_GARAGE_BIN, or let .ci/run build it".into()),
        Some(_) => None,
    }
}

/// A running one-node Garage, killed when dropped.
pub struct Garage {
    child: Child,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    dir: tempfile::TempDir,
}

impl Garage {
    pub fn start() -> anyhow::Result<Garage> {
        let binary = binary().context("no Garage binary")?;
        let dir = tempfile::tempdir()?;
        let [rpc, s3, admin] = [(); 3].map(|()| crate::free_tcp_port());
        let (rpc, s3, admin) = (rpc?, s3?, admin?);
        let root = dir.path().display();
        let config = format!(
            "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{}\"\n\n\
             [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
            hex(32)
        );
        let config_path = dir.path().join("garage.toml");
        std::fs::write(&config_path, config)?;
        let (access_key, secret_key) = (format!("GK{}", hex(12)), hex(32));
        let log = std::fs::File::create(dir.path().join("garage.log"))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &secret_key)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting garage")?;
        let garage = Garage {
            child,
            endpoint: format!("http://127.0.0.1:{s3}"),
            access_key,
            secret_key,
            dir,
        };
        garage.wait_ready(s3)?;
        Ok(garage)
    }

    /// Waits until the S3 port answers, and the bucket with it (a few hundred milliseconds).
    fn wait_ready(&self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("garage did not start:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The default bucket is made just after the port opens.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// The node's log, for a failing test.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// The `[storage]` block of a wharfd.toml that stores files here, with the credentials written
    /// into `root` (a server root) for it to read.
    pub fn storage_config(&self, root: &std::path::Path) -> String {
        let credentials = format!(
            "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            self.access_key, self.secret_key
        );
        std::fs::write(root.join("etc/s3-credentials.toml"), credentials).expect("credentials");
        format!(
            "[storage]\nbackend = \"s3\"\nendpoint = \"{}\"\nregion = \"{REGION}\"\n\
             bucket = \"{BUCKET}\"\ncredentials_file = \"etc/s3-credentials.toml\"\n",
            self.endpoint
        )
    }
}

impl Garage {
    /// A client of the bucket, to look at or tamper with what wharfd stored.
    pub fn client(&self) -> anyhow::Result<object_store::aws::AmazonS3> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region(REGION)
            .with_bucket_name(BUCKET)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()?)
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bytes` random bytes as hex.
fn hex(bytes: usize) -> String {
    use std::fmt::Write as _;
    let mut random = vec![0u8; bytes];
    getrandom_fill(&mut random);
    random.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

fn getrandom_fill(buf: &mut [u8]) {
    use ring::rand::SecureRandom as _;
    ring::rand::SystemRandom::new().fill(buf).expect("system randomness");
}
