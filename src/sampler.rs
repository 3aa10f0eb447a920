//! Token sampling with llama.cpp's semantics and default chain order:
//! penalties -> top-k -> top-p -> min-p -> temperature -> sample.
//!
//! The sampler owns every buffer it needs (the candidate array, sized `n_vocab` at creation, and
//! the penalty window): sampling a token allocates nothing. Random draws come from our own
//! xoshiro256** generator seeded through SplitMix64, so a seed gives the same tokens on every
//! machine (they are not llama.cpp's draws, which use `std::mt19937`).
//!
//! Also here: [`StopMatcher`], which finds stop strings in generated text and holds back text that
//! may be the start of one.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest penalty window (`repeat_last_n` is clamped to it).
pub const MAX_PENALTY_WINDOW: usize = 1 << 20;

/// `seed` value asking for a seed taken from the clock (llama.cpp's `LLAMA_DEFAULT_SEED`
/// 0xFFFFFFFF plays this role there). [`Sampler::seed`] reports the seed actually used.
pub const SEED_FROM_TIME: u64 = u64::MAX;

/// Sampling parameters. [`Default`] gives llama.cpp's defaults (`common_params_sampling`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerParams {
    /// Temperature; `<= 0` means greedy (argmax after penalties, ties to the lower id).
    pub temp: f32,
    /// Keep the `top_k` most likely tokens; `<= 0` keeps all.
    pub top_k: i32,
    /// Keep the smallest set of tokens whose probability sums to at least `top_p`; `>= 1` is off.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top one's; `<= 0` is off.
    pub min_p: f32,
    /// Repetition penalty: a token seen in the window has a positive logit divided by it and a
    /// negative one multiplied by it. `1.0` is off.
    pub repeat_penalty: f32,
    /// How many of the last accepted tokens the penalties look at; `0` is off (at most
    /// [`MAX_PENALTY_WINDOW`]).
    pub repeat_last_n: usize,
    /// Subtracted once per occurrence in the window.
    pub freq_penalty: f32,
    /// Subtracted once if the token occurs in the window.
    pub presence_penalty: f32,
    /// PRNG seed; [`SEED_FROM_TIME`] (the default) takes one from the clock.
    pub seed: u64,
}

impl SamplerParams {
    /// The one check of sampler settings, used by the CLI and the C ABI alike: `Err` names the
    /// setting, its value and what is expected (`repeat_penalty is 0; expected a finite number > 0`).
    pub fn validate(&self) -> Result<(), String> {
        let bad = |what: &str, v: f32, want: &str| Err(format!("{what} is {v}; expected {want}"));
        if !(self.temp.is_finite() && self.temp >= 0.0) {
            return bad("temp", self.temp, "a finite number >= 0");
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad("top_p", self.top_p, "a number in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "a number in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("repeat_penalty", self.repeat_penalty, "a finite number > 0");
        }
        if !self.freq_penalty.is_finite() {
            return bad("frequency_penalty", self.freq_penalty, "a finite number");
        }
        if !self.presence_penalty.is_finite() {
            return bad("presence_penalty", self.presence_penalty, "a finite number");
        }
        if self.repeat_last_n > MAX_PENALTY_WINDOW {
            return Err(format!(
                "repeat_last_n is {}; expected 0..={MAX_PENALTY_WINDOW}",
                self.repeat_last_n
            ));
        }
        Ok(())
    }
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            freq_penalty: 0.0,
            presence_penalty: 0.0,
            seed: SEED_FROM_TIME,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        SamplerParams {
            temp: 0.0,
            ..SamplerParams::default()
        }
    }
}

