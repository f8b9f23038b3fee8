//! A node's metrics, scraped from its admin address as Prometheus would: every counter moves with
//! what the test did, and by exactly that much.

use wharf::session::Session;
use wharf_integration::client::{login, options};
use wharf_integration::server::TestServer;
use wharf_integration::{free_tcp_port, sample, scrape};

use crate::util::{content, p};

const NO_PROGRESS: &(dyn Fn(u64) + Send + Sync) = &|_| {};

#[tokio::test(flavor = "multi_thread")]
async fn sessions_logins_transfers_and_errors_are_counted() {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_tcp_port().expect("port")));
    let mut server = TestServer::new(&format!("[metrics]\nlisten = \"{listen}\"\n"));
    server.add_user("ann", "pw", "100MiB");
    server.start();
    let before = scrape(listen);
    assert_eq!(sample(&before, "wharf_sessions"), Some(0.0), "{before}");

    let wrong = Session::open(&options(&server), "ann", "wrong").await;
    assert!(wrong.is_err());
    let session = login(&server, "ann", "pw").await;
    let local = tempfile::tempdir().expect("local");
    let data = content(300_000, 3);
    let source = local.path().join("f");
    std::fs::write(&source, &data).expect("source");
    session.put(&source, &p("/f"), true, NO_PROGRESS).await.expect("put");
    session.get(&p("/f"), &local.path().join("back"), true, NO_PROGRESS).await.expect("get");
    assert!(session.stat(&p("/missing")).await.is_err());

    let after = scrape(listen);
    let value = |name: &str| sample(&after, name).unwrap_or_else(|| panic!("{name}:\n{after}"));
    assert_eq!(value("wharf_sessions"), 1.0);
    assert_eq!(value("wharf_logins_total{result=\"ok\"}"), 1.0);
    assert_eq!(value("wharf_logins_total{result=\"failed\"}"), 1.0);
    assert_eq!(value("wharf_transfers_total{direction=\"upload\",result=\"ok\"}"), 1.0);
    assert_eq!(value("wharf_transfers_total{direction=\"download\",result=\"ok\"}"), 1.0);
    assert_eq!(value("wharf_transfer_bytes_total{direction=\"upload\"}"), data.len() as f64);
    assert_eq!(value("wharf_transfer_bytes_total{direction=\"download\"}"), data.len() as f64);
    assert_eq!(value("wharf_errors_total{code=\"not_found\"}"), 1.0);
    session.close().await;
}
