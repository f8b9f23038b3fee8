//! A short soak: 20 clients doing mixed work for a few seconds beside 2 bulk transfers. No
//! operation may fail, and the server must end with the descriptors it started with.

use std::time::Duration;

use wharf_integration::server::TestServer;
use wharf_integration::soak::{SoakPlan, run};

#[tokio::test(flavor = "multi_thread")]
async fn twenty_clients_for_a_few_seconds_without_errors_or_leaks() {
    let mut server = TestServer::new("");
    for n in 0..10 {
        server.add_user(&format!("soak{n}"), "pw", "unlimited");
    }
    server.start();
    let plan =
        SoakPlan { clients: 20, bulk: 2, duration: Duration::from_secs(3), bulk_size: 16 << 20 };
    let report = run(&server, plan).await.expect("soak");
    report.print(&plan);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.ops > 100, "only {} operations", report.ops);
    assert!(
        report.fds_new.is_empty(),
        "{} descriptors before, {} after; left open: {:?}",
        report.fds_before,
        report.fds_after,
        report.fds_new
    );
}
