//! `blobd`: the blob store's server binary. All logic lives in the library.

fn main() -> std::process::ExitCode {
    blobd::main()
}
