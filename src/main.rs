//! The `opsctl` binary: parse arguments, run, map the outcome to an exit code.
//!
//! Arguments are read as `OsString`s: a non-UTF-8 argument is reported by the command that
//! needs it as text, never a panic.

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            opsctl::errln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(opsctl::cli::run(std::env::args_os().collect()));
    // Do not wait for lingering background tasks (a signal handler, idle connections).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
