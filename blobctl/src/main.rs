//! `blobctl`: the blob store's command line. All logic is in the
//! `blobctl` library ([`blobctl::main`]).

fn main() -> std::process::ExitCode {
    blobctl::main()
}
