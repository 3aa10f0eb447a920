//! `ferrolm quantize IN OUT TYPE [--dry-run] [--force] [--threads N]`: runs the `quantize` binary
//! (crate `ferrolm-quantize`, which depends on this one, so it cannot be linked in) found next to
//! the `ferrolm` executable, with the arguments passed through unchanged.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use super::CliError;

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// Arguments for `quantize` (see `ferrolm quantize --help`): IN OUT TYPE [--dry-run] [--force] [--threads N].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

/// The `quantize` executable beside the running `ferrolm`.
fn sibling() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot locate the ferrolm executable: {e}"))?;
    let dir = exe
        .parent()
        .ok_or("the ferrolm executable has no parent directory")?;
    let name = format!("quantize{}", std::env::consts::EXE_SUFFIX);
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the quantize binary was not found at {} (build it with `cargo build --release -p ferrolm-quantize`)",
            path.display()
        )
        .into())
    }
}

pub fn run(a: Args) -> Result<(), CliError> {
    let path = sibling()?;
    let mut cmd = Command::new(&path);
    cmd.args(&a.args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replace this process: signals (Ctrl-C) and the exit status are the converter's own.
        let e = cmd.exec();
        Err(format!("cannot run {}: {e}", path.display()).into())
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if status.success() {
            Ok(())
        } else {
            // The converter already printed its one-line error.
            std::process::exit(status.code().unwrap_or(1));
        }
    }
}
