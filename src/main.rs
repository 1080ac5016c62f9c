//! Thin entry point: logging, then the CLI in the library.

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tracing::span=warn,lapin=warn"),
    )
    .init();
    campuspay::cli::main()
}
