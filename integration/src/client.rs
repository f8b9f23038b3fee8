//! Clients for tests: library sessions trusting the server's certificate, and the `wharf` binary.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use wharf::session::{ConnectOptions, Session, Trust};
use wharf::target::Target;

use crate::binary;
use crate::server::TestServer;

/// Connection options for `server`, trusting its certificate as a CA.
pub fn options(server: &TestServer) -> ConnectOptions {
    let target = Target { user: None, host: "127.0.0.1".into(), port: server.addr().port() };
    ConnectOptions::new(target, Trust::Ca(server.cert()))
}

/// Options that send from a chosen loopback address (127.0.0.0/8 is all ours).
pub fn options_from(server: &TestServer, ip: [u8; 4]) -> ConnectOptions {
    let mut options = options(server);
    options.bind_ip = Some(IpAddr::from(ip));
    options
}

/// A logged-in session, which must succeed.
pub async fn login(server: &TestServer, user: &str, password: &str) -> Session {
    Session::open(&options(server), user, password)
        .await
        .unwrap_or_else(|err| panic!("login as {user} failed: {err}\n{}", server.log()))
}

/// Runs the `wharf` binary with `args`, `HOME` in `home`, and `WHARF_PASSWORD` if given.
pub fn wharf(home: &Path, password: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = spawn_wharf(home, password, args, stdin.is_some());
    if let Some(text) = stdin {
        let mut input = child.stdin.take().expect("stdin");
        crate::server::feed(&mut input, text);
    }
    child.wait_with_output().expect("wharf output")
}

/// Starts the `wharf` binary like [`wharf`] does, without waiting for it.
pub fn spawn_wharf(
    home: &Path,
    password: Option<&str>,
    args: &[&str],
    stdin: bool,
) -> std::process::Child {
    spawn_wharf_from(Command::new(binary("wharf")), home, password, args, stdin)
}

/// Runs the `wharf` binary like [`wharf`], inside the network namespace `namespace` (see
/// [`crate::wan`]).
pub fn wharf_in(namespace: &str, home: &Path, password: Option<&str>, args: &[&str]) -> Output {
    spawn_wharf_in(namespace, home, password, args).wait_with_output().expect("wharf output")
}

/// Starts the `wharf` binary like [`wharf_in`], without waiting for it.
pub fn spawn_wharf_in(
    namespace: &str,
    home: &Path,
    password: Option<&str>,
    args: &[&str],
) -> std::process::Child {
    let command = crate::wan::in_namespace(namespace, binary("wharf"));
    spawn_wharf_from(command, home, password, args, false)
}

fn spawn_wharf_from(
    mut command: Command,
    home: &Path,
    password: Option<&str>,
    args: &[&str],
    stdin: bool,
) -> std::process::Child {
    command
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("WHARF_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() });
    if let Some(password) = password {
        command.env("WHARF_PASSWORD", password);
    }
    command.spawn().expect("spawn wharf")
}

/// `USER@127.0.0.1:PORT` for `server`.
pub fn target(server: &TestServer, user: &str) -> String {
    format!("{user}@127.0.0.1:{}", server.addr().port())
}

/// Output as text, for assertions and failure messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
