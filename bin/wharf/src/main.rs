//! The `wharf` binary: see the library's `cli` module.

fn main() -> std::process::ExitCode {
    wharf::cli::main()
}
