//! The `ferrolm` command line.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`ferrolm run ... | head`) as C tools do, instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cmd = cli::compat::allow_hyphen_values(cli::Cli::command());
    let argv = match cli::compat::translate(&cmd, std::env::args_os().collect()) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    let args = match cmd
        .try_get_matches_from(argv)
        .and_then(|m| cli::Cli::from_arg_matches(&m))
    {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line that names the problem (the error chain joined), a non-zero status.
            let mut msg = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                let s = s.to_string();
                if !msg.contains(&s) {
                    msg.push_str(": ");
                    msg.push_str(&s);
                }
                src = src.and_then(|e| e.source());
            }
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