/// xoshiro256** (Blackman & Vigna), seeded with SplitMix64. Small, fast, reproducible.
#[derive(Clone, Debug)]
struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Xoshiro256 {
            s: [next(), next(), next(), next()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[derive(Clone, Copy, Debug)]
struct Cand {
    id: u32,
    logit: f32,
}

/// Higher logit first, ties to the lower id; NaN never occurs (mapped to -inf on entry).
#[inline]
fn by_logit_desc(a: &Cand, b: &Cand) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// A token sampler. Create one per generation stream; call [`Sampler::sample`] on each step's
/// logits and [`Sampler::accept`] with the token that was actually used.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplerParams,
    seed: u64,
    rng: Xoshiro256,
    n_vocab: usize,
    /// `[n_vocab]` candidate buffer; only `cands[..len]` is live during a call.
    cands: Vec<Cand>,
    /// Penalty window, a ring of the last `repeat_last_n` accepted ids.
    ring: Vec<u32>,
    ring_head: usize,
    ring_len: usize,
    /// `[n_vocab]` occurrences of each id in the window.
    counts: Vec<u32>,
    /// Distinct ids of the window with their counts, gathered per call; `[repeat_last_n]`.
    pen: Vec<(u32, u32)>,
    /// A grammar the generated tokens must follow.
    grammar: Option<Box<crate::grammar::Constraint>>,
}

impl Sampler {
    /// A sampler for a vocabulary of `n_vocab` tokens; all buffers are allocated here.
    pub fn new(params: SamplerParams, n_vocab: usize) -> Sampler {
        let seed = if params.seed == SEED_FROM_TIME {
            seed_from_time()
        } else {
            params.seed
        };
        // A window longer than any context is meaningless; the clamp keeps absurd values from
        // allocating absurd buffers.
        let last_n = params.repeat_last_n.min(MAX_PENALTY_WINDOW);
        let penalties = last_n > 0;
        Sampler {
            params,
            seed,
            rng: Xoshiro256::new(seed),
            n_vocab,
            cands: Vec::with_capacity(n_vocab),
            ring: vec![0; last_n],
            ring_head: 0,
            ring_len: 0,
            counts: vec![0; if penalties { n_vocab } else { 0 }],
            pen: Vec::with_capacity(last_n),
            grammar: None,
        }
    }

    /// Constrains the generated tokens to a grammar (None: no constraint). Tokens recorded by
    /// [`Sampler::accept_generated`] advance it; prompt tokens ([`Sampler::accept`]) do not.
    pub fn set_grammar(&mut self, g: Option<crate::grammar::Constraint>) {
        self.grammar = g.map(Box::new);
    }

    /// The grammar back at its start (each chat reply follows it anew); the penalty window stays.
    pub fn reset_grammar(&mut self) {
        if let Some(g) = self.grammar.as_mut() {
            g.reset();
        }
    }

    pub fn grammar(&self) -> Option<&crate::grammar::Constraint> {
        self.grammar.as_deref()
    }

    /// Record a generated token: [`Sampler::accept`] and, with a grammar, advance it.
    pub fn accept_generated(&mut self, id: u32) {
        self.accept(id);
        if let Some(g) = self.grammar.as_mut() {
            g.accept(id);
        }
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// The seed in use (the clock's when [`SEED_FROM_TIME`] was asked for).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Record a token as generated (or as part of the prompt): it enters the penalty window.
    /// Ids outside the vocabulary are ignored.
    pub fn accept(&mut self, id: u32) {
        let cap = self.ring.len();
        if cap == 0 || id as usize >= self.n_vocab {
            return;
        }
        if self.ring_len == cap {
            let old = self.ring[self.ring_head];
            self.counts[old as usize] -= 1;
        } else {
            self.ring_len += 1;
        }
        self.ring[self.ring_head] = id;
        self.counts[id as usize] += 1;
        self.ring_head = (self.ring_head + 1) % cap;
    }

    /// Empty the penalty window and restart the PRNG from the seed.
    pub fn reset(&mut self) {
        let cap = self.ring.len();
        for i in 0..self.ring_len {
            let id = self.ring[(self.ring_head + cap - 1 - i) % cap];
            self.counts[id as usize] = 0;
        }
        self.ring_len = 0;
        self.ring_head = 0;
        self.rng = Xoshiro256::new(self.seed);
        if let Some(g) = self.grammar.as_mut() {
            g.reset();
        }
    }

    /// Pick the next token from `logits` (`[n_vocab]`; a longer slice is cut to `n_vocab`, a
    /// shorter one samples among its ids). Allocates nothing (without a grammar). NaN logits count
    /// as -inf. Returns 0 when `logits` is empty. With a grammar, only a token it allows (see
    /// [`crate::grammar::Constraint::sample`]).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if let Some(mut g) = self.grammar.take() {
            let id = g.sample(self, logits);
            self.grammar = Some(g);
            return id;
        }
        self.sample_free(logits)
    }

    /// [`Sampler::sample`] without the grammar.
    fn sample_free(&mut self, logits: &[f32]) -> u32 {
        let n = logits.len().min(self.n_vocab);
        if n == 0 {
            return 0;
        }
        let logits = &logits[..n];
        self.collect_penalties(n);
        let pen = Penalized {
            logits,
            pen: &self.pen,
            counts: &self.counts,
            params: &self.params,
        };
        let p = self.params;
        if p.temp <= 0.0 {
            return pen.argmax();
        }

        // top-k: a bounded selection when k is small, else every candidate (sorted lazily).
        let k = if p.top_k <= 0 {
            n
        } else {
            (p.top_k as usize).min(n)
        };
        self.cands.clear();
        let mut sorted;
        if k <= TOP_K_SCAN_MAX && k < n {
            pen.top_k_into(k, &mut self.cands);
            sorted = self.cands.len();
        } else {
            self.cands.extend((0..n).map(|i| Cand {
                id: i as u32,
                logit: pen.value(i),
            }));
            sorted = 0;
        }
        let cands = &mut self.cands[..];
        if cands.is_empty() {
            return pen.argmax();
        }
        // A large top-k (past the one-pass selection) cuts the full array here.
        if k < cands.len() {
            ensure_sorted(cands, &mut sorted, k);
        }
        let kept = k.min(cands.len());
        let cands = &mut cands[..kept];
        let mut len = cands.len();

        // top-p over the softmax of the kept logits
        if p.top_p < 1.0 {
            ensure_sorted(cands, &mut sorted, 1);
            let max = cands[0].logit;
            let sum: f64 = cands.iter().map(|c| ((c.logit - max) as f64).exp()).sum();
            let mut cum = 0.0f64;
            let mut i = 0;
            while i < len {
                ensure_sorted(cands, &mut sorted, i + 1);
                cum += ((cands[i].logit - max) as f64).exp() / sum;
                i += 1;
                if cum >= p.top_p as f64 {
                    len = i;
                    break;
                }
            }
        }

        // min-p: keep logit >= max + ln(min_p); the top token always stays
        if p.min_p > 0.0 {
            if sorted > 0 {
                let min_logit = cands[0].logit + p.min_p.ln();
                let mut i = 1;
                while i < len {
                    ensure_sorted(cands, &mut sorted, i + 1);
                    if cands[i].logit < min_logit {
                        break;
                    }
                    i += 1;
                }
                len = i;
            } else {
                // Unsorted: keep the qualifying tokens in id order.
                let max = cands[..len]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
                let min_logit = max + p.min_p.ln();
                let mut kept = 0;
                for i in 0..len {
                    if cands[i].logit >= min_logit {
                        cands[kept] = cands[i];
                        kept += 1;
                    }
                }
                len = kept.max(1);
            }
        }
        let cands = &mut cands[..len];

        // temperature, then a draw from the softmax
        let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit));
        if !max.is_finite() {
            // +inf, or nothing but -inf: the first candidate with the top logit
            return cands
                .iter()
                .find(|c| c.logit == max)
                .map_or(cands[0].id, |c| c.id);
        }
        let inv_t = 1.0 / p.temp as f64;
        let mut sum = 0.0f64;
        for c in cands.iter_mut() {
            // Store the unnormalized probability in place of the logit.
            let w = (((c.logit - max) as f64) * inv_t).exp();
            c.logit = w as f32;
            sum += w;
        }
        if !(sum.is_finite() && sum > 0.0) {
            return cands[0].id;
        }
        let mut u = self.rng.next_f64() * sum;
        for c in cands.iter() {
            u -= c.logit as f64;
            if u < 0.0 {
                return c.id;
            }
        }
        cands[cands.len() - 1].id
    }

    /// Repetition / frequency / presence penalties (llama.cpp semantics): the penalized logit of
    /// each distinct id in the window goes to `self.pen`, to be used instead of the raw logit.
    fn collect_penalties(&mut self, n: usize) {
        self.pen.clear();
        let p = &self.params;
        if self.ring_len == 0
            || (p.repeat_penalty == 1.0 && p.freq_penalty == 0.0 && p.presence_penalty == 0.0)
        {
            return;
        }
        // Each distinct id once: mark its count with the top bit while going through the
        // window, then clear the marks.
        for i in 0..self.ring_len {
            let id = self.ring[i] as usize;
            let count = self.counts[id];
            if count & SEEN != 0 || id >= n {
                continue;
            }
            self.counts[id] |= SEEN;
            self.pen.push((id as u32, count));
        }
        for i in 0..self.ring_len {
            self.counts[self.ring[i] as usize] &= !SEEN;
        }
    }
}

