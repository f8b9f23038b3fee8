//! The `wharfd` binary: see the library's `cli` module.

fn main() -> std::process::ExitCode {
    wharfd::cli::main()
}
