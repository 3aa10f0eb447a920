//! `quantize IN OUT TYPE`: a Hugging Face checkpoint directory or a GGUF file to GGUF.

use std::process::ExitCode;

use clap::Parser;
use ferrolm_quantize::{cli, QuantizeError};

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quantize: error: {}", ferrolm::error_chain(&e));
            if matches!(e, QuantizeError::Cancelled) {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
