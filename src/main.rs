//! Thin entry point: logging, then the command line. The CLI and the bench live in this binary
//! crate, not in the library: they use the library (`campuspay::…`), nothing in it uses them.

/// `println!` for what the commands print: when the reader has gone (`campuspay … | head`), stop
/// quietly with the status a shell gives a process killed by SIGPIPE (141), instead of the
/// panic `println!` gives.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod bench;
mod cli;
mod logging;

fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

fn main() -> std::process::ExitCode {
    logging::init(std::env::args().nth(1).as_deref() == Some("demo"));
    cli::main()
}
