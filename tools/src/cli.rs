//! The converter's command line, `quantize IN OUT TYPE`: shared by the `quantize` binary and
//! `ferrolm quantize`, which links it in.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{prepare, FileType, InputKind, Plan, QuantizeError};

#[derive(Parser, Debug)]
#[command(
    name = "quantize",
    about = "Convert a Hugging Face checkpoint (safetensors) or a GGUF file to GGUF",
    after_help = "TYPE: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_M, Q5_K_M, Q6_K\n\
                  A checkpoint is quantized from its own dtype; a GGUF file is requantized (dequantized, then quantized)."
)]
pub struct Args {
    /// A Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer files) or a GGUF file.
    pub input: PathBuf,
    /// The GGUF file to write.
    pub output: PathBuf,
    /// The output type.
    #[arg(value_name = "TYPE")]
    pub ftype: String,
    /// Print the plan (tensor -> type, sizes) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Overwrite an existing output file.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Threads for quantization (default: all; at most 512, as ferrolm).
    #[arg(long, short = 't', default_value_t = 0, value_parser = threads)]
    pub threads: usize,
    /// Thread count as llama-quantize's optional last argument (same as --threads).
    #[arg(value_name = "NTHREADS", value_parser = threads)]
    pub nthreads: Option<usize>,
    /// Requantize a GGUF whose tensors are already quantized (Q4_1 -> Q8_0 loses what the first
    /// quantization dropped; llama-quantize asks for the same flag).
    #[arg(long)]
    pub allow_requantize: bool,
}

/// Most threads: the limit `ferrolm` sets for a context.
const MAX_THREADS: usize = ferrolm::model::MAX_THREADS;

fn threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_THREADS => Ok(n),
        Ok(n) => Err(format!("{n} threads is over the limit of {MAX_THREADS}")),
        Err(_) => Err(format!("'{s}' is not a thread count (0 = all CPUs)")),
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn print_plan(p: &Plan) {
    println!(
        "{} {} -> {} ({} tensors, {} metadata keys)",
        match p.kind {
            InputKind::Checkpoint => "checkpoint",
            InputKind::Gguf => "gguf",
        },
        p.input.display(),
        p.ftype,
        p.tensors.len(),
        p.metadata.len()
    );
    let w = p.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in &p.tensors {
        let shape = format!("{:?}", t.dims);
        println!(
            "{:<w$}  {:<16} {:>5} -> {:<5}{} {:>10.3} MiB",
            t.name,
            shape,
            t.src.name(),
            t.dst.name(),
            if t.fallback {
                " (fallback)"
            } else {
                "           "
            },
            mib(t.n_bytes),
        );
    }
    let n: u64 = p
        .tensors
        .iter()
        .map(|t| t.dims.iter().product::<u64>())
        .sum();
    println!(
        "tensors: {:.2} MiB -> {:.2} MiB ({:.2} bits per weight); {} of {} fell back",
        mib(p.src_bytes()),
        mib(p.out_tensor_bytes()),
        p.out_tensor_bytes() as f64 * 8.0 / n.max(1) as f64,
        p.n_fallback(),
        p.tensors.len()
    );
}

/// Runs the converter as the command line asks: the plan with `--dry-run`, else the conversion,
/// with a progress bar on a terminal and one summary line on stderr. Cancelled by SIGINT, SIGTERM
/// or SIGHUP ([`QuantizeError::Cancelled`], no output written).
pub fn run(args: &Args) -> Result<(), QuantizeError> {
    let ftype = FileType::parse(&args.ftype)?;
    let job = prepare(&args.input, ftype)?;
    if args.dry_run {
        print_plan(job.plan());
        return Ok(());
    }
    let plan = job.plan();
    if plan.kind == InputKind::Gguf && !args.allow_requantize {
        let mut q: Vec<&str> = plan
            .tensors
            .iter()
            .filter(|t| t.src.is_quantized() && t.src != t.dst)
            .map(|t| t.src.name())
            .collect();
        q.sort_unstable();
        q.dedup();
        if !q.is_empty() {
            return Err(QuantizeError::Requantize {
                types: q.join(", "),
            });
        }
    }
    let cancel = ferrolm::output::cancel_on_signals();
    let t0 = std::time::Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(plan.out_tensor_bytes());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(250));
        Some(b)
    } else {
        None
    };
    let res = job.write(
        &args.output,
        args.force,
        args.nthreads.unwrap_or(args.threads),
        &mut |p| {
            if let Some(b) = &bar {
                b.set_position(p.bytes_done);
                b.set_message(format!("{}/{} {}", p.done.min(p.total), p.total, p.name));
            }
        },
        cancel,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    res?;
    // One line on success, terminal or not (scripts and logs want to see what was written).
    eprintln!(
        "quantize: wrote {} ({}, {} tensors, {:.1} MiB -> {:.1} MiB, {} fell back) in {:.1} s",
        args.output.display(),
        plan.ftype,
        plan.tensors.len(),
        mib(plan.src_bytes()),
        mib(plan.out_tensor_bytes()),
        plan.n_fallback(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
