//! `ferrolm tokenize` and `ferrolm detokenize`: the tokenizer made visible.

use std::io::Write;
use std::path::PathBuf;

use ferrolm::gguf::Gguf;
use ferrolm::tokenizer::Tokenizer;

use super::CliError;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// The GGUF model (only its tokenizer metadata is read).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub input: super::run::PromptArgs,
    /// Recognize special tokens written in the text (`<|im_start|>`).
    #[arg(long = "parse-special")]
    pub parse_special: bool,
    /// Do not add BOS/EOS even when the model asks for them.
    #[arg(long = "no-bos")]
    pub no_bos: bool,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Print each id with its token text.
    #[arg(long)]
    pub pieces: bool,
}

#[derive(clap::Args, Debug)]
pub struct DetokenizeArgs {
    /// The GGUF model (only its tokenizer metadata is read).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<u32>,
    /// Leave control tokens (`<|im_end|>`) out of the text.
    #[arg(long = "no-special")]
    pub no_special: bool,
}

fn tokenizer(model: &Option<PathBuf>) -> Result<Tokenizer, CliError> {
    let path = super::model_or_default(model)?;
    let g = Gguf::open(&path)?;
    Ok(Tokenizer::from_gguf(&g)?)
}

pub fn tokenize(args: TokenizeArgs) -> Result<(), CliError> {
    let tok = tokenizer(&args.model)?;
    let text = args.input.read()?;
    let ids = tok.encode(&text, !args.no_bos, args.parse_special);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    } else if args.pieces {
        for id in ids {
            writeln!(
                out,
                "{id:6} -> {:?}",
                String::from_utf8_lossy(tok.token_to_piece(id, true))
            )?;
        }
    } else {
        let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        writeln!(out, "{}", s.join(" "))?;
    }
    Ok(())
}

pub fn detokenize(args: DetokenizeArgs) -> Result<(), CliError> {
    let tok = tokenizer(&args.model)?;
    if let Some(&bad) = args.ids.iter().find(|&&i| i as usize >= tok.n_vocab()) {
        return Err(format!(
            "token id {bad} is out of range (vocabulary size {})",
            tok.n_vocab()
        )
        .into());
    }
    let text = tok.decode(&args.ids, !args.no_special);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{text}")?;
    Ok(())
}
