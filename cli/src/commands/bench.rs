//! `ferrolm bench`: prompt processing (pp: a batch of N prompt tokens) and text generation (tg: N
//! tokens one at a time) in tokens/s, mean ± stddev over repetitions, as llama-bench measures them;
//! plus model load time, peak RSS and its anonymous part, and this machine's read bandwidth measured
//! in the same run so tg can be read as a fraction of it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ferrolm::kernels::pool::ThreadPool;
use ferrolm::model::{Context, ContextParams, Logits, Model};

use super::CliError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model (default: the fetched SmolLM2).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Prompt lengths to test (0 skips pp).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test (0 skips tg).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Thread counts to test.
    #[arg(
        short = 't',
        long = "threads",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    pub threads: Vec<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub reps: u32,
    /// Output format: md or json.
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "json"])]
    pub output: String,
    /// Prefill batch size.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch: usize,
    /// Context size of every test context (default: prompt + generation lengths). Sets the KV cache
    /// size for memory measurements.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// KV depths to test at (llama-bench's `-d`): before each timed run this many tokens are
    /// evaluated into the cache, untimed, so pp and tg are measured attending to them.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub depth: Vec<usize>,
    /// KV cache type: f16, f32, q8_0, q4_0, q4_1, q5_0 or q5_1 (llama-bench's `-ctk`).
    #[arg(long = "cache-type", default_value = "f16", value_parser = super::parse_kv_type)]
    pub cache_type: ferrolm::kv_cache::KvType,
    /// Flash attention (llama-bench's `-fa`): on, off or auto (= off).
    #[arg(long = "flash-attn", default_value = "auto", num_args = 0..=1, default_missing_value = "on", value_parser = super::parse_on_off)]
    pub flash_attn: bool,
    /// Also measure generation under this GBNF grammar: the grammar's share of each step
    /// (llama.cpp has no such test).
    #[arg(long = "grammar-file", conflicts_with = "json_schema")]
    pub grammar_file: Option<PathBuf>,
    /// Also measure generation under the grammar of this JSON Schema.
    #[arg(short = 'j', long = "json-schema")]
    pub json_schema: Option<String>,
    /// Skip the memory-bandwidth measurement.
    #[arg(long = "no-bandwidth")]
    pub no_bandwidth: bool,
}

struct TestResult {
    n_prompt: usize,
    n_gen: usize,
    n_threads: usize,
    depth: usize,
    samples: Vec<f64>,
}

impl TestResult {
    fn avg(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len() as f64
    }
    fn stddev(&self) -> f64 {
        if self.samples.len() < 2 {
            return 0.0;
        }
        let m = self.avg();
        (self.samples.iter().map(|x| (x - m) * (x - m)).sum::<f64>()
            / (self.samples.len() - 1) as f64)
            .sqrt()
    }
    /// llama-bench's test names: `pp512`, `tg128`, `tg128 @ d4096`.
    fn name(&self) -> String {
        let test = if self.n_prompt > 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        };
        match self.depth {
            0 => test,
            d => format!("{test} @ d{d}"),
        }
    }
}

/// Peak resident set (VmHWM) and current anonymous resident memory (RssAnon), in bytes, from
/// /proc/self/status (Linux); zeros elsewhere.
pub fn memory() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmHWM:"), field("RssAnon:"))
}

/// How much of `path`'s mappings in this process is resident (Rss) and how much of that is mapped
/// in 2 MiB pages (FilePmdMapped), in bytes, from /proc/self/smaps (Linux; `None` elsewhere or
/// when the file is not mapped).
pub fn huge_pages(path: &std::path::Path) -> Option<(u64, u64)> {
    let path = std::fs::canonicalize(path).ok()?;
    let suffix = format!(" {}", path.to_str()?);
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let (mut rss, mut pmd, mut mine, mut found) = (0u64, 0u64, false, false);
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let key = f.next().unwrap_or("");
        if !key.ends_with(':') {
            // A mapping's header: "start-end perms offset dev inode [path]".
            mine = line.trim_end().ends_with(&suffix);
            found |= mine;
            continue;
        }
        let kib = || {
            f.clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        match key {
            "Rss:" if mine => rss += kib(),
            "FilePmdMapped:" if mine => pmd += kib(),
            _ => {}
        }
    }
    found.then_some((rss, pmd))
}

