//! The `wharfd` binary: see the library's `cli` module.

/// mimalloc instead of glibc's malloc: the server allocates on some threads what it frees on
/// others, and glibc's per-thread arenas kept most of that memory. Measured with the soak run (100
/// clients, 8 bulk transfers, before transfers shared a fixed set of threads): peak RSS 1.8 GiB with
/// glibc, 0.5 to 0.7 GiB with mimalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wharfd::cli::main()
}
