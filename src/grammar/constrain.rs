//! Constrained sampling: the tokens a grammar allows next, for a whole vocabulary.
//!
//! [`TokenTable`] decodes every token's text to code points once per model. [`Constraint`] holds
//! a [`Matcher`] and samples in two steps, as llama.cpp's common sampler does: the sampler picks
//! from the unconstrained logits, and when the grammar allows that token (one cheap check) it is
//! taken; only otherwise are all tokens the grammar refuses masked and the sampler asked again.
//! Both steps together draw from exactly the masked distribution: a token t the grammar allows,
//! with probability p_t, is drawn first with p_t or after a refusal with (1 - Z) p_t / Z, where Z
//! is the allowed tokens' total: p_t / Z in all.
//!
//! The full mask follows llama.cpp's candidate rejection: per stack, all candidates are tested
//! against the character class on top at once, and the stacks after that class (which do not
//! depend on the character) are computed once for all of them, level by level.

use std::sync::Arc;

use super::matcher::{decode_utf8, Partial};
use super::{Elem, Grammar, Matcher};
use crate::sampler::Sampler;
use crate::tokenizer::Tokenizer;

/// Every token's text as code points (all tokens' in one array) and the UTF-8 state it ends in.
pub struct TokenTable {
    /// Token i's code points are `cps[start[i]..start[i + 1]]`.
    cps: Vec<u32>,
    start: Vec<u32>,
    /// The partial UTF-8 sequence a token ends inside, if any.
    partial: Vec<Partial>,
    /// Raw text bytes, for tokens decoded against a partial character left by the previous one.
    pieces: Vec<Vec<u8>>,
    /// End-of-generation tokens (allowed only where the grammar may end).
    eog: Vec<bool>,
    /// Token ids in the order of their code points: tokens sharing a prefix stay next to each
    /// other through every level of the rejection, so each character is tested once per run.
    sorted: Vec<u32>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenTable({} tokens)", self.n_vocab())
    }
}

impl TokenTable {
    /// From a model's tokenizer: each token's text as `ferrolm` prints it (control tokens have
    /// none and are never allowed inside a grammar).
    pub fn new(tok: &Tokenizer) -> TokenTable {
        let n = tok.n_vocab();
        let mut t = TokenTable {
            cps: Vec::new(),
            start: Vec::with_capacity(n + 1),
            partial: Vec::with_capacity(n),
            pieces: Vec::with_capacity(n),
            eog: (0..n as u32).map(|i| tok.is_eog(i)).collect(),
            sorted: Vec::new(),
        };
        t.start.push(0);
        for i in 0..n as u32 {
            let piece = tok.token_to_piece(i, false).to_vec();
            let (cps, partial) = decode_utf8(&piece, Partial::default());
            t.cps.extend_from_slice(&cps);
            t.start.push(t.cps.len() as u32);
            t.partial.push(partial);
            t.pieces.push(piece);
        }
        let mut sorted: Vec<u32> = (0..n as u32).collect();
        sorted.sort_by(|&a, &b| t.cps_of(a).cmp(t.cps_of(b)));
        t.sorted = sorted;
        t
    }

    fn cps_of(&self, id: u32) -> &[u32] {
        &self.cps[self.start[id as usize] as usize..self.start[id as usize + 1] as usize]
    }

    pub fn n_vocab(&self) -> usize {
        self.pieces.len()
    }

    pub fn piece(&self, id: u32) -> &[u8] {
        &self.pieces[id as usize]
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.get(id as usize).copied().unwrap_or(false)
    }
}

/// A candidate token during rejection: its code points from `at` to `end` are still to match.
#[derive(Clone, Copy, Debug)]
struct Cand {
    id: u32,
    at: u32,
    end: u32,
}

/// A grammar applied to sampling.
#[derive(Clone, Debug)]
pub struct Constraint {
    start: Matcher,
    m: Matcher,
    table: Arc<TokenTable>,
    /// `[n_vocab]` scratch: the masked logits.
    masked: Vec<f32>,
    /// `[n_vocab]` scratch: allowed tokens.
    allowed: Vec<bool>,
    /// Full masks computed (for tests and benchmarks: how often the quick check failed).
    n_masks: usize,
    /// Time spent in the grammar (checks, masks, advancing), and in full masks alone.
    time: std::time::Duration,
    mask_time: std::time::Duration,
    /// The last full masks and the states they were computed in, most recent first: generation
    /// comes back to the same states (inside a string, between members), and their masks are
    /// then copied instead of computed.
    cache: Vec<(Matcher, Vec<bool>)>,
}

/// Full masks kept per constraint.
const MASK_CACHE: usize = 4;

