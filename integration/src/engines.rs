//! The engines of the s3 backend for a test: a one-node Garage for the files and a PostgreSQL for
//! the namespace, started together and stopped when dropped. A server root configured for them
//! runs wharfd on the s3 backend; several roots on one pair are several nodes of one fleet.
//!
//! Also the test's own view of what such a node stored (files, partial uploads, pieces), read
//! from the database and the bucket directly rather than through wharfd.

use std::future::Future;

use object_store::ObjectStoreExt as _;

use crate::garage::Garage;
use crate::postgres::Postgres;
use crate::server::TestServer;

/// The environment variable that makes CI treat a missing engine as a failure, not a skip.
pub const REQUIRE_ENGINES: &str = "WHARF_REQUIRE_ENGINES";

/// A Garage and a PostgreSQL.
pub struct Engines {
    pub garage: Garage,
    pub postgres: Postgres,
    /// The database pool of each node: small for tests (4), so that a node that holds one
    /// connection while it waits for another deadlocks there rather than in production.
    pub pool_size: usize,
}

/// Why the engines cannot be started here, if they cannot.
pub fn unavailable() -> Option<String> {
    crate::garage::unavailable().or_else(crate::postgres::unavailable)
}

impl Engines {
    /// Starts both for `test`, or says why it is skipped; where [`REQUIRE_ENGINES`] is set (CI,
    /// which provides both), a missing engine fails the test instead.
    pub fn start(test: &str) -> Option<Engines> {
        if let Some(why) = unavailable() {
            assert!(std::env::var_os(REQUIRE_ENGINES).is_none(), "{test}: {why}");
            eprintln!("skipping {test}: {why}");
            return None;
        }
        Some(Engines::start_now())
    }

    /// Starts both, which must succeed.
    pub fn start_now() -> Engines {
        Engines::start_with(Postgres::start)
    }

    /// Starts both for the benchmark: PostgreSQL's commits wait for the disk, as in production.
    pub fn start_durable() -> Engines {
        Engines::start_with(Postgres::start_durable)
    }

    fn start_with(postgres: fn() -> anyhow::Result<Postgres>) -> Engines {
        let garage = Garage::start().expect("garage");
        let postgres = postgres().expect("postgres");
        Engines { garage, postgres, pool_size: 4 }
    }

    /// The configuration blocks (`[storage]`, `[database]`) of a node on these engines, with the
    /// store's credentials written into `root`.
    pub fn config(&self, root: &std::path::Path) -> String {
        self.config_via(root, &self.garage.endpoint, "")
    }

    /// The same, with requests to the store sent to `endpoint` (a proxy in front of Garage) and
    /// `storage_extra` added to the `[storage]` block.
    fn config_via(&self, root: &std::path::Path, endpoint: &str, storage_extra: &str) -> String {
        format!(
            "{}{storage_extra}\n[database]\nurl = \"{}\"\npool_size = {}\n",
            self.garage.storage_config_via(root, endpoint),
            self.postgres.url(),
            self.pool_size
        )
    }

    /// A node's root, configured for these engines; `extra` is more TOML.
    pub fn root(&self, extra: &str) -> TestServer {
        let server = TestServer::plain("");
        let config = format!("{}{extra}", self.config(server.root()));
        std::fs::write(server.root().join("etc/wharfd.toml"), config).expect("config");
        server
    }

    /// A started node, the schema migrated, with `users` added (password `pw`, quota 1 GiB) to
    /// the users all nodes share.
    pub fn node(&self, extra: &str, users: &[&str]) -> TestServer {
        self.node_with_quota(extra, users, "1GiB")
    }

    pub fn node_with_quota(&self, extra: &str, users: &[&str], quota: &str) -> TestServer {
        self.start_node(self.root(extra), users, quota)
    }

