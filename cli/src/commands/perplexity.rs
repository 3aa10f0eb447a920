//! `ferrolm perplexity -m MODEL -f TEXT [-c 512]`: llama-perplexity's method. The text is tokenized
//! (BOS as the model says, special tokens not parsed) and cut into floor(n/c) chunks of c tokens;
//! each chunk is evaluated from an empty cache, and tokens c/2+1 .. c-1 are scored by the
//! log-softmax of the previous position's logits. PPL = exp(mean NLL), ± as llama-perplexity.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ferrolm::model::{Context, ContextParams, Logits, Model};
use ferrolm::tokenizer::Tokenizer;

use super::CliError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model (default: the fetched SmolLM2).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// The text file.
    #[arg(short = 'f', long)]
    pub file: PathBuf,
    /// Chunk (context) size.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512, value_parser = clap::value_parser!(u32).range(8..=65536))]
    pub ctx_size: u32,
    /// Threads (default: one per CPU).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Score at most this many chunks (default, or -1: all).
    #[arg(long, value_parser = chunks, allow_negative_numbers = true)]
    pub chunks: Option<usize>,
    #[arg(long = "cache-type", default_value = "f16", value_parser = super::parse_kv_type)]
    pub cache_type: ferrolm::kv_cache::KvType,
    /// Flash attention (llama.cpp's -fa): on, off or auto (= off).
    #[arg(long = "flash-attn", default_value = "auto", num_args = 0..=1, default_missing_value = "on", value_parser = super::parse_on_off)]
    pub flash_attn: bool,
}

/// Result of a perplexity run.
pub struct Ppl {
    pub ppl: f64,
    pub plusminus: f64,
    pub running: Vec<f64>,
}

/// Score `ids` in chunks of `n_ctx`; `on_chunk(k, running_ppl)` after each chunk. With `bos`
/// (a model that adds one), each chunk's first token is replaced by it, as llama-perplexity does.
pub fn perplexity(
    ctx: &mut Context,
    ids: &[u32],
    n_ctx: usize,
    max_chunks: usize,
    bos: Option<u32>,
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<Ppl, CliError> {
    let nv = ctx.model().config().n_vocab;
    let n_chunks = (ids.len() / n_ctx).min(max_chunks);
    if n_chunks == 0 {
        return Err(format!(
            "the text is {} tokens: at least {} are needed for one chunk of -c {}",
            ids.len(),
            n_ctx,
            n_ctx
        )
        .into());
    }
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    let mut input = Vec::with_capacity(n_ctx);
    for k in 0..n_chunks {
        let chunk = &ids[k * n_ctx..(k + 1) * n_ctx];
        input.clear();
        input.extend_from_slice(chunk);
        if let Some(b) = bos {
            input[0] = b;
        }
        ctx.reset();
        // Only positions first.. are scored: the first half is evaluated without logits, the
        // rest a batch at a time, so the logits held are [n_batch, n_vocab], not [n_ctx, n_vocab]
        // (1 GiB for Gemma 3's 262,144-token vocabulary at -c 1024). The forward pass gives the
        // same values for any batching (tests/generate.rs: decode = prefill).
        ctx.eval(&input[..first], Logits::None)?;
        let last = n_ctx - 1;
        for (b, piece) in input[first..].chunks(ctx.n_batch()).enumerate() {
            ctx.eval(piece, Logits::All)?;
            let all = ctx.logits_all();
            let p0 = first + b * ctx.n_batch();
            for (i, row) in all.chunks_exact(nv).enumerate() {
                let j = p0 + i;
                if j >= last {
                    break;
                }
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
                let lp = (row[chunk[j + 1] as usize] - max) as f64 - sum.ln();
                nll -= lp;
                nll2 += lp * lp;
                count += 1;
            }
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        on_chunk(k, ppl);
    }
    let mean = nll / count as f64;
    let var = (nll2 / count as f64 - mean * mean).max(0.0);
    let ppl = mean.exp();
    let plusminus = if count > 1 {
        ppl * (var / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    Ok(Ppl {
        ppl,
        plusminus,
        running,
    })
}

/// `--chunks N`: at least 1; -1 (llama-perplexity's "all") is the default.
fn chunks(s: &str) -> Result<usize, String> {
    match s.parse::<i64>() {
        Ok(-1) => Ok(usize::MAX),
        Ok(n) if n >= 1 => Ok(n as usize),
        Ok(_) => Err("scores nothing: pass 1 or more chunks, or -1 for all".into()),
        Err(_) => Err(format!("'{s}' is not a number of chunks")),
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    let path = super::model_or_default(&args.model)?;
    let model = Arc::new(Model::load(&path)?);
    let tok = Tokenizer::from_gguf(model.gguf())?;
    let bytes = super::run::read_regular(&args.file)?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "{} is not valid UTF-8 (byte {})",
            args.file.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    // llama-perplexity removes one trailing newline.
    if text.ends_with('\n') {
        text.pop();
    }
    let ids = tok.encode(&text, true, false);
    let n_ctx = args.ctx_size as usize;
    let params = ContextParams {
        n_ctx,
        // llama.cpp's micro-batch; the results do not depend on it.
        n_batch: n_ctx.min(512),
        n_threads: args.threads,
        kv_type: args.cache_type,
        flash_attn: args.flash_attn,
        ..Default::default()
    };
    let mut ctx = Context::new(Arc::clone(&model), params)?;
    let n_chunks = (ids.len() / n_ctx).min(args.chunks.unwrap_or(usize::MAX));
    eprintln!(
        "perplexity: {} tokens, {} chunks of {}, {} threads",
        ids.len(),
        n_chunks,
        n_ctx,
        ctx.n_threads()
    );
    let t0 = Instant::now();
    let stderr = std::io::stderr();
    let bos = tok.bos().filter(|_| tok.add_bos());
    let r = perplexity(
        &mut ctx,
        &ids,
        n_ctx,
        args.chunks.unwrap_or(usize::MAX),
        bos,
        |k, ppl| {
            let mut e = stderr.lock();
            let _ = write!(e, "[{}]{:.4},", k + 1, ppl);
            if k == 0 {
                let _ = write!(e, " ({:.2} s per chunk) ", t0.elapsed().as_secs_f64());
            }
            let _ = e.flush();
        },
    )?;
    eprintln!();
    println!("Final estimate: PPL = {:.4} +/- {:.5}", r.ppl, r.plusminus);
    let _ = r.running;
    Ok(())
}