/// Read bandwidth in bytes/s with `threads` threads summing a 1 GiB buffer (best of 3). The buffer
/// asks for 2 MiB pages, like the model map (4 KiB pages read slower), so that the baseline does
/// not flatter a model whose cache is in 2 MiB pages.
pub fn read_bandwidth(threads: usize) -> f64 {
    const N: usize = 1 << 27; // u64s = 1 GiB
    const HUGE: usize = 2 << 20;
    let mut store: Vec<u64> = Vec::with_capacity(N + HUGE / 8);
    let skip = store.as_ptr().align_offset(HUGE).min(HUGE / 8);
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside `store`'s allocation (capacity N + 2 MiB / 8, skip <= 2 MiB / 8);
    // MADV_HUGEPAGE is only a hint and changes no contents.
    unsafe {
        libc::madvise(
            store.as_mut_ptr().add(skip).cast(),
            N * 8,
            libc::MADV_HUGEPAGE,
        );
    }
    store.extend(0..(N + skip) as u64);
    let buf = &store[skip..];
    let pool = ThreadPool::new(threads);
    let mut best = 0.0f64;
    let sink = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..3 {
        let t = Instant::now();
        pool.run(&|i, n| {
            let chunk = N.div_ceil(n);
            let part = &buf[(i * chunk).min(N)..((i + 1) * chunk).min(N)];
            let mut acc = [0u64; 8];
            for c in part.chunks_exact(8) {
                for k in 0..8 {
                    acc[k] = acc[k].wrapping_add(c[k]);
                }
            }
            sink.fetch_add(
                acc.iter().fold(0, |a, &b| a.wrapping_add(b)),
                std::sync::atomic::Ordering::Relaxed,
            );
        });
        best = best.max((N * 8) as f64 / t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink.load(std::sync::atomic::Ordering::Relaxed));
    best
}

/// Deterministic token ids in [0, n_vocab).
fn tokens(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % n_vocab as u64) as u32
        })
        .collect()
}