    /// A started node like [`Engines::node`], whose requests to the store go to `endpoint`, with
    /// `storage_extra` added to its `[storage]` block.
    pub fn node_via(&self, endpoint: &str, storage_extra: &str, users: &[&str]) -> TestServer {
        let server = TestServer::plain("");
        let config = self.config_via(server.root(), endpoint, storage_extra);
        std::fs::write(server.root().join("etc/wharfd.toml"), config).expect("config");
        self.start_node(server, users, "1GiB")
    }

    fn start_node(&self, mut server: TestServer, users: &[&str], quota: &str) -> TestServer {
        server.migrate();
        for user in users {
            server.add_user(user, "pw", quota);
        }
        server.start();
        server
    }

    /// The content of `user`'s file at `path` (relative to the home), read from the bucket piece
    /// by piece as the database places it, or from its row if it is stored inline; `None` if there
    /// is no such file.
    pub fn stored(&self, user: &str, path: &str) -> Option<Vec<u8>> {
        let row = self.postgres.query(&format!(
            "SELECT coalesce(blob, '-') || ' ' || piece_size || ' ' || size || ' ' \
             || coalesce(encode(content, 'hex'), '') FROM entries \
             WHERE user_name = {} AND path = {} AND NOT is_dir",
            quoted(user),
            quoted(&absolute(path))
        ));
        let mut fields = row.split(' ');
        let blob = fields.next().filter(|b| !b.is_empty())?.to_owned();
        let mut numbers = fields.by_ref().take(2).map(|n| n.parse::<u64>().expect("a number"));
        let (piece_size, size) = (numbers.next()?, numbers.next()?);
        if blob == "-" {
            return Some(hex_bytes(fields.next().unwrap_or_default()));
        }
        let pieces = size.div_ceil(piece_size.max(1));
        let store = self.garage.client().expect("s3 client");
        let content = on_own_runtime(async move {
            let mut content = Vec::new();
            for index in 0..pieces {
                let key = object_store::path::Path::from(format!("blobs/{blob}/{index}"));
                let piece = store.get(&key).await.expect("a stored piece");
                content.extend_from_slice(&piece.bytes().await.expect("piece bytes"));
            }
            content
        });
        Some(content)
    }

    /// How many objects the bucket holds under `blobs/`.
    pub fn objects(&self) -> usize {
        use object_store::ObjectStore as _;
        let store = self.garage.client().expect("s3 client");
        on_own_runtime(async move {
            let mut count = 0;
            let mut pending = vec![object_store::path::Path::from("blobs")];
            while let Some(prefix) = pending.pop() {
                let listed = store.list_with_delimiter(Some(&prefix)).await.expect("list");
                count += listed.objects.len();
                pending.extend(listed.common_prefixes);
            }
            count
        })
    }

    /// Whether `user` has anything (file or directory) at `path`.
    pub fn exists(&self, user: &str, path: &str) -> bool {
        let sql = format!(
            "entries WHERE user_name = {} AND path = {}",
            quoted(user),
            quoted(&absolute(path))
        );
        self.postgres.count(&sql) > 0
    }

    /// The bytes of `user`'s partial uploads that count as received.
    pub fn partial_bytes(&self, user: &str) -> u64 {
        let sum = self.postgres.query(&format!(
            "SELECT coalesce(sum(len), 0) FROM upload_pieces WHERE user_name = {}",
            quoted(user)
        ));
        sum.parse().expect("a sum")
    }

    /// How many partial uploads `user` has.
    pub fn partial_uploads(&self, user: &str) -> usize {
        let count = self.postgres.count(&format!("uploads WHERE user_name = {}", quoted(user)));
        usize::try_from(count).expect("a count")
    }

    /// Makes `user`'s partial uploads look `age` old, their reservations' leases run out.
    pub fn age_partials(&self, user: &str, age: std::time::Duration) {
        self.postgres.query(&format!(
            "UPDATE uploads SET updated = now() - make_interval(secs => {}), lease_until = now() \
             WHERE user_name = {}",
            age.as_secs(),
            quoted(user)
        ));
    }

