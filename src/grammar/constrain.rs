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
//! The full mask walks a trie of the vocabulary's code points with the set of grammar stacks: a
//! subtree whose prefix no stack takes is skipped whole, and the stack sets are states of a
//! deterministic automaton built as they are met (set, character -> next set), so a walk that
//! comes back to a state (inside a JSON string every plain character leads back to the same set)
//! costs a table lookup per trie node, and later masks of the same generation reuse the table.

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
    /// The trie of the code points of every token that can appear in grammar text.
    trie: Trie,
    /// Tokens whose text starts with a UTF-8 continuation byte: the only ones that can follow a
    /// token that ended inside a character.
    cont: Vec<u32>,
}

/// A trie node: its character, first child and next sibling (0: none; node 0 is the root), and
/// the tokens whose code points end here: `ends[end.0..end.1]` complete ones and
/// `partials[part.0..part.1]` ones whose text ends inside a UTF-8 sequence.
#[derive(Clone, Copy, Debug, Default)]
struct Node {
    ch: u32,
    first_child: u32,
    next_sibling: u32,
    end: (u32, u32),
    part: (u32, u32),
}

#[derive(Debug, Default)]
struct Trie {
    nodes: Vec<Node>,
    ends: Vec<u32>,
    partials: Vec<u32>,
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
            trie: Trie::default(),
            cont: Vec::new(),
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
        t.build_trie();
        t
    }

    fn find_cont(&mut self) {
        self.cont = (0..self.n_vocab() as u32)
            .filter(|&i| {
                !self.eog[i as usize]
                    && self.pieces[i as usize]
                        .first()
                        .is_some_and(|&b| b >> 6 == 2)
            })
            .collect();
    }

    /// Builds the trie from the tokens sorted by code points (complete ones before those with a
    /// partial tail at the same path): each token shares its predecessor's nodes for their common
    /// prefix, so nodes are made in depth-first order, children in character order.
    fn build_trie(&mut self) {
        let mut ids: Vec<u32> = (0..self.n_vocab() as u32)
            .filter(|&i| {
                let i = i as usize;
                !self.eog[i] && !self.pieces[i].is_empty() && self.partial[i].n_remain() >= 0
            })
            .collect();
        ids.sort_by(|&a, &b| {
            self.cps_of(a).cmp(self.cps_of(b)).then(
                (self.partial[a as usize].n_remain() != 0)
                    .cmp(&(self.partial[b as usize].n_remain() != 0)),
            )
        });
        let mut nodes = vec![Node::default()];
        let mut ends = Vec::new();
        let mut partials = Vec::new();
        // path[d] = the node at depth d + 1 of the previous token's path.
        let mut path: Vec<u32> = Vec::new();
        let mut prev: &[u32] = &[];
        for &id in &ids {
            let cps = self.cps_of(id);
            let common = cps.iter().zip(prev).take_while(|(a, b)| a == b).count();
            path.truncate(common);
            for d in common..cps.len() {
                let parent = if d == 0 { 0 } else { path[d - 1] };
                let n = nodes.len() as u32;
                nodes.push(Node {
                    ch: cps[d],
                    ..Node::default()
                });
                // Append as the parent's last child.
                let first = nodes[parent as usize].first_child;
                if first == 0 {
                    nodes[parent as usize].first_child = n;
                } else {
                    let mut c = first;
                    while nodes[c as usize].next_sibling != 0 {
                        c = nodes[c as usize].next_sibling;
                    }
                    nodes[c as usize].next_sibling = n;
                }
                path.push(n);
            }
            let at = if cps.is_empty() {
                0
            } else {
                path[cps.len() - 1]
            } as usize;
            if self.partial[id as usize].n_remain() == 0 {
                if nodes[at].end.1 == 0 {
                    nodes[at].end = (ends.len() as u32, ends.len() as u32);
                }
                ends.push(id);
                nodes[at].end.1 = ends.len() as u32;
            } else {
                if nodes[at].part.1 == 0 {
                    nodes[at].part = (partials.len() as u32, partials.len() as u32);
                }
                partials.push(id);
                nodes[at].part.1 = partials.len() as u32;
            }
            prev = cps;
        }
        self.trie = Trie {
            nodes,
            ends,
            partials,
        };
        self.find_cont();
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
    /// Stack sets met by the masks' walks and the transitions between them.
    dfa: Dfa,
}

/// Full masks kept per constraint.
const MASK_CACHE: usize = 4;

/// Stack sets the automaton keeps before it starts over (bounds its memory).
const MAX_STATES: usize = 1 << 14;

type Stacks = Vec<Vec<(u32, u32)>>;

/// Sets of grammar stacks met while masking (state 0: the empty set, dead) and the transitions
/// between them, made on first use. A transition depends on the character only through which
/// stacks' top classes take it (each stack continues the same way whatever character its class
/// took), so it is computed once per (state, set of matching stacks).
#[derive(Clone, Debug, Default)]
struct Dfa {
    sets: Vec<Stacks>,
    ids: std::collections::HashMap<Stacks, u32>,
    trans: std::collections::HashMap<(u32, u32), u32>,
    /// Per state: each stack expanded past its top class (None for a stack that takes no
    /// character: empty, or a token on top).
    after: Vec<Option<Vec<Option<Stacks>>>>,
    by_match: std::collections::HashMap<(u32, u64), u32>,
    /// Per state, the transitions on ASCII characters by direct index (u32::MAX: not made yet):
    /// most tokens' characters, looked up without hashing.
    ascii: Vec<[u32; 128]>,
}

impl Dfa {
    fn clear(&mut self) {
        self.sets.clear();
        self.ids.clear();
        self.trans.clear();
        self.after.clear();
        self.by_match.clear();
        self.ascii.clear();
    }