/// Index of the first greatest of `v` (NaN never wins; 0 when nothing exceeds -inf): the scan
/// `argmax` does without penalties, as a lane-wise maximum (vectorized) and a search for it.
fn first_max(v: &[f32]) -> usize {
    const L: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; L];
    let chunks = v.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            // Not `f32::max`: a NaN must not replace the lane's value.
            *m = if x > *m { x } else { *m };
        }
    }
    let m = lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    if m == f32::NEG_INFINITY {
        return 0;
    }
    v.iter().position(|&x| x == m).unwrap_or(0)
}

/// Top bit of a window count: "already visited" while collecting penalties.
const SEEN: u32 = 1 << 31;

/// Up to this `top_k`, candidates are selected in one pass over the logits into a small sorted
/// buffer instead of building and partitioning the whole `[n_vocab]` array.
const TOP_K_SCAN_MAX: usize = 256;

/// The logits as the penalties leave them, without copying them.
struct Penalized<'a> {
    logits: &'a [f32],
    /// Distinct ids in the penalty window, with their counts.
    pen: &'a [(u32, u32)],
    /// `[n_vocab]` window counts (empty when penalties are off).
    counts: &'a [u32],
    params: &'a SamplerParams,
}

impl Penalized<'_> {
    #[inline]
    fn raw(&self, i: usize) -> f32 {
        let l = self.logits[i];
        if l.is_nan() {
            f32::NEG_INFINITY
        } else {
            l
        }
    }

    #[inline]
    fn in_window(&self, i: usize) -> bool {
        !self.pen.is_empty() && self.counts.get(i).is_some_and(|&c| c != 0)
    }

    /// Penalized logit of a window id seen `count` times: the repeat penalty divides a positive
    /// logit and multiplies a negative one; frequency and presence penalties are subtracted.
    #[inline]
    fn penalize(&self, l: f32, count: u32) -> f32 {
        let p = self.params;
        let l = if l <= 0.0 {
            l * p.repeat_penalty
        } else {
            l / p.repeat_penalty
        };
        l - (count as f32 * p.freq_penalty + p.presence_penalty)
    }

    /// The candidate value of token `i`.
    #[inline]
    fn value(&self, i: usize) -> f32 {
        if self.in_window(i) {
            self.penalize(self.raw(i), self.counts[i])
        } else {
            self.raw(i)
        }
    }

    /// Highest penalized logit, ties to the lower id.
    fn argmax(&self) -> u32 {
        if self.pen.is_empty() {
            return first_max(self.logits) as u32;
        }
        let mut best = (f32::NEG_INFINITY, 0usize);
        for (i, &l) in self.logits.iter().enumerate() {
            if l > best.0 && !self.in_window(i) {
                best = (l, i);
            }
        }
        for c in self.penalized() {
            if c.logit > best.0 || (c.logit == best.0 && (c.id as usize) < best.1) {
                best = (c.logit, c.id as usize);
            }
        }
        best.1 as u32
    }

    /// Penalized candidates of the window ids.
    fn penalized(&self) -> impl Iterator<Item = Cand> + '_ {
        self.pen.iter().map(|&(id, count)| Cand {
            id,
            logit: self.penalize(self.raw(id as usize), count),
        })
    }

    /// The `k` best candidates, sorted (logit desc, id asc), appended to `out`.
    fn top_k_into(&self, k: usize, out: &mut Vec<Cand>) {
        let mut thresh = f32::NEG_INFINITY;
        let insert = |out: &mut Vec<Cand>, c: Cand, thresh: &mut f32| {
            if out.len() == k && by_logit_desc(&c, &out[k - 1]) != std::cmp::Ordering::Less {
                return;
            }
            let pos = out.partition_point(|x| by_logit_desc(x, &c) == std::cmp::Ordering::Less);
            if out.len() == k {
                out.pop();
            }
            out.insert(pos, c);
            if out.len() == k {
                *thresh = out[k - 1].logit;
            }
        };
        for (i, &l) in self.logits.iter().enumerate() {
            // `>=` so equal logits with a lower id than the last kept can still enter; NaN fails.
            if l >= thresh && !self.in_window(i) {
                insert(
                    out,
                    Cand {
                        id: i as u32,
                        logit: l,
                    },
                    &mut thresh,
                );
            }
        }
        for c in self.penalized() {
            insert(out, c, &mut thresh);
        }
    }
}