    /// How many files `user` has beneath the directory `dir`.
    pub fn files_beneath(&self, user: &str, dir: &str) -> usize {
        let count = self.postgres.count(&format!(
            "entries WHERE user_name = {} AND NOT is_dir AND starts_with(path, {})",
            quoted(user),
            quoted(&format!("{}/", absolute(dir)))
        ));
        usize::try_from(count).expect("a count")
    }

    /// Makes `count` empty files named `{prefix}{i:06}` in `user`'s directory `dir` (which
    /// must exist), in one statement: for a huge directory, faster than any upload.
    pub fn empty_files(&self, user: &str, dir: &str, prefix: &str, count: usize) {
        let dir = absolute(dir);
        let empty = wharf_common::hash::Sha256Digest::of(b"").to_string();
        self.postgres.query(&format!(
            "INSERT INTO entries (user_name, path, parent, is_dir, size, mode, mtime, blob, \
             piece_size, sha256, version) SELECT {user}, {prefix} || lpad(i::text, 6, '0'), \
             {parent}, false, 0, 420, 0, md5(i::text), {piece}, {empty}, \
             nextval('content_versions') FROM generate_series(0, {last}) i",
            user = quoted(user),
            prefix = quoted(&format!("{dir}/{prefix}")),
            parent = quoted(&dir),
            piece = wharf_common::transfer::PIECE_SIZE,
            empty = quoted(&empty),
            last = count - 1,
        ));
    }

    /// Bytes in `user`'s files.
    pub fn stored_bytes(&self, user: &str) -> u64 {
        let sum = self.postgres.query(&format!(
            "SELECT coalesce(sum(size), 0) FROM entries WHERE user_name = {} AND NOT is_dir",
            quoted(user)
        ));
        sum.parse().expect("a sum")
    }

    /// Flips one byte in the middle of the first received piece of each of `user`'s partial
    /// uploads, as a failing disk would (in the bucket, or in the row of a piece stored inline);
    /// returns how many pieces it spoiled.
    pub fn corrupt_partials(&self, user: &str) -> usize {
        let inline = self.postgres.query(&format!(
            "WITH spoiled AS (UPDATE upload_pieces p SET content = set_byte(content, \
             length(content) / 2, get_byte(content, length(content) / 2) # 255) \
             WHERE user_name = {} AND content IS NOT NULL AND length(content) > 0 RETURNING 1) \
             SELECT count(*) FROM spoiled",
            quoted(user)
        ));
        let rows = self.postgres.query(&format!(
            "SELECT DISTINCT ON (key) blob || '/' || idx FROM uploads JOIN upload_pieces \
             USING (user_name, key) WHERE user_name = {} AND blob IS NOT NULL ORDER BY key, idx",
            quoted(user)
        ));
        let keys: Vec<String> = rows.lines().map(|key| format!("blobs/{key}")).collect();
        let store = self.garage.client().expect("s3 client");
        let spoiled = keys.len() + inline.parse::<usize>().expect("a count");
        on_own_runtime(async move {
            for key in keys {
                let key = object_store::path::Path::from(key);
                let piece = store.get(&key).await.expect("piece").bytes().await.expect("bytes");
                let mut bytes = piece.to_vec();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0xff;
                store.put(&key, bytes.into()).await.expect("put the spoiled piece");
            }
        });
        spoiled
    }
}

/// The bytes `hex` spells, two digits each.
fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits"))
        .collect()
}

/// `path` as the namespace stores it: absolute, without a trailing slash.
fn absolute(path: &str) -> String {
    format!("/{}", path.trim_matches('/'))
}

/// `text` as an SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own, so that a
/// blocking helper works inside an async test too.
pub fn on_own_runtime<T: Send>(future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(future)
            })
            .join()
            .expect("helper thread")
    })
}
