//! `cargo run --release -p wharf-integration --bin bench`: wharf against sftp and raw quinn.
//! Set `WHARF_BENCH_QUICK=1` for a small, fast run (a 256 MiB file, one sample each).

fn main() -> std::process::ExitCode {
    if let Err(err) = wharf_integration::build_binaries() {
        eprintln!("bench: cannot build the binaries: {err}");
        return std::process::ExitCode::FAILURE;
    }
    let mut plan = wharf_integration::bench::Plan::default();
    if std::env::var_os("WHARF_BENCH_QUICK").is_some() {
        plan = wharf_integration::bench::Plan { big_runs: 1, small_runs: 1, big_size: 256 << 20 };
    }
    match wharf_integration::bench::run(plan) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
