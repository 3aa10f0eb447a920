//! The `ferrolm` command line.

mod commands;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`ferrolm run ... | head`) as C tools do, instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cmd = commands::compat::allow_hyphen_values(commands::Cli::command());
    let argv = match commands::compat::translate(&cmd, std::env::args_os().collect()) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    let args = match cmd
        .try_get_matches_from(argv)
        .and_then(|m| commands::Cli::from_arg_matches(&m))
    {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match commands::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line that names the problem (the error chain joined), a non-zero status.
            let msg = ferrolm::error_chain(&*e);
            eprintln!("error: {msg}");
            // An interrupted conversion exits as the `quantize` binary does (128 + SIGINT).
            match e.downcast_ref::<ferrolm_quantize::QuantizeError>() {
                Some(ferrolm_quantize::QuantizeError::Cancelled) => ExitCode::from(130),
                _ => ExitCode::from(1),
            }
        }
    }
}