impl Constraint {
    pub fn new(grammar: Arc<Grammar>, table: Arc<TokenTable>) -> Constraint {
        let start = Matcher::new(grammar);
        let n = table.n_vocab();
        Constraint {
            m: start.clone(),
            start,
            table,
            masked: vec![0.0; n],
            allowed: vec![false; n],
            n_masks: 0,
            time: std::time::Duration::ZERO,
            mask_time: std::time::Duration::ZERO,
            cache: Vec::new(),
        }
    }

    /// Back to the start of the grammar.
    pub fn reset(&mut self) {
        self.m = self.start.clone();
    }

    pub fn matcher(&self) -> &Matcher {
        &self.m
    }

    /// Full masks computed so far.
    pub fn n_masks(&self) -> usize {
        self.n_masks
    }

    /// Time spent in the grammar so far (the sampler's own work excluded), and the part of it
    /// spent on full masks.
    pub fn times(&self) -> (std::time::Duration, std::time::Duration) {
        (self.time, self.mask_time)
    }

    /// Whether the grammar allows token `id` next.
    pub fn allows(&self, id: u32) -> bool {
        if self.table.is_eog(id) {
            return self.m.can_end();
        }
        (id as usize) < self.table.n_vocab() && self.m.allows(id, self.table.piece(id))
    }

    /// Samples the next token with `sampler` among the tokens the grammar allows; an
    /// end-of-generation token when it allows none (the text cannot go on).
    pub fn sample(&mut self, sampler: &mut Sampler, logits: &[f32]) -> u32 {
        let id = sampler.sample(logits);
        let t0 = std::time::Instant::now();
        if self.allows(id) {
            self.time += t0.elapsed();
            return id;
        }
        self.n_masks += 1;
        self.mask();
        let n = logits.len().min(self.masked.len());
        let mut any = false;
        for ((m, &l), &ok) in self.masked.iter_mut().zip(logits).zip(&self.allowed) {
            any |= ok;
            *m = if ok { l } else { f32::NEG_INFINITY };
        }
        let spent = t0.elapsed();
        self.time += spent;
        self.mask_time += spent;
        if !any {
            return (0..self.table.n_vocab() as u32)
                .find(|&i| self.table.is_eog(i))
                .unwrap_or(id);
        }
        let id = sampler.sample(&self.masked[..n]);
        debug_assert!(self.allowed[id as usize]);
        id
    }

    /// Advances the grammar past token `id` (the one generated); end-of-generation tokens and
    /// tokens the grammar refuses leave it unchanged (and report false).
    pub fn accept(&mut self, id: u32) -> bool {
        if self.table.is_eog(id) || id as usize >= self.table.n_vocab() {
            return false;
        }
        let t0 = std::time::Instant::now();
        let mut next = self.m.clone();
        let ok = next.accept_token(id, self.table.piece(id));
        if ok {
            self.m = next;
        }
        self.time += t0.elapsed();
        ok
    }

    /// Computes the full mask now, as a refused token would (for benchmarks: the worst case of
    /// a step); returns how many tokens it allows.
    pub fn full_mask(&mut self) -> usize {
        self.compute_mask();
        self.allowed.iter().filter(|&&a| a).count()
    }

    /// Fills `allowed` for every token: from the cache when this state's mask is in it.
    fn mask(&mut self) {
        if let Some(i) = self.cache.iter().position(|(m, _)| m.same_state(&self.m)) {
            let e = self.cache.remove(i);
            self.allowed.copy_from_slice(&e.1);
            self.cache.insert(0, e);
            return;
        }
        self.compute_mask();
        if self.cache.len() == MASK_CACHE {
            self.cache.pop();
        }
        self.cache.insert(0, (self.m.clone(), self.allowed.clone()));
    }

    /// Fills `allowed` for every token.
    fn compute_mask(&mut self) {
        let t = &*self.table;
        let can_end = self.m.can_end();
        for (i, a) in self.allowed.iter_mut().enumerate() {
            *a = t.eog[i] && can_end;
        }
        if self.m.partial() != Partial::default() {
            // A character split by the previous token: decode each token on top of it (rare).
            for i in 0..t.n_vocab() {
                if !t.eog[i] {
                    self.allowed[i] = self.m.allows(i as u32, &t.pieces[i]);
                }
            }
            return;
        }
        // Candidates: tokens with text, valid UTF-8 so far.
        let mut cands: Vec<Cand> = (0..t.n_vocab())
            .filter(|&i| !t.eog[i] && !t.pieces[i].is_empty() && t.partial[i].n_remain() >= 0)
            .map(|i| Cand {
                id: i as u32,
                at: t.start[i],
                end: t.start[i + 1],
            })
            .collect();
        let g = self.m.grammar().clone();
        let rejected = reject(&g, t, self.m.stacks(), &cands);
        for c in &cands {
            self.allowed[c.id as usize] = true;
        }
        for c in rejected {
            self.allowed[c.id as usize] = false;
        }
        cands.clear();
    }
}

