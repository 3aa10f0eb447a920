//! `ferrolm serve -m MODEL [--host 127.0.0.1] [--port 8080] [-c CTX] [--parallel N] [-t N]`: the
//! OpenAI-compatible HTTP server (crate `ferrolm-server`), with llama-server's flags.

use std::path::PathBuf;

use super::CliError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model (default: $FERROLM_MODEL, else the fetched SmolLM2-135M-Instruct Q4_1).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Address to listen on (loopback unless asked otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Context positions in all, shared evenly by the slots as llama-server does (default: each
    /// slot gets the model's length, at most 4096).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// Slots: requests served at once, each with its own KV cache.
    #[arg(long = "parallel", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: u32,
    /// Threads (default: one per CPU).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Prompt tokens per forward pass: prompts are cut into chunks of this size, as `run` cuts
    /// them; every running slot's next token rides along in the same pass.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub batch_size: u32,
    /// Requests that may wait for a free slot; beyond them the server answers 503.
    #[arg(long = "queue", default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub queue: u32,
    /// KV cache type: f16, f32, q8_0, q4_0, q4_1, q5_0 or q5_1.
    #[arg(long = "cache-type", default_value = "f16", value_parser = super::parse_kv_type)]
    pub cache_type: ferrolm::kv_cache::KvType,
    /// Flash attention (llama.cpp's -fa): on, off or auto (= off).
    #[arg(long = "flash-attn", default_value = "auto", num_args = 0..=1, default_missing_value = "on", value_parser = super::parse_on_off)]
    pub flash_attn: bool,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health and the chat page.
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// Allow browser requests from this origin (CORS is off otherwise).
    #[arg(long)]
    pub cors: Option<String>,
    /// Largest request body in bytes.
    #[arg(long = "max-body", default_value_t = 8 << 20)]
    pub max_body: usize,
    /// Seconds a request body may take to arrive (then 408).
    #[arg(long = "body-timeout", default_value_t = 30.0, value_parser = positive_secs)]
    pub body_timeout: f64,
    /// A built-in chat template's name or Jinja text, instead of the model's own.
    #[arg(long = "chat-template")]
    pub chat_template: Option<String>,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 86_400.0 => Ok(x),
        _ => Err(format!("'{s}' is not a number of seconds in (0, 86400]")),
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    let model = super::model_or_default(&args.model)?;
    let n_slots = args.parallel as usize;
    let n_ctx = if args.ctx_size == 0 {
        0
    } else {
        let per = args.ctx_size / n_slots;
        if per < 2 {
            return Err(format!(
                "-c {} shared by {n_slots} slots leaves {per} positions each (at least 2 needed)",
                args.ctx_size
            )
            .into());
        }
        per
    };
    let chat_template = args
        .chat_template
        .as_deref()
        .map(super::chat::template_source)
        .transpose()?;
    let n_threads = if args.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        args.threads
    };
    let cfg = ferrolm_server::ServerConfig {
        model,
        host: args.host,
        port: args.port,
        engine: ferrolm_server::EngineConfig {
            n_slots,
            n_ctx,
            n_batch: args.batch_size as usize,
            n_threads,
            kv_type: args.cache_type,
            flash_attn: args.flash_attn,
            queue: args.queue as usize,
        },
        api_key: args.api_key,
        cors: args.cors,
        body_limit: args.max_body,
        body_timeout: std::time::Duration::from_secs_f64(args.body_timeout),
        chat_template,
    };
    ferrolm_server::run(cfg)?;
    Ok(())
}
