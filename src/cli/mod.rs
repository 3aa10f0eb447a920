//! Subcommands. Each lives in its own file with its clap `Args` and a `run` function.

use clap::{Parser, Subcommand};

mod inspect;

/// Boxed error for the CLI: every subcommand's failure becomes one line on stderr.
pub type CliError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Parser, Debug)]
#[command(name = "ferrolm", version, about = "Run Llama-family GGUF models on CPUs", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a GGUF file's architecture, metadata and tensors.
    Inspect(inspect::Args),
}

pub fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
    }
}

/// The default model path: `$FERROLM_MODEL`, else the fetched SmolLM2 under `models/` of the
/// repository or the current directory.
pub fn default_model() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("FERROLM_MODEL") {
        return p.into();
    }
    let name = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    if repo.exists() {
        repo
    } else {
        name.into()
    }
}