pub fn run(args: Args) -> Result<(), CliError> {
    let path = super::model_or_default(&args.model)?;
    let t0 = Instant::now();
    let model = Arc::new(Model::load(&path)?);
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let cfg = model.config().clone();
    let nv = cfg.n_vocab;
    let weight_bytes = model.weight_bytes();
    let max_ctx = args
        .n_prompt
        .iter()
        .chain(&args.n_gen)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1)
        + args.depth.iter().copied().max().unwrap_or(0);
    if max_ctx > cfg.n_ctx_train.max(1) * 4 {
        return Err(format!(
            "test length {max_ctx} is far beyond the model's context {}",
            cfg.n_ctx_train
        )
        .into());
    }
    if args.threads.contains(&0) {
        return Err("thread counts must be at least 1".into());
    }

    // Load → first token ready: map, validate, create a context, decode one token (warm cache).
    let t1 = Instant::now();
    let m2 = Arc::new(Model::load(&path)?);
    let mut c2 = Context::new(m2, ContextParams::with_n_ctx(16))?;
    c2.eval(&[0], Logits::Last)?;
    let ready_ms = t1.elapsed().as_secs_f64() * 1e3;
    // After one token every weight page has been touched once.
    let huge = huge_pages(&path);
    drop(c2);

    let mut results = Vec::new();
    let mut kv_bytes = 0usize;
    let mut peak_anon = 0u64;
    for &t in &args.threads {
        let mut tests: Vec<(usize, usize)> = args
            .n_prompt
            .iter()
            .filter(|&&p| p > 0)
            .map(|&p| (p, 0))
            .collect();
        tests.extend(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)));
        let tests = args
            .depth
            .iter()
            .flat_map(|&d| tests.iter().map(move |&(p, n)| (p, n, d)));
        for (p, n, d) in tests {
            let n_ctx = (d + p + n).max(16).max(args.ctx_size);
            let mut ctx = Context::new(
                Arc::clone(&model),
                ContextParams {
                    n_ctx,
                    n_batch: args.batch.clamp(1, n_ctx),
                    n_threads: t,
                    kv_type: args.cache_type,
                    flash_attn: args.flash_attn,
                    ..Default::default()
                },
            )?;
            kv_bytes = kv_bytes.max(ctx.kv_cache().size_bytes());
            // Warm-up run, as llama-bench does: the whole prompt for pp (so the first timed run
            // does not pay the first touch of the KV cache and batch buffers), one token for tg.
            ctx.eval(&tokens(p.max(1), nv, 7), Logits::Last)?;
            let mut samples = Vec::new();
            let prefix = tokens(d, nv, 11);
            for r in 0..args.reps {
                ctx.reset();
                // The depth, untimed, in batches as a prompt would be.
                if d > 0 {
                    ctx.eval(&prefix, Logits::None)?;
                }
                let ids = tokens(p.max(n), nv, 42 + r as u64);
                let start = Instant::now();
                if p > 0 {
                    ctx.eval(&ids[..p], Logits::Last)?;
                } else {
                    for &id in &ids[..n] {
                        ctx.eval(&[id], Logits::Last)?;
                    }
                }
                samples.push((p + n) as f64 / start.elapsed().as_secs_f64());
            }
            // Anonymous memory while the context is alive (the KV cache pages written so far and
            // the scratch buffers; the mapped weights are file-backed and not counted).
            peak_anon = peak_anon.max(memory().1);
            let r = TestResult {
                n_prompt: p,
                n_gen: n,
                n_threads: t,
                depth: d,
                samples,
            };
            if args.output == "md" {
                eprintln!(
                    "  {} t={} {:.2} ± {:.2} t/s",
                    r.name(),
                    t,
                    r.avg(),
                    r.stddev()
                );
            }
            results.push(r);
        }
    }
    let grammar = grammar_test(&args, &model)?;
    let (peak_rss, anon_now) = memory();
    let anon = peak_anon.max(anon_now);
    // Bandwidth last: its 1 GiB buffer must not count in the model's peak RSS.
    let bw: Vec<(usize, f64)> = if args.no_bandwidth {
        Vec::new()
    } else {
        args.threads
            .iter()
            .map(|&t| (t, read_bandwidth(t)))
            .collect()
    };
    let file = path
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("?")
        .to_string();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let backend = ferrolm::kernels::dispatch::kernels().backend.name();
    if args.output == "json" {
        let tests: Vec<_> = results
            .iter()
            .map(|r| {
                let bwf = bw.iter().find(|(t, _)| *t == r.n_threads).map(|(_, b)| *b);
                serde_json::json!({
                    "model_filename": file, "model_size": weight_bytes, "n_params": null,
                    "n_prompt": r.n_prompt, "n_gen": r.n_gen, "n_depth": r.depth, "n_threads": r.n_threads, "n_batch": args.batch,
                    "type_k": args.cache_type.name(), "flash_attn": args.flash_attn,
                    "avg_ts": r.avg(), "stddev_ts": r.stddev(), "samples_ts": r.samples,
                    "backend": backend,
                    "read_bandwidth_bytes_per_s": bwf,
                    "bandwidth_fraction": if r.n_gen > 0 { bwf.map(|b| r.avg() * weight_bytes as f64 / b) } else { None },
                })
            })
            .collect();
        let summary = serde_json::json!({
            "grammar": grammar.iter().map(|g| g.json()).collect::<Vec<_>>(),
            "load_ms": load_ms, "ready_ms": ready_ms, "peak_rss_bytes": peak_rss, "anon_rss_bytes": anon,
            "kv_cache_bytes": kv_bytes, "weight_bytes": weight_bytes,
            "mapped_rss_bytes": huge.map(|h| h.0), "mapped_2mib_bytes": huge.map(|h| h.1),
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"tests": tests, "summary": summary}))?
        )?;
    } else {
        writeln!(
            out,
            "| model | size | backend | threads | test | t/s | of read bandwidth |"
        )?;
        writeln!(out, "| --- | ---: | --- | ---: | ---: | ---: | ---: |")?;
        for r in &results {
            let frac = match (r.n_gen > 0, bw.iter().find(|(t, _)| *t == r.n_threads)) {
                (true, Some((_, b))) => format!(
                    "{:.0}% of {:.1} GB/s",
                    100.0 * r.avg() * weight_bytes as f64 / b,
                    b / 1e9
                ),
                _ => String::new(),
            };
            writeln!(
                out,
                "| {file} | {:.0} MiB | {backend} | {} | {} | {:.2} ± {:.2} | {frac} |",
                weight_bytes as f64 / (1 << 20) as f64,
                r.n_threads,
                r.name(),
                r.avg(),
                r.stddev()
            )?;
        }
        writeln!(
            out,
            "\nload {load_ms:.1} ms, load → first token {ready_ms:.1} ms; peak RSS {:.1} MiB, anonymous {:.1} MiB (KV cache {:.1} MiB)",
            peak_rss as f64 / (1 << 20) as f64,
            anon as f64 / (1 << 20) as f64,
            kv_bytes as f64 / (1 << 20) as f64
        )?;
        for g in &grammar {
            writeln!(out, "{}", g.line())?;
        }
        if let Some((rss, pmd)) = huge.filter(|h| h.0 > 0) {
            writeln!(
                out,
                "model map: {:.0} MiB resident, {:.0}% of it in 2 MiB pages",
                rss as f64 / (1 << 20) as f64,
                100.0 * pmd as f64 / rss as f64
            )?;
            if rss >= 64 << 20 && pmd < rss / 2 {
                writeln!(
                    out,
                    "note: the model file is cached in 4 KiB pages (it was written or read before \
                     without a 2 MiB hint), which slows decode: on the project's test machine \
                     TinyLlama Q4_0 ran at 30 t/s this way and 40 t/s from 2 MiB pages. \
                     `dd if={} iflag=nocache count=0` drops the cached copy; the next load reads \
                     it back in 2 MiB pages",
                    path.display()
                )?;
            }
        }
    }
    Ok(())
}

