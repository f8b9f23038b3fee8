//! `cargo run --release -p wharf-integration --bin soak`: 100 clients doing mixed work for 20 s
//! while 8 bulk transfers run; prints throughput, control latency, and the server's memory and
//! descriptors. `WHARF_SOAK_SECS`, `WHARF_SOAK_CLIENTS` and `WHARF_SOAK_BULK` change the duration
//! and the numbers of clients and bulk transfers; `WHARF_SOAK_CONFIG` is `wharfd.toml` text for the
//! server (`\n` for newlines).

use std::time::Duration;

use wharf_integration::server::TestServer;
use wharf_integration::soak::{SoakPlan, run};

fn main() -> std::process::ExitCode {
    if let Err(err) = wharf_integration::build_binaries() {
        eprintln!("soak: cannot build the binaries: {err}");
        return std::process::ExitCode::FAILURE;
    }
    let secs = std::env::var("WHARF_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let count = |name: &str, default: usize| {
        std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let plan = SoakPlan {
        clients: count("WHARF_SOAK_CLIENTS", 100),
        bulk: count("WHARF_SOAK_BULK", 8),
        duration: Duration::from_secs(secs),
        bulk_size: 64 << 20,
    };
    let config = std::env::var("WHARF_SOAK_CONFIG").unwrap_or_default().replace("\\n", "\n");
    let mut server = TestServer::new(&config);
    for n in 0..10 {
        server.add_user(&format!("soak{n}"), "pw", "unlimited");
    }
    server.start();
    let runtime = match driver_runtime(count("WHARF_SOAK_DRIVER_NICE", 0) as i32) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("soak: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(&server, plan));
    server.stop();
    match outcome {
        Ok(report) => {
            report.print(&plan);
            let p99 = report.quantile(0.99);
            let met = report.errors.is_empty()
                && report.fds_new.is_empty()
                && report.rss_peak_kib < 512 * 1024
                && p99 < Duration::from_millis(50);
            println!(
                "targets (no errors, no leaked descriptors, RSS < 512 MiB, p99 < 50 ms): {}",
                if met { "met" } else { "NOT met" }
            );
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("soak: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The clients' runtime. They share this machine's cores with the server, which clients on other
/// machines would not: with a niceness, their threads yield the CPU to the server (and to the
/// probe, whose thread is not the runtime's), which is closer to a real deployment.
fn driver_runtime(nice: i32) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || {
            if nice > 0 {
                let _ = rustix::process::setpriority_process(None, nice);
            }
        })
        .build()
}
