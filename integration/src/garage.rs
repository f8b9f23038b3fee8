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

/// One Garage node's directory, ports and configuration file.
struct NodeFiles {
    config: PathBuf,
    s3: u16,
    rpc: u16,
}

/// Writes the configuration of a node under `dir`, in a cluster of `replication` copies that
/// shares `secret`.
fn node_files(dir: &std::path::Path, secret: &str, replication: u32) -> anyhow::Result<NodeFiles> {
    let [rpc, s3, admin] = [(); 3].map(|()| crate::free_tcp_port());
    let (rpc, s3, admin) = (rpc?, s3?, admin?);
    let root = dir.display();
    let config = format!(
        "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\ndb_engine = \"sqlite\"\n\
         replication_factor = {replication}\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
         [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
         root_domain = \".s3.garage.localhost\"\n\n\
         [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n"
    );
    let path = dir.join("garage.toml");
    std::fs::write(&path, config)?;
    Ok(NodeFiles { config: path, s3, rpc })
}

/// Starts `garage server` for the node whose configuration is `config`, logging beside it.
fn spawn_node(
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let binary = binary().context("no Garage binary")?;
    let log = std::fs::File::create(config.with_file_name("garage.log"))?;
    let mut command = Command::new(binary);
    command.arg("-c").arg(config).arg("server").args(args).env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    Ok(command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?)
}

impl Garage {
    pub fn start() -> anyhow::Result<Garage> {
        let dir = tempfile::tempdir()?;
        let node = node_files(dir.path(), &hex(32), 1)?;
        let (access_key, secret_key) = (format!("GK{}", hex(12)), hex(32));
        let env = [
            ("GARAGE_DEFAULT_ACCESS_KEY", access_key.as_str()),
            ("GARAGE_DEFAULT_SECRET_KEY", secret_key.as_str()),
            ("GARAGE_DEFAULT_BUCKET", BUCKET),
        ];
        let child = spawn_node(&node.config, &["--single-node", "--default-bucket"], &env)?;
        let endpoint = format!("http://127.0.0.1:{}", node.s3);
        let garage = Garage { child, endpoint, access_key, secret_key, dir };
        garage.wait_ready(node.s3)?;
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
        self.storage_config_via(root, &self.endpoint)
    }

    /// The same, with requests sent to `endpoint`: a proxy in front of this node.
    pub fn storage_config_via(&self, root: &std::path::Path, endpoint: &str) -> String {
        storage_config(root, endpoint, &self.access_key, &self.secret_key)
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

/// Three Garage nodes on loopback holding every object three times, with a bucket and a key: a
/// store that keeps serving (from a quorum of two) when one node dies.
pub struct GarageCluster {
    nodes: Vec<Option<Child>>,
    configs: Vec<PathBuf>,
    /// Each node's S3 endpoint.
    pub endpoints: Vec<String>,
    pub access_key: String,
    pub secret_key: String,
    _dir: tempfile::TempDir,
}

impl GarageCluster {
    pub fn start() -> anyhow::Result<GarageCluster> {
        let dir = tempfile::tempdir()?;
        let secret = hex(32);
        let mut files = Vec::new();
        for n in 0..3 {
            let node_dir = dir.path().join(format!("n{n}"));
            std::fs::create_dir_all(&node_dir)?;
            files.push(node_files(&node_dir, &secret, 3)?);
        }
        let nodes = files.iter().map(|f| spawn_node(&f.config, &[], &[]).map(Some));
        let nodes = nodes.collect::<anyhow::Result<Vec<_>>>()?;
        let (access_key, secret_key) = (format!("GK{}", hex(12)), hex(32));
        let cluster = GarageCluster {
            nodes,
            configs: files.iter().map(|f| f.config.clone()).collect(),
            endpoints: files.iter().map(|f| format!("http://127.0.0.1:{}", f.s3)).collect(),
            access_key,
            secret_key,
            _dir: dir,
        };
        cluster.form(&files)?;
        Ok(cluster)
    }

    /// Runs the CLI against node 0; its output on success.
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let binary = binary().context("no Garage binary")?;
        let out = Command::new(binary).arg("-c").arg(&self.configs[0]).args(args).output()?;
        if !out.status.success() {
            bail!("garage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Connects the nodes, gives each a role in one zone, and makes the bucket and the key.
    fn form(&self, files: &[NodeFiles]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let binary = binary().context("no Garage binary")?;
        let mut ids = Vec::new();
        for config in &self.configs {
            // A node answers `node id` once its RPC is up.
            let id = loop {
                let out = Command::new(&binary)
                    .arg("-c")
                    .arg(config)
                    .args(["node", "id", "-q"])
                    .output()?;
                if out.status.success() {
                    break String::from_utf8_lossy(&out.stdout).trim().to_owned();
                }
                if Instant::now() > deadline {
                    bail!("a garage node did not start: {}", String::from_utf8_lossy(&out.stderr));
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            ids.push(id);
        }
        for (id, file) in ids.iter().zip(files).skip(1) {
            let short = id.split('@').next().unwrap_or(id);
            self.cli(&["node", "connect", &format!("{short}@127.0.0.1:{}", file.rpc)])?;
        }
        for id in &ids {
            let short: String = id.chars().take(16).collect();
            self.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &short])?;
        }
        self.cli(&["layout", "apply", "--version", "1"])?;
        self.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "wharf-test",
            &self.access_key,
            &self.secret_key,
        ])?;
        self.cli(&["bucket", "create", BUCKET])?;
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            "wharf-test",
        ])?;
        Ok(())
    }

    /// Kills node `n` outright.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.nodes[n].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `[storage]` block of a wharfd.toml that stores files through node `n`, with the
    /// credentials written into `root`.
    pub fn storage_config(&self, root: &std::path::Path, n: usize) -> String {
        storage_config(root, &self.endpoints[n], &self.access_key, &self.secret_key)
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for n in 0..self.nodes.len() {
            self.kill(n);
        }
    }
}

/// A `[storage]` block for `endpoint`, with the credentials written into the server root `root`.
fn storage_config(
    root: &std::path::Path,
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
) -> String {
    let credentials =
        format!("access_key_id = \"{access_key}\"\nsecret_access_key = \"{secret_key}\"\n");
    std::fs::write(root.join("etc/s3-credentials.toml"), credentials).expect("credentials");
    format!(
        "[storage]\nbackend = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"{REGION}\"\n\
         bucket = \"{BUCKET}\"\ncredentials_file = \"etc/s3-credentials.toml\"\n"
    )
}
