//! A standalone mutation driver for [`crate::check`], for machines without a working cargo-fuzz:
//! it loads the seed files, mutates them with a seeded PRNG (bit flips, interesting integers at
//! header offsets, truncation, insertion, deletion, duplication, splices of two inputs), and keeps
//! a small pool of inputs that reached a result not seen before (a parse, or a new kind of error)
//! as crude feedback. A panic saves the input under the artifacts directory and is reported; the
//! exit status is 1 when anything was found.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ferrolm::gguf::Gguf;

const USAGE: &str = "usage: gguf_reader [--iters N] [--seconds S] [--seed N] [--max-len BYTES] \
[--artifacts DIR] SEED_DIR_OR_FILE...\n\
Mutates the seeds and runs the gguf_reader checks on each input until N iterations or S seconds.";

struct Opts {
    iters: u64,
    seconds: Option<u64>,
    seed: u64,
    max_len: usize,
    artifacts: PathBuf,
    inputs: Vec<PathBuf>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        iters: u64::MAX,
        seconds: None,
        seed: 0x5eed,
        max_len: 64 << 10,
        artifacts: PathBuf::from("fuzz/artifacts/gguf_reader_drive"),
        inputs: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("bad number {s:?}: {e}"));
        match a.as_str() {
            "--iters" => o.iters = num(val("--iters")?)?,
            "--seconds" => o.seconds = Some(num(val("--seconds")?)?),
            "--seed" => o.seed = num(val("--seed")?)?,
            "--max-len" => o.max_len = num(val("--max-len")?)? as usize,
            "--artifacts" => o.artifacts = PathBuf::from(val("--artifacts")?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown flag {s}")),
            _ => o.inputs.push(PathBuf::from(a)),
        }
    }
    if o.inputs.is_empty() {
        return Err("no seed files or directories given".into());
    }
    if o.iters == u64::MAX && o.seconds.is_none() {
        o.iters = 100_000;
    }
    Ok(o)
}

/// SplitMix64: small, fast, and reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next() % one_in == 0
    }
}

/// Integers that tend to hit edge cases when written over a count, length, type id or offset.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    12,
    13,
    16,
    31,
    32,
    64,
    255,
    256,
    4096,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    i64::MAX as u64,
    i64::MIN as u64,
    u64::MAX,
    u64::MAX - 31,
];

fn load_inputs(paths: &[PathBuf], max_len: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for p in paths {
        let files: Vec<PathBuf> = if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        } else {
            vec![p.clone()]
        };
        for f in files {
            let mut b = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            b.truncate(max_len);
            out.push(b);
        }
    }
    if out.is_empty() {
        return Err("the seed directories are empty".into());
    }
    Ok(out)
}

/// Apply 1-4 stacked mutations.
fn mutate(rng: &mut Rng, pool: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut b = pool[rng.below(pool.len())].clone();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        // Most structure lives in the first few KiB (header, metadata, tensor infos): bias there.
        let hot = b.len().min(if rng.chance(4) { usize::MAX } else { 4096 });
        let pos = |rng: &mut Rng| rng.below(hot.max(1));
        match rng.below(10) {
            0 | 1 if !b.is_empty() => {
                let p = pos(rng);
                b[p] ^= 1 << rng.below(8);
            }
            2 if !b.is_empty() => {
                let p = pos(rng);
                b[p] = [0u8, 1, 0x7f, 0x80, 0xff, b'G', 9, 8][rng.below(8)];
            }
            3 | 4 if b.len() >= 8 => {
                // An interesting integer, 4 or 8 bytes wide, at an offset; often just past the
                // previous write, where the next field of the header would be.
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let v = if rng.chance(3) { v.wrapping_add(b.len() as u64) } else { v };
                let wide = rng.chance(2);
                let n = if wide { 8 } else { 4 };
                let p = pos(rng).min(b.len() - n);
                b[p..p + n].copy_from_slice(&v.to_le_bytes()[..n]);
            }
            5 if !b.is_empty() => {
                let cut = rng.below(b.len());
                b.truncate(cut);
            }
            6 => {
                let p = rng.below(b.len() + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(p..p, bytes);
            }
            7 if !b.is_empty() => {
                let p = rng.below(b.len());
                let n = 1 + rng.below((b.len() - p).min(64));
                b.drain(p..p + n);
            }
            8 if !b.is_empty() => {
                // Duplicate a span (repeats a key/value or tensor info).
                let p = rng.below(b.len());
                let n = 1 + rng.below((b.len() - p).min(128));
                let span = b[p..p + n].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, span);
            }
            _ => {
                // Splice: the head of this input and the tail of another.
                let other = &pool[rng.below(pool.len())];
                let cut_a = rng.below(b.len() + 1);
                let cut_b = rng.below(other.len() + 1);
                b.truncate(cut_a);
                b.extend_from_slice(&other[cut_b..]);
            }
        }
    }
    b.truncate(max_len);
    b
}