/// Make `cands[..need]` hold the `need` best candidates in order, sorting further chunks of the
/// unsorted tail as needed (`sorted` = how many are in final position).
fn ensure_sorted(cands: &mut [Cand], sorted: &mut usize, need: usize) {
    while *sorted < need.min(cands.len()) {
        let rest = &mut cands[*sorted..];
        let chunk = (*sorted).max(64).min(rest.len());
        if chunk < rest.len() {
            rest.select_nth_unstable_by(chunk - 1, by_logit_desc);
        }
        rest[..chunk].sort_unstable_by(by_logit_desc);
        *sorted += chunk;
    }
}

fn seed_from_time() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // Mix in an address so two samplers made in the same nanosecond differ.
    let local = 0u8;
    let s = t ^ (&local as *const u8 as u64).rotate_left(32);
    if s == SEED_FROM_TIME {
        0
    } else {
        s
    }
}

/// What [`StopMatcher::push`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopOutput<'a> {
    /// Text that is safe to show now.
    pub text: &'a str,
    /// Index (into the stop strings) of the stop string that completed; generation should end.
    /// `text` then holds everything before it.
    pub stopped: Option<usize>,
}

/// Finds stop strings in streamed text. Text that could be the beginning of a stop string is
/// held back until it is clear it is not.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released.
    pending: String,
    /// Text released by the last call.
    out: String,
    done: bool,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new<S: Into<String>>(stops: impl IntoIterator<Item = S>) -> StopMatcher {
        let stops = stops
            .into_iter()
            .map(Into::into)
            .filter(|s: &String| !s.is_empty())
            .collect();
        StopMatcher {
            stops,
            ..StopMatcher::default()
        }
    }

    pub fn stops(&self) -> &[String] {
        &self.stops
    }

    /// Feed generated text. After a stop, further input is ignored.
    pub fn push(&mut self, text: &str) -> StopOutput<'_> {
        self.out.clear();
        if self.done {
            return StopOutput {
                text: &self.out,
                stopped: None,
            };
        }
        self.pending.push_str(text);
        // Earliest stop string occurrence (ties: the first listed).
        let mut hit: Option<(usize, usize)> = None;
        for (i, s) in self.stops.iter().enumerate() {
            if let Some(p) = self.pending.find(s.as_str()) {
                if hit.is_none_or(|(hp, _)| p < hp) {
                    hit = Some((p, i));
                }
            }
        }
        if let Some((p, i)) = hit {
            self.out.push_str(&self.pending[..p]);
            self.pending.clear();
            self.done = true;
            return StopOutput {
                text: &self.out,
                stopped: Some(i),
            };
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let hold = self.held_suffix_len();
        let cut = self.pending.len() - hold;
        self.out.push_str(&self.pending[..cut]);
        self.pending.drain(..cut);
        StopOutput {
            text: &self.out,
            stopped: None,
        }
    }

    /// End of generation: release the held-back text.
    pub fn finish(&mut self) -> &str {
        self.out.clear();
        self.out.push_str(&self.pending);
        self.pending.clear();
        &self.out
    }

    /// Whether a stop string has completed.
    pub fn stopped(&self) -> bool {
        self.done
    }

    /// Start over (same stop strings).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.out.clear();
        self.done = false;
    }

    fn held_suffix_len(&self) -> usize {
        let p = self.pending.as_bytes();
        let mut best = 0;
        for s in &self.stops {
            let s = s.as_bytes();
            // Proper prefixes only: a full match was handled above.
            let max = (s.len() - 1).min(p.len());
            for len in (best + 1..=max).rev() {
                if self.pending.is_char_boundary(p.len() - len) && p[p.len() - len..] == s[..len] {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_max_is_the_first_strict_maximum() {
        // The scalar scan it replaces: first index of the strict maximum, NaN never taken.
        let naive = |v: &[f32]| {
            let mut best = (f32::NEG_INFINITY, 0usize);
            for (i, &l) in v.iter().enumerate() {
                if l > best.0 {
                    best = (l, i);
                }
            }
            best.1
        };
        let mut r = Xoshiro256::new(7);
        for n in [0usize, 1, 5, 16, 17, 33, 100, 1000] {
            for _ in 0..50 {
                // Few distinct values, so ties are common; some NaN and infinities.
                let v: Vec<f32> = (0..n)
                    .map(|_| match r.next_u64() % 10 {
                        0 => f32::NAN,
                        1 => f32::NEG_INFINITY,
                        k => (k % 4) as f32 - 2.0,
                    })
                    .collect();
                assert_eq!(first_max(&v), naive(&v), "{v:?}");
            }
        }
        assert_eq!(
            first_max(&[
                f32::NAN,
                f32::NEG_INFINITY,
                3.0,
                f32::INFINITY,
                f32::INFINITY
            ]),
            3
        );
        assert_eq!(first_max(&[f32::NEG_INFINITY; 20]), 0);
    }

    #[test]
    fn xoshiro_known_values() {
        // Same seed, same stream; different seeds differ.
        let mut a = Xoshiro256::new(42);
        let mut b = Xoshiro256::new(42);
        let mut c = Xoshiro256::new(43);
        let va: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        for _ in 0..1000 {
            let x = a.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn stop_matcher_holds_prefixes() {
        let mut m = StopMatcher::new(["</s>", "\n\nUser:"]);
        assert_eq!(m.push("Hello <").text, "Hello ");
        assert_eq!(m.push("b>").text, "<b>");
        assert_eq!(m.push(" x\n").text, " x");
        let o = m.push("\nUser: hi");
        assert_eq!(
            o,
            StopOutput {
                text: "",
                stopped: Some(1)
            }
        );
        assert!(m.stopped());
        assert_eq!(m.push("more").text, "");

        let mut m = StopMatcher::new(["STOP"]);
        assert_eq!(m.push("abcST").text, "abc");
        assert_eq!(m.finish(), "ST");

        let mut m = StopMatcher::new(["é!"]);
        assert_eq!(m.push("café").text, "caf");
        assert_eq!(m.push("!").stopped, Some(0));
    }
}
