//! `ferrolm eval -m MODEL (--ids 1,2,3 | -p PROMPT) [--top K] [--json]`: evaluate tokens in one
//! prefill and print, for every position, the argmax and the top-K (token id, logit) pairs.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use ferrolm::model::{Context, Logits, Model};

use super::{CliError, CommonModelArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonModelArgs,
    /// Token ids, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "prompt",
        required_unless_present = "prompt"
    )]
    pub ids: Vec<u32>,
    /// A prompt to tokenize (special tokens in it are recognized; no BOS unless the model adds one).
    #[arg(short = 'p', long)]
    pub prompt: Option<String>,
    /// How many (id, logit) pairs to print per position (0: the argmax alone).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print JSON: {"positions":[{"argmax":id,"top":[[id,logit],...]},...]}.
    #[arg(long)]
    pub json: bool,
}

/// The `k` largest logits, highest first, ties to the lower id.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    let cmp = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.into_iter().map(|i| (i, logits[i as usize])).collect()
}

pub fn run(args: Args) -> Result<(), CliError> {
    let path: PathBuf = args.common.model_path()?;
    let model = Arc::new(Model::load(&path)?);
    let ids = match &args.prompt {
        Some(p) => super::tokenize_prompt(&model, p, true)?,
        None => args.ids.clone(),
    };
    if ids.is_empty() {
        return Err("nothing to evaluate: the prompt has no tokens".into());
    }
    let mut ctx = Context::new(Arc::clone(&model), args.common.context_params(ids.len()))?;
    ctx.eval(&ids, Logits::All)?;
    let nv = model.config().n_vocab;
    let all = ctx.logits_all();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let positions: Vec<_> = all
            .chunks_exact(nv)
            .map(|row| {
                let top = top_k(row, args.top.max(1));
                let pairs = &top[..args.top.min(top.len())];
                serde_json::json!({"argmax": top[0].0, "top": pairs.iter().map(|&(i, l)| serde_json::json!([i, l])).collect::<Vec<_>>()})
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::json!({ "ids": ids, "positions": positions })
        )?;
    } else {
        for (p, row) in all.chunks_exact(nv).enumerate() {
            // The argmax always; --top 0 prints no (id, logit) pairs.
            let top = top_k(row, args.top.max(1));
            let pairs: Vec<String> = top[..args.top.min(top.len())]
                .iter()
                .map(|(i, l)| format!("{i}:{l:.4}"))
                .collect();
            writeln!(
                out,
                "{p:4} tok {:6} -> argmax {:6}  {}",
                ids[p],
                top[0].0,
                pairs.join(" ")
            )?;
        }
    }
    Ok(())
}