/// Generation under a grammar at one thread count.
struct GrammarResult {
    threads: usize,
    tokens: usize,
    seconds: f64,
    grammar_seconds: f64,
    masks: usize,
    mask_seconds: f64,
    /// One full mask over the whole vocabulary at the grammar's start, best of several.
    full_mask_us: f64,
    n_vocab: usize,
}

impl GrammarResult {
    fn line(&self) -> String {
        let step = self.seconds / self.tokens.max(1) as f64;
        let per_tok = self.grammar_seconds / self.tokens.max(1) as f64;
        format!(
            "grammar t={}: {:.2} t/s generating under it; the grammar took {:.1} us per token ({:.1}% of a step), \
             {} of {} tokens needed a full mask ({:.0} us each); a full mask of all {} tokens: {:.0} us ({:.1}% of a step)",
            self.threads,
            self.tokens as f64 / self.seconds,
            per_tok * 1e6,
            100.0 * per_tok / step,
            self.masks,
            self.tokens,
            if self.masks > 0 { self.mask_seconds / self.masks as f64 * 1e6 } else { 0.0 },
            self.n_vocab,
            self.full_mask_us,
            100.0 * self.full_mask_us * 1e-6 / step,
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "n_threads": self.threads, "n_gen": self.tokens, "avg_ts": self.tokens as f64 / self.seconds,
            "grammar_us_per_token": self.grammar_seconds / self.tokens.max(1) as f64 * 1e6,
            "full_masks": self.masks, "full_mask_us": self.full_mask_us, "n_vocab": self.n_vocab,
        })
    }
}

