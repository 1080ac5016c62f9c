//! Thin entry point: logging, then the command line. The CLI and the bench live in this binary
//! crate, not in the library: they use the library (`campuspay::…`), nothing in it uses them.

mod bench;
mod cli;

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tracing::span=warn,lapin=warn"),
    )
    .init();
    cli::main()
}
