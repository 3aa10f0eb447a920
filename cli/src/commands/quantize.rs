//! `ferrolm quantize IN OUT TYPE [--dry-run] [--force] [--threads N]`: the converter (crate
//! `ferrolm-quantize`) linked in, with the same arguments and behaviour as its `quantize` binary.

use super::CliError;

pub use ferrolm_quantize::cli::Args;

pub fn run(a: Args) -> Result<(), CliError> {
    ferrolm_quantize::cli::run(&a).map_err(Into::into)
}
