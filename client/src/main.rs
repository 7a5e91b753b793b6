//! `blobctl`: the blob store's command line. All logic is in
//! [`blob_client::cli`].

fn main() -> std::process::ExitCode {
    blob_client::cli::main()
}
