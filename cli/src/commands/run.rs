//! `ferrolm run`: stream generated text to stdout (exactly the text), statistics to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ferrolm::generate::{generate, GenOptions, GenStats};
use ferrolm::model::{Context, Model};
use ferrolm::sampler::{Sampler, SamplerParams, StopMatcher, SEED_FROM_TIME};
use ferrolm::tokenizer::Tokenizer;

use super::{CliError, CommonModelArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Tokens to generate (-1 = until end of generation or a full context); in chat, per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    pub n_predict: i64,
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: i32,
    /// Top-p (1.0 = off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0.0 = off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1.0 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the penalties look back over.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Frequency penalty.
    #[arg(long = "frequency-penalty", default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Presence penalty.
    #[arg(long = "presence-penalty", default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// RNG seed (default: from the clock).
    #[arg(short = 's', long)]
    pub seed: Option<u64>,
    /// A GBNF grammar the output must follow (llama.cpp's --grammar); see grammars/.
    #[arg(long, conflicts_with_all = ["grammar_file", "json_schema", "json_schema_file"])]
    pub grammar: Option<String>,
    /// A file holding a GBNF grammar the output must follow.
    #[arg(long = "grammar-file", conflicts_with_all = ["json_schema", "json_schema_file"])]
    pub grammar_file: Option<PathBuf>,
    /// A JSON Schema the output must be an instance of (llama.cpp's --json-schema / -j).
    #[arg(short = 'j', long = "json-schema", conflicts_with = "json_schema_file")]
    pub json_schema: Option<String>,
    /// A file holding a JSON Schema the output must be an instance of.
    #[arg(long = "json-schema-file")]
    pub json_schema_file: Option<PathBuf>,
}

impl SamplingArgs {
    /// The sampler settings, checked by the same [`SamplerParams::validate`] the C ABI uses.
    pub fn params(&self) -> Result<SamplerParams, CliError> {
        let p = SamplerParams {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            freq_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed.unwrap_or(SEED_FROM_TIME),
        };
        p.validate()
            .map_err(|m| format!("invalid sampling setting: {m}"))?;
        Ok(p)
    }

    /// The grammar of --grammar / --grammar-file, made into a sampling constraint for `tok`'s
    /// vocabulary; None without one.
    pub fn constraint(
        &self,
        tok: &Tokenizer,
    ) -> Result<Option<ferrolm::grammar::Constraint>, CliError> {
        let read = |f: &PathBuf, what: &str| {
            std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read the {what} file {}: {e}", f.display()))
        };
        let schema = match (&self.json_schema, &self.json_schema_file) {
            (Some(s), _) => Some(("--json-schema".to_string(), s.clone())),
            (None, Some(f)) => Some((f.display().to_string(), read(f, "JSON Schema")?)),
            (None, None) => None,
        };
        let (where_, text) = match (&self.grammar, &self.grammar_file, schema) {
            (Some(g), _, _) => ("--grammar".to_string(), g.clone()),
            (None, Some(f), _) => (f.display().to_string(), read(f, "grammar")?),
            (None, None, Some((w, s))) => {
                let v: serde_json::Value =
                    serde_json::from_str(&s).map_err(|e| format!("{w}: not JSON: {e}"))?;
                let g = ferrolm::grammar::schema_to_gbnf(&v).map_err(|e| format!("{w}: {e}"))?;
                (w, g)
            }
            (None, None, None) => return Ok(None),
        };
        let lookup = |t: &str| {
            let ids = tok.encode(t, false, true);
            (ids.len() == 1).then(|| ids[0])
        };
        let g = ferrolm::grammar::Grammar::parse_with_root(&text, "root", Some(&lookup))
            .map_err(|e| format!("{where_}: {e}"))?;
        let table = std::sync::Arc::new(ferrolm::grammar::TokenTable::new(tok));
        Ok(Some(ferrolm::grammar::Constraint::new(
            std::sync::Arc::new(g),
            table,
        )))
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonModelArgs,
    #[command(flatten)]
    pub input: PromptArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Also print the prompt.
    #[arg(long)]
    pub echo: bool,
    /// Treat special tokens written in the prompt (`<|im_start|>`) as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    /// Stop when this text is generated (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Print control tokens in the output.
    #[arg(long)]
    pub special: bool,
    /// Keep the evaluated prompt's KV cache in this file (llama.cpp's flag): a later run whose
    /// prompt starts the same way evaluates only the rest. Written after the prompt is evaluated.
    #[arg(long = "prompt-cache")]
    pub prompt_cache: Option<PathBuf>,
    /// Use the --prompt-cache file but do not update it.
    #[arg(long = "prompt-cache-ro", requires = "prompt_cache")]
    pub prompt_cache_ro: bool,
}

/// `-p TEXT` or `-f FILE`, one of them required (`run`, `tokenize`).
#[derive(clap::Args, Debug)]
pub struct PromptArgs {
    /// The prompt (the text).
    #[arg(
        short = 'p',
        long,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub prompt: Option<String>,
    /// Read the prompt from a file (`-` for standard input).
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
}

impl PromptArgs {
    /// The text, as [`read_prompt`] reads it.
    pub fn read(&self) -> Result<String, CliError> {
        read_prompt(&self.prompt, &self.file)
    }
}

/// The prompt of `-p TEXT` or `-f FILE` (`-f -`: standard input). As llama.cpp does, one
/// trailing newline of a file is dropped (editors end files with one).
pub fn read_prompt(prompt: &Option<String>, file: &Option<PathBuf>) -> Result<String, CliError> {
    match (prompt, file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => {
            let (name, bytes) = if f.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b)
                    .map_err(|e| format!("cannot read the prompt from standard input: {e}"))?;
                ("standard input".to_string(), b)
            } else {
                let b = read_regular(f)?;
                (f.display().to_string(), b)
            };
            let mut text = String::from_utf8(bytes).map_err(|e| {
                format!(
                    "{name} is not valid UTF-8 (byte {})",
                    e.utf8_error().valid_up_to()
                )
            })?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            Ok(text)
        }
        (None, None) => Err("no prompt: pass -p TEXT or -f FILE".into()),
    }
}

