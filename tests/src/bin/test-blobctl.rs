//! `blobctl` for the whole-cluster tests.
fn main() -> std::process::ExitCode {
    blobctl::main()
}
