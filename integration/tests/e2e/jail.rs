//! The jail: no path, symlink or rename reaches outside the user's home, and users never see each
//! other's files. Every case checks the error *and* that nothing outside the home was created,
//! changed or revealed.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;

use wharf::error::ClientError;
use wharf::transfer::PutOptions;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_integration::client::login;
use wharf_integration::server::TestServer;

/// Every file and directory below `dir` with its contents, to compare before and after.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read_dir") {
            let path = entry.expect("entry").path();
            let key = path.strip_prefix(dir).expect("below").display().to_string();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                files.insert(key + "/", Vec::new());
                stack.push(path);
            } else {
                files.insert(key, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

fn p(path: &str) -> RemotePath {
    RemotePath::parse(path).expect("valid path")
}

/// The error code of a failed call; a success is a jail break and fails the test.
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Remote { code, message }) => {
            assert!(
                !message.contains("top secret"),
                "{what}: error reveals outside data: {message}"
            );
            code
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

struct Jail {
    server: TestServer,
    outside: std::path::PathBuf,
}

fn jail() -> Jail {
    let mut server = TestServer::new("");
    server.add_user("ann", "pw", "100MiB");
    server.add_user("anna", "pw2", "100MiB");
    let outside = server.root().join("outside");
    std::fs::create_dir_all(outside.join("subdir")).expect("outside dir");
    std::fs::write(outside.join("secret.txt"), b"top secret").expect("secret");
    server.start();
    server.place("anna", "anna-secret", b"top secret of anna");
    server.place("ann", "mine.txt", b"mine");
    // Symlinks exist on the local backend only: the s3 backend's namespace has none.
    if server.is_local() {
        let home = server.home("ann");
        symlink(&outside, home.join("abs")).expect("absolute symlink");
        symlink("../../../outside", home.join("rel")).expect("relative climbing symlink");
        symlink(outside.join("secret.txt"), home.join("leaf")).expect("leaf symlink");
        symlink(outside.join("not-yet"), home.join("dangling")).expect("dangling symlink");
        symlink("chain2", home.join("chain1")).expect("chain");
        symlink("rel", home.join("chain2")).expect("chain");
        symlink("/etc", home.join("etc")).expect("/etc symlink");
        symlink("../anna", home.join("sibling")).expect("sibling symlink");
    }
    Jail { server, outside }
}

/// Whether `server` can hold symlinks; says so when it cannot, for a test that needs them.
pub fn has_symlinks(server: &TestServer, test: &str) -> bool {
    if !server.is_local() {
        eprintln!("skipping {test}: the s3 backend has no symlinks");
    }
    server.is_local()
}

const ESCAPES: &[&str] = &[
    "/abs",
    "/abs/secret.txt",
    "/abs/subdir",
    "/rel",
    "/rel/secret.txt",
    "/leaf",
    "/dangling",
    "/chain1",
    "/chain1/secret.txt",
    "/etc",
    "/etc/passwd",
    "/sibling",
    "/sibling/anna-secret",
];

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_cannot_be_followed_out_of_the_home() {
    let Jail { server, outside } = jail();
    if !has_symlinks(&server, "the symlink jail test") {
        return;
    }
    let before = (snapshot(&outside), snapshot(&server.home("anna")));
    let s = login(&server, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local");
    let planted = local.path().join("planted.txt");
    std::fs::write(&planted, b"planted").expect("local file");
    // An upload that makes its folders on the way (`put -r`) makes none through a symlink.
    let making_parents = PutOptions { make_parents: true, ..PutOptions::default() };

    for path in ESCAPES {
        let code = refused(&format!("stat {path}"), s.stat(&p(path)).await);
        assert!(
            matches!(code, ErrorCode::PermissionDenied | ErrorCode::NotFound),
            "stat {path}: {code:?}"
        );
        refused(&format!("ls {path}"), s.list(&p(path)).await);
        refused(&format!("cd {path}"), s.cd(path).await);
        refused(&format!("mkdir {path}/new"), s.mkdir(&p(&format!("{path}/new")), false).await);
        refused(
            &format!("mkdir -p {path}/new/deeper"),
            s.mkdir(&p(&format!("{path}/new/deeper")), true).await,
        );
        refused(
            &format!("put with parents {path}/new/deeper/p.txt"),
            s.put_with(&planted, &p(&format!("{path}/new/deeper/p.txt")), making_parents, &|_| {})
                .await,
        );
        refused(&format!("rmdir {path}/subdir"), s.rmdir(&p(&format!("{path}/subdir"))).await);
        refused(
            &format!("rm {path}/secret.txt"),
            s.remove(&p(&format!("{path}/secret.txt")), false).await,
        );
        refused(
            &format!("rm -r {path}/subdir"),
            s.remove(&p(&format!("{path}/subdir")), true).await,
        );
        refused(
            &format!("mv {path}/secret.txt"),
            s.rename(&p(&format!("{path}/secret.txt")), &p("/stolen")).await,
        );
        refused(
            &format!("mv into {path}"),
            s.rename(&p("/mine.txt"), &p(&format!("{path}/planted"))).await,
        );
        refused(
            &format!("cp {path}/secret.txt"),
            s.copy(&p(&format!("{path}/secret.txt")), &p("/stolen")).await,
        );
        refused(
            &format!("cp into {path}"),
            s.copy(&p("/mine.txt"), &p(&format!("{path}/planted"))).await,
        );
    }
    // The escaping targets show up only as symlinks, never as what they point to.
    let listing = s.list(&RemotePath::root()).await.expect("ls /");
    let abs = listing.iter().find(|e| e.name == "abs").expect("abs listed");
    assert_eq!(abs.kind, wharf_common::proto::EntryKind::Symlink);
    assert!(!listing.iter().any(|e| e.name == "secret.txt"));
    assert_eq!(s.cwd().as_str(), "/");
    assert!(s.stat(&p("/stolen")).await.is_err());

    // Removing a symlink removes the link, not its target; `rm -r` never follows one either.
    s.remove(&p("/leaf"), false).await.expect("rm of the symlink itself");
    s.mkdir(&p("/box"), false).await.expect("mkdir");
    symlink(&outside, server.home("ann").join("box/link")).expect("symlink in box");
    s.remove(&p("/box"), true).await.expect("rm -r with a symlink inside");
    s.rename(&p("/abs"), &p("/renamed-link")).await.expect("renaming the link itself stays inside");
    // A file never takes the place of a link to a folder in the home (a client sending it to that
    // name then puts it into the folder); a link leading out is replaced, never written through.
    s.mkdir(&p("/folder"), false).await.expect("mkdir");
    symlink("folder", server.home("ann").join("to-folder")).expect("link to a folder");
    let onto = s.put(&planted, &p("/to-folder"), false, &|_| {}).await;
    assert_eq!(refused("put onto a link to a folder", onto), ErrorCode::IsADirectory);
    assert!(server.home("ann").join("to-folder").is_symlink(), "the link is left");
    s.put(&planted, &p("/renamed-link"), false, &|_| {}).await.expect("a link leading out");
    assert!(server.home("ann").join("renamed-link").is_file(), "is replaced by the file");

    assert_eq!(
        (snapshot(&outside), snapshot(&server.home("anna"))),
        before,
        "outside the home changed"
    );
    assert!(std::fs::read_dir(server.root().join("var/homes")).expect("homes").count() == 2);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dotdot_absolute_and_sibling_prefix_paths_stay_inside() {
    let Jail { server, outside } = jail();
    let before = snapshot(&outside);
    let s = login(&server, "ann", "pw").await;
    // `..` is clamped at the home: these name paths *inside* it, which do not exist.
    for path in
        ["/../../../outside/secret.txt", "../anna/anna-secret", "/../anna", "../../var/homes/anna"]
    {
        assert_eq!(
            refused(path, s.stat(&s.resolve(path).expect("resolves")).await),
            ErrorCode::NotFound,
            "{path}"
        );
    }
    s.mkdir(&s.resolve("../../made-here").expect("resolves"), false).await.expect("mkdir inside");
    assert!(server.exists("ann", "made-here"), "created inside the home");
    assert!(
        !server.root().join("made-here").exists() && !server.root().join("var/made-here").exists()
    );
    assert_eq!(snapshot(&outside), before);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_paths_are_refused_by_the_server() {
    let Jail { server, .. } = jail();
    let s = login(&server, "ann", "pw").await;
    let long_name = "x".repeat(256);
    let long_path = "/a".repeat(2100);
    // Sent raw, past the client's own checks, to test the server's.
    for path in ["a\\..\\..\\outside", "a\0b", long_name.as_str(), long_path.as_str()] {
        let reply = s.call_raw(Command::Stat { path: path.to_owned() }).await;
        assert!(
            matches!(reply, Err(ClientError::Remote { code: ErrorCode::InvalidPath, .. })),
            "{:?}: {reply:?}",
            &path[..path.len().min(20)]
        );
        let reply = s.call_raw(Command::Mkdir { path: path.to_owned(), parents: true }).await;
        assert!(matches!(reply, Err(ClientError::Remote { code: ErrorCode::InvalidPath, .. })));
        for (from, to) in [(path, "/copy"), ("/mine.txt", path)] {
            let copy = Command::Copy { from: from.to_owned(), to: to.to_owned() };
            let reply = s.call_raw(copy).await;
            assert!(matches!(reply, Err(ClientError::Remote { code: ErrorCode::InvalidPath, .. })));
        }
    }
    assert!(!server.exists("ann", "copy"));
    assert!(matches!(
        s.call_raw(Command::Stat { path: "/mine.txt".into() }).await,
        Ok(Reply::Stat { .. })
    ));
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_users_never_see_each_other() {
    let Jail { server, .. } = jail();
    let ann = login(&server, "ann", "pw").await;
    let anna = login(&server, "anna", "pw2").await;
    ann.mkdir(&p("/ann-only"), false).await.expect("mkdir");
    let anna_names: Vec<String> =
        anna.list(&RemotePath::root()).await.expect("ls").into_iter().map(|e| e.name).collect();
    assert_eq!(anna_names, ["anna-secret"]);
    assert_eq!(refused("anna stat", anna.stat(&p("/ann-only")).await), ErrorCode::NotFound);
    assert_eq!(refused("ann stat", ann.stat(&p("/anna-secret")).await), ErrorCode::NotFound);
    assert!(!server.exists("anna", "ann-only"));
    ann.close().await;
    anna.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tree_and_digest_never_follow_a_symlink_out_of_the_home() {
    let server = TestServer::with_users(&[("ann", "pw"), ("bob", "pw")]);
    if !has_symlinks(&server, "the tree and digest jail test") {
        return;
    }
    let outside = tempfile::tempdir().expect("outside");
    std::fs::create_dir(outside.path().join("secret dir")).expect("dir");
    std::fs::write(outside.path().join("secret dir/key"), b"not yours").expect("secret");
    let home = server.home("ann");
    std::fs::create_dir(home.join("docs")).expect("docs");
    std::fs::write(home.join("docs/mine.txt"), b"mine").expect("file");
    symlink(outside.path().join("secret dir"), home.join("docs/escape")).expect("symlink");
    symlink(server.home("bob"), home.join("docs/bob")).expect("symlink");
    let before = snapshot(outside.path());
    let session = login(&server, "ann", "pw").await;

    let tree = session.tree(&p("/docs")).await.expect("tree");
    let paths: Vec<&str> = tree.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(
        paths.iter().all(|p| !p.contains("key")),
        "nothing below a symlink is listed: {paths:?}"
    );
    for link in ["/docs/escape/key", "/docs/bob"] {
        refused(link, session.digest(&p(link)).await);
    }
    refused("tree through a link", session.tree(&p("/docs/escape")).await);
    let (digest, _) = session.digest(&p("/docs/mine.txt")).await.expect("digest");
    assert_eq!(digest, wharf_common::hash::Sha256Digest::of(b"mine").to_string());
    assert_eq!(snapshot(outside.path()), before);
}