/// What an input led to, coarsely: a parse (with its shape) or the error's variant name.
fn signature(b: &[u8]) -> String {
    match Gguf::validate(b) {
        Ok(()) => match Gguf::from_bytes(b) {
            Ok(g) => format!("ok v{} kv{} t{}", g.version(), g.n_metadata().min(64), g.n_tensors().min(64)),
            Err(_) => "ok?".into(),
        },
        Err(e) => {
            let d = format!("{e:?}");
            let end = d.find([' ', '(', '{']).unwrap_or(d.len());
            let what = match &e {
                ferrolm::gguf::GgufError::Truncated { what, .. } | ferrolm::gguf::GgufError::TooLong { what, .. } => {
                    what
                }
                _ => "",
            };
            format!("err {} {what}", &d[..end])
        }
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100_0000_01b3))
}

fn save(dir: &Path, b: &[u8]) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let p = dir.join(format!("crash-{:016x}", fnv1a(b)));
    std::fs::write(&p, b).ok()?;
    Some(p)
}

pub fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    let mut pool = match load_inputs(&o.inputs, o.max_len) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    const POOL_MAX: usize = 512;
    let mut seen: HashSet<String> = pool.iter().map(|b| signature(b)).collect();
    let mut rng = Rng(o.seed);
    let deadline = o.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut crashes = 0u64;
    let mut crash_sigs: HashSet<String> = HashSet::new();
    let mut n = 0u64;
    eprintln!("gguf_reader driver: {} seeds, seed {}, max_len {}", pool.len(), o.seed, o.max_len);
    while n < o.iters && deadline.is_none_or(|d| Instant::now() < d) {
        let input = mutate(&mut rng, &pool, o.max_len);
        n += 1;
        let res = std::panic::catch_unwind(|| crate::check(&input));
        match res {
            Ok(()) => {
                let sig = signature(&input);
                if !seen.contains(&sig) {
                    seen.insert(sig);
                    if pool.len() < POOL_MAX {
                        pool.push(input);
                    } else {
                        let i = rng.below(POOL_MAX);
                        pool[i] = input;
                    }
                } else if rng.chance(64) && pool.len() < POOL_MAX {
                    pool.push(input); // some variety beyond new signatures
                }
            }
            Err(p) => {
                crashes += 1;
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let first = crash_sigs.insert(msg.clone());
                let saved = save(&o.artifacts, &input);
                if first {
                    eprintln!(
                        "CRASH #{crashes} at iteration {n}: {msg}\n  input ({} bytes) saved to {}",
                        input.len(),
                        saved.map(|p| p.display().to_string()).unwrap_or_else(|| "(could not save)".into())
                    );
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "#{n} {:.0}s {:.0} exec/s pool {} signatures {} crashes {crashes}",
                secs,
                n as f64 / secs,
                pool.len(),
                seen.len()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "done: {n} inputs in {secs:.0}s ({:.0} exec/s), {} distinct outcomes, {crashes} crashes ({} distinct)",
        n as f64 / secs.max(1e-9),
        seen.len(),
        crash_sigs.len()
    );
    if crashes > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
