//! `blobctl` for the whole-cluster tests.
fn main() -> std::process::ExitCode {
    blob_client::cli::main()
}