/// [`generate`] with the text streamed to `out` as it comes (flushed per piece); a write error
/// (a closed pipe) ends the generation and is returned.
pub fn generate_to(
    out: &mut impl Write,
    ctx: &mut Context,
    tok: &Tokenizer,
    sampler: &mut Sampler,
    stops: &mut StopMatcher,
    ids: &[u32],
    opts: &GenOptions,
) -> Result<GenStats, CliError> {
    let mut io_err = None;
    let stats = generate(ctx, tok, sampler, stops, ids, opts, |_, text| {
        text.is_empty()
            || out
                .write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| io_err = Some(e))
                .is_ok()
    })?;
    match io_err {
        Some(e) => Err(e.into()),
        None => Ok(stats),
    }
}

pub fn read_regular(f: &std::path::Path) -> Result<Vec<u8>, CliError> {
    let file =
        ferrolm::gguf::open_regular(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    let mut b = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut b)
        .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    Ok(b)
}

pub fn run(args: Args) -> Result<(), CliError> {
    let t_load = Instant::now();
    let path = args.common.model_path()?;
    let model = Arc::new(Model::load(&path)?);
    let tok = Tokenizer::from_gguf(model.gguf())?;
    let prompt = args.input.read()?;
    let ids = tok.encode(&prompt, true, !args.no_parse_special);
    if ids.is_empty() {
        return Err(
            "the prompt is empty and this model adds no BOS token: nothing to generate from".into(),
        );
    }
    let params = args.sampling.params()?;
    let mut ctx = Context::new(
        Arc::clone(&model),
        args.common.context_params(ids.len() + 1),
    )?;
    if ids.len() >= ctx.n_ctx() {
        return Err(format!(
            "the prompt is {} token{}, which leaves no room to generate in a context of {} positions (raise -c to at least {})",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            ctx.n_ctx(),
            ids.len() + 1
        )
        .into());
    }
    let load_time = t_load.elapsed();
    let mut sampler = Sampler::new(params, model.config().n_vocab);
    sampler.set_grammar(args.sampling.constraint(&tok)?);
    let mut stops = StopMatcher::new(args.stop.iter().cloned());
    let opts = GenOptions {
        n_predict: usize::try_from(args.sampling.n_predict).ok(),
        ignore_eog: args.ignore_eos,
        special: args.special,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.echo {
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
    }
    // With a prompt cache: restore it, keep the prefix it shares with this prompt, evaluate the
    // rest, save the prompt's state; the generation then starts from the evaluated prompt.
    let mut n_prompt_eval = ids.len();
    let mut t_prompt = std::time::Duration::ZERO;
    let to_generate: &[u32] = match &args.prompt_cache {
        None => &ids,
        Some(file) => {
            let t0 = Instant::now();
            let mut cached = ferrolm::state::Loaded {
                tokens: Vec::new(),
                logits: false,
            };
            if file.exists() {
                match ctx.state_load(0, file) {
                    Ok(l) => cached = l,
                    Err(e) => eprintln!("prompt cache: ignored ({e}); evaluating the whole prompt"),
                }
            }
            // The same prompt with its saved logits: nothing to evaluate.
            let reuse = if cached.tokens == ids && cached.logits {
                ids.len()
            } else {
                ferrolm::chat::reusable_prefix(&cached.tokens, &ids)
            };
            ctx.truncate(reuse);
            if reuse < ids.len() {
                ctx.eval(&ids[reuse..], ferrolm::model::Logits::Last)?;
            }
            n_prompt_eval = ids.len() - reuse;
            eprintln!(
                "prompt cache: reused {reuse} of {} prompt tokens from {}",
                ids.len(),
                file.display()
            );
            if !args.prompt_cache_ro && reuse < ids.len() {
                ctx.state_save(0, Some(ctx.logits()), file)?;
            }
            for &id in &ids {
                sampler.accept(id);
            }
            t_prompt = t0.elapsed();
            &[]
        }
    };
    let mut stats = generate_to(
        &mut out,
        &mut ctx,
        &tok,
        &mut sampler,
        &mut stops,
        to_generate,
        &opts,
    )?;
    if args.prompt_cache.is_some() {
        stats.n_prompt = n_prompt_eval;
        stats.prompt_time = t_prompt;
    }
    // The text ends with a newline on stdout, as a shell expects of a command's output.
    out.write_all(b"\n")?;
    out.flush()?;
    drop(out);
    eprintln!(
        "load: {:.1} ms | prompt: {} tokens, {:.1} tokens/s | generation: {} tokens, {:.1} tokens/s | stop: {} | seed {} | {} threads",
        load_time.as_secs_f64() * 1e3,
        stats.n_prompt,
        stats.prompt_tps(),
        stats.n_gen,
        stats.gen_tps(),
        stats.stop,
        sampler.seed(),
        ctx.n_threads()
    );
    Ok(())
}
