//! Subcommands. Each lives in its own file with its clap `Args` and a `run` function.

use clap::{Parser, Subcommand};

mod bench;
mod chat;
pub mod compat;
mod eval;
mod inspect;
mod perplexity;
mod quantize;
mod run;
mod serve;
mod synth;
mod tokenize;

/// Boxed error for the CLI: every subcommand's failure becomes one line on stderr.
pub type CliError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Parser, Debug)]
#[command(
    name = "ferrolm",
    version,
    about = "Run Llama-family GGUF models on CPUs",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a GGUF file's architecture, metadata and tensors.
    Inspect(inspect::Args),
    /// Evaluate tokens in one prefill; print each position's argmax and top logits.
    Eval(eval::Args),
    /// Generate text from a prompt, streamed to stdout.
    Run(run::Args),
    /// Print the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Print the text of token ids.
    Detokenize(tokenize::DetokenizeArgs),
    /// Perplexity of a text file, as llama-perplexity computes it.
    Perplexity(perplexity::Args),
    /// Measure prompt processing and generation speed (as llama-bench), memory and load time.
    Bench(bench::Args),
    /// Write a GGUF with random weights in the shape of a named model (for benchmarks).
    Synth(synth::Args),
    /// Chat interactively with the model's own chat template.
    Chat(chat::Args),
    /// Convert a Hugging Face checkpoint or a GGUF file to GGUF in another type.
    Quantize(quantize::Args),
    /// Serve the model over HTTP with the OpenAI API (chat and text completions), as
    /// llama-server does.
    Serve(serve::Args),
}

pub fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Run(a) => run::run(a),
        Command::Tokenize(a) => tokenize::tokenize(a),
        Command::Detokenize(a) => tokenize::detokenize(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

/// The default model, found at run time: `$FERROLM_MODEL`, else
/// `models/SmolLM2-135M-Instruct.Q4_1.gguf` under the current directory or under a folder above
/// the `ferrolm` executable (a checkout's `target/release/ferrolm` finds the checkout's models/).
pub fn default_model() -> Result<std::path::PathBuf, CliError> {
    if let Some(p) = std::env::var_os("FERROLM_MODEL") {
        return Ok(p.into());
    }
    const NAME: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    let mut places = vec![std::path::PathBuf::from(NAME)];
    if let Ok(exe) = std::env::current_exe() {
        places.extend(exe.ancestors().skip(1).take(4).map(|d| d.join(NAME)));
    }
    places.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        format!(
            "no model given (-m FILE) and the default model {NAME} was not found in the current \
             directory or above the ferrolm executable: fetch it with `scripts/fetch-models.sh \
             smollm2` in a ferrolm checkout, set FERROLM_MODEL, or pass -m FILE"
        )
        .into()
    })
}

/// `-m`'s path, else the default model.
pub fn model_or_default(m: &Option<std::path::PathBuf>) -> Result<std::path::PathBuf, CliError> {
    match m {
        Some(p) => Ok(p.clone()),
        None => default_model(),
    }
}

/// Flags shared by every subcommand that runs a model (llama.cpp's names).
#[derive(clap::Args, Debug, Clone)]
pub struct CommonModelArgs {
    /// The GGUF model (default: $FERROLM_MODEL, else the fetched SmolLM2-135M-Instruct Q4_1).
    #[arg(short = 'm', long = "model")]
    pub model: Option<std::path::PathBuf>,
    /// Threads (default: one per CPU).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Context length (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// Prefill batch size.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub batch_size: u32,
    /// KV cache type: f16, f32, q8_0, q4_0, q4_1, q5_0 or q5_1.
    #[arg(long = "cache-type", default_value = "f16", value_parser = parse_kv_type)]
    pub cache_type: ferrolm::kv_cache::KvType,
    /// Flash attention (llama.cpp's -fa): on computes attention as llama.cpp's flash attention
    /// does (values summed in f16 precision, one pass) with an F16 cache; off and auto keep
    /// ferrolm's f32 sums.
    #[arg(long = "flash-attn", default_value = "auto", num_args = 0..=1, default_missing_value = "on", value_parser = parse_on_off)]
    pub flash_attn: bool,
}

/// `on` / `off` / `auto` (auto = off).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" | "auto" => Ok(false),
        _ => Err(format!("'{s}' is not on, off or auto")),
    }
}

pub fn parse_kv_type(s: &str) -> Result<ferrolm::kv_cache::KvType, String> {
    ferrolm::kv_cache::KvType::parse(s).ok_or_else(|| {
        let names: Vec<&str> = ferrolm::kv_cache::KvType::ALL
            .iter()
            .map(|t| t.name())
            .collect();
        format!("unknown cache type '{s}' (expected {})", names.join(", "))
    })
}

impl CommonModelArgs {
    pub fn model_path(&self) -> Result<std::path::PathBuf, CliError> {
        model_or_default(&self.model)
    }

    /// Context parameters; with no -c, at least `min_ctx` positions.
    pub fn context_params(&self, min_ctx: usize) -> ferrolm::model::ContextParams {
        ferrolm::model::ContextParams {
            n_ctx: if self.ctx_size == 0 { 0 } else { self.ctx_size },
            n_batch: self.batch_size as usize,
            n_threads: self.threads,
            kv_type: self.cache_type,
            min_ctx,
            flash_attn: self.flash_attn,
            ..Default::default()
        }
    }
}

/// Tokenize a prompt with the model's own tokenizer.
pub fn tokenize_prompt(
    model: &ferrolm::model::Model,
    prompt: &str,
    parse_special: bool,
) -> Result<Vec<u32>, CliError> {
    let tok = ferrolm::tokenizer::Tokenizer::from_gguf(model.gguf())?;
    Ok(tok.encode(prompt, true, parse_special))
}
