//! `blobd` for the whole-cluster tests (Cargo hands integration tests the
//! paths of their own package's binaries only).
fn main() -> std::process::ExitCode {
    blobd::main()
}