    /// The state of a set of stacks (sorted, without duplicates).
    fn intern(&mut self, mut set: Stacks) -> u32 {
        if self.sets.is_empty() {
            self.sets.push(Vec::new());
            self.after.push(None);
            self.ascii.push([0; 128]);
            self.ids.insert(Vec::new(), 0);
        }
        set.sort();
        set.dedup();
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(set.clone());
        self.after.push(None);
        self.ascii.push([u32::MAX; 128]);
        self.ids.insert(set, id);
        id
    }

    /// The state after code point `ch` from `state`.
    fn step(&mut self, g: &Grammar, state: u32, ch: u32) -> u32 {
        if state == 0 {
            return 0;
        }
        if ch < 128 {
            let n = self.ascii[state as usize][ch as usize];
            if n != u32::MAX {
                return n;
            }
        } else if let Some(&n) = self.trans.get(&(state, ch)) {
            return n;
        }
        let n = if self.sets[state as usize].len() > 64 {
            let mut out = Vec::new();
            for st in &self.sets[state as usize] {
                super::matcher::accept_char(g, st, ch, &mut out);
            }
            self.intern(out)
        } else {
            if self.after[state as usize].is_none() {
                let after = self.sets[state as usize]
                    .iter()
                    .map(|st| {
                        let &top = st.last()?;
                        if !matches!(
                            g.elem(top),
                            Elem::Char(_) | Elem::CharNot(_) | Elem::CharAny
                        ) {
                            return None;
                        }
                        let next = super::matcher::match_char(g, top, 0).1;
                        let mut ns = st[..st.len() - 1].to_vec();
                        if !g.elem(next).ends_sequence() {
                            ns.push(next);
                        }
                        let mut out = Vec::new();
                        super::matcher::advance(g, ns, &mut out);
                        Some(out)
                    })
                    .collect();
                self.after[state as usize] = Some(after);
            }
            let mut bits = 0u64;
            for (i, st) in self.sets[state as usize].iter().enumerate() {
                if let Some(&top) = st.last() {
                    if matches!(
                        g.elem(top),
                        Elem::Char(_) | Elem::CharNot(_) | Elem::CharAny
                    ) && super::matcher::match_char(g, top, ch).0
                    {
                        bits |= 1 << i;
                    }
                }
            }
            if bits == 0 {
                0
            } else if let Some(&n) = self.by_match.get(&(state, bits)) {
                n
            } else {
                let after = self.after[state as usize].as_ref().expect("made above");
                let mut out: Stacks = Vec::new();
                for (i, a) in after.iter().enumerate() {
                    if bits & (1 << i) != 0 {
                        out.extend(a.iter().flatten().cloned());
                    }
                }
                let n = self.intern(out);
                self.by_match.insert((state, bits), n);
                n
            }
        };
        if ch < 128 {
            self.ascii[state as usize][ch as usize] = n;
        } else {
            self.trans.insert((state, ch), n);
        }
        n
    }
}

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
            dfa: Dfa::default(),
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
        if self.dfa.sets.len() > MAX_STATES {
            self.dfa.clear();
        }
        let partial = self.m.partial();
        if partial.n_remain() != 0 {
            // A character split by the previous token: only tokens that go on with continuation
            // bytes can follow; each is decoded on top of it and walked through the automaton.
            let g = Arc::clone(self.m.grammar());
            let root = self.dfa.intern(self.m.stacks().to_vec());
            for &id in &t.cont {
                let (cps, p) = decode_utf8(&t.pieces[id as usize], partial);
                if p.n_remain() < 0 {
                    continue;
                }
                let mut state = root;
                for &c in &cps {
                    state = self.dfa.step(&g, state, c);
                    if state == 0 {
                        break;
                    }
                }
                self.allowed[id as usize] = state != 0
                    && (p.n_remain() == 0
                        || super::matcher::can_complete(&g, &self.dfa.sets[state as usize], p));
            }
            return;
        }
        let g = Arc::clone(self.m.grammar());
        let g = &*g;
        let root = self.dfa.intern(self.m.stacks().to_vec());
        let trie = &t.trie;
        let allowed = &mut self.allowed;
        let dfa = &mut self.dfa;
        // Tokens ending at a node: complete ones when the state is alive; those with a partial
        // UTF-8 tail when some stack's character class can complete it.
        let mut mark = |node: &Node, state: u32, dfa: &Dfa| {
            if state == 0 {
                return;
            }
            for &id in &trie.ends[node.end.0 as usize..node.end.1 as usize] {
                allowed[id as usize] = true;
            }
            for &id in &trie.partials[node.part.0 as usize..node.part.1 as usize] {
                let p = t.partial[id as usize];
                allowed[id as usize] =
                    super::matcher::can_complete(g, &dfa.sets[state as usize], p);
            }
        };
        // Tokens made only of a partial sequence hang at the root.
        mark(&trie.nodes[0], root, dfa);
        let mut todo: Vec<(u32, u32)> = vec![(0, root)];
        while let Some((node, state)) = todo.pop() {
            let mut c = trie.nodes[node as usize].first_child;
            while c != 0 {
                let n = &trie.nodes[c as usize];
                let next = dfa.step(g, state, n.ch);
                if next != 0 {
                    mark(n, next, dfa);
                    if n.first_child != 0 {
                        todo.push((c, next));
                    }
                }
                c = n.next_sibling;
            }
        }
    }
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
        let mut tt = TokenTable {
            cps,
            start,
            partial,
            pieces: words.iter().map(|w| w.to_vec()).collect(),
            eog: (0..n).map(|i| i == n - 1).collect(),
            trie: Trie::default(),
            cont: Vec::new(),
        };
        tt.build_trie();
        let table = Arc::new(tt);
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