/// With --grammar-file / -j: generates (temperature 0.8, seeds 42..) under the grammar at each
/// thread count, `-n` tokens per repetition or until it ends, and times the grammar's part.
fn grammar_test(args: &Args, model: &Arc<Model>) -> Result<Vec<GrammarResult>, CliError> {
    use ferrolm::grammar::{schema_to_gbnf, Constraint, Grammar, TokenTable};
    use ferrolm::sampler::{Sampler, SamplerParams};
    let text = match (&args.grammar_file, &args.json_schema) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the grammar file {}: {e}", f.display()))?,
        (None, Some(s)) => {
            let v: serde_json::Value =
                serde_json::from_str(s).map_err(|e| format!("--json-schema: not JSON: {e}"))?;
            schema_to_gbnf(&v).map_err(|e| format!("--json-schema: {e}"))?
        }
        (None, None) => return Ok(Vec::new()),
    };
    let g = Arc::new(Grammar::parse(&text).map_err(|e| format!("grammar: {e}"))?);
    let tok = ferrolm::tokenizer::Tokenizer::from_gguf(model.gguf())?;
    let table = Arc::new(TokenTable::new(&tok));
    let n = args.n_gen.iter().copied().max().unwrap_or(128).max(1);
    let prompt = tok.encode("Here is the data as JSON:\n", true, false);
    let mut out = Vec::new();
    let mut c = Constraint::new(Arc::clone(&g), Arc::clone(&table));
    let mut full = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(c.full_mask());
        full = full.min(t.elapsed().as_secs_f64() * 1e6);
    }
    for &t in &args.threads {
        let mut ctx = Context::new(
            Arc::clone(model),
            ContextParams {
                n_ctx: prompt.len() + n + 1,
                n_threads: t,
                kv_type: args.cache_type,
                flash_attn: args.flash_attn,
                ..Default::default()
            },
        )?;
        let mut r = GrammarResult {
            threads: t,
            tokens: 0,
            seconds: 0.0,
            grammar_seconds: 0.0,
            masks: 0,
            mask_seconds: 0.0,
            full_mask_us: full,
            n_vocab: table.n_vocab(),
        };
        for rep in 0..args.reps {
            ctx.reset();
            let mut sampler = Sampler::new(
                SamplerParams {
                    temp: 0.8,
                    seed: 42 + rep as u64,
                    ..Default::default()
                },
                tok.n_vocab(),
            );
            sampler.set_grammar(Some(Constraint::new(Arc::clone(&g), Arc::clone(&table))));
            ctx.eval(&prompt, Logits::Last)?;
            let start = Instant::now();
            for _ in 0..n {
                let id = sampler.sample(ctx.logits());
                sampler.accept_generated(id);
                r.tokens += 1;
                if tok.is_eog(id) {
                    break;
                }
                ctx.eval(&[id], Logits::Last)?;
            }
            r.seconds += start.elapsed().as_secs_f64();
            let c = sampler.grammar().expect("set above");
            let (gt, mt) = c.times();
            r.grammar_seconds += gt.as_secs_f64();
            r.mask_seconds += mt.as_secs_f64();
            r.masks += c.n_masks();
        }
        if args.output == "md" {
            eprintln!("  {}", r.line());
        }
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapped, touched file is found in /proc/self/smaps with its resident size; an unmapped one
    /// is not.
    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_finds_the_mapping() {
        let path = std::env::temp_dir().join(format!("ferrolm-smaps-{}.bin", std::process::id()));
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        assert_eq!(huge_pages(&path), None);
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: the file is private to this test and not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let sum: u64 = map.iter().step_by(4096).map(|&b| b as u64).sum();
        assert_eq!(sum, 7 * 256);
        let (rss, pmd) = huge_pages(&path).expect("mapping listed in smaps");
        assert_eq!(rss, 1 << 20, "all 256 pages resident");
        assert!(pmd <= rss);
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