/// The candidates no stack accepts (llama.cpp's `llama_grammar_reject_candidates`).
fn reject(g: &Grammar, t: &TokenTable, stacks: &[Vec<(u32, u32)>], cands: &[Cand]) -> Vec<Cand> {
    if cands.is_empty() {
        return Vec::new();
    }
    let Some((first, rest)) = stacks.split_first() else {
        return cands.to_vec();
    };
    let mut rejects = reject_for_stack(g, t, first, cands);
    for s in rest {
        rejects = reject_for_stack(g, t, s, &rejects);
    }
    rejects
}

/// The candidates `stack` refuses.
fn reject_for_stack(
    g: &Grammar,
    t: &TokenTable,
    stack: &[(u32, u32)],
    cands: &[Cand],
) -> Vec<Cand> {
    let mut rejects = Vec::new();
    let Some(&top) = stack.last() else {
        // A complete grammar: only a candidate with nothing left passes.
        rejects.extend(
            cands
                .iter()
                .filter(|c| c.at < c.end || t.partial[c.id as usize].n_remain() != 0),
        );
        return rejects;
    };
    if matches!(g.elem(top), Elem::Token(_) | Elem::TokenNot(_)) {
        for c in cands {
            if c.at == c.end {
                if t.partial[c.id as usize].n_remain() != 0 {
                    rejects.push(*c);
                }
            } else if !super::matcher::match_token(g.elem(top), c.id) {
                rejects.push(*c);
            }
        }
        return rejects;
    }
    let mut next = Vec::with_capacity(cands.len());
    // Candidates come in code point order: a run with the same next character is tested once.
    let mut last: Option<(u32, bool)> = None;
    for c in cands {
        if c.at == c.end {
            let p = t.partial[c.id as usize];
            if p.n_remain() != 0 && !super::matcher::match_partial_char(g, top, p) {
                rejects.push(*c);
            }
            continue;
        }
        let ch = t.cps[c.at as usize];
        let ok = match last {
            Some((lc, ok)) if lc == ch => ok,
            _ => {
                let ok = super::matcher::match_char(g, top, ch).0;
                last = Some((ch, ok));
                ok
            }
        };
        if ok {
            next.push(Cand { at: c.at + 1, ..*c });
        } else {
            rejects.push(*c);
        }
    }
    if next.is_empty() {
        return rejects;
    }
    // The stacks after the class, the same whichever character matched.
    let after = super::matcher::match_char(g, top, 0).1;
    let mut st = stack[..stack.len() - 1].to_vec();
    if !g.elem(after).ends_sequence() {
        st.push(after);
    }
    let mut next_stacks = Vec::new();
    super::matcher::advance(g, st, &mut next_stacks);
    for c in reject(g, t, &next_stacks, &next) {
        rejects.push(Cand { at: c.at - 1, ..c });
    }
    rejects
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full mask and the one-token check agree on every token of a small made-up vocabulary,
    /// at every step of a JSON-ish grammar.
    #[test]
    fn mask_agrees_with_single_checks() {
        let g = Arc::new(
            Grammar::parse(
                r#"root ::= "{" ws "\"" [a-zé]+ "\"" ws ":" ws [0-9]+ ws "}"
ws ::= [ ]?"#,
            )
            .unwrap(),
        );
        let words: Vec<&[u8]> = vec![
            b"{",
            b"{\"",
            b"\"",
            b"a",
            b"ab",
            b"\":",
            b"\": ",
            b" ",
            b"1",
            b"12",
            b"}",
            b"x",
            "é".as_bytes(),
            &"é".as_bytes()[..1],
            &"é".as_bytes()[1..],
            b"",
            b"1}",
            b"a\"",
        ];
        let n = words.len();
        let mut cps = Vec::new();
        let mut start = vec![0u32];
        let mut partial = Vec::new();
        for w in &words {
            let (c, p) = decode_utf8(w, Partial::default());
            cps.extend_from_slice(&c);
            start.push(cps.len() as u32);
            partial.push(p);
        }
        let table = Arc::new(TokenTable {
            cps,
            start,
            partial,
            pieces: words.iter().map(|w| w.to_vec()).collect(),
            eog: (0..n).map(|i| i == n - 1).collect(),
            sorted: (0..n as u32).collect(),
        });
        let mut c = Constraint::new(g, Arc::clone(&table));
        // Walk one valid text token by token, comparing masks at each step.
        for step in [0usize, 2, 4, 13, 14, 6, 9, 10] {
            c.mask();
            for id in 0..n as u32 {
                assert_eq!(
                    c.allowed[id as usize],
                    c.allows(id),
                    "token {:?} before step {step}",
                    String::from_utf8_lossy(words[id as usize])
                );
            }
            assert!(c.allows(step as u32), "step {step}");
            assert!(c.accept(step as u32));
        }
        assert!(c.matcher().can_end());
    }
}
